"""A SQLite file shared by threads: WAL journal, one locked connection, a versioned schema.

The directory and the Maildir index both keep small SQLite files. Each file is
created private (mode 0600: SQLite gives its -wal and -shm files the same mode),
opened once in autocommit mode with `check_same_thread=False`, and guarded by a
lock so callers on `asyncio.to_thread` workers can share it; every use is an
explicit transaction (`BEGIN IMMEDIATE` for writers, so concurrent processes
serialise instead of failing on upgrade). The schema is a list of migrations;
`PRAGMA user_version` counts those applied, and missing ones run on open.

Standards: none (SQLite file format 3, write-ahead log).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class SqliteFile:
    """One SQLite database file; `synchronous` is FULL or NORMAL (see the SQLite docs)."""

    def __init__(
        self, path: Path, migrations: Sequence[Sequence[str]], *, synchronous: str
    ) -> None:
        self._lock = threading.Lock()
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA foreign_keys=ON")
            # Mailbox indexes stay open between sessions (indexcache.py): bound each one's
            # page cache to 512 KiB instead of SQLite's 2 MiB, the files are small.
            self._db.execute("PRAGMA cache_size=-512")
            with self.transaction(write=True) as db:
                (version,) = db.execute("PRAGMA user_version").fetchone()
                if version > len(migrations):
                    raise sqlite3.DatabaseError(
                        f"{path} has schema version {version}, newer than this program knows"
                    )
                for statements in migrations[version:]:
                    for statement in statements:
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {len(migrations)}")
        except BaseException:
            self._db.close()
            raise

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """Hold the lock for one transaction; rolled back if the block raises."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
