"""Giving memory freed after a peak back to the system.

A folder of 10,000 messages listed for POP3 or IMAP costs some megabytes of small objects.
When they are freed, glibc keeps the pages for later mallocs: the process stays at its peak
size although nothing uses them. `trim` asks glibc to return its free pages
(malloc_trim(3)); about 5 MiB after the bench's POP3 and IMAP figures. It collects cyclic
garbage first, which the collector would otherwise leave until its next full pass; with
another C library (musl, other systems) only that collection runs. Called when the index
cache has let go of its last folder (storage/indexcache.py), the moment a mail server has
just stopped reading mailboxes, and 2 s after a listener's last connection closed.

`limit_arenas` keeps glibc from giving every thread that calls malloc an arena of its own
(by default up to eight per core). A server's disk threads each took one, and each arena
keeps its own free pages and its own high-water mark: 2-3 MiB more over the bench's three
processes after its POP3 and IMAP figures. Python's small objects do not come from malloc, and the
larger ones are allocated holding the GIL, so threads sharing two arenas barely wait for
one another. Called first thing by `postoffice serve`, before any thread exists (an
arena, once made, is kept).

`fix_thresholds` keeps asyncio's reads off mmap. A selector transport reads into a fresh
256 KiB buffer (its `max_size`) and shrinks it to what arrived. By default glibc gives an
allocation that large a mapping of its own, so every read of a command line cost an mmap, an
mremap, a munmap and a page fault: ~12 µs a read, where the read itself takes ~2 µs (measured
on this machine's glibc 2.36). glibc raises its threshold only when such a mapping is freed
whole, and these were shrunk first, so it never learned. Fixed thresholds, above the read
size, keep the buffer in the heap, and keep the heap from being trimmed after each shrink;
`trim` still gives the pages back when a busy spell ends. Also called first thing by
`postoffice serve`: the settings pass to the receivers it forks.

Standards: none.
"""

from __future__ import annotations

import ctypes
import functools
import gc
from collections.abc import Callable


@functools.cache
def _libc(name: str) -> Callable[..., int] | None:
    """The C library's function `name`, or None where it has none (not glibc)."""
    try:
        return getattr(ctypes.CDLL(None), name)  # type: ignore[no-any-return]
    except (AttributeError, OSError):
        return None


# mallopt(3) parameter numbers, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
ARENAS = 2  # the main heap and one more, shared by every thread
THRESHOLD = 512 * 1024  # above asyncio's 256 KiB read buffer


def limit_arenas(arenas: int = ARENAS) -> None:
    """At most `arenas` malloc arenas for the whole process, where the C library can (glibc)."""
    mallopt = _libc("mallopt")
    if mallopt is not None:
        mallopt(_M_ARENA_MAX, arenas)


def fix_thresholds(threshold: int = THRESHOLD) -> None:
    """Allocations below `threshold` come from the heap, and the heap keeps up to
    `threshold` free at its top, where the C library can (glibc)."""
    mallopt = _libc("mallopt")
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, threshold)
        mallopt(_M_TRIM_THRESHOLD, threshold)


def trim() -> None:
    """Collect cyclic garbage, then return free heap pages to the system where the C library
    can (glibc). The collector's own full passes are rare, and what a cycle holds stays until
    one runs: a full pass first took the main process 3 MiB lower at the bench's (g)."""
    gc.collect()
    release = _libc("malloc_trim")
    if release is not None:
        release(0)
