"""SMTP smuggling against the running server: one DATA never becomes two messages."""

from __future__ import annotations

import socket

import pytest

from postoffice.testing.server import ServerProcess

SEQUENCES = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\r\n\x00.\r\n"]


def _exchange(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    out = b""
    sock.settimeout(2)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    except TimeoutError:
        pass
    return out


@pytest.mark.parametrize("sequence", SEQUENCES, ids=repr)
def test_smuggled_message_is_not_split(server: ServerProcess, sequence: bytes) -> None:
    smuggled = (
        b"MAIL FROM:<admin@localhost>\r\nRCPT TO:<alice@localhost>\r\nDATA\r\n"
        b"Subject: smuggled\r\n\r\nevil\r\n"
    )
    with socket.create_connection((server.host, server.smtp_port), timeout=10) as sock:
        sock.recv(512)
        session = (
            b"EHLO attacker.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<alice@localhost>\r\n"
            b"DATA\r\n"
            b"Subject: outer\r\n\r\nbody" + sequence + smuggled + b".\r\nQUIT\r\n"
        )
        replies = _exchange(sock, session)
    finals = [line[:4] for line in replies.split(b"\r\n")]
    # EHLO + MAIL + RCPT + at most one message; never a second transaction
    assert finals.count(b"250 ") <= 4, replies
    server.stop()
    box = server.maildir("alice@localhost")
    files = [p for sub in ("new", "cur") if (box / sub).is_dir() for p in (box / sub).iterdir()]
    assert len(files) <= 1
    for path in files:  # at most the one outer message, with the attempt inside it
        assert b"Subject: outer" in path.read_bytes()
    if b"\n" in sequence.replace(b"\r\n", b"") or b"\r" in sequence.replace(b"\r\n", b""):
        assert files == [], "a message with a bare CR or LF must be refused"
        assert b"\r\n5" in replies
