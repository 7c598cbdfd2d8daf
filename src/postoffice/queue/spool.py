"""The durable queue on disk: one message file per message, state files once it changes.

A store writes one file into `messages/`: a first line with the CRC-32 of the message and
the envelope as it was received (`_HEAD3`, the CRC, the entry's JSON), then the message
bytes. Usually the file is a name reserved ahead (`reserve`: made durable for many stores
with one directory fsync, off their path); the store writes it in place and fsyncs it, and
the content is the commit point: a message is committed when its envelope names this
queue id and its length and CRC-32 match. One file fsync a message, no directory fsync;
none at all when the caller makes the store durable with a syncfs shared by a batch of
stores (`write(sync=False)`, fscommit.py), and takes it back (`withdraw`) if that fails.
Without a reserved name, the write goes to `tmp/`, is fsynced, renamed into place and the
directory fsynced; the rename is then the commit point. Other writes (state files) always
take that way, so a file under its final name is complete. A message without a state file
is active with the envelope it was stored with. Once the queue changes an entry (deferred,
held, released) it writes a state file into the directory that *is* the new state (Postfix
style); a move writes the new copy before unlinking the old, so a crash leaves one or
two copies, never none, and `recover` keeps the newest. The state file, when there is
one, wins over the stored envelope. Removal takes the message file away first, so an
entry never comes back with an outdated envelope; a state file left without its message
is dropped at recovery. Anything else a crash can leave (tmp files) was never
acknowledged and is removed. Spools written by older versions (the message file holds
only the message and the state file in `active/` is the commit point) are read the same
way: a message file without a header and without a state file is an unacknowledged store,
and a file of the version before the CRC (`_HEAD`) is committed by its name.

Removed message files are recycled rather than unlinked (up to `_SPARES` files of at most
`_SPARE_SIZE` bytes): the file moves to `tmp/retired.<qid>`, and once a `messages/` fsync
that started after that move has completed (so the message cannot come back under its old
name after a crash) to `spare/`; removals that need no fsync of their own make one for every
`_RECYCLE_AFTER` files retired. A reservation (or a store without one) claims a spare by
renaming it into `tmp/` (atomic: two processes never get the same one) and links it into
`messages/`; the store overwrites it from the start and truncates it. Creating and deleting
an inode per message costs more than overwriting one: ext4 allocates and frees blocks each
time and, without a journal, scans past every inode freed in the last minutes before it
reuses one.

Methods block and are thread-safe: stores never share a file, and operations on one
queue id take a lock striped by id. Directory fsyncs are group-committed (`fileio.sync_dir`):
stores renaming into the same directory at the same time share one fsync that started
after all their renames. A removal may skip its directory fsync when repeating the
delivery after a crash is harmless (`remove(sync=False)`, see the scheduler).
Layout: docs/on-disk-layout.md.

Standards: RFC 5321 §6.1 (a 250 after DATA is a promise not to lose the message,
even if the host crashes), RFC 3463 §3.4 (4.3.1 mail system full).
"""

from __future__ import annotations

import errno
import logging
import os
import random
import re
import threading
import time
import zlib
from collections import deque
from contextlib import suppress
from pathlib import Path
from typing import Any, BinaryIO

from postoffice.fileio import file_in, read_all, read_file, sync_dir, write_all
from postoffice.queue.entry import QueueEntry, QueueState, RecipientState

logger = logging.getLogger(__name__)

# Crockford's base32: digit order equals ASCII order, so ids sort by creation time.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_QID = re.compile(r"[0-9A-HJKMNP-TV-Z]{16}")
_RANDOM_BITS = 24  # 56 bits of microseconds + 24 random bits = 80 bits = 16 characters
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_LOCK_STRIPES = 64
# First bytes of a message file that starts with its envelope. A NUL never begins a
# message: SMTP refuses NUL octets, so files of the oldest layout never start with it.
_PREFIX = b"\0postoffice-queue "
_HEAD = _PREFIX + b"2 "  # then the JSON: committed by its name (older versions wrote it)
_HEAD3 = _PREFIX + b"3 "  # then the message's CRC-32 (8 hex digits), a space, the JSON
_RESERVES = 64  # names made durable ahead for stores (each process's count, at most)
_SPARES = 256  # removed message files kept for reuse, at most (each process's count)
_RECYCLE_AFTER = 32  # retired files waiting for a messages/ fsync before one is made
_SPARE_SIZE = 64 * 1024  # larger ones are unlinked: a spare keeps its blocks allocated
# Seconds between listings of spare/. The main process removes (and so adds spares) what the
# receivers store: at a thousand messages a second, a second between looks left a receiver
# without spares most of the time, and the main process, its count of spares stale, unlinking.
_SPARE_LISTING_INTERVAL = 0.05


class SpoolFull(OSError):
    """No space or quota left to store a message (the server answers 452 4.3.1)."""


class UnknownQid(KeyError):
    """No message with this queue id is in the spool."""


class Spool:
    """The queue directory under `root`; see the module docstring for the guarantees."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"
        self._messages = root / "messages"
        self._spare = root / "spare"
        self._spare_lock = threading.Lock()
        self._spares: list[str] = []  # names in spare/, as last seen (others may take them)
        self._retired: list[str] = []  # in tmp/ as retired.<qid>, removal not yet synced
        self._spares_listed = -_SPARE_LISTING_INTERVAL
        self._state_dirs = {state: root / state.value for state in QueueState}
        self._qid_lock = threading.Lock()
        self._last_micros = 0
        self._reserve_lock = threading.Lock()
        self._reserved: deque[str] = deque()  # durable names in messages/, oldest first
        self._handed: set[str] = set()  # given out by new_qid, not yet written
        self._reserving = False
        self._locks = tuple(threading.Lock() for _ in range(_LOCK_STRIPES))
        missing = [
            d
            for d in (self._tmp, self._messages, self._spare, *self._state_dirs.values())
            if not d.is_dir()
        ]
        for directory in missing:
            directory.mkdir(parents=True, exist_ok=True)
        if missing:
            self._sync_dir(root)

    # -- receiving -------------------------------------------------------------------------

    def new_qid(self, *, reserved: bool = True) -> str:
        """A queue id for a store: a reserved one when there is one (`reserve`), else fresh.

        `reserved=False` for a message that may never be stored (delivered at reception):
        a reserved name handed out must be written, or it stays empty until a restart.
        """
        with self._reserve_lock:
            if reserved and self._reserved:
                qid = self._reserved.popleft()
                self._handed.add(qid)
                return qid
        return self._fresh_qid()

    def _fresh_qid(self) -> str:
        """Microseconds since the epoch (increasing here), random bits."""
        with self._qid_lock:
            micros = max(time.time_ns() // 1000, self._last_micros + 1)
            self._last_micros = micros
        # random's generator, not a system call per id: seeded from os.urandom and reseeded
        # in a forked receiver (workers.py); ids stay unique, their time part increases.
        value = (micros << _RANDOM_BITS) | random.getrandbits(_RANDOM_BITS)
        return "".join(_ALPHABET[(value >> shift) & 31] for shift in range(75, -1, -5))

    def store(
        self, sender: str, recipients: list[tuple[str, str]], data: bytes, **envelope: Any
    ) -> QueueEntry:
        """Queue a message durably: `envelope` (its keyword arguments too), then `write`."""
        entry = self.envelope(sender, recipients, data, **envelope)
        self.write(entry, data)
        return entry

    def envelope(
        self,
        sender: str,
        recipients: list[tuple[str, str]],
        data: bytes,
        *,
        client: dict[str, str],
        message_id: str,
        arrival: float,
        qid: str | None = None,
    ) -> QueueEntry:
        """The entry for a message, to `write`; no disk access. `recipients` are (final,
        original) address pairs; `qid` comes from `new_qid` when the caller needs it first
        (for the Received header).

        Callers on an event loop build it there, so that the disk thread has only system
        calls to make (each of its returns to Python waits for the GIL).
        """
        if qid is not None and not _QID.fullmatch(qid):
            raise ValueError(f"not a queue id: {qid!r}")
        return QueueEntry(
            qid=qid or self.new_qid(),
            sender=sender,
            recipients=[RecipientState(address=final, original=orig) for final, orig in recipients],
            arrival=arrival,
            size=len(data),
            message_id=message_id,
            client=dict(client),
        )

    def write(
        self, entry: QueueEntry, data: bytes, envelope: bytes | None = None, *, sync: bool = True
    ) -> None:
        """Store `data` durably under `entry` (from `envelope`); `envelope`: its JSON, if
        already made. Returns only once the message is on stable storage, or, without
        `sync`, once a sync of the file system will make it so (fscommit: a reserved
        file is then not fsynced; `withdraw` it if that sync fails). Raises `SpoolFull`
        on ENOSPC/EDQUOT; on any error nothing of the message is left."""
        json = entry.to_json() if envelope is None else envelope
        parts = (_HEAD3, b"%08x " % zlib.crc32(data), json, b"\n", data)
        with self._reserve_lock:
            reserved = entry.qid in self._handed
            self._handed.discard(entry.qid)
        try:
            if reserved:
                self._write_in_place(file_in(self._messages, entry.qid), parts, sync=sync)
            else:
                self._write_durably(self._messages, entry.qid, *parts, new=True)
        except FileExistsError:
            raise  # the queue id is another message's: nothing of this one was written
        except OSError as exc:
            self.withdraw(entry.qid)
            if exc.errno in _FULL_ERRNOS:
                raise SpoolFull(exc.errno, f"spool full: {exc.strerror}") from exc
            raise

    def wants_reserves(self) -> bool:
        """Whether `reserve` should run now; True once until it has run."""
        with self._reserve_lock:
            if self._reserving or len(self._reserved) >= _RESERVES // 2:
                return False
            self._reserving = True
            return True

    def reserve(self) -> None:
        """Make names for later stores durable now, off their path (module docstring).

        Each is a spare file linked into messages/ under a fresh queue id, or a new empty
        file; then one messages/ fsync for them all. A failure is logged: stores then take
        the slower way until a later call succeeds.
        """
        with self._reserve_lock:
            wanted = _RESERVES - len(self._reserved)
        made: list[str] = []
        try:
            for _ in range(wanted):
                qid = self._fresh_qid()
                target = file_in(self._messages, qid)
                claimed = self._claim_spare(qid)
                if claimed is None:
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                    os.close(os.open(target, flags, 0o600))
                else:
                    try:
                        os.link(claimed, target)  # unlike rename, refuses to replace
                    finally:
                        os.unlink(claimed)
                made.append(qid)
            self._sync_messages()
        except OSError as exc:
            logger.warning("queue: cannot reserve names for stores: %s", exc)
            for qid in made:  # not known to be durable: never to be written in place
                with suppress(OSError):
                    os.unlink(file_in(self._messages, qid))
            made = []
        finally:
            with self._reserve_lock:
                self._reserved.extend(made)
                self._reserving = False

    def recover(self) -> list[QueueEntry]:
        """Clean up after a crash; return the active and deferred entries, marked `recovered`.

        Call once at start-up, before anything stores: a message file without
        a state file is taken for an unacknowledged store and removed.
        """
        for name in os.listdir(self._tmp):
            with suppress(FileNotFoundError):
                os.unlink(file_in(self._tmp, name))
        committed = self._settle_state_files()
        messages = set(self._qids_in(self._messages))
        for qid in messages - committed.keys():
            # Not a whole message under its own name: a store cut off before its state
            # file (oldest layout) or before its fsync, or a reserved name never written.
            # A damaged envelope of the version before is left, logged when loaded below.
            with suppress(ValueError):
                if self._stored_envelope(qid) is None:
                    os.unlink(file_in(self._messages, qid))
        for qid in committed.keys() - messages:
            logger.info("queue %s: state file of a removed message; dropping it", qid)
            os.unlink(committed[qid])
        self._drop_spares_in_use()
        entries = self._load_all((QueueState.ACTIVE, QueueState.DEFERRED))
        for entry in entries:
            entry.recovered = True
        return entries

    # -- reading ---------------------------------------------------------------------------

    def load(self, qid: str) -> QueueEntry:
        with self._lock(qid):
            copies = self._state_files(qid)
            if copies:
                state, path = copies[0]
                return QueueEntry.from_json(read_file(path), state)
            entry = self._stored_envelope(qid)
            if entry is None:
                raise UnknownQid(qid)
            return entry

    def open_message(self, qid: str) -> BinaryIO:
        """The message bytes as queued, without the stored envelope."""
        if not _QID.fullmatch(qid):
            raise UnknownQid(qid)
        try:
            handle = open(file_in(self._messages, qid), "rb")  # noqa: SIM115  # the caller closes it
        except FileNotFoundError:
            raise UnknownQid(qid) from None
        if handle.read(len(_PREFIX)) == _PREFIX:
            handle.readline()
        else:
            handle.seek(0)
        return handle

    def read_message(self, qid: str) -> bytes:
        """The message bytes as queued; raw reads (local delivery's four system calls)."""
        if not _QID.fullmatch(qid):
            raise UnknownQid(qid)
        try:
            fd = os.open(file_in(self._messages, qid), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise UnknownQid(qid) from None
        try:
            data = read_all(fd)
        finally:
            os.close(fd)
        return data[data.index(b"\n") + 1 :] if data.startswith(_PREFIX) else data

    # -- changing state --------------------------------------------------------------------

    def save(self, entry: QueueEntry) -> None:
        """Rewrite the state file atomically into the directory of `entry.state`."""
        with self._lock(entry.qid):
            copies = self._state_files(entry.qid)
            if not copies and self._stored_envelope(entry.qid, whole=False) is None:
                raise UnknownQid(entry.qid)  # removed: no state file without a message
            self._write_durably(self._state_dirs[entry.state], entry.qid, entry.to_json())
            for state, path in copies:
                if state != entry.state:
                    os.unlink(path)
                    self._sync_dir(self._state_dirs[state])

    def remove(self, qid: str, *, sync: bool = True) -> None:
        """Delete a message: the message file first, then its state files.

        With `sync` the removal is on stable storage on return. Without, a crash
        of the machine (not of the process) soon after may bring the entry back,
        to be delivered again as `recovered`: only for callers to whom that repeat
        is harmless. Even then, when state files exist, the message file's removal
        is synced before they go, lest the stored envelope come back without them
        and with recipients that were done long ago.
        """
        if not _QID.fullmatch(qid):
            raise UnknownQid(qid)
        with self._lock(qid):
            copies = self._state_files(qid)
            try:
                self._retire(qid)
            except FileNotFoundError:
                if not copies:
                    raise UnknownQid(qid) from None
            # Retired files become spares only after a messages/ fsync: unsynced removals
            # get one every _RECYCLE_AFTER, or the receivers, without spares, would create
            # files while this process unlinks those beyond its count.
            if sync or copies or len(self._retired) >= _RECYCLE_AFTER:
                self._sync_messages()
            # No fsync needed: a state file that comes back after a crash is dropped.
            for _, path in copies:
                os.unlink(path)

    # -- internals -------------------------------------------------------------------------

    def _lock(self, qid: str) -> threading.Lock:
        return self._locks[hash(qid) % _LOCK_STRIPES]

    def _state_files(self, qid: str) -> list[tuple[QueueState, str]]:
        """The existing state files of `qid` (normally one; two after a crash mid-move)."""
        if not _QID.fullmatch(qid):
            return []
        paths = ((state, file_in(self._state_dirs[state], qid)) for state in QueueState)
        return [(state, path) for state, path in paths if os.path.exists(path)]

    @staticmethod
    def _qids_in(directory: Path) -> list[str]:
        return [name for name in os.listdir(directory) if _QID.fullmatch(name)]

    def _load_all(self, states: tuple[QueueState, ...]) -> list[QueueEntry]:
        with_state = {state: set(self._qids_in(d)) for state, d in self._state_dirs.items()}
        wanted = set().union(*(with_state[state] for state in states))
        if QueueState.ACTIVE in states:  # stored and never changed: active by their envelope
            wanted |= set(self._qids_in(self._messages)).difference(*with_state.values())
        entries = []
        for qid in sorted(wanted):
            try:
                entry = self.load(qid)
            except UnknownQid:
                continue  # removed since the directory was read
            except ValueError as exc:
                logger.error("queue %s: unreadable state file left in place: %s", qid, exc)
                continue
            if entry.state in states:
                entries.append(entry)
        return entries

    def _settle_state_files(self) -> dict[str, str]:
        """Keep one state file per queue id, the newest if a crashed move left two."""
        copies: dict[str, list[str]] = {}
        for directory in self._state_dirs.values():
            for qid in self._qids_in(directory):
                copies.setdefault(qid, []).append(file_in(directory, qid))
        for paths in copies.values():
            paths.sort(key=lambda path: os.stat(path).st_mtime_ns)
            for stale in paths[:-1]:
                os.unlink(stale)
        return {qid: paths[-1] for qid, paths in copies.items()}

    def withdraw(self, qid: str) -> None:
        """Best-effort removal of whatever a failed store left (also one written without
        `sync` whose sync failed: not acknowledged, it must not be delivered later)."""
        try:
            os.unlink(file_in(self._messages, qid))
        except FileNotFoundError:
            pass
        except OSError:
            logger.exception("queue %s: cannot remove the message after a failed store", qid)

    def _stored_envelope(self, qid: str, *, whole: bool = True) -> QueueEntry | None:
        """The envelope a message file was stored with, if it holds a whole message under
        its own queue id; None for the oldest layout, a reserved name, a torn store.
        ValueError for a damaged envelope in a file of the version before the CRC.

        A reserved name may still hold the removed message of the spare it was made from:
        its envelope names another queue id. `whole` reads the message to check its length
        and CRC-32 (a store cut off before its fsync); without, the first line only.
        """
        if not _QID.fullmatch(qid):
            return None
        try:
            with open(file_in(self._messages, qid), "rb") as handle:
                line = handle.readline()
                body = handle.read() if whole and line.startswith(_HEAD3) else None
        except FileNotFoundError:
            return None
        if line.startswith(_HEAD):  # the version before the CRC: committed by its name
            entry = QueueEntry.from_json(line[len(_HEAD) :], QueueState.ACTIVE)  # damaged: raises
            return entry if entry.qid == qid else None  # a spare under a reserved name
        if not line.startswith(_HEAD3):
            return None
        crc, text = line[len(_HEAD3) : len(_HEAD3) + 8], line[len(_HEAD3) + 9 :]
        try:
            entry = QueueEntry.from_json(text, QueueState.ACTIVE)
        except ValueError:
            return None  # cut off in its first line
        if entry.qid != qid:
            return None
        if body is not None and (len(body) != entry.size or b"%08x" % zlib.crc32(body) != crc):
            return None
        return entry

    def _write_in_place(self, target: str, parts: tuple[bytes, ...], *, sync: bool) -> None:
        """Write a message into its reserved file and fsync it (with `sync`): its name is
        durable already, and its content (length, CRC-32) says whether it is whole."""
        fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
        try:
            write_all(fd, parts)
            os.ftruncate(fd, sum(map(len, parts)))  # what a spare held beyond it
            if sync:
                self._sync_file(fd)
        finally:
            os.close(fd)

    def _write_durably(self, directory: Path, name: str, *parts: bytes, new: bool = False) -> None:
        """Write `parts` to tmp/, fsync, rename to `name` in `directory`, fsync that.

        With `new` (a message file) a spare file is reused when there is one, and an
        existing file is never replaced: a queue id drawn twice (two processes, the same
        microsecond and random bits) fails this store with FileExistsError and leaves the
        other message alone.
        """
        target = file_in(directory, name)
        claimed = self._claim_spare(name) if new else None
        tmp = claimed or file_in(self._tmp, f"{directory.name}.{name}")
        if claimed:
            flags = os.O_WRONLY  # an existing spare, overwritten from the start below
        else:
            flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if new else os.O_TRUNC)
        fd = os.open(tmp, flags, 0o600)  # before the try: another store's tmp file stays
        try:
            try:
                old_size = os.fstat(fd).st_size if claimed else 0
                write_all(fd, parts)
                if old_size > (length := sum(map(len, parts))):
                    os.ftruncate(fd, length)  # the spare's old tail
                self._sync_file(fd)
            finally:
                os.close(fd)
            if new:
                os.link(tmp, target)  # unlike rename, refuses to replace
                os.unlink(tmp)
            else:
                os.rename(tmp, target)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        if new:
            self._sync_messages()
        else:
            self._sync_dir(directory)

    # -- recycling removed message files (module docstring) ----------------------------------

    def _retire(self, qid: str) -> None:
        """Take `qid`'s message file out of messages/: kept for reuse, or unlinked."""
        path = file_in(self._messages, qid)
        with self._spare_lock:
            if len(self._spares) + len(self._retired) >= _SPARES:
                self._list_spares()  # the count may be stale: other processes take spares
            keep = len(self._spares) + len(self._retired) < _SPARES
        if keep and os.stat(path).st_size <= _SPARE_SIZE:
            os.rename(path, file_in(self._tmp, f"retired.{qid}"))
            with self._spare_lock:
                self._retired.append(qid)
        else:
            os.unlink(path)

    def _sync_messages(self) -> None:
        """fsync messages/; files retired before it started may then be reused."""
        with self._spare_lock:
            retired, self._retired = self._retired, []
        self._sync_dir(self._messages)
        spares = []
        for qid in retired:
            with suppress(FileNotFoundError):  # tmp/ emptied by a recovery meanwhile
                os.rename(file_in(self._tmp, f"retired.{qid}"), file_in(self._spare, qid))
                spares.append(qid)
        with self._spare_lock:
            self._spares += spares

    def _claim_spare(self, qid: str) -> str | None:
        """A spare file moved to tmp/ for this store alone, or None when there is none."""
        claimed = file_in(self._tmp, f"reused.{os.getpid()}.{qid}")  # unique even if a qid is not
        while True:
            with self._spare_lock:
                if not self._spares:
                    self._list_spares()
                    if not self._spares:
                        return None
                name = self._spares.pop()
            try:
                os.rename(file_in(self._spare, name), claimed)
            except FileNotFoundError:
                continue  # another process took it
            return claimed

    def _drop_spares_in_use(self) -> None:
        """Unlink spare names that still lead to a queued message's file.

        A claim renames the spare away before the store links the file into messages/,
        but a file system without a journal may write the directories in either order, so
        after a machine crash both names can lead to the committed message; reusing that
        spare would overwrite it.
        """
        messages = self._qids_in(self._messages)
        live = {os.stat(file_in(self._messages, qid)).st_ino for qid in messages}
        for name in self._qids_in(self._spare):
            path = file_in(self._spare, name)
            if os.stat(path).st_ino in live:
                logger.info("queue: spare %s is a queued message's file too; dropping it", name)
                os.unlink(path)

    def _list_spares(self) -> None:
        """Re-read spare/ (with `_spare_lock` held), at most once per interval."""
        now = time.monotonic()
        if now - self._spares_listed >= _SPARE_LISTING_INTERVAL:
            self._spares_listed = now
            self._spares = self._qids_in(self._spare)
            random.shuffle(self._spares)  # every process lists them alike: claim apart

    def _sync_file(self, fd: int) -> None:
        os.fsync(fd)

    def _sync_dir(self, directory: Path) -> None:
        sync_dir(directory)

    # Last in the class: from here on `list` names this method, not the builtin.
    def list(self, state: QueueState | None = None) -> list[QueueEntry]:
        """Entries in `state` (all if None), oldest first; unreadable ones are logged, skipped."""
        return self._load_all(tuple(QueueState) if state is None else (state,))
