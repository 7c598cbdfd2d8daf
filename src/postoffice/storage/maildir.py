"""Maildir mail store with a per-folder SQLite index of UIDs, flags and modseqs for POP3 and IMAP.

A user ``alice@a.test`` lives at ``root/a.test/alice/``: that Maildir is INBOX,
other folders are Maildir++ subdirectories ``.Sent``, ``.Lists.python`` (with a
``maildirfolder`` marker, as Dovecot expects). Making a folder, delivering into it
(``tmp/`` → ``new/``, the file name, the steps for a caller that makes them durable
itself) and cleaning ``tmp/`` are maildir_files.py's `MaildirFiles`, which this builds on.

The base name (the part before ``:2,``) is a message's key: unique, never
changed by flag updates, so it is the POP3 UIDL. Flags live where every Maildir
reader looks, in the ``:2,`` info letters (D F R S T, kept sorted; other letters
such as Dovecot's keyword letters are preserved); IMAP keywords that have no
letter live in the index. The index, ``postoffice-index.sqlite`` (WAL) in the
folder, maps keys to UIDs and holds UIDVALIDITY, UIDNEXT and modseqs. UIDVALIDITY is
set once, when the index is made, to max(now, last + 1) of a counter kept per user
(``postoffice-uidvalidity``), so a folder deleted and made again, or an index rebuilt,
within one second never gets a value seen before (RFC 9051 §2.3.1.1).

`messages()` syncs the index with one listdir of ``new/`` and of ``cur/``: unseen files
get UIDs in arrival order (from the name, a stat only for foreign names), vanished files
are dropped, renamed ones re-read. Every sync records the mtimes of ``new/`` and ``cur/``
(taken before listing them); while both are unchanged the listing is skipped and the
index answers alone, which makes opening a large unchanged mailbox cheap: one SELECT,
one MessageInfo a row. An mtime younger than two seconds always re-syncs: a change
within the same mtime tick as the recorded one would otherwise go unseen. Mailbox objects
of one folder made by one `MaildirStore` share the open index, where each file is and the
last listing (indexcache.py): opening an unchanged folder again costs no connection and no
SQL. `stamp()` says cheaply whether a listing still holds: the mtimes, SQLite's
data_version, and the count of changes this process published for the folder. The mailbox
remembers where each listed file is, so reading a message asks no SQL; a small one
wholly in the page cache is read without waiting for the disk (`read_cached`,
``preadv2(RWF_NOWAIT)``), which lets POP3 serve it on the event loop. The index can
always be rebuilt: delete it and the keys (UIDLs) stay, while UIDs are assigned afresh
under a new UIDVALIDITY, which tells IMAP clients to forget their cache. Our own writers
rename files inside an index transaction, so the index only lags behind foreign tools,
and a miss triggers one re-sync. Each expunge, by `remove` or found by a sync (a foreign
reader deleted the file), raises HIGHESTMODSEQ and records the UIDs with that modseq in
table ``expunged``, so IMAP QRESYNC can tell a client what vanished since its last modseq.

Every change made through a mailbox (delivery, flags, removal) is published, after it
is on disk, to the store's `MailboxEvents` hub, so IMAP IDLE hears of it at once. The
store of every user's folders (paths, folder names, delete, rename, the POP3 lock) is
maildir_store.py; what a file name and its info letters say is maildir_names.py; the
index's schema, its rows and the UIDVALIDITY counter are maildir_index.py.

Standards: Maildir (D. J. Bernstein), Maildir++, RFC 1939 §7 (UIDL), RFC 3501 §2.3.1.1 (UIDs),
RFC 3501 §2.3.2 (flags), RFC 7162 §3.1 (modseq), §3.2 (expunged UIDs' modseq).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import BinaryIO, TypeVar

from postoffice.fileio import file_in, read_file, sync_dir
from postoffice.storage import maildir_names as naming
from postoffice.storage.base import MessageInfo
from postoffice.storage.indexcache import IndexCache, SharedIndex
from postoffice.storage.maildir_files import MaildirFiles
from postoffice.storage.maildir_index import COLUMNS, MIGRATIONS, Entry, next_uidvalidity
from postoffice.storage.notify import MailboxEvents
from postoffice.storage.sqlite import SqliteFile

INDEX_NAME = "postoffice-index.sqlite"
_SETTLE_NS = 2_000_000_000  # mtimes younger than this always re-sync (mtime granularity)

_T = TypeVar("_T")

_NOWAIT = getattr(os, "RWF_NOWAIT", None)  # Linux ≥ 4.14; elsewhere read_cached never reads


def _hint(key: str, subdir: str, name: str) -> str | None:
    """Where a message is, as `_files` keeps it: None for new/<key>, the place of most
    messages of a large mailbox (a string a message less to hold), else "subdir/name"."""
    return None if subdir == "new" and name == key else f"{subdir}/{name}"


def _where(key: str, hint: str | None) -> str:
    """The path below the folder that `_hint` gave `hint` for."""
    return f"new/{key}" if hint is None else hint


class MaildirMailbox(MaildirFiles):
    """`Mailbox` for one Maildir folder: its files (maildir_files.py) and its index, opened on
    first use, released by close()."""

    def __init__(
        self,
        path: Path,
        hostname: str,
        *,
        subfolder: bool = False,
        events: MailboxEvents | None = None,
        cache: IndexCache | None = None,
    ) -> None:
        super().__init__(path, hostname, subfolder=subfolder, events=events)
        self._cache = cache  # the index and listing shared with this process's other users
        self._index: SqliteFile | None = None
        self._shared: SharedIndex | None = None
        # Where each message was at the last listing or change: key -> "subdir/name", or
        # None for new/<key> (`_hint`). A hint: a file moved since (another session's flag
        # change) is looked up again.
        self._files: dict[str, str | None] = {}

    # -- the index -------------------------------------------------------------

    def _db(self) -> SqliteFile:
        if self._index is None:
            shared = None if self._cache is None else self._cache.get(self.path / INDEX_NAME)
            if shared is not None:
                self._shared, self._index, self._files = shared, shared.index, shared.files
                return shared.index
            self._create()
            index = SqliteFile(self.path / INDEX_NAME, MIGRATIONS, synchronous="NORMAL")
            try:
                with index.transaction() as db:
                    given = self._meta(db, "uidvalidity")
                if not given:  # a new index; a rival that sets it first wins
                    value = next_uidvalidity(self.path.parent if self._subfolder else self.path)
                    with index.transaction(write=True) as db:
                        db.execute(
                            "UPDATE meta SET value = ? WHERE name = 'uidvalidity' AND value = 0",
                            (value,),
                        )
            except BaseException:
                index.close()
                raise
            self._index = index
            if self._cache is not None:
                self._shared = self._cache.put(self.path / INDEX_NAME, index)
                self._shared.files = self._files
        return self._index

    def close(self) -> None:
        """Release the index: closed, unless shared (the cache closes it when evicted)."""
        if self._index is not None and self._shared is None:
            self._index.close()
        self._index = self._shared = None

    def __enter__(self) -> MaildirMailbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @staticmethod
    def _meta(db: sqlite3.Connection, name: str) -> int:
        (value,) = db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return int(value)

    def _next_modseq(self, db: sqlite3.Connection) -> int:
        modseq = self._meta(db, "highestmodseq") + 1
        db.execute("UPDATE meta SET value = ? WHERE name = 'highestmodseq'", (modseq,))
        return modseq

    @staticmethod
    def _find(db: sqlite3.Connection, key: str) -> Entry | None:
        row = db.execute(f"SELECT {COLUMNS} FROM messages WHERE key = ?", (key,)).fetchone()
        return None if row is None else Entry(*row)

    def _file(self, entry: Entry) -> str:
        """Where `entry`'s file is, as the index last saw it."""
        return file_in(self.path, f"{entry.subdir}/{entry.name}")

    def _describe(self, key: str, path: str) -> tuple[float, int]:
        """Arrival time and CRLF size from the name; the file itself only for foreign names.

        The size is that of the CRLF form POP3 sends (RFC 1939 §11): our own files are
        stored with CRLF and named `,S=`; Dovecot names the CRLF size `,W=` (its `,S=` is
        the LF size); a name with neither is measured once, here, when first indexed.
        """
        arrival = naming.arrival(key)
        size = naming.name_size(key)
        if arrival is not None and size is not None:
            return arrival, size
        stat = os.stat(path)
        return (
            stat.st_mtime if arrival is None else arrival,
            naming.crlf_size(path) if size is None else size,
        )

    def _mtimes(self) -> tuple[int, int]:
        """The mtimes (ns) of new/ and cur/."""
        return (
            os.stat(self.path / "new").st_mtime_ns,
            os.stat(self.path / "cur").st_mtime_ns,
        )

    def _settled(self, db: sqlite3.Connection) -> bool:
        """Whether the last sync still holds: new/ and cur/ unchanged and not just touched."""
        mtimes = self._mtimes()
        recorded = (self._meta(db, "synced_new"), self._meta(db, "synced_cur"))
        return mtimes == recorded and time.time_ns() - max(mtimes) > _SETTLE_NS

    def _sync(self, db: sqlite3.Connection) -> None:
        """Bring the index in line with new/ and cur/.

        Rows are compared with the directories one at a time, as the query yields them: only
        those that changed become `Entry`s. Holding every row at once (~460 bytes each) cost
        4.6 MB on a 10,000-message folder at each sync, and a folder is synced again at each
        look while it changed in the last `_SETTLE_NS` — after every message delivered into
        an INBOX that an IMAP client watches with IDLE. The peak stayed with the process:
        a few objects made meanwhile and kept keep their arenas.
        """
        mtimes = self._mtimes()  # before listing: a change during the listing moves them on
        self.sweep_tmp()
        on_disk: dict[str, tuple[str, str]] = {}
        for sub in ("new", "cur"):  # cur/ last: it wins if a foreign tool left both
            for name in os.listdir(self.path / sub):
                if not name.startswith("."):
                    on_disk[name.partition(":")[0]] = (sub, name)
        db.executemany(
            "UPDATE meta SET value = ? WHERE name = ?",
            [(mtimes[0], "synced_new"), (mtimes[1], "synced_cur")],
        )
        gone: list[int] = []
        moved: list[tuple[Entry, tuple[str, str]]] = []
        for row in db.execute(f"SELECT {COLUMNS} FROM messages"):
            place = on_disk.pop(row[1], None)  # what is left afterwards is not indexed yet
            if place is None:
                gone.append(row[0])
            elif place != (row[2], row[3]):
                moved.append((Entry(*row), place))
        fresh = sorted(
            (arrival, key, size)
            for key, place in on_disk.items()
            for arrival, size in (self._describe(key, file_in(self.path, "/".join(place))),)
        )
        if not (gone or moved or fresh):
            return
        modseq = self._next_modseq(db)
        db.executemany("DELETE FROM messages WHERE uid = ?", [(uid,) for uid in gone])
        self._record_expunged(db, gone, modseq)
        for entry, (subdir, name) in moved:
            before = entry.letters()
            entry.subdir, entry.name = subdir, name
            if entry.letters() != before:
                entry.modseq = modseq
        db.executemany(
            "UPDATE messages SET subdir = ?, name = ?, modseq = ? WHERE uid = ?",
            [(e.subdir, e.name, e.modseq, e.uid) for e, _ in moved],
        )
        uid = self._meta(db, "uidnext")
        db.executemany(  # ascending arrival: ascending UIDs; rows made one at a time
            f"INSERT INTO messages ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (uid + n, key, *on_disk[key], size, modseq, arrival, "")
                for n, (arrival, key, size) in enumerate(fresh)
            ),
        )
        db.execute("UPDATE meta SET value = ? WHERE name = 'uidnext'", (uid + len(fresh),))

    @property
    def uidvalidity(self) -> int:
        with self._db().transaction() as db:
            return self._meta(db, "uidvalidity")

    @property
    def uidnext(self) -> int:
        with self._db().transaction() as db:
            return self._meta(db, "uidnext")

    @property
    def highestmodseq(self) -> int:
        with self._db().transaction() as db:
            return self._meta(db, "highestmodseq")

    def stamp(self) -> tuple[Hashable, bool]:
        """What `messages()` answers from, cheaply, and whether that can be trusted alone.

        The token: new/'s and cur/'s mtimes, the index's data_version (which other
        connections' commits move) with the connection it was read on, and the count of
        changes this process published for the folder. Not trusted alone (False) while an
        mtime is too young: a foreign change in the same tick of the clock would not move it.
        """
        with self._db().transaction() as db:  # first: makes the Maildir of a new folder
            (version,) = db.execute("PRAGMA data_version").fetchone()
        mtimes = self._mtimes()
        serial = 0 if self._shared is None else self._shared.serial
        published = 0 if self._events is None else self._events.generation(self.path)
        token = (*mtimes, int(version), serial, published)
        return token, time.time_ns() - max(mtimes) > _SETTLE_NS

    def messages(self) -> list[MessageInfo]:
        """The listing; an unchanged folder's comes from the cache (a copy: callers edit)."""
        index, shared = self._db(), self._shared
        token, settled = self.stamp() if shared is not None else (None, False)
        if settled and shared is not None and shared.listing is not None:
            cached_token, listing = shared.listing
            if cached_token == token:
                self._files = shared.files
                return list(listing)
        listing = None
        earlier = () if shared is None or shared.listing is None else shared.listing[1]
        query = f"SELECT {COLUMNS} FROM messages ORDER BY uid"
        with index.transaction() as db:  # rows one by one: never a list of them all at once
            if self._settled(db):
                listing = self._listing(db.execute(query), earlier)
        if listing is None:
            with index.transaction(write=True) as db:
                self._sync(db)
                listing = self._listing(db.execute(query), earlier)
        if shared is not None and self._cache is not None:
            shared.files = self._files
            if settled:
                self._cache.remember(shared, token, listing)
                return list(listing)
        return listing

    def _listing(
        self,
        rows: Iterable[tuple[int, str, str, str, int, int, float, str]],
        previous: Sequence[MessageInfo] = (),
    ) -> list[MessageInfo]:
        """MessageInfos of index rows in UID order; remembers where each file is.

        Flag sets are shared between messages with the same letters and keywords: a large
        mailbox has few combinations, and this is the cost of every login. A message as it
        was in `previous` (an earlier listing of the folder, in UID order) keeps its
        MessageInfo, key and file hint: a folder that an IMAP client watches with IDLE is
        listed again after each message delivered into it, and making all of them anew each
        time (~290 bytes a message) left the process at the peak of that churn.
        """
        flag_sets: dict[tuple[str, str], frozenset[str]] = {}
        files: dict[str, str | None] = {}
        known = self._files
        listing = []
        earlier = iter(previous)
        old = next(earlier, None)
        for uid, key, subdir, name, size, modseq, internaldate, keywords in rows:
            marks = (name[len(key) :], keywords)
            flags = flag_sets.get(marks)
            if flags is None:
                info = marks[0].partition(naming.INFO)[2]
                flags = flag_sets[marks] = naming.flag_set(info, keywords)
            while old is not None and old.uid < uid:
                old = next(earlier, None)
            if (
                old is not None
                and old.uid == uid
                and (old.key, old.size, old.flags, old.modseq, old.internaldate)
                == (key, size, flags, modseq, internaldate)
            ):
                message = old
            else:
                message = MessageInfo(uid, key, size, flags, modseq, internaldate)
            listing.append(message)
            hint = _hint(key, subdir, name)
            if hint is not None and known.get(key) == hint:
                hint = known[key]  # the string already kept, not one more equal to it
            files[message.key] = hint
        self._files = files
        return listing

    # -- one message -----------------------------------------------------------

    def _with_file(self, key: str, use: Callable[[str], _T]) -> _T:
        """Apply `use` to the message's file; re-syncs once if it moved. KeyError if gone."""
        if key in self._files:
            known = file_in(self.path, _where(key, self._files[key]))
        else:
            with self._db().transaction() as db:
                entry = self._find(db, key)
            known = None if entry is None else self._file(entry)
        if known is not None:
            with suppress(FileNotFoundError):
                return use(known)
        with self._db().transaction(write=True) as db:
            self._sync(db)
            entry = self._find(db, key)
        if entry is None:
            raise KeyError(key)
        self._files[key] = _hint(key, entry.subdir, entry.name)
        return use(self._file(entry))

    def read_cached(self, key: str, limit: int, size: int | None = None) -> bytes | None:
        """The message, if it was listed, is at most `limit` octets and is wholly in the page
        cache; else None (then `read` it on a worker thread).

        Never waits for the disk to read data: ``preadv2(RWF_NOWAIT)`` fails rather than
        start I/O, so the event loop may call this. What it may wait on is the open's
        lookup of a name `messages()` just listed (its inode, a few KiB, is normally cached
        too). A short read (part of the file cached) also gives None. `size`, the octets
        the listing gave (`MessageInfo.size`), spares the ``fstat``: one octet more is
        asked for, so a file of any other size reads short or long and gives None.
        """
        if key not in self._files or _NOWAIT is None or (size is not None and size > limit):
            return None
        try:
            fd = os.open(
                file_in(self.path, _where(key, self._files[key])), os.O_RDONLY | os.O_CLOEXEC
            )
        except OSError:
            return None
        try:
            if size is None:
                size = os.fstat(fd).st_size
                if size > limit:
                    return None
            buffer = bytearray(size + 1)
            if os.preadv(fd, [buffer], 0, _NOWAIT) != size:
                return None
        except OSError:  # EAGAIN: not in the cache; EOPNOTSUPP: the file system cannot tell
            return None
        finally:
            os.close(fd)
        return bytes(memoryview(buffer)[:size])

    def open(self, key: str) -> BinaryIO:
        return self._with_file(key, lambda path: open(path, "rb"))

    def read(self, key: str) -> bytes:
        return self._with_file(key, read_file)

    def set_flags(self, key: str, flags: frozenset[str]) -> MessageInfo:
        """Replace the IMAP flags: renames into cur/ and bumps modseq when they change.

        System flags other than those with a Maildir letter (\\Recent) raise ValueError,
        an unknown key KeyError.
        """
        letters, keywords = naming.letters(flags)
        with self._db().transaction(write=True) as db:
            entry = self._find(db, key)
            changed = None
            if entry is not None:
                with suppress(FileNotFoundError):
                    changed = self._store_flags(db, entry, letters, keywords)
            if entry is None or changed is None:
                self._sync(db)  # not indexed yet, or moved by a foreign tool
                entry = self._find(db, key)
                if entry is None:
                    raise KeyError(key)
                changed = self._store_flags(db, entry, letters, keywords)
        if changed:
            self.announce()
        return entry.message_info()

    def _store_flags(
        self, db: sqlite3.Connection, entry: Entry, letters: set[str], keywords: str
    ) -> bool:
        """Rename the file and update `entry` and its row; whether the flags changed."""
        # Letters that are no IMAP system flag (e.g. Dovecot's keywords) are kept.
        kept = {letter for letter in entry.info if letter not in naming.FLAGS}
        name = f"{entry.key}{naming.INFO}{''.join(sorted(kept | letters))}"
        if (entry.subdir, entry.name) != ("cur", name):
            os.rename(
                self._file(entry),
                file_in(self.path, f"cur/{name}"),
            )
        changed = entry.letters() != letters or entry.keywords != keywords
        if changed:
            entry.modseq = self._next_modseq(db)
        entry.subdir, entry.name, entry.keywords = "cur", name, keywords
        self._files[entry.key] = _hint(entry.key, "cur", name)
        db.execute(
            "UPDATE messages SET subdir = ?, name = ?, modseq = ?, keywords = ? WHERE uid = ?",
            (entry.subdir, entry.name, entry.modseq, entry.keywords, entry.uid),
        )
        return changed

    def remove(self, keys: list[str]) -> None:
        """Unlink the messages and fsync their directories; unknown keys are already gone.

        RFC 7162 §3.2: the expunge raises HIGHESTMODSEQ and the UIDs keep its modseq."""
        with self._db().transaction(write=True) as db:
            found = [entry for entry in map(partial(self._find, db), keys) if entry is not None]
            if not found:
                return
            for entry in found:
                with suppress(FileNotFoundError):
                    os.unlink(self._file(entry))
                self._files.pop(entry.key, None)
            uids = [entry.uid for entry in found]
            db.executemany("DELETE FROM messages WHERE uid = ?", [(uid,) for uid in uids])
            self._record_expunged(db, uids, self._next_modseq(db))
            for sub in {entry.subdir for entry in found}:
                sync_dir(self.path / sub)
        self.announce()

    @staticmethod
    def _record_expunged(db: sqlite3.Connection, uids: list[int], modseq: int) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO expunged (uid, modseq) VALUES (?, ?)",
            [(uid, modseq) for uid in uids],
        )

    def expunged_since(self, modseq: int) -> list[int] | None:
        """UIDs expunged at a modseq above `modseq`, ascending; None when the record does not
        reach back that far (expunges of an index made before it was kept are unknown)."""
        with self._db().transaction() as db:
            if modseq < self._meta(db, "expunged_from"):
                return None
            rows = db.execute(
                "SELECT uid FROM expunged WHERE modseq > ? ORDER BY uid", (modseq,)
            ).fetchall()
        return [uid for (uid,) in rows]
