"""Exclusive maildrop locks that die with their holder (session or process).

POP3 gives one session at a time exclusive access to a maildrop (RFC 1939 §8: "the
server should acquire an exclusive-access lock on the maildrop"). The lock is an
`flock` on a file in the user's directory: `flock` belongs to the open file
description, so two sessions in one process exclude each other just as two processes
do, and the kernel drops the lock when the file is closed or the process dies —
a crash never leaves a maildrop locked.

Standards: RFC 1939 §8, RFC 2449 §8.1.1 ([IN-USE])
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class MaildropLock:
    """A held lock; `release()` (or leaving the `with` block) gives it back."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the description releases the flock
            self._fd = None

    def __enter__(self) -> MaildropLock:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def try_lock(path: Path) -> MaildropLock | None:
    """Take the exclusive lock on `path` (created if missing); None when someone holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return MaildropLock(fd)
