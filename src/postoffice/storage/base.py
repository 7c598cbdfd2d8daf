"""Storage interfaces: the directory (domains, users, aliases) and the mail store.

Protocol servers and delivery agents talk only to these interfaces, never to
paths, so a PostgreSQL-backed store can slot in later. The SQLite directory
(`storage/directory.py`) and the Maildir store (`storage/maildir.py`) are the
embedded defaults. The naming rules every store shares live here too: a domain
is a hostname, a user's local part is a small safe charset (so it can name a
directory; `+` is the subaddress separator), both compared case-insensitively
and stored lower-case.

Standards: RFC 1123 §2.1 (host names), RFC 5233 (subaddress separator).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from postoffice.storage.locks import MaildropLock

from postoffice.protocols.sasl import ScramCredentials

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_USER = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


class DirectoryError(ValueError):
    """A directory operation was refused; the message is one line naming the problem."""


def normalize_domain(domain: str) -> str:
    """`domain` lower-cased, or DirectoryError when it is not a hostname."""
    name = domain.lower()
    if not domain.isascii() or len(name) > 253 or not _DOMAIN.fullmatch(name):
        raise DirectoryError(f"{domain!r} is not a valid domain name")
    return name


def normalize_user(address: str) -> str:
    """A user's mailbox address ``local@domain`` lower-cased, or DirectoryError.

    The local part is letters, digits, ``.``, ``-`` and ``_`` (no leading,
    trailing or doubled dot), at most 64 octets, so it is safe as a directory name.
    """
    local, at, domain = address.rpartition("@")
    name = local.lower()
    if not at or not local.isascii() or len(name) > 64 or not _USER.fullmatch(name):
        raise DirectoryError(f"{address!r} is not a valid user name")
    return f"{name}@{normalize_domain(domain)}"


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where mail for one address goes after aliases, catch-alls and subaddressing.

    `local` holds canonical local mailbox addresses (``user@domain``, lower-case),
    `remote` holds addresses on other domains that an alias forwards to.
    """

    local: tuple[str, ...] = ()
    remote: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class User:
    address: str
    created: float


@dataclass(frozen=True, slots=True)
class Alias:
    source: str  # "name@domain" or "@domain" for a catch-all
    targets: tuple[str, ...]


class Directory(Protocol):
    """Domains, users (with hashed passwords) and aliases."""

    def is_local_domain(self, domain: str) -> bool: ...
    def version(self) -> Hashable:
        """Different after any change to the directory, by any process (for caches)."""
        ...

    def resolve(self, address: str) -> Resolution | None:
        """Final destinations for `address` on a local domain; None when nobody takes it."""
        ...

    def verify_password(self, address: str, password: str) -> bool: ...
    def scram_credentials(self, address: str) -> ScramCredentials | None:
        """The user's SCRAM-SHA-256 keys; None for unknown users and users without keys."""
        ...

    def scram_decoy(self, address: str) -> ScramCredentials:
        """Keys shown for an address without any: stable, shaped like real ones, no password."""
        ...

    def owns(self, user_address: str, mail_from: str) -> bool:
        """Whether `user_address` may send as `mail_from` (itself, a subaddress, an alias)."""
        ...

    def add_domain(self, domain: str) -> None: ...
    def remove_domain(self, domain: str) -> None: ...
    def list_domains(self) -> list[str]: ...
    def add_user(self, address: str, password: str) -> None: ...
    def remove_user(self, address: str) -> None: ...
    def set_password(self, address: str, password: str) -> None: ...
    def list_users(self, domain: str | None = None) -> list[User]: ...
    def add_alias(self, source: str, targets: list[str]) -> None: ...
    def remove_alias(self, source: str) -> None: ...
    def list_aliases(self, domain: str | None = None) -> list[Alias]: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One message as the index knows it: what POP3 and IMAP need without reading bodies."""

    uid: int  # IMAP UID: strictly ascending, never reused within one uidvalidity
    key: str  # Maildir base name (unique, stable: the POP3 UIDL)
    size: int  # octets of the stored file (stored with CRLF line ends)
    flags: frozenset[str] = field(default_factory=frozenset)  # IMAP flags, e.g. "\\Seen"
    modseq: int = 1  # CONDSTORE modification sequence
    internaldate: float = 0.0  # arrival time (seconds since epoch)


class Mailbox(Protocol):
    """One folder of one user."""

    @property
    def uidvalidity(self) -> int: ...
    @property
    def uidnext(self) -> int: ...
    @property
    def highestmodseq(self) -> int: ...
    def deliver(
        self, data: bytes, *, delivery_id: str | None = None, internaldate: float | None = None
    ) -> str:
        """Store a message durably (tmp/ -> new/, fsync file and directory); returns its key.

        `delivery_id`, when given, is embedded in the file name so that a
        delivery repeated after a crash can be recognised by `has_delivery`;
        `internaldate` (seconds since the epoch) replaces the arrival time.
        """
        ...

    # `deliver` in steps, for a caller that makes them durable itself (fscommit):
    # stage(sync=False), make it durable, publish, make that durable, announce;
    # withdraw when a step's durability failed.
    def stage(
        self,
        data: bytes,
        *,
        delivery_id: str | None = None,
        internaldate: float | None = None,
        sync: bool = True,
        device: int | None = None,
    ) -> str: ...
    def publish(self, key: str) -> None: ...
    def withdraw(self, key: str) -> None: ...
    def announce(self) -> None: ...
    def has_delivery(self, delivery_id: str) -> bool: ...
    def messages(self) -> list[MessageInfo]:
        """Sync the index with the folder and list messages in UID order.

        Cheap when the folder did not change since the last sync: stores may skip the sync.
        """
        ...

    def stamp(self) -> tuple[Hashable, bool]:
        """A cheap token that differs whenever `messages()` may list otherwise than when it
        was taken, and whether it can be trusted alone: False while a recent change by
        another process might not have moved it yet (that is seen once it is True)."""
        ...

    def open(self, key: str) -> BinaryIO: ...
    def read(self, key: str) -> bytes: ...
    def read_cached(self, key: str, limit: int, size: int | None = None) -> bytes | None:
        """The message if it is at most `limit` octets and can be had without waiting for
        the disk (safe on the event loop); None otherwise, then `read` it in a thread.
        `size`, the listed size, may spare finding it out."""
        ...

    def set_flags(self, key: str, flags: frozenset[str]) -> MessageInfo: ...
    def remove(self, keys: list[str]) -> None:
        """Delete messages durably (POP3 UPDATE state, IMAP EXPUNGE)."""
        ...

    def expunged_since(self, modseq: int) -> list[int] | None:
        """UIDs expunged at a modseq above `modseq` (RFC 7162 §3.2), ascending; None when
        the store's record does not reach back that far."""
        ...

    def close(self) -> None:
        """Release the index; the mailbox object is not used afterwards."""
        ...


class MailboxWatch(Protocol):
    """Change notifications for one mailbox (see `MailStore.watch`)."""

    async def wait(self) -> None:
        """Return once the mailbox changed since the last return (at once if it did)."""
        ...

    def close(self) -> None: ...


class MailStore(Protocol):
    """All mailboxes."""

    def mailbox(self, address: str, folder: str = "INBOX") -> Mailbox: ...
    def folders(self, address: str) -> Iterator[str]: ...
    def delete_folder(self, address: str, folder: str) -> None:
        """Remove a folder and its messages durably (not its children, not INBOX).

        ValueError for INBOX and names `mailbox()` refuses, FileNotFoundError when the
        folder does not exist.
        """
        ...

    def rename_folder(self, address: str, old: str, new: str) -> None:
        """Rename a folder and its children (``old.x`` becomes ``new.x``), UIDs kept.

        ValueError for INBOX and names `mailbox()` refuses, FileNotFoundError when `old`
        does not exist, FileExistsError when `new` does.
        """
        ...

    def watch(self, address: str, folder: str = "INBOX") -> MailboxWatch:
        """Be told when writers in this process change the folder (call from a coroutine).

        Changes by other processes are not announced: a waiter re-checks now and then.
        """
        ...

    def lock_maildrop(self, address: str) -> MaildropLock | None:
        """Exclusive access for one POP3 session (RFC 1939 §8); None when already held."""
        ...
