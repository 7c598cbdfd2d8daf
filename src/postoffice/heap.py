"""Giving memory freed after a peak back to the system.

A folder of 10,000 messages listed for POP3 or IMAP costs some megabytes of small objects.
When they are freed, glibc keeps the pages for later mallocs: the process stays at its peak
size although nothing uses them. `trim` asks glibc to return its free pages
(malloc_trim(3)); about 5 MiB after the bench's POP3 and IMAP figures. Elsewhere (musl,
other systems) it does nothing. Called when the index cache has let go of its last folder
(storage/indexcache.py): the moment a mail server has just stopped reading mailboxes.

Standards: none.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (AttributeError, OSError):
        return None


def trim() -> None:
    """Return free heap pages to the system, where the C library can (glibc)."""
    release = _malloc_trim()
    if release is not None:
        release(0)
