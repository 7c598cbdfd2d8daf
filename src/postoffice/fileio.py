"""Durable files: replacing a small file, and directory fsyncs shared between threads.

`replace_file` (keys, certificates, DKIM state, the user agent's files): the new content
goes to a temporary name created with its final mode (so a key or a password file is never
readable by others, not even for a moment), is fsync'ed, renamed over the old file and the
directory fsync'ed: after a crash the file is wholly old or wholly new.

`sync_dir` is the directory fsync of the hot paths (the spool's stores, Maildir
deliveries): threads renaming into the same directory at the same time share one fsync
that started after all their renames (group commit), instead of one each.

`file_in` names a message's file (or a queue file) as a `str`. pathlib interns every part of
a path it parses (`sys.intern`), so a `directory / name` for each message would put each
message's unique name into the interpreter's table of interned strings: that table grows with
them and never shrinks back. Made thousands of times a minute, that cost 4 MiB over the
three processes of the bench's memory figure (g).

Standards: POSIX rename(2), fsync(2)
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path


def file_in(directory: Path, name: str) -> str:
    """The path of `name` in `directory`, not interned (module docstring)."""
    return f"{directory}/{name}"


def read_file(path: str | Path) -> bytes:
    """The whole content of the file at `path` (a `file_in` path or a Path)."""
    with open(path, "rb") as handle:
        return handle.read()


def replace_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Make `path` hold `data`, atomically and durably; its directory must exist."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_dir(path.parent)


def write_all(fd: int, parts: Sequence[bytes]) -> None:
    """Write every part, in one system call when the kernel takes it all at once."""
    views = [memoryview(part) for part in parts if part]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if views:
            views[0] = views[0][written:]


def read_all(fd: int) -> bytes:
    """Everything from `fd`'s offset to its end: two reads for a file under 64 KiB."""
    chunks = []
    while chunk := os.read(fd, 65536):  # below glibc's mmap threshold: no mmap per read
        chunks.append(chunk)
    return b"".join(chunks)


def sync_dir(directory: Path) -> None:
    """fsync `directory`, sharing the fsync with every thread syncing it at the same time.

    Returns once an fsync of the directory that started after this call has completed, so
    every rename into it done before the call is durable. Raises what that fsync raised.
    """
    key = str(directory)
    with _registry_lock:
        group = _groups.get(key)
        if group is None:
            group = _groups[key] = _DirSync(directory)
    group.sync()


_registry_lock = threading.Lock()
# One per directory being synced, gone with its last caller: kept for good, there was one
# for every mailbox directory ever delivered to, for as long as the process ran.
_groups: weakref.WeakValueDictionary[str, _DirSync] = weakref.WeakValueDictionary()


class _DirSync:
    """Group commit of one directory's fsync, for any number of threads.

    `sync` returns once an fsync of the directory that *started after the
    call* has completed, so every rename done before the call is durable. While
    one fsync runs, callers wait; the next fsync then covers all of them at
    once. A failed fsync fails every caller it would have covered (the kernel
    may have dropped their entries, so a later success proves nothing for them).
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._cond = threading.Condition()
        self._started = 0  # generation of the last fsync started
        self._completed = 0  # generation of the last fsync completed
        self._failed = 0  # generation of the last fsync that failed
        self._error: OSError | None = None
        self._running = False

    def sync(self) -> None:
        with self._cond:
            wanted = self._started + 1  # the first fsync that starts after this call
            while self._completed < wanted:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                self._started += 1
                generation = self._started
                self._cond.release()
                try:
                    error = _fsync_dir(self._directory)
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._completed = generation
                    self._cond.notify_all()
                if error is not None:
                    self._failed, self._error = generation, error
            if self._failed >= wanted and self._error is not None:
                raise OSError(self._error.errno, self._error.strerror, str(self._directory))


def _fsync_dir(directory: Path) -> OSError | None:
    """fsync a directory; the error instead of raising it, for `_DirSync` to share."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return exc
    return None
