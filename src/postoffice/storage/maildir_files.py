"""A Maildir folder's files: making the folder, writing a delivery into it, cleaning tmp/.

Delivery writes ``tmp/<name>``, fsyncs it, renames it into ``new/`` and fsyncs ``new/``;
the name is ``<secs>.M<usecs>P<pid>Q<delivery id>.<host>,S=<size>``, so the size is known
without a stat and a delivery repeated after a crash can be recognised. The same steps
(`stage`, `publish`, `announce`) serve a caller that makes them durable itself, a batch
of deliveries at a time (delivery at reception, fscommit.py). A delivery cut off by a
crash leaves its file in tmp/; `sweep_tmp` removes those untouched for 36 hours (the
Maildir rule). The index of the folder (UIDs, flags, listing) is maildir.py's
`MaildirMailbox`, built on `MaildirFiles`.

Standards: Maildir (D. J. Bernstein), Maildir++.
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from contextlib import suppress
from pathlib import Path

from postoffice.fileio import file_in, sync_dir, write_all
from postoffice.storage import maildir_names as naming
from postoffice.storage.notify import MailboxEvents

SUBDIRS = ("tmp", "new", "cur")
_STALE_TMP = 36 * 3600  # seconds: a file in tmp/ untouched this long is a dead delivery


class MaildirFiles:
    """The files of one Maildir folder: what delivering into it takes."""

    def __init__(
        self,
        path: Path,
        hostname: str,
        *,
        subfolder: bool = False,
        events: MailboxEvents | None = None,
    ) -> None:
        self.path = path
        self._hostname = hostname
        self._subfolder = subfolder
        self._events = events  # told after each change is on disk; counts them for stamps

    def announce(self) -> None:
        """Tell this process's watchers (IMAP IDLE) of a change now on stable storage."""
        if self._events is not None:
            self._events.publish(self.path)

    def _create(self) -> None:
        """Make the folder: new/ and cur/ durably before tmp/. Deliveries create their file
        in tmp/ and rename it into new/; one that finds tmp/ made by another thread still
        making the rest must find new/ there, and on stable storage (before, a first burst
        of deliveries to a new mailbox could fail the rename with ENOENT)."""
        if all((self.path / sub).is_dir() for sub in SUBDIRS):
            return
        _make_dirs(self.path)
        for sub in ("new", "cur"):
            with suppress(FileExistsError):
                (self.path / sub).mkdir(mode=0o700)
        if self._subfolder:  # Maildir++: marks a folder below INBOX
            os.close(os.open(self.path / "maildirfolder", os.O_CREAT | os.O_WRONLY, 0o600))
        sync_dir(self.path)
        with suppress(FileExistsError):
            (self.path / "tmp").mkdir(mode=0o700)
        sync_dir(self.path)

    def _new_name(self, delivery_id: str | None, size: int, when: float | None = None) -> str:
        micros = time.time_ns() // 1000 if when is None else max(round(when * 1e6), 0)
        secs, usecs = divmod(micros, 1_000_000)
        unique = delivery_id or secrets.token_hex(8)
        return f"{secs}.M{usecs}P{os.getpid()}Q{unique}.{self._hostname},S={size}"

    def deliver(
        self, data: bytes, *, delivery_id: str | None = None, internaldate: float | None = None
    ) -> str:
        """`internaldate` (IMAP APPEND's date-time) replaces the arrival time: in the name,
        which the index reads it from like any arrival time, and as the file's mtime, where
        Dovecot looks for it. Times before 1970 become 1970, which names cannot go below."""
        key = self.stage(data, delivery_id=delivery_id, internaldate=internaldate)
        self.publish(key)
        try:
            sync_dir(self.path / "new")
        except BaseException:  # not known to be durable: take it back so a retry is clean
            self.withdraw(key)
            raise
        self.announce()
        return key

    def stage(
        self,
        data: bytes,
        *,
        delivery_id: str | None = None,
        internaldate: float | None = None,
        sync: bool = True,
        device: int | None = None,
    ) -> str:
        """Write a message into tmp/, fsynced unless not `sync`; its key. `device`: the
        file system the caller syncs (fscommit); a file elsewhere is taken back, EXDEV."""
        if delivery_id is not None and not naming.DELIVERY_ID.fullmatch(delivery_id):
            raise ValueError(f"delivery id {delivery_id!r} must be letters, digits, - or _")
        key = self._new_name(delivery_id, len(data), internaldate)
        tmp = file_in(self.path, f"tmp/{key}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileNotFoundError:
            self._create()
            fd = os.open(tmp, flags, 0o600)
        try:
            try:
                if device is not None and os.fstat(fd).st_dev != device:
                    raise OSError(errno.EXDEV, "not on the data dir's file system", tmp)
                write_all(fd, (data,))
                if internaldate is not None:
                    arrival = naming.arrival(key)
                    os.utime(fd, (arrival, arrival))
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise
        return key

    def publish(self, key: str) -> None:
        """Rename a staged message into new/ (the directory is not synced here)."""
        tmp = file_in(self.path, f"tmp/{key}")
        try:
            os.rename(tmp, file_in(self.path, f"new/{key}"))
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise

    def withdraw(self, key: str) -> None:
        """Remove a message staged or published but not known to be durable."""
        for sub in ("tmp", "new"):
            with suppress(OSError):
                os.unlink(file_in(self.path, f"{sub}/{key}"))

    def has_delivery(self, delivery_id: str) -> bool:
        for sub in ("new", "cur"):
            try:
                names = os.listdir(self.path / sub)
            except FileNotFoundError:
                continue
            if any(naming.delivery_id(name) == delivery_id for name in names):
                return True
        return False

    def sweep_tmp(self) -> None:
        """Remove what deliveries cut off by a crash left in tmp/: files untouched for
        `_STALE_TMP` (the Maildir rule's 36 hours). tmp/ holds only deliveries in progress
        otherwise, so the listing is short; called by each index sync (after new mail)."""
        limit = time.time() - _STALE_TMP
        with suppress(FileNotFoundError), os.scandir(self.path / "tmp") as entries:
            for entry in entries:
                with suppress(OSError):
                    stat = entry.stat(follow_symlinks=False)
                    if max(stat.st_atime, stat.st_mtime) < limit:
                        os.unlink(entry.path)


def _make_dirs(path: Path) -> None:
    """Like ``mkdir -p`` (mode 0700), fsyncing each parent that gained an entry."""
    missing: list[Path] = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with suppress(FileExistsError):
            directory.mkdir(mode=0o700)
        sync_dir(directory.parent)
