"""The per-folder Maildir index: its SQLite schema, one row as an object, and UIDVALIDITY.

The index (``postoffice-index.sqlite``, WAL, in the folder) maps each message's key to its
UID, where its file is, its CRLF size, modseq, arrival time and the IMAP keywords that have
no info letter; `meta` holds UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and the mtimes of the last
sync; `expunged` the UIDs expunged and their modseq (QRESYNC). A new folder's UIDVALIDITY
comes from a counter per user (`next_uidvalidity`).

Standards: RFC 9051 §2.3.1.1 (UIDVALIDITY), RFC 7162 §3.1-3.2 (modseq, expunged UIDs).
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from postoffice.fileio import sync_dir
from postoffice.storage import maildir_names as naming
from postoffice.storage.base import MessageInfo

MIGRATIONS = (
    (
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        # uidvalidity 0: not given yet; the first open sets it (`next_uidvalidity`)
        "INSERT INTO meta (name, value) VALUES"
        " ('uidvalidity', 0), ('uidnext', 1), ('highestmodseq', 1)",
        "CREATE TABLE messages (uid INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
        " subdir TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL,"
        " modseq INTEGER NOT NULL, internaldate REAL NOT NULL, keywords TEXT NOT NULL)",
    ),
    (  # the mtimes (ns) of new/ and cur/ at the last sync
        "INSERT INTO meta (name, value) VALUES ('synced_new', 0), ('synced_cur', 0)",
    ),
    (  # RFC 7162 §3.2: expunged UIDs and their modseq, complete from 'expunged_from' on
        "CREATE TABLE expunged (uid INTEGER PRIMARY KEY, modseq INTEGER NOT NULL)",
        "CREATE INDEX expunged_modseq ON expunged (modseq)",
        "INSERT INTO meta (name, value)"
        " SELECT 'expunged_from', value FROM meta WHERE name = 'highestmodseq'",
    ),
)
COLUMNS = "uid, key, subdir, name, size, modseq, internaldate, keywords"
_UIDVALIDITY_FILE = "postoffice-uidvalidity"  # in the user's directory: the last one given


def next_uidvalidity(user_dir: Path) -> int:
    """A UIDVALIDITY no folder of this user had before: max(now, last + 1), kept on disk.

    RFC 9051 §2.3.1.1 forbids reusing a name's UIDVALIDITY with other UIDs; the creation
    second alone repeats when a folder is deleted and made again (or its index rebuilt)
    within one second. The counter file is locked (`flock`) against other processes and
    threads, and fsynced before the value is used.
    """
    path = user_dir / _UIDVALIDITY_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        text = os.pread(fd, 32, 0).strip()
        last = int(text) if text.isdigit() else 0
        value = max(int(time.time()), last + 1)
        os.pwrite(fd, b"%d\n" % value, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    if not text:  # a new file: its directory entry must be durable too
        sync_dir(user_dir)
    return value


@dataclass(slots=True)
class Entry:
    """One index row."""

    uid: int
    key: str
    subdir: str  # "new" or "cur"
    name: str  # full file name, key plus info
    size: int
    modseq: int
    internaldate: float
    keywords: str  # space-separated

    @property
    def info(self) -> str:
        return self.name.partition(naming.INFO)[2]

    def row(self) -> tuple[int, str, str, str, int, int, float, str]:
        return (
            self.uid,
            self.key,
            self.subdir,
            self.name,
            self.size,
            self.modseq,
            self.internaldate,
            self.keywords,
        )

    def letters(self) -> set[str]:
        return {letter for letter in self.info if letter in naming.FLAGS}

    def message_info(self) -> MessageInfo:
        flags = naming.flag_set(self.info, self.keywords)
        return MessageInfo(self.uid, self.key, self.size, flags, self.modseq, self.internaldate)
