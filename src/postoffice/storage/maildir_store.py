"""Every user's Maildir folders: where they live, which names are allowed, delete, rename.

A user ``alice@a.test`` lives at ``root/a.test/alice/``: that Maildir is INBOX, other
folders are Maildir++ subdirectories ``.Sent``, ``.Lists.python``. `MaildirStore` hands
out `MaildirMailbox` objects (maildir.py) that share the store's change hub and index
cache. A folder is deleted by renaming it to a ``..postoffice-deleted-*`` tombstone first
(gone for every reader at once; such names are never folders) and then removing the tree;
a rename moves the folder's directories, index included, so UIDVALIDITY and UIDs stay.

Standards: Maildir++ (folder names), RFC 9051 §6.3.4-§6.3.5 (DELETE, RENAME keep INBOX)
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

from postoffice.fileio import sync_dir
from postoffice.storage.base import normalize_user
from postoffice.storage.indexcache import IndexCache
from postoffice.storage.locks import MaildropLock, try_lock
from postoffice.storage.maildir import MaildirMailbox
from postoffice.storage.notify import MailboxEvents, Watch

_FOLDER_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/]|\.\.")
_TOMBSTONE = "..postoffice-deleted-"  # a deleted folder on its way out; never a folder name


def _escape_hostname(hostname: str) -> str:
    """The host part of a Maildir name: ``/`` and ``:`` escaped as the spec says, ``,`` too."""
    return hostname.replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")


def _folder_dir(folder: str) -> str:
    """The Maildir++ directory name of a folder other than INBOX; ValueError if unsafe."""
    if not folder or folder[0] == "." or folder[-1] == "." or _FOLDER_FORBIDDEN.search(folder):
        raise ValueError(f"folder name {folder!r} is not allowed")
    return "." + folder


class MaildirStore:
    """`MailStore` over ``root/<domain>/<local part>/``; `hostname` goes into file names."""

    def __init__(self, root: Path, *, hostname: str | None = None) -> None:
        self.root = root
        self._hostname = _escape_hostname(hostname or socket.gethostname())
        self._events = MailboxEvents()  # keyed by folder directory
        self._indexes = IndexCache()

    def user_dir(self, address: str) -> Path:
        """The user's INBOX Maildir; DirectoryError (a ValueError) for an invalid address."""
        local, _, domain = normalize_user(address).partition("@")
        return self.root / domain / local

    def _folder_path(self, address: str, folder: str) -> Path:
        """The folder's Maildir; INBOX is matched case-insensitively. ValueError if unsafe."""
        base = self.user_dir(address)
        return base if folder.upper() == "INBOX" else base / _folder_dir(folder)

    def _subfolder_path(self, address: str, folder: str) -> Path:
        """Like `_folder_path`, for a folder other than INBOX; ValueError for INBOX."""
        if folder.upper() == "INBOX":
            raise ValueError("INBOX cannot be deleted or renamed")
        return self._folder_path(address, folder)

    def mailbox(self, address: str, folder: str = "INBOX") -> MaildirMailbox:
        """A folder of the user (created on first use); INBOX is matched case-insensitively."""
        path = self._folder_path(address, folder)
        return MaildirMailbox(
            path,
            self._hostname,
            subfolder=path != self.user_dir(address),
            events=self._events,
            cache=self._indexes,
        )

    def watch(self, address: str, folder: str = "INBOX") -> Watch:
        """Notifications of changes made to the folder through this store."""
        return self._events.watch(self._folder_path(address, folder))

    def changed(self, address: str, folder: str = "INBOX") -> None:
        """Tell this process's watchers of a change made by another process (a delivery)."""
        self._events.publish(self._folder_path(address, folder))

    def delete_folder(self, address: str, folder: str) -> None:
        """Remove a folder other than INBOX, not its children: tombstone rename, then rmtree.

        Tombstones a crash left behind are removed too.
        """
        path = self._subfolder_path(address, folder)
        if not (path / "cur").is_dir():
            raise FileNotFoundError(f"no folder {folder!r}")
        os.rename(path, path.with_name(f"{_TOMBSTONE}{secrets.token_hex(8)}"))
        sync_dir(path.parent)
        for tombstone in path.parent.glob(f"{_TOMBSTONE}*"):
            shutil.rmtree(tombstone, ignore_errors=True)

    def rename_folder(self, address: str, old: str, new: str) -> None:
        """Rename `old` and every ``old.*`` child by renaming their directories (indexes move
        along, so UIDVALIDITY and UIDs are kept); all targets are checked before any move."""
        source = self._subfolder_path(address, old)
        self._subfolder_path(address, new)  # refuses INBOX and unsafe names
        if not (source / "cur").is_dir():
            raise FileNotFoundError(f"no folder {old!r}")
        base = source.parent
        moves = [
            (base / _folder_dir(name), base / _folder_dir(new + name[len(old) :]))
            for name in self.folders(address)
            if name == old or name.startswith(old + ".")
        ]
        for _, destination in moves:
            if destination.exists():
                raise FileExistsError(f"folder {destination.name[1:]!r} exists")
        for origin, destination in moves:
            os.rename(origin, destination)
        sync_dir(base)

    def lock_maildrop(self, address: str) -> MaildropLock | None:
        """The user's exclusive POP3 lock, or None while another session holds it."""
        return try_lock(self.user_dir(address) / "postoffice-maildrop.lock")

    def folders(self, address: str) -> Iterator[str]:
        """INBOX, then the existing Maildir++ folders in name order."""
        base = self.user_dir(address)
        yield "INBOX"
        with suppress(FileNotFoundError):
            for name in sorted(os.listdir(base)):
                if (
                    name.startswith(".")
                    and not name.startswith("..")  # a tombstone
                    and (base / name / "cur").is_dir()
                ):
                    yield name[1:]
