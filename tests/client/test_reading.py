"""Reading local mail: summaries, text, HTML as text, attachments saved under safe names."""

from __future__ import annotations

import os
from email.message import EmailMessage
from pathlib import Path

import pytest

from postoffice.client import reading
from postoffice.client.html_text import html_to_text
from postoffice.client.network import ClientError
from postoffice.storage.maildir import MaildirMailbox


def message(subject: str = "hi", html: str | None = None, **attached: bytes) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Zoë <zoe@b.test>"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 06 May 2024 10:00:00 +0000"
    if html is None:
        msg.set_content("plain text\n")
    else:
        msg.set_content(html, subtype="html")
    for name, data in attached.items():
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg


def test_summaries_number_messages_and_know_what_was_read(tmp_path: Path) -> None:
    box = MaildirMailbox(tmp_path / "box", "host")
    box.deliver(message("first").as_bytes())
    box.deliver(message("sec\x1b]0;owned\x07ond").as_bytes())
    first, second = reading.summaries(box)
    assert (first.number, first.subject, first.sender, first.seen) == (1, "first", "Zoë", False)
    assert "\x1b" not in second.subject and "\x07" not in second.subject
    info, _ = reading.load(box, 1)
    reading.mark_seen(box, info)
    assert [s.seen for s in reading.summaries(box)] == [True, False]
    with pytest.raises(ClientError, match="no message 3"):
        reading.load(box, 3)


def test_html_only_mail_is_shown_as_text() -> None:
    html = "<html><head><style>p{}</style></head><body><p>Hello&nbsp;<b>you</b></p>"
    html += '<p>see <a href="https://x.test/">this</a><br>bye</p><script>x()</script></body>'
    text = reading.body_text(message(html=html))
    assert text == "Hello\xa0you\n\nsee this <https://x.test/>\nbye\n"


def test_html_lists_pre_and_images() -> None:
    text = html_to_text("<ul><li>one<li>two</ul><pre>a\n  b</pre><img alt='logo'><hr>")
    assert text.startswith("- one\n- two\n\na\n  b\n\n[logo]\n----")


@pytest.mark.parametrize(
    ("suggested", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("/abs/path.txt", "path.txt"),
        ("..\\..\\win.ini", "win.ini"),
        ("..", "attachment-1.bin"),
        (".bashrc", "bashrc"),
        ("", "attachment-1.bin"),
        ("a\x00b\x1b[2J.txt", "a_b_[2J.txt"),
        ("con:tro|l?.txt", "con_tro_l_.txt"),
        ("evil\u202etxt.exe", "evil_txt.exe"),
        ("é" * 300 + ".pdf", "é" * 98 + ".pdf"),
        ("x" * 1_000_000, "x" * 200),
    ],
)
def test_attachment_names_are_made_safe(suggested: str, expected: str) -> None:
    part = EmailMessage()
    part.set_content(b"x", maintype="application", subtype="octet-stream", filename=suggested)
    assert reading.attachment_name(part, 1) == expected


def test_saving_never_overwrites_or_follows_links(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_bytes(b"mine")
    outside = tmp_path / "outside"
    os.symlink(outside, target / "a (2).txt")
    msg = message(**{"a.txt": b"one"})
    msg.add_attachment(b"two", maintype="application", subtype="octet-stream", filename="../a.txt")
    saved = reading.save_attachments(msg, target)
    assert [p.name for p in saved] == ["a (3).txt", "a (4).txt"]
    assert (target / "a.txt").read_bytes() == b"mine"
    assert not outside.exists()
    assert {p.read_bytes() for p in saved} == {b"one", b"two"}


def test_attachments_exclude_the_body_and_include_nested_parts() -> None:
    outer = message(**{"x.bin": b"1"})
    inner = message(**{"y.bin": b"2"})
    outer.add_attachment(inner)
    names = [part.get_filename() for part in reading.attachments(outer)]
    assert names == ["x.bin", "y.bin"]
    with pytest.raises(ClientError, match="not a directory"):
        reading.save_attachments(outer, Path("/nonexistent-dir"))
