"""IndexCache: folders nobody reads are let go of; nothing is frozen out of the collector."""

from __future__ import annotations

import gc
import sqlite3
import time
import weakref
from pathlib import Path

import pytest

from postoffice.storage.base import MessageInfo
from postoffice.storage.indexcache import IndexCache, SharedIndex
from postoffice.storage.sqlite import SqliteFile

IDLE = 10.0


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _listing(count: int) -> list[MessageInfo]:
    return [MessageInfo(uid, f"key{uid}", 100) for uid in range(1, count + 1)]


def _shared(cache: IndexCache, path: Path) -> SharedIndex:
    return cache.put(path, SqliteFile(path, [], synchronous="NORMAL"))


def _closed(index: SqliteFile) -> bool:
    try:
        with index.transaction() as db:
            db.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def _listed_folder(tmp_path: Path) -> tuple[Clock, IndexCache, Path, SharedIndex]:
    """A cache on a test clock holding one folder listed with 100 messages."""
    clock = Clock()
    cache = IndexCache(idle=IDLE, clock=clock)
    path = tmp_path / "a.sqlite"
    shared = _shared(cache, path)
    cache.remember(shared, "stamp", _listing(100))
    return clock, cache, path, shared


def test_an_unused_folder_is_let_go_after_its_idle_time(tmp_path: Path) -> None:
    clock, cache, path, shared = _listed_folder(tmp_path)
    index, gone = shared.index, weakref.ref(shared)
    del shared  # the session ended
    clock.now += IDLE - 1
    cache.expire()
    kept = cache.get(path)  # used again: held for IDLE seconds more
    assert kept is not None and kept.listing is not None and len(kept.listing[1]) == 100
    del kept
    clock.now += IDLE - 1
    cache.expire()
    assert gone() is not None  # still within its idle time
    clock.now += 1
    cache.expire()
    assert gone() is None  # its listing with it
    assert _closed(index)
    assert cache.get(path) is None  # the next session opens the folder afresh


def test_a_folder_still_in_use_lives_on_and_is_held_again(tmp_path: Path) -> None:
    clock, cache, path, shared = _listed_folder(tmp_path)
    clock.now += IDLE
    cache.expire()  # let go of, but a session still has it open
    assert not _closed(shared.index)
    again = cache.get(path)  # a second session on the folder gets the same index and listing
    assert again is shared and again.listing is not None and len(again.listing[1]) == 100
    gone = weakref.ref(shared)
    del shared, again
    clock.now += IDLE - 1
    cache.expire()
    assert gone() is not None  # held again from that second use on


def test_the_timer_lets_go_of_an_unused_folder_on_its_own(tmp_path: Path) -> None:
    cache = IndexCache(idle=0.05)
    shared = _shared(cache, tmp_path / "a.sqlite")
    cache.remember(shared, "stamp", _listing(100))
    gone = weakref.ref(shared)
    del shared
    deadline = time.monotonic() + 5
    while gone() is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gone() is None


def test_a_large_listing_freezes_nothing(tmp_path: Path) -> None:
    """A frozen cycle is never collected: a session alive at a freeze would stay for good."""

    class Session:
        def __init__(self) -> None:
            self.me = self

    session = Session()
    alive = weakref.ref(session)
    cache = IndexCache()
    cache.remember(_shared(cache, tmp_path / "a.sqlite"), "stamp", _listing(20_000))
    del session
    gc.collect()
    assert alive() is None


def test_an_evicted_index_closes_when_its_last_user_lets_go(tmp_path: Path) -> None:
    cache = IndexCache(folders=1)
    shared = _shared(cache, tmp_path / "a.sqlite")
    index = shared.index
    _shared(cache, tmp_path / "b.sqlite")  # evicts a
    assert not _closed(index)  # still used: still open
    del shared
    assert _closed(index)


@pytest.mark.parametrize("held", [True, False])
def test_listed_messages_are_bounded_over_held_folders_only(tmp_path: Path, held: bool) -> None:
    clock = Clock()
    cache = IndexCache(messages=150, idle=IDLE, clock=clock)
    first = _shared(cache, tmp_path / "a.sqlite")
    cache.remember(first, "stamp", _listing(100))
    if not held:
        clock.now += IDLE
        cache.expire()  # let go of: its listing no longer counts
    second = _shared(cache, tmp_path / "b.sqlite")
    cache.remember(second, "stamp", _listing(100))
    assert (first.listing is None) is held  # over the bound only while both are held


def test_memory_goes_back_to_the_system_once_the_last_folder_is_let_go(tmp_path: Path) -> None:
    clock, emptied = Clock(), []
    cache = IndexCache(idle=IDLE, clock=clock, on_empty=lambda: emptied.append(clock.now))
    first = _shared(cache, tmp_path / "a.sqlite")
    clock.now += IDLE / 2
    second = _shared(cache, tmp_path / "b.sqlite")
    del first, second  # both sessions ended
    clock.now += IDLE / 2
    cache.expire()
    assert emptied == []  # the second folder is still held
    in_use = cache.get(tmp_path / "b.sqlite")  # a session opens it again
    clock.now += IDLE
    cache.expire()
    assert emptied == []  # let go of, but still in use
    del in_use
    clock.now += 1
    cache.expire()
    assert emptied == [clock.now]
