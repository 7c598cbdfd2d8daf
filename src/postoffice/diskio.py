"""The thread pool for blocking disk work (fsync chains), shared by the queue and delivery.

`asyncio.to_thread` uses the loop's default executor, `min(32, cores + 4)`
threads: on a 2-core machine six threads shared by every session, so a few
sessions waiting on fsync made all the others queue behind them
(docs/performance.md). Work that mostly waits for the disk runs here instead,
on up to `DISK_THREADS` threads created on demand; the kernel batches the
concurrent fsyncs into shared journal commits. CPU-bound work (DKIM signing)
stays on the default executor.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

DISK_THREADS = 32

P = ParamSpec("P")
T = TypeVar("T")

# Threads are started on demand, so the pool costs nothing until the first disk job.
_EXECUTOR = ThreadPoolExecutor(DISK_THREADS, thread_name_prefix="postoffice-disk")


async def run(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`asyncio.to_thread` on the disk pool: run `func` there, keeping the context variables."""
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, call)
