"""Downloading new mail over POP3 into the local Maildir: each message once, none lost.

The account's Maildir keeps a log of the UIDLs it holds, `postoffice-uidl`, one line per
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

Standards: RFC 1939 §6 (UPDATE state), §7 (UIDL)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from postoffice.client.accounts import Account
from postoffice.client.local import folder
from postoffice.client.network import (
    FAILURES,
    ClientError,
    Security,
    address_of,
    describe,
    tls_context,
)
from postoffice.client.pop3 import Pop3Client
from postoffice.fileio import replace_file
from postoffice.storage.maildir import MaildirMailbox

LOG_NAME = "postoffice-uidl"
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
    """The UIDLs held locally: `?` before a write, `+` after it is durable."""

    def __init__(self, inbox: MaildirMailbox) -> None:
        self._inbox = inbox
        self.path = inbox.path / LOG_NAME

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


async def fetch(
    account: Account,
    password: str,
    *,
    keep: bool = False,
    progress: Progress | None = None,
    timeout: float = 60.0,
) -> FetchResult:
    """Download what is new; delete it on the server unless `keep`. ClientError on failure."""
    endpoint = account.pop3
    log = UidlLog(folder(account))
    storage_error: OSError | None = None
    fetched = deleted = 0
    try:
        client = await Pop3Client.connect(
            endpoint.host,
            endpoint.port,
            tls=tls_context(account.ca, insecure=account.insecure),
            implicit_tls=endpoint.security is Security.TLS,
            address=await address_of(endpoint.host),
            timeout=timeout,
        )
        try:
            await client.login(account.login, password)
            listing = await client.uidl()
            try:
                held = log.recover({uidl for _, uidl in listing})
            except OSError as exc:
                raise ClientError(f"cannot write {log.path}: {exc.strerror or exc}") from None
            new = [(number, uidl) for number, uidl in listing if uidl not in held]
            for number, uidl in new:
                message = await client.retr(number)
                try:
                    log.store(uidl, message)
                except OSError as exc:
                    storage_error = exc
                    break
                held.add(uidl)
                fetched += 1
                if progress is not None:
                    progress(fetched, len(new))
            if not keep:
                for number, uidl in listing:
                    if uidl in held:
                        await client.dele(number)
                        deleted += 1
            await client.quit()
        finally:
            await client.close()
    except FAILURES as exc:
        raise ClientError(describe(exc, endpoint)) from None
    if storage_error is not None:
        reason = storage_error.strerror or str(storage_error)
        raise ClientError(
            f"cannot store mail in {log.path.parent}: {reason}"
            f" ({fetched} new messages stored, the rest left on the server)"
        )
    return FetchResult(fetched, deleted, len(listing) - deleted)
