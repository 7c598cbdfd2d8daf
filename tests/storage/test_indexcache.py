"""IndexCache: large cached listings are frozen out of the garbage collector's walks."""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.storage.base import MessageInfo
from postoffice.storage.indexcache import FREEZE_STEP, IndexCache, SharedIndex
from postoffice.storage.sqlite import SqliteFile


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    """Give the test process's objects back to the collector afterwards."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def _listing(count: int) -> list[MessageInfo]:
    return [MessageInfo(uid, f"key{uid}", 100) for uid in range(1, count + 1)]


def _shared(cache: IndexCache, path: Path) -> SharedIndex:
    return cache.put(path, SqliteFile(path, [], synchronous="NORMAL"))


def test_a_large_listing_leaves_the_collectors_sight(tmp_path: Path) -> None:
    cache = IndexCache()
    shared = _shared(cache, tmp_path / "a.sqlite")
    cache.remember(shared, 1, _listing(FREEZE_STEP - 1))
    assert gc.get_freeze_count() == 0  # below the step: nothing frozen
    cache.remember(shared, 2, _listing(FREEZE_STEP))
    assert gc.get_freeze_count() >= FREEZE_STEP


def test_freezes_happen_only_past_the_highest_mark(tmp_path: Path) -> None:
    cache = IndexCache()
    shared = _shared(cache, tmp_path / "a.sqlite")
    cache.remember(shared, 1, _listing(FREEZE_STEP))
    frozen = gc.get_freeze_count()
    cache.remember(shared, 2, _listing(FREEZE_STEP))  # the same size again: no new freeze
    assert gc.get_freeze_count() <= frozen
    other = _shared(cache, tmp_path / "b.sqlite")
    cache.remember(other, 1, _listing(FREEZE_STEP))  # twice FREEZE_STEP listed now
    assert gc.get_freeze_count() > frozen + FREEZE_STEP // 2


def test_an_evicted_index_closes_when_its_last_user_lets_go(tmp_path: Path) -> None:
    cache = IndexCache(folders=1)
    shared = _shared(cache, tmp_path / "a.sqlite")
    index = shared.index
    _shared(cache, tmp_path / "b.sqlite")  # evicts a
    with index.transaction() as db:  # still used: still open
        assert db.execute("SELECT 1").fetchone() == (1,)
    del shared
    with pytest.raises(sqlite3.ProgrammingError), index.transaction():
        pass
