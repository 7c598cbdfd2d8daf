"""A minimal aiosmtpd server that stores each message durably in one Maildir: the floor to beat.

It accepts any sender and recipient and, before its `250`, writes the message into
`tmp/`, fsyncs it, renames it into `new/` and fsyncs `new/` — the least any server that
keeps what it acknowledges must do. It has no queue, no headers of its own, no limits and
no delivery step, so the distance between it and postoffice is the cost of everything
postoffice does on top. The writes are synchronous in the event loop, as a minimal server
would do them.

    python -m bench.aiosmtpd_sink --host 127.0.0.22 --port 2525 --maildir /tmp/x/Maildir

SIGTERM or SIGINT stops it.

Standards: Maildir (D. J. Bernstein); SMTP is aiosmtpd's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import time
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MaildirHandler:
    """aiosmtpd handler: every message becomes one fsync'ed file in `maildir/new`."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        self._serial = itertools.count()
        self._unique = f"P{os.getpid()}.{socket.gethostname()}"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        name = f"{time.time_ns() // 1000}.Q{next(self._serial)}{self._unique},S={len(data)}"
        tmp, new = self.maildir / "tmp" / name, self.maildir / "new" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, new)
        _fsync_dir(new.parent)
        return "250 2.0.0 Ok: stored"


async def serve(host: str, port: int, maildir: Path) -> None:
    """Serve until SIGTERM or SIGINT."""
    handler = MaildirHandler(maildir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.bench.test", ident="aiosmtpd-sink"), host, port
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.maildir))


if __name__ == "__main__":
    main()
