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
messages listed (~450 bytes each with its file hint).

An entry is held for `IDLE` seconds after its last use (opened by a mailbox, or given a new
listing); then the cache lets go of it, a timer thread doing so when nothing else happens. A
mailbox object still using it keeps it alive, with its listing, and the next `get` holds it
again; once its last user lets go it goes, with its listing and connection. That is what a
folder costs when nobody reads it: nothing. Once the last folder is gone the freed pages
go back to the system too (`heap.trim`), or the process would stay at its peak size.
10 s outlasts the gaps between the sessions that belong together (a client's parallel
connections, a reconnect, successive short sessions), not a polling interval of a minute or
more, for which the listing would be held for little: listing a folder again costs ~3 ms a
1,000 messages (and a new connection ~3 ms), next to ~100 ms for the login's password
check, while keeping 10,000 listed costs ~4.5 MiB.

Nothing here calls `gc.freeze` any more. It kept large cached listings out of the cyclic
collector's walks (which had stopped the event loop 30-55 ms, the SMTP p99), but it froze
whatever else was alive then too, and a frozen cycle that dies is never reclaimed: each POP3
session that logged in at a freeze stayed in memory for good, with its whole listing. Now that
a listing lives only while its folder is in use (and `IDLE` seconds more), the collector has
no lasting pile of `MessageInfo`s to walk. An SQLite connection is a cycle (with its
statement cache) holding file descriptors: a `SharedIndex` closes its index when it goes,
rather than leaving that to the collector.

Standards: none (SQLite WAL mode).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

from postoffice import heap
from postoffice.storage.base import MessageInfo
from postoffice.storage.sqlite import SqliteFile

FOLDERS = 32  # each: three file descriptors and up to 512 KiB of SQLite page cache
MESSAGES = 50_000  # listed messages kept, ~450 bytes each: ~22 MiB at most
IDLE = 10.0  # seconds an entry is held after its last use (the module docstring says why)
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
    path: Path
    identity: tuple[int, int] | None  # the index file's device and inode
    # Tells connections apart in stamps: SQLite's data_version is per connection.
    serial: int = field(default_factory=lambda: next(_serials))
    files: dict[str, str | None] = field(default_factory=dict)  # maildir.py's file hints
    listing: tuple[Hashable, list[MessageInfo]] | None = None  # (stamp, messages)
    used: float = 0.0  # the cache's clock at the last use


class IndexCache:
    """Per-folder `SharedIndex`es, keyed by index path; safe to use from any thread."""

    def __init__(
        self,
        *,
        folders: int = FOLDERS,
        messages: int = MESSAGES,
        idle: float = IDLE,
        clock: Callable[[], float] = time.monotonic,
        on_empty: Callable[[], None] = heap.trim,
    ) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[Path, SharedIndex] = OrderedDict()  # held, oldest use first
        # Let go of after `idle` seconds, alive while a mailbox object still uses them.
        self._unheld: weakref.WeakValueDictionary[Path, SharedIndex] = weakref.WeakValueDictionary()
        self._folders, self._messages = folders, messages
        self._idle, self._clock = idle, clock
        self._on_empty = on_empty  # the last folder is gone: memory back to the system
        self._timer: threading.Timer | None = None
        self._listed = 0  # messages in the listings of held entries

    def get(self, path: Path) -> SharedIndex | None:
        """The shared index of `path` if it is open here and still the file at `path`."""
        identity = _identity(path)
        with self._lock:
            shared = self._entries.get(path) or self._unheld.get(path)
            if shared is None or identity is None or shared.identity != identity:
                return None
            self._hold(shared)
            return shared

    def put(self, path: Path, index: SqliteFile) -> SharedIndex:
        """Share a newly opened index of `path` (replacing an older one)."""
        shared = SharedIndex(index, path, _identity(path))
        weakref.finalize(shared, index.close)  # once no mailbox object uses it any more
        with self._lock:
            self._drop(path)
            self._unheld.pop(path, None)
            self._hold(shared)
        return shared

    def remember(self, shared: SharedIndex, stamp: Hashable, listing: list[MessageInfo]) -> None:
        """Keep `listing` as the folder's listing at `stamp` (if it is still cached)."""
        with self._lock:
            current = self._entries.get(shared.path) or self._unheld.get(shared.path)
            if current is not shared:  # replaced meanwhile
                shared.listing = None
                return
            self._hold(shared)  # held again if it was let go, its listing counted
            if shared.listing is not None:
                self._listed -= len(shared.listing[1])
            shared.listing = None
            if len(listing) > self._messages:
                return
            shared.listing = (stamp, listing)
            self._listed += len(listing)
            self._evict()

    def expire(self) -> None:
        """Let go of the entries unused for `idle` seconds (the timer calls this)."""
        with self._lock:
            self._timer = None
            released = self._let_go(self._clock() - self._idle)
            self._arm()
        # Outside the lock: an entry no mailbox object uses goes now, closing its index.
        released.clear()
        with self._lock:
            empty = not self._entries and not self._unheld
        if empty:
            self._on_empty()

    def _hold(self, shared: SharedIndex) -> None:
        """Hold `shared` (again) as the most recently used entry, for `idle` seconds more."""
        shared.used = self._clock()
        if self._entries.get(shared.path) is not shared:
            self._unheld.pop(shared.path, None)
            self._entries[shared.path] = shared
            if shared.listing is not None:
                self._listed += len(shared.listing[1])
        self._entries.move_to_end(shared.path)
        self._evict()
        self._arm()

    def _let_go(self, deadline: float) -> list[SharedIndex]:
        released = []
        while self._entries and next(iter(self._entries.values())).used <= deadline:
            shared = self._unhold(next(iter(self._entries)))
            assert shared is not None
            self._unheld[shared.path] = shared
            released.append(shared)
        return released

    def _arm(self) -> None:
        """A timer for when the oldest held entry's idle time is up, unless one is set."""
        if self._timer is not None or not self._entries:
            return
        due = next(iter(self._entries.values())).used + self._idle
        self._timer = threading.Timer(max(due - self._clock(), 0.0), self.expire)
        self._timer.daemon = True  # never keeps a process from exiting
        self._timer.start()

    def _unhold(self, path: Path) -> SharedIndex | None:
        """Stop holding `path`'s entry; its listing no longer counts towards the bound."""
        shared = self._entries.pop(path, None)
        if shared is not None and shared.listing is not None:
            self._listed -= len(shared.listing[1])
        return shared

    def _drop(self, path: Path) -> None:
        shared = self._unhold(path)
        if shared is not None:
            shared.listing = None

    def _evict(self) -> None:
        while self._entries and (
            len(self._entries) > self._folders or self._listed > self._messages
        ):
            self._drop(next(iter(self._entries)))
