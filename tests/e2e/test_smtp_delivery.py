"""End to end with Python's smtplib: receive over SMTP, queue, deliver into the Maildir."""

from __future__ import annotations

import smtplib
import socket
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid

from postoffice.testing.server import ServerProcess


def _message(to: str, subject: str = "hello") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@example.org"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content("Hello from the test.\n.leading dot line\n")
    return msg


def test_message_reaches_maildir_new(server: ServerProcess) -> None:
    msg = _message("alice@localhost")
    with smtplib.SMTP(server.host, server.smtp_port, timeout=10) as client:
        code, _ = client.ehlo("client.example.org")
        assert code == 250
        assert client.has_extn("pipelining") and client.has_extn("chunking")
        assert client.has_extn("size") and client.has_extn("smtputf8")
        client.mail("sender@example.org")
        client.rcpt("alice@localhost")
        code, reply = client.data(msg.as_bytes(policy=SMTP))
    assert code == 250
    assert b"queued as" in reply
    (path,) = server.wait_for_mail("alice@localhost")
    assert path.parent.name == "new"
    stored = path.read_bytes()
    assert stored.startswith(
        b"Return-Path: <sender@example.org>\r\nDelivered-To: alice@localhost\r\n"
    )
    assert b"Received: from client.example.org ([127.0.0.1])" in stored
    assert msg["Message-ID"].encode() in stored
    assert b"\r\n.leading dot line\r\n" in stored  # unstuffed once, not twice


def test_unknown_user_and_relay_refused_from_outside(tmp_path) -> None:
    proc = ServerProcess(tmp_path / "d", extra_config="")
    # Only 127.0.0.9 may relay: the test client on 127.0.0.1 is "the internet".
    proc.config_path.write_text(
        proc.config_path.read_text().replace(
            "[smtp]\n", '[smtp]\nrelay_networks = ["127.0.0.9/32"]\n'
        )
    )
    proc.start()
    try:
        with smtplib.SMTP(proc.host, proc.smtp_port, timeout=10) as client:
            client.ehlo("outside.example")
            client.mail("x@example.org")
            assert client.rcpt("nobody@localhost")[0] == 550
            code, text = client.rcpt("victim@b.test")
            assert (code, text[:5]) == (554, b"5.7.1")
            for trick in (
                "user%b.test@localhost",
                "@localhost:user@b.test",
                "b.test!user@localhost",
                '"user@b.test"@localhost',
            ):
                code, _ = client.rcpt(trick)
                assert code >= 500, trick  # refused, never relayed
            assert client.rcpt("postmaster@localhost")[0] == 250
            assert client.rcpt("Postmaster")[0] == 250
    finally:
        proc.stop()


def test_vrfy_never_reveals_users(server: ServerProcess) -> None:
    with smtplib.SMTP(server.host, server.smtp_port, timeout=10) as client:
        assert client.verify("alice@localhost")[0] == 252
        assert client.verify("nobody@localhost")[0] == 252


def test_too_many_recipients_and_oversized_message(tmp_path) -> None:
    proc = ServerProcess(tmp_path / "d")
    proc.config_path.write_text(
        proc.config_path.read_text().replace(
            "[limits]\n", "[limits]\nrecipients = 3\nmessage_size = 10000\n"
        )
    )
    proc.cli("user", "add", "bob@localhost", "--password-stdin", stdin="pw-bob-1\n")
    proc.start()
    try:
        with smtplib.SMTP(proc.host, proc.smtp_port, timeout=10) as client:
            client.ehlo("c.example")
            assert client.mail("a@example.org", ["SIZE=20000"])[0] == 552
            client.mail("a@example.org")
            for _ in range(3):
                assert client.rcpt("bob@localhost")[0] == 250
            code, text = client.rcpt("bob@localhost")
            assert (code, text[:5]) == (452, b"4.5.3")
            code, _ = client.data(b"Subject: big\r\n\r\n" + (b"x" * 98 + b"\r\n") * 120)
            assert code == 552
            client.rset()
            client.mail("a@example.org")
            client.rcpt("bob@localhost")
            assert client.data(b"Subject: small\r\n\r\nok\r\n")[0] == 250
        files = proc.wait_for_mail("bob@localhost")
        assert len(files) == 1 and b"Subject: small" in files[0].read_bytes()
    finally:
        proc.stop()


def test_alias_subaddress_and_catch_all(tmp_path) -> None:
    proc = ServerProcess(tmp_path / "d")
    proc.cli("domain", "add", "a.test")
    proc.cli("user", "add", "bob@a.test", "--password-stdin", stdin="pw-bob-1\n")
    proc.cli("user", "add", "carol@a.test", "--password-stdin", stdin="pw-carol\n")
    proc.cli("alias", "add", "team@a.test", "bob@a.test", "carol@a.test")
    proc.cli("alias", "add", "@a.test", "carol@a.test")
    proc.start()
    try:
        with smtplib.SMTP(proc.host, proc.smtp_port, timeout=10) as client:
            client.sendmail("x@example.org", ["team@a.test"], b"Subject: team\r\n\r\nhi\r\n")
            client.sendmail("x@example.org", ["bob+lists@a.test"], b"Subject: tag\r\n\r\nhi\r\n")
            client.sendmail("x@example.org", ["whoever@a.test"], b"Subject: any\r\n\r\nhi\r\n")
        bob = proc.wait_for_mail("bob@a.test", 2)
        carol = proc.wait_for_mail("carol@a.test", 2)
        assert {b"Subject: team" in p.read_bytes() for p in bob} == {True, False}
        assert any(b"Subject: any" in p.read_bytes() for p in carol)
        assert any(b"Delivered-To: bob@a.test" in p.read_bytes() for p in bob)
    finally:
        proc.stop()


def test_a_user_or_alias_changed_with_the_cli_counts_for_the_next_message(tmp_path) -> None:
    """The server reuses directory answers, but not past a change (storage/lookup_cache.py)."""
    proc = ServerProcess(tmp_path / "d")
    proc.cli("domain", "add", "a.test")
    for user in ("bob@a.test", "carol@a.test"):
        proc.cli("user", "add", user, "--password-stdin", stdin="pw-long-enough\n")
    proc.cli("alias", "add", "team@a.test", "bob@a.test")
    proc.start()
    try:
        with smtplib.SMTP(proc.host, proc.smtp_port, timeout=10) as client:
            client.sendmail("x@example.org", ["team@a.test"], b"Subject: one\r\n\r\nhi\r\n")
            proc.cli("alias", "del", "team@a.test")
            proc.cli("alias", "add", "team@a.test", "carol@a.test")
            client.sendmail("x@example.org", ["team@a.test"], b"Subject: two\r\n\r\nhi\r\n")
            proc.cli("user", "del", "carol@a.test")
            try:
                client.sendmail("x@example.org", ["carol@a.test"], b"Subject: 3\r\n\r\nhi\r\n")
            except smtplib.SMTPRecipientsRefused as refused:
                assert refused.recipients["carol@a.test"][0] == 550
            else:
                raise AssertionError("mail for a removed user was accepted")
        [one] = proc.wait_for_mail("bob@a.test")
        [two] = proc.wait_for_mail("carol@a.test")
        assert b"Subject: one" in one.read_bytes() and b"Subject: two" in two.read_bytes()
    finally:
        proc.stop()


def test_sigterm_says_421_to_idle_sessions_and_exits_zero(server: ServerProcess) -> None:
    with socket.create_connection((server.host, server.smtp_port), timeout=10) as sock:
        assert sock.recv(512).startswith(b"220 ")
        sock.sendall(b"EHLO idle.example\r\n")
        assert b"250 " in _read_reply(sock)
        status_holder = []
        assert server.process is not None
        server.process.terminate()
        reply = _read_reply(sock)
        assert reply.startswith(b"421 ")
        status_holder.append(server.stop())
    assert status_holder == [0]


def test_transaction_in_flight_finishes_at_shutdown(server: ServerProcess) -> None:
    with socket.create_connection((server.host, server.smtp_port), timeout=10) as sock:
        sock.recv(512)
        sock.sendall(
            b"EHLO c.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<alice@localhost>\r\nDATA\r\n"
        )
        data = b""
        while b"354 " not in data:
            data += sock.recv(4096)
        assert server.process is not None
        server.process.terminate()
        sock.sendall(b"Subject: late\r\n\r\nstill here\r\n.\r\n")
        replies = b""
        while chunk := sock.recv(4096):
            replies += chunk
        assert replies.startswith(b"250 "), replies
        assert b"\r\n421 " in replies
    assert server.stop() == 0
    server.start()  # acknowledged before shutdown: delivered now if it was not then
    (path,) = server.wait_for_mail("alice@localhost")
    assert b"still here" in path.read_bytes()


def _read_reply(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) > 1 and any(len(line) >= 4 and line[3:4] == b" " for line in lines[:-1]):
            return data


def test_port_25_role_and_submission_accept_mail(server: ServerProcess) -> None:
    with smtplib.SMTP(server.host, server.smtp_port, timeout=10) as client:
        client.sendmail("x@example.org", ["alice@localhost"], b"Subject: p\r\n\r\nhi\r\n")
    with smtplib.SMTP(server.host, server.submission_port, timeout=10) as client:
        client.ehlo("ua.example")
        code, text = client.mail("alice@localhost")
        assert (code, text[:5]) == (530, b"5.7.0")  # RFC 6409: authenticate first
        client.login("alice@localhost", "secret-alice")
        client.sendmail("alice@localhost", ["alice@localhost"], b"Subject: s\r\n\r\nhi\r\n")
    server.wait_for_mail("alice@localhost", 2)
