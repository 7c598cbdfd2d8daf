"""What the sessions of one process share per Maildir folder: its open index and last listing.

Opening a folder used to cost a new SQLite connection (and, when the last one closed, a WAL
checkpoint) and a listing of every message — for a 10,000-message INBOX about 50 ms at every
IMAP SELECT and POP3 login. `IndexCache` keeps, per folder, the open index (`SqliteFile`
guards it with a lock, so sessions on worker threads can share it), where each message file
was last seen, and the last listing with the stamp it was taken at: a mailbox whose stamp
still matches answers `messages()` with a copy of that listing.

A cached index is used only while it is still the file at its path (device and inode are
compared at each borrow), so an index deleted for a rebuild, or a folder deleted or renamed
and made again, is opened afresh; the replaced connection closes once its last user lets go
(SQLite neither checkpoints nor deletes the WAL of a file that has moved). Entries are least
recently used first out, bounded by folders (each holds three file descriptors) and by the
messages listed (a few hundred bytes each).

Cached listings are the bulk of what a server process keeps: after a few large mailboxes were
listed, every full collection of Python's cyclic garbage collector walked their tens of
thousands of `MessageInfo` objects and stopped the event loop for 30-55 ms, the SMTP p99
(docs/performance.md). So each time the listed messages pass their highest mark so far by
`FREEZE_STEP`, the cache collects and then freezes (`gc.freeze`): what is alive then leaves
the collector's sight. A cycle among frozen objects that dies later is never reclaimed, so
freezes are few: at most `MESSAGES // FREEZE_STEP` in a process's life. An SQLite connection
is such a cycle (with its statement cache) and holds file descriptors: a `SharedIndex` closes
its index when it goes, rather than leaving that to the collector.

Standards: none (SQLite WAL mode).
"""

from __future__ import annotations

import gc
import itertools
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

from postoffice.storage.base import MessageInfo
from postoffice.storage.sqlite import SqliteFile

FOLDERS = 32  # each: three file descriptors and up to 512 KiB of SQLite page cache
MESSAGES = 50_000  # listed messages kept, a few hundred bytes each: ~15 MiB at most
FREEZE_STEP = 5_000  # listed messages beyond the highest mark that make the cache freeze
_serials = itertools.count(1)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


@dataclass(eq=False, slots=True, weakref_slot=True)
class SharedIndex:
    """One folder's index as every mailbox object of this process on that folder sees it."""

    index: SqliteFile
    identity: tuple[int, int] | None  # the index file's device and inode
    # Tells connections apart in stamps: SQLite's data_version is per connection.
    serial: int = field(default_factory=lambda: next(_serials))
    files: dict[str, str] = field(default_factory=dict)  # key -> "subdir/name", a hint
    listing: tuple[Hashable, list[MessageInfo]] | None = None  # (stamp, messages)


class IndexCache:
    """Per-folder `SharedIndex`es, keyed by index path; safe to use from any thread."""

    def __init__(self, *, folders: int = FOLDERS, messages: int = MESSAGES) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[Path, SharedIndex] = OrderedDict()
        self._folders, self._messages = folders, messages
        self._listed = 0  # messages in all cached listings
        self._frozen = 0  # the most messages listed at a freeze

    def get(self, path: Path) -> SharedIndex | None:
        """The shared index of `path` if it is open here and still the file at `path`."""
        identity = _identity(path)
        with self._lock:
            shared = self._entries.get(path)
            if shared is None or identity is None or shared.identity != identity:
                return None
            self._entries.move_to_end(path)
            return shared

    def put(self, path: Path, index: SqliteFile) -> SharedIndex:
        """Share a newly opened index of `path` (replacing an older one)."""
        shared = SharedIndex(index, _identity(path))
        weakref.finalize(shared, index.close)  # once no mailbox object uses it any more
        with self._lock:
            self._drop(path)
            self._entries[path] = shared
            self._evict()
        return shared

    def remember(self, shared: SharedIndex, stamp: Hashable, listing: list[MessageInfo]) -> None:
        """Keep `listing` as the folder's listing at `stamp` (if it is still cached)."""
        with self._lock:
            if shared.listing is not None:
                self._listed -= len(shared.listing[1])
            shared.listing = None
            if len(listing) > self._messages or not any(
                s is shared for s in self._entries.values()
            ):
                return
            shared.listing = (stamp, listing)
            self._listed += len(listing)
            self._evict()
            freeze = self._listed >= self._frozen + FREEZE_STEP
            if freeze:
                self._frozen = self._listed
        if freeze:  # outside the lock: finalizers run during the collection
            gc.collect()  # nothing already dead is frozen
            gc.freeze()

    def _drop(self, path: Path) -> None:
        shared = self._entries.pop(path, None)
        if shared is not None and shared.listing is not None:
            self._listed -= len(shared.listing[1])
            shared.listing = None

    def _evict(self) -> None:
        while self._entries and (
            len(self._entries) > self._folders or self._listed > self._messages
        ):
            self._drop(next(iter(self._entries)))
