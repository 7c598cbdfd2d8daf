"""Group commit for the event loop: batches of file work made durable by one syncfs(2).

A durable write used to end in fsyncs of its own (the file, then its directory, shared
between threads by `fileio.sync_dir`), in a hop of its own to the disk pool. At 20 SMTP
sessions the hops (waking a thread, the GIL handed back and forth around each system
call) and the fsyncs were a quarter of the server's CPU (docs/performance.md). Here the
loop queues operations instead, and hands each loop round's to a thread of their own;
that thread runs every operation handed to it so far, then one syncfs(2) of their file
system, and each caller gets its operation's result once that syncfs has completed: what
the operation wrote, files and directory entries alike, is then on stable storage
(syncfs writes back the file system's dirty data and inodes, then flushes the device's
write cache). Operations handed over while a batch runs go into the next one, so a batch
grows with the load, as in a database's group commit, and under load the thread goes
from batch to batch without being woken (waking a pool thread for each batch, and being
preempted by it, cost the loop ~100 µs a batch). An operation may have steps that must
each be durable before the next runs (a Maildir file before its rename into new/): the
batch runs every operation's first step, syncs, runs the second steps, syncs again. An
operation that raises fails its own caller only, and its later steps are not run; a
syncfs that fails fails every operation of its phase of the batch (their writes may be
lost).

The price: syncfs writes back everything dirty on the file system, another program's
writes too; a data dir on a file system that others fill with large writes makes each
batch wait for them. Operations check that what they write is on `device` (the data
dir's file system): anything elsewhere (a mailbox on a mount of its own) is not covered.

Linux only: Python's `os` has no syncfs, so it is called from the C library, and only on
Linux 5.8 or later, where syncfs reports write-back errors (before, it returned success
after a failed write-back). Elsewhere `for_path` gives None and callers keep their
per-file fsyncs.

Standards: syncfs(2), fsync(2).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import platform
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

from postoffice import diskio

T = TypeVar("T")

_Outcome = tuple[bool, Any]  # (True, result) or (False, the exception raised)
Steps = tuple[Callable[[], Any], ...]  # an operation: steps made durable one after the other
_Waiting = tuple[Steps, "asyncio.Future[Any]"]


class GroupCommit:
    """Operations run in batches on a thread of their own, each phase followed by one `sync`.

    `sync` is given a file descriptor of `path`'s directory; it is `syncfs` unless a test
    passes another (to count batches, or to fail one). Made in the process that uses it:
    a forked child would have neither the thread nor a usable copy of its lock.
    """

    def __init__(self, path: Path, *, sync: Callable[[int], None] | None = None) -> None:
        self.device = os.stat(path).st_dev  # what the batch's sync covers
        self._path = path
        self._sync = sync or syncfs
        self._fd: int | None = None  # opened by the first batch, kept for the process's life
        self._queued: list[_Waiting] = []  # this loop round's operations (the loop's thread)
        self._cond = threading.Condition()  # guards the rest
        self._handed: list[tuple[asyncio.AbstractEventLoop, list[_Waiting]]] = []
        self._thread: threading.Thread | None = None

    async def run(self, step: Callable[[], T], *then: Callable[[], T]) -> T:
        """Run the blocking steps in the next batch, each made durable before the next one
        runs; the last one's result once it is durable too."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queued.append(((step, *then), future))
        if len(self._queued) == 1:
            loop.call_soon(self._hand, loop)  # after this loop round: its operations join
        return await future

    def _hand(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give the round's operations to the thread: it takes them with whatever else is
        waiting once its batch in progress is done, or wakes up for them."""
        batch = [(steps, future) for steps, future in self._queued if not future.cancelled()]
        self._queued = []
        if not batch:  # every caller left
            return
        with self._cond:
            self._handed.append((loop, batch))
            self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="postoffice-commit", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        """The thread: batch after batch, for as long as the process runs."""
        diskio.yield_to_the_loop()
        while True:
            with self._cond:
                while not self._handed:
                    self._cond.wait()
                handed, self._handed = self._handed, []
            operations = [steps for _, batch in handed for steps, _ in batch]
            try:
                outcomes = self._commit(operations)
            except Exception as exc:  # never leave a caller waiting
                outcomes = [(False, exc)] * len(operations)
            for loop, batch in handed:
                mine, outcomes = outcomes[: len(batch)], outcomes[len(batch) :]
                with suppress(RuntimeError):  # that loop is closed: nobody waits any more
                    loop.call_soon_threadsafe(_finish, [f for _, f in batch], mine)

    def _commit(self, operations: list[Steps]) -> list[_Outcome]:
        """Blocking: the first step of every operation, one sync, the second steps, one
        sync, and so on; each operation's outcome."""
        outcomes: list[_Outcome | None] = [None] * len(operations)  # None: not finished
        results: list[Any] = [None] * len(operations)
        for phase in range(max(map(len, operations))):
            live = [i for i, op in enumerate(operations) if outcomes[i] is None and len(op) > phase]
            for i in live:
                try:
                    results[i] = operations[i][phase]()
                except Exception as exc:  # for its caller alone
                    outcomes[i] = (False, exc)
            error = self._sync_now()
            for i in live:
                if outcomes[i] is None and (error is not None or len(operations[i]) == phase + 1):
                    outcomes[i] = (True, results[i]) if error is None else (False, error)
        return outcomes  # type: ignore[return-value]  # every operation's last phase set it

    def _sync_now(self) -> OSError | None:
        """Blocking: the sync; the error it raised, naming the path."""
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._sync(self._fd)
        except OSError as exc:
            return OSError(exc.errno, exc.strerror, str(self._path))
        return None


def _finish(futures: list[asyncio.Future[Any]], outcomes: list[_Outcome]) -> None:
    """On the loop: each caller gets its operation's outcome."""
    for future, (ok, value) in zip(futures, outcomes, strict=True):
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


@functools.cache
def _libc_syncfs() -> Callable[[int], int] | None:
    """The C library's syncfs where it reports write-back errors (Linux 5.8+), else None.
    Looked up at first use: start-up and the CLI pay nothing for it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        major, minor = (int(part) for part in platform.release().split(".")[:2])
    except ValueError:
        return None
    if (major, minor) < (5, 8):
        return None
    function = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)  # the process's libc
    if function is not None:
        function.argtypes = [ctypes.c_int]
    return function


def syncfs(fd: int) -> None:
    """syncfs(2) of the file system holding `fd` (ctypes releases the GIL meanwhile)."""
    function = _libc_syncfs()
    assert function is not None
    if function(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def for_path(path: Path) -> GroupCommit | None:
    """Group commit for the file system of `path` (an existing directory); None where
    syncfs cannot be trusted (module docstring)."""
    return None if _libc_syncfs() is None else GroupCommit(path)
