"""The POP3 figure's maildrops and client: one generated Maildir, copied to every server.

`make_maildrop` writes `count` messages of about 4 KiB (plain text with the headers a
delivered message has) into a Maildir's `new/`, CRLF line ends as postoffice stores them
(Dovecot serves such files as they are), named as a delivery agent would name them
(`<secs>.M<usecs>P<pid>.<host>,S=<size>,W=<size>`), so neither server needs to stat a file to
learn its size. The same files go to postoffice and to Dovecot.

`fetch_all` is what a download-everything client does, with Python's poplib: log in, STAT,
UIDL, RETR every message, QUIT (nothing is deleted, so the maildrop stays for the next round).

Standards: RFC 1939 (USER/PASS, STAT, UIDL, RETR, QUIT), Maildir (D. J. Bernstein).
"""

from __future__ import annotations

import os
import poplib
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

_WORDS = (
    *("mail", "server", "queue", "delivery", "message", "header", "body", "relay", "domain"),
    *("mailbox", "folder", "client", "protocol", "reply", "command", "session", "transfer"),
    *("envelope", "recipient", "sender", "durable", "fsync"),
)


@dataclass(frozen=True, slots=True)
class Fetch:
    """One download: seconds to log in (maildrop opened), and for the whole session."""

    messages: int
    login: float
    total: float


def _message(rng: random.Random, number: int, size: int) -> bytes:
    header = (
        "Return-Path: <sender@client.bench.test>\r\n"
        "Delivered-To: bench@bench.test\r\n"
        "Received: from client.bench.test (client.bench.test [127.0.0.1])\r\n"
        "\tby mx.bench.test with ESMTP id BENCH; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        "From: Sender <sender@client.bench.test>\r\n"
        "To: Bench <bench@bench.test>\r\n"
        f"Subject: bench message {number}\r\n"
        "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        f"Message-ID: <{number}.bench@client.bench.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    lines = []
    length = len(header)
    while length < size:
        line = " ".join(rng.choices(_WORDS, k=10)) + "\r\n"
        lines.append(line)
        length += len(line)
    return (header + "".join(lines)).encode("ascii")


def make_maildrop(path: Path, count: int, size: int = 4096) -> None:
    """A Maildir at `path` with `count` messages in `new/` (deterministic content)."""
    rng = random.Random(count)
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    base = 1_700_000_000
    for number in range(count):
        data = _message(rng, number, size)
        name = f"{base + number}.M{number % 1_000_000}P4242.bench.test,S={len(data)},W={len(data)}"
        (path / "new" / name).write_bytes(data)


def install_maildrop(source: Path, target: Path) -> None:
    """Give a server's user the generated Maildir (replacing what was there).

    The files are hard links: every server gets the very same files, and installing ten
    thousand messages costs no copying. Maildir files are never changed in place (flags
    change the name, in the server's own directory), so no server sees another's doing.
    """
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, copy_function=os.link)


def fetch_all(host: str, port: int, user: str, password: str, timeout: float) -> Fetch:
    """Log in, STAT, UIDL, RETR every message, QUIT; raise if any message is missing.

    `timeout` bounds each reply; the whole download may take ten times that.
    """
    start = time.perf_counter()
    client = poplib.POP3(host, port, timeout=timeout)
    try:
        client.user(user)
        client.pass_(password)
        login = time.perf_counter() - start
        count, _size = client.stat()
        _reply, listing, _octets = client.uidl()
        if len(listing) != count:
            raise RuntimeError(f"UIDL listed {len(listing)} of {count} messages")
        deadline = start + timeout * 10
        for number in range(1, count + 1):
            client.retr(number)
            if number % 100 == 0 and time.perf_counter() > deadline:
                raise TimeoutError(
                    f"{host}:{port}: {number} of {count} messages in {timeout * 10}s"
                )
        client.quit()
    finally:
        client.close()
    return Fetch(messages=count, login=login, total=time.perf_counter() - start)
