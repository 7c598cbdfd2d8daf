"""The one door into the queue: every message, bounces included, enters here.

Cleanup checks for mail loops, prepends our `Received:` trace header, expands
recipients through the directory (aliases, catch-alls, subaddresses; each answer reused
until the directory changes, `storage/lookup_cache.py`) and
writes the message durably into the spool: the expansion and the envelope on the
event loop, the store in the group commit (`fscommit.py`: a batch of the loop's stores
and deliveries, made durable by one syncfs) when the spool is on the file system it
syncs, else in one hop to the disk pool (`postoffice.diskio`), with the file's own fsync.
Only when `submit` returns may a server answer `250`: the message is on stable storage
by then.
After a store, when the spool runs short of names made durable in advance
(`Spool.reserve`), it makes more in the disk pool, off every store's path.

A caller whose session is the only one of its process may ask for the store `inline`,
on the event loop's own thread: with nobody else to serve meanwhile the loop would only
wait, and the hop there and back (two thread wake-ups, two hand-overs of the GIL) costs a
single session some 10 % of its rate (docs/performance.md).

With `at_reception` (`[queue] local_at_reception`, delivery/local.py `AtReception`), a
message whose final recipients are all local goes straight into their mailboxes instead
(in batches with the loop's other deliveries, made durable by one syncfs each:
fscommit.py), and into the spool only for recipients that could not be delivered. Its
queue id is then a fresh one, not a name reserved in the spool (which would stay unused).
The `delivered` events of those recipients are reported on the loop's next round, after
the caller's own record of the message (the session's `queued` line in the log).

Messages the server writes itself (bounces) come in with `Origin.internal`:
their Received: header has only a `by` clause, as from Postfix's pickup.

Standards: RFC 5321 §4.4 (trace information), §6.3 (loop detection),
RFC 3848 (ESMTP/ESMTPS/ESMTPA protocol names), RFC 3463 codes.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from postoffice import diskio
from postoffice.clock import Clock
from postoffice.delivery.local import AtReception
from postoffice.fscommit import GroupCommit
from postoffice.mail.address import Address
from postoffice.protocols.smtp import Reply
from postoffice.queue.entry import QueueEntry
from postoffice.queue.scheduler import EventHook
from postoffice.queue.spool import Spool, SpoolFull
from postoffice.storage.base import Directory, Resolution
from postoffice.storage.lookup_cache import LookupCache

MAX_RECEIVED = 50  # RFC 5321 §6.3 suggests a limit of at least 100; Postfix uses 50
_RECEIVED = re.compile(rb"^received:", re.IGNORECASE | re.MULTILINE)
_DATE = re.compile(rb"^date:", re.IGNORECASE | re.MULTILINE)
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)

LOOP = Reply(554, "5.4.6", "Too many Received: headers: mail loop")
DISK_FULL = Reply(452, "4.3.1", "Insufficient system storage, try again later")


class Refused(Exception):
    """The message cannot be queued; `reply` says why."""

    def __init__(self, reply: Reply):
        super().__init__(reply.text)
        self.reply = reply


@dataclass(slots=True)
class Origin:
    """Where a message came from, for the Received: header and the trace."""

    client_ip: str  # "" for mail this server writes itself (see `internal`)
    helo: str = ""
    protocol: str = "ESMTP"  # RFC 3848: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA
    tls: str = ""  # e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384"
    auth: str = ""  # authenticated identity, never put in headers unless configured
    auth_in_header: bool = False  # [submission] received_identity
    submission: bool = False  # RFC 6409: complete Message-ID and Date when missing
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def internal(cls, source: str) -> Origin:
        """Mail written by this server itself (bounces); `source` is kept in the trace."""
        return cls(client_ip="", protocol="local", extra={"source": source})

    def as_dict(self) -> dict[str, str]:
        data = {"addr": self.client_ip, "helo": self.helo, "protocol": self.protocol}
        if self.tls:
            data["tls"] = self.tls
        if self.auth:
            data["auth"] = self.auth
        return data | self.extra


class Cleanup:
    """Loop check, trace header, recipient expansion, durable store (or delivery at
    reception), scheduler wake-up."""

    def __init__(
        self,
        spool: Spool,
        directory: Directory,
        hostname: str,
        clock: Clock,
        on_accepted: Callable[[QueueEntry, bytes | None], None] = lambda entry, envelope: None,
        *,
        signer: Callable[[bytes], bytes] | None = None,
        at_reception: AtReception | None = None,
        on_event: EventHook | None = None,
        commit: GroupCommit | None = None,
    ):
        self.spool = spool
        self.directory = directory
        self.hostname = hostname
        self.clock = clock
        # Each accepted entry, with its envelope as spooled (JSON); None when it was
        # delivered at reception to every recipient and nothing went into the spool.
        self.on_accepted = on_accepted
        self.signer = signer  # DKIM: the signature headers for a message, b"" if none
        self.at_reception = at_reception
        self.on_event = on_event  # `delivered` events of deliveries at reception
        # Spool stores in the group commit when the spool is on the file system it syncs.
        same = commit is not None and os.stat(spool.root).st_dev == commit.device
        self._commit = commit if same else None
        self._reserving: asyncio.Task[None] | None = None  # the spool's names made ahead
        self._resolved: LookupCache[str, Resolution | None] = LookupCache(directory.version)

    def should_sign(self, origin: Origin) -> bool:
        """Our users' mail and our own DSNs are signed (RFC 6376); relayed mail is not."""
        return self.signer is not None and bool(
            origin.submission or origin.auth or not origin.client_ip
        )

    async def submit(
        self,
        sender: Address | None,
        recipients: list[Address],
        data: bytes,
        origin: Origin,
        *,
        inline: bool = False,
    ) -> QueueEntry:
        """Queue `data` durably for `recipients`; raise Refused with the reply to give.

        Order of the header block as stored: our Received:, DKIM-Signature (when we sign),
        Message-ID/Date completed for submissions, then the message as it came. `inline`
        stores on the calling thread (see the module docstring).
        """
        header_end = data.find(b"\r\n\r\n")
        headers = data if header_end < 0 else data[: header_end + 2]
        if len(_RECEIVED.findall(headers)) >= MAX_RECEIVED:
            raise Refused(LOOP)
        # Expansion (SQLite) and the envelope are made here: the disk thread, if any, only
        # makes system calls (between them it waits for the GIL).
        finals = self.expand(recipients)
        direct = self.at_reception is not None and self.at_reception.takes(
            [final for final, _ in finals]
        )
        qid = self.spool.new_qid(reserved=not direct)
        now = self.clock.time()
        trace = self.received_header(qid, recipients, origin, now)
        match = _MESSAGE_ID.search(headers)
        message_id = match.group(1).decode("utf-8", "replace").strip() if match else ""
        if origin.submission:
            added, message_id = self.completed_headers(headers, qid, message_id, now)
            data = added + data
        if self.should_sign(origin):
            assert self.signer is not None
            data = await asyncio.to_thread(self.signer, data) + data  # below Received:
        message = trace + data
        entry = self.spool.envelope(
            str(sender) if sender else "",
            finals,
            message,
            qid=qid,
            client=origin.as_dict(),
            message_id=message_id,
            arrival=now,
        )
        envelope = None if direct else entry.to_json()
        try:
            if direct:
                assert self.at_reception is not None
                await self.at_reception.deliver(entry, message, inline=inline)
                envelope = entry.to_json() if entry.pending else None
            if envelope is not None:
                await self._store(entry, message, envelope, inline=inline)
        except SpoolFull:
            raise Refused(DISK_FULL) from None
        if envelope is not None and self.spool.wants_reserves():
            self._reserving = asyncio.ensure_future(diskio.run(self.spool.reserve))
        if direct:
            asyncio.get_running_loop().call_soon(self._report_delivered, entry)
        self.on_accepted(entry, envelope)
        return entry

    async def _store(
        self, entry: QueueEntry, message: bytes, envelope: bytes, *, inline: bool
    ) -> None:
        """Into the spool: on the loop (`inline`), in the group commit, or on the disk pool."""
        if inline:
            self.spool.write(entry, message, envelope)
            return
        if self._commit is None:
            await diskio.run(self.spool.write, entry, message, envelope)
            return
        written: list[bool] = []

        def write() -> None:
            self.spool.write(entry, message, envelope, sync=False)
            written.append(True)

        try:
            await self._commit.run(write)
        except OSError:
            if written:  # the sync failed: not known to be durable, and not acknowledged
                await diskio.run(self.spool.withdraw, entry.qid)
            raise

    def _report_delivered(self, entry: QueueEntry) -> None:
        if self.on_event is None:
            return
        for recipient in entry.delivered:
            self.on_event("delivered", entry, recipient.as_event())

    def expand(self, recipients: list[Address]) -> list[tuple[str, str]]:
        """(final address, original address) pairs, without duplicates of a final address."""
        seen: set[str] = set()
        targets: list[tuple[str, str]] = []
        for rcpt in recipients:
            original = str(rcpt)
            finals: tuple[str, ...] = (original,)
            resolution = self._resolved.get(original, self.directory.resolve)  # None: not ours
            if resolution is not None:
                finals = resolution.local + resolution.remote
            for final in finals:
                if final.lower() not in seen:
                    seen.add(final.lower())
                    targets.append((final, original))
        return targets

    def completed_headers(
        self, headers: bytes, qid: str, message_id: str, now: float
    ) -> tuple[bytes, str]:
        """RFC 6409 §8.2-8.3: a submission server adds Message-ID and Date when missing."""
        added = b""
        if not message_id:
            message_id = f"<{qid}.{int(now)}@{self.hostname}>"
            added += f"Message-ID: {message_id}\r\n".encode()
        if not _DATE.search(headers):
            added += f"Date: {_date(now)}\r\n".encode()
        return added, message_id

    def received_header(
        self, qid: str, recipients: list[Address], origin: Origin, now: float
    ) -> bytes:
        """RFC 5321 §4.4 trace header; `for` only with a single recipient (privacy)."""
        if origin.client_ip:
            helo = _clean(origin.helo) or "unknown"
            lines = [
                f"Received: from {helo} ([{origin.client_ip}])",
                f"\tby {self.hostname} (postoffice) with {origin.protocol} id {qid}",
            ]
        else:  # written here: no client, no SMTP (RFC 5322 §3.6.7 allows any tokens)
            lines = [f"Received: by {self.hostname} (postoffice) id {qid}"]
        if origin.tls:
            lines[-1] += f"\r\n\t(using {_clean(origin.tls)})"
        if origin.auth and origin.auth_in_header:
            lines[-1] += f"\r\n\t(authenticated as {_clean(origin.auth)})"
        date = _date(now)
        if len(recipients) == 1:
            lines.append(f"\tfor <{recipients[0]}>; {date}")
        else:
            lines[-1] += f"; {date}"
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")


@functools.lru_cache(maxsize=1)
def _second(second: int) -> str:
    return email.utils.formatdate(second, localtime=True)


def _date(now: float) -> str:
    """RFC 5322 §3.3 date-time of `now`, made once per second (every message needs one)."""
    return _second(int(now))


def _clean(text: str) -> str:
    """Keep client-supplied words from breaking the header (no CR, LF or parentheses)."""
    return "".join(c for c in text if c.isprintable() and c not in "()")[:255]
