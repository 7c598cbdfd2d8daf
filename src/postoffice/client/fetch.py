"""Downloading new mail over POP3 or IMAP into the local Maildir: each message once, none lost.

One loop serves both protocols through a `Source`: a list of ids that name each message on
the server for good, a message by id, marking for deletion, and a final commit. POP3's ids
are its UIDLs; IMAP's are "UIDVALIDITY.UID" of INBOX, kept in a log of their own.

The account's Maildir keeps a log of the ids it holds (`postoffice-uidl` for POP3,
`postoffice-imap-uids` for IMAP), one line per
event, appended and fsync'ed: `? UIDL` before a message is written, `+ UIDL` once it is
durable. A run lists the server's UIDLs, retrieves only those without `+`, and writes each
one with a delivery id derived from its UIDL. After a crash between the Maildir write and
the `+` line, the UIDL is left with only its `?`; the next run looks for the file with that
delivery id (one directory listing per such UIDL, at most one per crash) and records it
instead of fetching it again. At the start of each run the log is rewritten, atomically,
to the `+` lines of messages still on the server, so it stays as small as the maildrop.

Deleting is the server's UPDATE state (RFC 1939 §6): DELE marks, QUIT commits. A run sends
DELE only for messages whose `+` line is on disk, and QUIT only at the end, also after a
local write failed (a full disk): what was stored is then deleted, the rest stays. A run
cut short before QUIT deletes nothing, and the next run deletes what the last one stored
without fetching it again. With `keep`, nothing is deleted and the log alone remembers.

Over IMAP the same rules hold: messages are read with BODY.PEEK[] (nothing is flagged
\\Seen), those stored are flagged \\Deleted (UID STORE) and removed by UID EXPUNGE (plain
EXPUNGE without UIDPLUS) only at the end. A run cut short before the EXPUNGE leaves them
on the server, and the next run, which lists deleted messages too, expunges them without
fetching. A new UIDVALIDITY (the server rebuilt INBOX) gives every message new ids: what
`--keep` left on the server is then downloaded once more.

Standards: RFC 1939 §6 (UPDATE state), §7 (UIDL); RFC 9051 §6.4.5 (BODY.PEEK), §6.4.9 (UID);
RFC 4315 §2.1 (UID EXPUNGE)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from postoffice.client import online
from postoffice.client.accounts import Access, Account
from postoffice.client.imap import DELETED, ImapClient
from postoffice.client.local import folder
from postoffice.client.network import (
    FAILURES,
    ClientError,
    describe,
    open_endpoint,
)
from postoffice.client.pop3 import Pop3Client
from postoffice.fileio import replace_file
from postoffice.storage.maildir import MaildirMailbox

LOG_NAME = "postoffice-uidl"
IMAP_LOG_NAME = "postoffice-imap-uids"
Progress = Callable[[int, int], None]  # (messages done, messages to fetch)


@dataclass(frozen=True, slots=True)
class FetchResult:
    fetched: int  # messages written to the Maildir in this run
    deleted: int  # messages the server deleted after QUIT
    remaining: int  # messages left on the server


def delivery_id(uidl: str) -> str:
    """The Maildir delivery id of a message (UIDLs may hold characters names may not)."""
    return hashlib.sha256(uidl.encode()).hexdigest()[:32]


class UidlLog:
    """The ids (UIDLs) held locally: `?` before a write, `+` after it is durable."""

    def __init__(self, inbox: MaildirMailbox, name: str = LOG_NAME) -> None:
        self._inbox = inbox
        self.path = inbox.path / name

    def recover(self, on_server: set[str]) -> set[str]:
        """The UIDLs held locally among `on_server`; the log is rewritten to just those."""
        held: set[str] = set()
        pending: set[str] = set()
        try:
            text = self.path.read_text("ascii", "replace")
        except FileNotFoundError:
            text = ""
        for line in text.split("\n")[:-1]:  # a torn last line (no LF yet) never counts
            mark, _, uidl = line.partition(" ")
            if uidl in on_server:
                (held if mark == "+" else pending).add(uidl)
        held |= {uidl for uidl in pending - held if self._inbox.has_delivery(delivery_id(uidl))}
        self._rewrite(held)
        return held

    def _rewrite(self, held: set[str]) -> None:
        # Opening the index creates a missing Maildir the durable way: each new directory
        # fsync'ed into its parent, so later messages cannot vanish with an unsynced parent.
        _ = self._inbox.uidvalidity
        replace_file(self.path, "".join(f"+ {uidl}\n" for uidl in sorted(held)).encode())

    def _append(self, mark: str, uidl: str) -> None:
        with self.path.open("a", encoding="ascii") as file:
            file.write(f"{mark} {uidl}\n")
            file.flush()
            os.fsync(file.fileno())

    def store(self, uidl: str, message: bytes) -> None:
        """Write `message` to the Maildir durably, logging it before and after."""
        self._append("?", uidl)
        self._inbox.deliver(message, delivery_id=delivery_id(uidl))
        self._append("+", uidl)


class Source(Protocol):
    """A server's maildrop as the download loop sees it."""

    async def ids(self) -> list[str]:
        """The id of every message, in the server's order."""
        ...

    async def retrieve(self, uid: str) -> bytes | None:
        """The message `uid`, or None when it has gone meanwhile."""
        ...

    async def delete(self, ids: list[str]) -> None:
        """Mark `ids` for deletion; nothing is removed before `finish`."""
        ...

    async def finish(self) -> None:
        """Commit the deletions and say goodbye."""
        ...

    async def close(self) -> None:
        """Drop the connection; without `finish` nothing is deleted."""
        ...


class Pop3Source:
    """UIDLs; DELE marks, QUIT commits (RFC 1939 §6)."""

    def __init__(self, client: Pop3Client) -> None:
        self._client = client
        self._numbers: dict[str, int] = {}

    async def ids(self) -> list[str]:
        listing = await self._client.uidl()
        self._numbers = {uidl: number for number, uidl in listing}
        return [uidl for _, uidl in listing]

    async def retrieve(self, uid: str) -> bytes:
        return await self._client.retr(self._numbers[uid])

    async def delete(self, ids: list[str]) -> None:
        for uidl in ids:
            await self._client.dele(self._numbers[uidl])

    async def finish(self) -> None:
        await self._client.quit()

    async def close(self) -> None:
        await self._client.close()


class ImapSource:
    """INBOX by "UIDVALIDITY.UID"; \\Deleted marks, UID EXPUNGE commits."""

    def __init__(self, client: ImapClient) -> None:
        self._client = client
        self._validity = 0
        self._deleted: list[int] = []

    def _uid(self, uid: str) -> int:
        return int(uid.partition(".")[2])

    async def ids(self) -> list[str]:
        self._validity = await self._client.select(online.INBOX)
        return [f"{self._validity}.{uid}" for uid in await self._client.uids()]

    async def retrieve(self, uid: str) -> bytes | None:
        return await self._client.message(self._uid(uid), peek=True)

    async def delete(self, ids: list[str]) -> None:
        self._deleted = [self._uid(uid) for uid in ids]
        if self._deleted:
            await self._client.store(self._deleted, DELETED, add=True)

    async def finish(self) -> None:
        if self._deleted:
            await self._client.expunge(self._deleted)
        await self._client.logout()

    async def close(self) -> None:
        self._client.close()


async def _open(account: Account, password: str, access: Access, timeout: float) -> Source:
    endpoint = account.server(access)
    if access is Access.IMAP:
        return ImapSource(await online.connect(account, password, endpoint, timeout=timeout))
    client = await open_endpoint(
        Pop3Client.connect, endpoint, ca=account.ca, insecure=account.insecure, timeout=timeout
    )
    try:
        await client.login(account.login, password)
    except BaseException:
        await client.close()
        raise
    return Pop3Source(client)


async def fetch(
    account: Account,
    password: str,
    *,
    access: Access = Access.POP3,
    keep: bool = False,
    progress: Progress | None = None,
    timeout: float = 60.0,
) -> FetchResult:
    """Download what is new; delete it on the server unless `keep`. ClientError on failure."""
    endpoint = account.server(access)
    log = UidlLog(folder(account), IMAP_LOG_NAME if access is Access.IMAP else LOG_NAME)
    storage_error: OSError | None = None
    fetched = deleted = 0
    try:
        source = await _open(account, password, access, timeout)
        try:
            listing = await source.ids()
            try:
                held = log.recover(set(listing))
            except OSError as exc:
                raise ClientError(f"cannot write {log.path}: {exc.strerror or exc}") from None
            new = [uid for uid in listing if uid not in held]
            for uid in new:
                message = await source.retrieve(uid)
                if message is None:
                    continue
                try:
                    log.store(uid, message)
                except OSError as exc:
                    storage_error = exc
                    break
                held.add(uid)
                fetched += 1
                if progress is not None:
                    progress(fetched, len(new))
            if not keep:
                doomed = [uid for uid in listing if uid in held]
                await source.delete(doomed)
                deleted = len(doomed)
            await source.finish()
        finally:
            await source.close()
    except FAILURES as exc:
        raise ClientError(describe(exc, endpoint)) from None
    if storage_error is not None:
        reason = storage_error.strerror or str(storage_error)
        raise ClientError(
            f"cannot store mail in {log.path.parent}: {reason}"
            f" ({fetched} new messages stored, the rest left on the server)"
        )
    return FetchResult(fetched, deleted, len(listing) - deleted)
