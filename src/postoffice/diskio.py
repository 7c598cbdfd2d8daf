"""The thread pool for blocking disk work (fsync chains), shared by the queue and delivery.

Work that mostly waits for the disk runs here, on up to `DISK_THREADS` threads created on
demand, apart from the loop's default executor (DKIM signing and other CPU-bound work stay
there). Eight, not more: concurrent stores already share their directory fsyncs (group
commit, `fileio.sync_dir`), and every further thread is one more taker of the GIL between
its system calls, which the event loop then waits for after each of its own. Under 20
sessions, 8 threads accepted 1.05-1.25x what 32 did, in three series of A/B runs
(docs/performance.md); 4 accepted as much as 8 but delivery fell behind, 2 more so.

For the same reason a server hands the GIL over after `SWITCH_INTERVAL` (2 ms) rather than
Python's 5 ms when another thread waits for it (`shorten_gil_turns`, called by `postoffice
serve`): the event loop, waiting behind a disk thread's Python work, then waits less. A/B,
runs of 3,000 messages with 20 sessions, medians: p99 26.6 → 23.3 ms and 34.1 → 23.3 ms in
two series, accepted 0.97x and 1.13x, end to end 1.12x. 0.5 ms, tried before, had cost 7 %
of the accepted rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

DISK_THREADS = 8
SWITCH_INTERVAL = 0.002  # seconds

P = ParamSpec("P")
T = TypeVar("T")


async def run(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`asyncio.to_thread` on the disk pool: run `func` there, keeping the context variables."""
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, call)


def yield_to_the_loop() -> None:
    """Make the calling (disk) thread SCHED_BATCH, where Linux has it: when it wakes (its
    system call done, new work) it waits for the event loop's time slice to end or the loop
    to sleep, instead of preempting it. Its share of the CPU is unchanged. Otherwise a
    woken disk thread took the CPU from the loop in the middle of the loop's work, only to
    wait there for the GIL that the loop holds. A/B at 20 sessions, the group commit's
    thread (fscommit) with it and without: accepted 1.10x (6 pairs of 3,000, each ahead)."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


# Threads are started on demand, so the pool costs nothing until the first disk job.
_EXECUTOR = ThreadPoolExecutor(
    DISK_THREADS, thread_name_prefix="postoffice-disk", initializer=yield_to_the_loop
)


def shorten_gil_turns() -> None:
    """Let a thread hold the GIL at most `SWITCH_INTERVAL` while another waits for it."""
    sys.setswitchinterval(SWITCH_INTERVAL)
