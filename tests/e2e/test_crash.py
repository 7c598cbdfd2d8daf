"""SIGKILL while receiving and delivering: every message that got a 250 arrives exactly once."""

from __future__ import annotations

import random
import smtplib
import threading
import time
from email.utils import make_msgid
from pathlib import Path

import pytest

from postoffice.testing.server import ServerProcess


def _sender(server: ServerProcess, acked: list[str], stop: threading.Event) -> None:
    """Send messages on fresh and reused connections until the server dies or `stop`."""
    while not stop.is_set():
        try:
            with smtplib.SMTP(server.host, server.smtp_port, timeout=5) as client:
                for _ in range(random.randint(1, 5)):
                    if stop.is_set():
                        return
                    mid = make_msgid(domain="crash.test")
                    text = "x" * 76 + "\r\n"
                    body = f"Message-ID: {mid}\r\nSubject: crash\r\n\r\n{text * 30}"
                    client.sendmail("s@example.org", ["alice@localhost"], body.encode())
                    acked.append(mid)  # only after the 250 reached us
        except (OSError, smtplib.SMTPException):
            return


def _delivered_ids(box: Path) -> list[str]:
    ids = []
    for sub in ("new", "cur"):
        folder = box / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            for line in path.read_bytes().split(b"\r\n"):
                if line.lower().startswith(b"message-id:"):
                    ids.append(line.split(b":", 1)[1].strip().decode())
                    break
    return ids


@pytest.mark.slow
def test_sigkill_loses_and_duplicates_nothing_acknowledged(server: ServerProcess) -> None:
    acked: list[str] = []
    rng = random.Random(2026)
    for _round in range(4):
        stop = threading.Event()
        threads = [threading.Thread(target=_sender, args=(server, acked, stop)) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 1.2))
        server.kill()
        stop.set()
        for t in threads:
            t.join(10)
        server.start()
    deadline = time.monotonic() + 30
    box = server.maildir("alice@localhost")
    delivered = _delivered_ids(box)
    while time.monotonic() < deadline and not set(acked) <= set(delivered):
        time.sleep(0.2)
        delivered = _delivered_ids(box)
    assert acked, "the senders never got a 250"
    missing = set(acked) - set(delivered)
    assert not missing, f"{len(missing)} acknowledged messages lost"
    dupes = {m for m in delivered if delivered.count(m) > 1}
    assert not dupes, f"delivered twice: {dupes}"
