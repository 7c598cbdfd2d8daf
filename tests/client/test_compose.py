"""Composing: encoded headers, Bcc only in the envelope, attachments, refusals."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from postoffice.client.compose import compose, mailbox, parse_recipients
from postoffice.client.network import ClientError


def parsed(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def test_bcc_is_in_the_envelope_and_the_sent_copy_only() -> None:
    out = compose(
        sender=mailbox("alice@a.test", "Alice"),
        to=parse_recipients(["bob@b.test, Zoë <zoe@b.test>"]),
        cc=parse_recipients(["carl@c.test"]),
        bcc=parse_recipients(["hidden@d.test", "bob@b.test"]),
        subject="hi",
        body="text",
    )
    assert out.recipients == ["bob@b.test", "zoe@b.test", "carl@c.test", "hidden@d.test"]
    assert b"hidden@d.test" not in out.message
    assert parsed(out.sent_copy)["Bcc"] == "hidden@d.test, bob@b.test"
    message = parsed(out.message)
    assert message["Message-ID"] == out.message_id and out.message_id.endswith("@a.test>")
    assert message["Date"].datetime.tzinfo is not None


def test_non_ascii_headers_are_encoded_and_read_back() -> None:
    subject = "Ünïcödé — 件名 " + "long " * 30
    out = compose(
        sender=mailbox("alice@a.test", "Alïce"),
        to=parse_recipients(["Bøb <bob@b.test>"]),
        subject=subject,
        body="çà\n" + "x" * 2000,
    )
    assert out.message.isascii()
    assert all(len(line) <= 998 for line in out.message.split(b"\r\n"))
    message = parsed(out.message)
    assert message["Subject"] == subject
    assert str(message["From"]) == "Alïce <alice@a.test>"
    assert message.get_content().replace("\r\n", "\n") == "çà\n" + "x" * 2000 + "\n"


def test_attachment_types_are_guessed_and_names_kept(tmp_path: Path) -> None:
    files = {"photo é.png": b"\x89PNG", "archive.tar.gz": b"\x1f\x8b", "noext": b"?"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    out = compose(
        sender=mailbox("a@a.test"),
        to=parse_recipients(["b@b.test"]),
        subject="files",
        body="see",
        attachments=[tmp_path / name for name in files],
    )
    parts = list(parsed(out.message).iter_attachments())
    found = {part.get_filename(): (part.get_content_type(), part.get_content()) for part in parts}
    assert found == {
        "photo é.png": ("image/png", b"\x89PNG"),
        "archive.tar.gz": ("application/octet-stream", b"\x1f\x8b"),
        "noext": ("application/octet-stream", b"?"),
    }


@pytest.mark.parametrize(
    ("recipients", "subject", "error"),
    [
        ([], "s", "no recipient"),
        (["bob@"], "s", "no address"),
        (["bøb@b.test"], "s", "only ASCII"),
        (["b@b.test"], "line\nbreak", "cannot use that header"),
    ],
)
def test_bad_input_is_refused(recipients: list[str], subject: str, error: str) -> None:
    with pytest.raises(ClientError, match=error):
        compose(
            sender=mailbox("a@a.test"),
            to=parse_recipients(recipients),
            subject=subject,
            body="x",
        )


def test_an_unreadable_attachment_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(ClientError, match="cannot read attachment"):
        compose(
            sender=mailbox("a@a.test"),
            to=parse_recipients(["b@b.test"]),
            subject="s",
            body="x",
            attachments=[tmp_path / "missing"],
        )
