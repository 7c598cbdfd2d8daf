"""IMAP against a running server with imaplib: login, folders, messages, flags, IDLE, limits.

One server is shared by the module; alice's INBOX is emptied before each test. IDLE must
hear of deliveries, other sessions' changes and POP3 deletions within a second, which the
server's slow re-check (every 30 s) could not do: only its notifications can. Mail arrives
by SMTP (the real delivery path) or APPEND. Byte-level checks (the literal limit) go
through a raw socket.

Standards: RFC 9051, RFC 2177, RFC 4315, RFC 6154, RFC 6851, RFC 7889
"""

from __future__ import annotations

import imaplib
import os
import poplib
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.testing.server import ServerProcess, with_user

USER, PASSWORD = "alice@localhost", "secret-alice"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("imap") / "data"
    proc = with_user(data, USER, PASSWORD, limits={"commands_per_minute": 100_000})
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def imap(shared: ServerProcess) -> ServerProcess:
    box = shared.maildir(USER)
    for sub in ("new", "cur"):
        if (box / sub).is_dir():
            for path in (box / sub).iterdir():
                path.unlink()
    return shared


def connect(proc: ServerProcess) -> imaplib.IMAP4:
    client = imaplib.IMAP4(proc.host, proc.imap_port, timeout=10)
    client.login(USER, PASSWORD)
    return client


def send_mail(proc: ServerProcess, subject: str, body: str = "hello there") -> None:
    with smtplib.SMTP(proc.host, proc.smtp_port, timeout=10) as smtp:
        smtp.sendmail(
            "bob@example.org",
            [USER],
            f"From: bob@example.org\r\nTo: {USER}\r\nSubject: {subject}\r\n\r\n{body}\r\n",
        )


def tls_context(proc: ServerProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(proc.data_dir / "tls" / "cert.pem"))


def files(proc: ServerProcess) -> list[Path]:
    box = proc.maildir(USER)
    return sorted(p for sub in ("new", "cur") for p in (box / sub).iterdir())


def test_greeting_capabilities_and_plain_loopback_login(imap: ServerProcess) -> None:
    client = imaplib.IMAP4(imap.host, imap.imap_port, timeout=10)
    assert client.welcome.startswith(b"* OK [CAPABILITY ")
    for cap in ("IMAP4REV2", "STARTTLS", "IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE"):
        assert cap in client.capabilities
    assert any(c.startswith("APPENDLIMIT=") for c in client.capabilities)
    assert client.login(USER, PASSWORD)[0] == "OK"
    other = imaplib.IMAP4(imap.host, imap.imap_port, timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        other.login(USER, "wrong")
    other.logout()
    client.logout()


def test_starttls_and_implicit_tls(imap: ServerProcess) -> None:
    context = tls_context(imap)
    client = imaplib.IMAP4(imap.host, imap.imap_port, timeout=10)
    context.check_hostname = False
    client.starttls(context)
    assert "STARTTLS" not in client.capabilities
    assert client.login(USER, PASSWORD)[0] == "OK"
    client.logout()
    secure = tls_context(imap)
    with (
        socket.create_connection((imap.host, imap.imaps_port), timeout=10) as raw,
        secure.wrap_socket(raw, server_hostname="mx.test") as wrapped,
    ):
        assert wrapped.recv(100).startswith(b"* OK")
    client = imaplib.IMAP4_SSL(imap.host, imap.imaps_port, ssl_context=context, timeout=10)
    assert client.login(USER, PASSWORD)[0] == "OK"
    client.logout()


def test_list_shows_special_use_folders(imap: ServerProcess) -> None:
    client = connect(imap)
    status, lines = client.list()
    assert status == "OK"
    text = b"\n".join(lines).decode()
    for name, attr in (("Sent", "\\Sent"), ("Trash", "\\Trash"), ("Junk", "\\Junk")):
        assert re.search(rf"\(.*\{attr}.*\) \"\.\" \"?{name}", text), text
    assert "INBOX" in text
    assert client.create("Projects")[0] == "OK"
    assert client.create("Projects.2026")[0] == "OK"
    assert client.rename("Projects", "Work")[0] == "OK"
    names = b"\n".join(client.list()[1]).decode()
    assert "Work.2026" in names and "Projects" not in names
    assert client.delete("Work.2026")[0] == "OK"
    assert client.status("INBOX", "(MESSAGES UIDNEXT)")[0] == "OK"
    for bad in ("../x", "a..b", ".hidden", "a/b"):
        assert client.create(bad)[0] == "NO", bad
    client.logout()


def test_select_fetch_store_search_expunge(imap: ServerProcess) -> None:
    send_mail(imap, "first")
    send_mail(imap, "second", "needle in the body")
    imap.wait_for_mail(USER, 2)
    client = connect(imap)
    status, data = client.select("INBOX")
    assert status == "OK" and data == [b"2"]
    stored = [p.read_bytes() for p in files(imap)]
    status, data = client.fetch("1:2", "(BODY.PEEK[] RFC822.SIZE FLAGS)")
    bodies = [item[1] for item in data if isinstance(item, tuple)]
    assert sorted(bodies) == sorted(stored)
    assert client.fetch("1", "(ENVELOPE BODYSTRUCTURE)")[0] == "OK"
    assert client.search(None, "BODY", "needle") == ("OK", [b"2"])
    assert client.search(None, "SUBJECT", "first") == ("OK", [b"1"])
    assert client.search(None, "UNSEEN") == ("OK", [b"1 2"])
    client.fetch("1", "(BODY[TEXT])")  # not PEEK: sets \Seen
    assert client.search(None, "SEEN") == ("OK", [b"1"])
    status, data = client.uid("STORE", "1:*", "+FLAGS", "(\\Flagged)")
    assert status == "OK"
    names = [p.name for p in files(imap)]
    assert any(n.endswith(":2,FS") for n in names), names
    client.store("2", "+FLAGS.SILENT", "(\\Deleted)")
    status, data = client.expunge()
    assert status == "OK" and data == [b"2"]
    assert len(files(imap)) == 1
    client.logout()


def test_append_with_appenduid_and_move_to_trash(imap: ServerProcess) -> None:
    client = connect(imap)
    message = b"From: me@localhost\r\nSubject: draft\r\n\r\nbody\r\n"
    status, data = client.append("INBOX", "(\\Seen)", None, message)
    assert status == "OK" and b"APPENDUID" in data[0]
    client.select("INBOX")
    status, data = client.uid("MOVE", "1:*", "Trash")
    assert status == "OK"
    assert client.select("INBOX")[1] == [b"0"]
    assert client.select("Trash")[1][0] != b"0"
    trash = imap.maildir(USER) / ".Trash"
    moved = [p.read_bytes() for sub in ("new", "cur") for p in (trash / sub).iterdir()]
    assert message in moved
    client.logout()


def test_two_sessions_see_changes_at_next_command(imap: ServerProcess) -> None:
    send_mail(imap, "shared")
    imap.wait_for_mail(USER, 1)
    one, two = connect(imap), connect(imap)
    one.select("INBOX")
    two.select("INBOX")
    one.store("1", "+FLAGS", "(\\Deleted)")
    one.expunge()
    two.noop()
    assert two.untagged_responses.get("EXPUNGE") == [b"1"]
    send_mail(imap, "another")
    imap.wait_for_mail(USER, 1)
    time.sleep(0.2)
    _status, _data = two.noop()
    assert b"1" in two.untagged_responses.get("EXISTS", [])
    one.logout()
    two.logout()


def test_a_keyword_set_in_one_session_reaches_another_on_a_settled_mailbox(
    imap: ServerProcess,
) -> None:
    """No file is renamed and the folder's mtimes are old, so the other session (sharing the
    open index, listed from the cache) learns of it only through the store's change count."""
    send_mail(imap, "labelled")
    imap.wait_for_mail(USER, 1)
    one, two = connect(imap), connect(imap)
    one.select("INBOX")
    one.store("1", "+FLAGS", "(\\Seen)")  # into cur/: from now on only keywords change
    box = imap.maildir(USER)
    for sub in ("new", "cur"):
        os.utime(box / sub, (time.time() - 60, time.time() - 60))
    two.select("INBOX")
    two.noop()
    assert "FETCH" not in two.untagged_responses
    one.store("1", "+FLAGS", "($Label1)")
    two.noop()
    (fetched,) = two.untagged_responses["FETCH"]
    assert b"$Label1" in fetched and b"\\Seen" in fetched
    one.logout()
    two.logout()


def start_idle(client: imaplib.IMAP4, tag: bytes = b"i1") -> None:
    client.send(tag + b" IDLE\r\n")
    assert client.readline().startswith(b"+")
    client.socket().settimeout(5)


def stop_idle(client: imaplib.IMAP4, tag: bytes = b"i1") -> None:
    client.send(b"DONE\r\n")
    while not (line := client.readline()).startswith(tag):
        assert line.startswith(b"* "), line
    assert line.startswith(tag + b" OK"), line
    client.socket().settimeout(10)


def test_idle_wakes_within_a_second_of_delivery(imap: ServerProcess) -> None:
    client = connect(imap)
    client.select("INBOX")
    start_idle(client)
    send_mail(imap, "wake up")
    accepted = time.monotonic()  # the 250: delivery starts now
    line = client.readline()
    assert line == b"* 1 EXISTS\r\n", line
    assert time.monotonic() - accepted < 1.0
    stop_idle(client)
    client.logout()


def test_idle_hears_other_sessions_and_pop3_without_polling(imap: ServerProcess) -> None:
    send_mail(imap, "one")
    send_mail(imap, "two")
    imap.wait_for_mail(USER, 2)
    watcher, other = connect(imap), connect(imap)
    watcher.select("INBOX")
    other.select("INBOX")
    start_idle(watcher)
    started = time.monotonic()
    other.store("1", "+FLAGS", "(\\Flagged)")
    line = watcher.readline()
    assert line.startswith(b"* 1 FETCH (") and b"\\Flagged" in line, line
    assert time.monotonic() - started < 1.0
    other.logout()
    pop = poplib.POP3(imap.host, imap.pop3_port, timeout=10)
    pop.user(USER)
    pop.pass_(PASSWORD)
    pop.dele(2)
    started = time.monotonic()
    pop.quit()  # the UPDATE state: an expunge IMAP sessions see
    assert watcher.readline() == b"* 2 EXPUNGE\r\n"
    assert time.monotonic() - started < 1.0
    stop_idle(watcher)
    assert watcher.select("INBOX")[1] == [b"1"]
    watcher.logout()


def test_folder_names_outside_the_maildir_are_refused(imap: ServerProcess) -> None:
    client = connect(imap)
    outside = imap.maildir(USER).parent  # the domain directory
    before = sorted(p.name for p in outside.iterdir())
    for bad in ("../x", "..", "a/../../b", "INBOX/../../x", ".x"):
        assert client.create(bad)[0] == "NO", bad
        assert client.delete(bad)[0] == "NO", bad
        assert client.rename("Trash", bad)[0] == "NO", bad
        assert client.select(bad)[0] == "NO", bad
    assert client.rename("INBOX", "Elsewhere")[0] == "NO"
    assert client.delete("INBOX")[0] == "NO"
    assert client.delete("No-such-folder")[0] == "NO"
    assert client.rename("No-such-folder", "Other")[0] == "NO"
    assert client.rename("Trash", "Sent")[1][0].startswith(b"[ALREADYEXISTS]")
    assert sorted(p.name for p in outside.iterdir()) == before
    client.logout()


def test_rename_keeps_uidvalidity_and_uids_of_the_folder_and_children(
    imap: ServerProcess,
) -> None:
    client = connect(imap)
    message = b"From: me@localhost\r\nSubject: kept\r\n\r\nbody\r\n"
    for name in ("Project", "Project.Notes"):
        assert client.create(name)[0] == "OK"
        assert client.append(name, None, None, message)[0] == "OK"
    status = client.status("Project.Notes", "(UIDVALIDITY UIDNEXT)")[1]
    assert client.rename("Project", "Archive.Project")[0] == "OK"
    moved = client.status("Archive.Project.Notes", "(UIDVALIDITY UIDNEXT)")[1]
    assert moved[0].partition(b" ")[2] == status[0].partition(b" ")[2]
    names = {line.rpartition(b" ")[2].strip(b'"') for line in client.list()[1]}
    assert {b"Archive.Project", b"Archive.Project.Notes"} <= names
    assert not {b"Project", b"Project.Notes"} & names
    for name in ("Archive.Project.Notes", "Archive.Project"):
        assert client.delete(name)[0] == "OK"
    client.logout()


def test_literal_over_the_limit_is_refused(imap: ServerProcess) -> None:
    with socket.create_connection((imap.host, imap.imap_port), timeout=10) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(f'a LOGIN "{USER}" "{PASSWORD}"\r\n'.encode())
        assert reader.readline().startswith(b"a OK")
        sock.sendall(b"b APPEND INBOX {999999999}\r\n")
        line = reader.readline()
        assert line.startswith((b"b NO [TOOBIG]", b"b BAD [TOOBIG]")), line
        sock.sendall(b"c NOOP\r\n")
        assert reader.readline().startswith(b"c OK")


def test_uidvalidity_and_uids_survive_a_restart(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data")
    proc.cli("user", "add", USER, "--password-stdin", stdin=f"{PASSWORD}\n")
    proc.start()
    try:
        for n in range(3):
            send_mail(proc, f"message {n}")
        proc.wait_for_mail(USER, 3)
        client = connect(proc)
        client.select("INBOX")
        client.store("2", "+FLAGS", "(\\Deleted)")
        client.expunge()
        before = client.status("INBOX", "(UIDVALIDITY UIDNEXT MESSAGES)")[1]
        uids = client.uid("SEARCH", "ALL")[1]
        client.logout()
        proc.stop()
        proc.start()
        client = connect(proc)
        assert client.status("INBOX", "(UIDVALIDITY UIDNEXT MESSAGES)")[1] == before
        client.select("INBOX")
        assert client.uid("SEARCH", "ALL")[1] == uids == [b"1 3"]
        send_mail(proc, "after the restart")
        proc.wait_for_mail(USER, 3)
        client.noop()
        assert client.uid("SEARCH", "ALL")[1] == [b"1 3 4"]  # UIDs are never reused
        client.logout()
    finally:
        proc.stop()


def test_fetch_responses_byte_for_byte(imap: ServerProcess) -> None:
    """Whole bodies and listings come from templates (servers/imap_mailbox.py): what they
    write must be what the general serialiser would, for large and small messages, peeked,
    newly seen (FLAGS told) and already seen, with distinct flag sets in one listing."""
    large = b"Subject: large\r\n\r\n" + b"x" * 2000 + b"\r\n"
    small = b"Subject: small\r\n\r\nhi\r\n"
    client = connect(imap)
    assert client.append("INBOX", "(\\Flagged)", None, large)[0] == "OK"
    assert client.append("INBOX", None, None, small)[0] == "OK"
    client.select("INBOX")
    uids = [int(u) for u in client.uid("SEARCH", "ALL")[1][0].split()]
    client.logout()
    first, second = uids
    with socket.create_connection((imap.host, imap.imap_port), timeout=10) as sock:
        reader = sock.makefile("rb")
        reader.readline()

        def command(line: bytes, size: int) -> bytes:
            """Send `line`; everything up to and with its tagged completion."""
            sock.sendall(line + b"\r\n")
            tag, data = line.split(b" ", 1)[0] + b" ", b""
            while not (data.endswith(b"\r\n") and data.rsplit(b"\r\n", 2)[-2].startswith(tag)):
                data += reader.read1(size)
            return data

        command(f'a LOGIN "{USER}" "{PASSWORD}"'.encode(), 4096)
        command(b"b SELECT INBOX", 4096)
        got = command(b"c UID FETCH 1:* (FLAGS BODY.PEEK[] RFC822.SIZE)", 8192)
        assert got == (
            b"* 1 FETCH (FLAGS (\\Flagged) BODY[] {%d}\r\n%s RFC822.SIZE %d UID %d)\r\n"
            % (len(large), large, len(large), first)
            + b"* 2 FETCH (FLAGS () BODY[] {%d}\r\n%s RFC822.SIZE %d UID %d)\r\n"
            % (len(small), small, len(small), second)
            + b"c OK FETCH completed\r\n"
        )
        got = command(b"d FETCH 1 BODY[]", 8192)  # sets \Seen: FLAGS is told
        assert got == (
            b"* 1 FETCH (BODY[] {%d}\r\n%s FLAGS (\\Flagged \\Seen))\r\n" % (len(large), large)
            + b"d OK FETCH completed\r\n"
        )
        got = command(b"e FETCH 1:2 RFC822", 8192)  # 1 is seen already, 2 is not
        assert got == (
            b"* 1 FETCH (RFC822 {%d}\r\n%s)\r\n" % (len(large), large)
            + b"* 2 FETCH (RFC822 {%d}\r\n%s FLAGS (\\Seen))\r\n" % (len(small), small)
            + b"e OK FETCH completed\r\n"
        )
        got = command(b"f UID FETCH 1:* (UID FLAGS RFC822.SIZE)", 4096)
        assert got == (
            b"* 1 FETCH (UID %d FLAGS (\\Flagged \\Seen) RFC822.SIZE %d)\r\n" % (first, len(large))
            + b"* 2 FETCH (UID %d FLAGS (\\Seen) RFC822.SIZE %d)\r\n" % (second, len(small))
            + b"f OK FETCH completed\r\n"
        )
        got = command(b"g FETCH 2 (INTERNALDATE FLAGS)", 4096)
        assert re.fullmatch(
            rb'\* 2 FETCH \(INTERNALDATE "\d\d-\w{3}-\d{4} \d\d:\d\d:\d\d \+0000" FLAGS '
            rb"\(\\Seen\)\)\r\ng OK FETCH completed\r\n",
            got,
        ), got
