"""Local delivery: put a queued message into the INBOX of each final local recipient.

The agent reads the message once from the spool, then for each recipient
prepends ``Return-Path`` (the envelope sender, RFC 5321 §4.4) and
``Delivered-To`` and hands the bytes to the mail store, all in a worker thread
since the store's file work blocks. Each delivery carries the id
``<qid>-<index>`` (the recipient's position in the queue entry), so after a
crash between the Maildir write and the queue update the scheduler's retry,
flagged `entry.recovered`, finds the earlier copy with `has_delivery` and
reports it delivered instead of writing a duplicate; hence `detects_repeats`,
which lets the scheduler skip the fsync of the queue entry's removal. The file
work runs on the shared disk pool (`postoffice.diskio`). A full disk or quota is a
temporary failure (4.3.1), any other file error one of the mailbox (4.2.0);
a recipient the store cannot name fails permanently (5.1.3).

Standards: RFC 5321 §4.4 (Return-Path), RFC 3463 (enhanced status codes).
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from postoffice import diskio
from postoffice.delivery.base import DeliveryAgent, Outcome, RecipientResult, settle
from postoffice.fscommit import GroupCommit
from postoffice.queue.entry import QueueEntry
from postoffice.storage.base import Mailbox, MailStore

_STORAGE_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
AT_RECEPTION_RECIPIENTS = 10  # at most this many mailboxes written before one 250


class MessageSource(Protocol):
    """Where queued message bytes come from (the spool)."""

    def read_message(self, qid: str) -> bytes: ...


def _trace_headers(sender: str, recipient: str) -> bytes:
    """``Return-Path`` (``<>`` for the null sender) and ``Delivered-To``, CRLF-terminated."""
    return f"Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n".encode()


def _deferred(recipient: str, error: OSError) -> RecipientResult:
    if error.errno in _STORAGE_FULL:
        return RecipientResult(
            recipient, Outcome.DEFERRED, "4.3.1", f"mail system full: {error.strerror}"
        )
    return RecipientResult(recipient, Outcome.DEFERRED, "4.2.0", f"mailbox unavailable: {error}")


class LocalDeliveryAgent:
    """`DeliveryAgent` for mailboxes in a `MailStore`; `hostname` names this host in results."""

    detects_repeats: ClassVar[bool] = True  # a `recovered` entry is never delivered twice

    def __init__(
        self, store: MailStore, spool: MessageSource, hostname: str, *, junk_folder: str = "Junk"
    ) -> None:
        self._junk = junk_folder  # where messages that inbound checks quarantined go
        self._store = store
        self._spool = spool
        self._hostname = hostname

    async def deliver(self, entry: QueueEntry, recipients: list[str]) -> list[RecipientResult]:
        return await diskio.run(self._deliver_all, entry, recipients)

    def _deliver_all(self, entry: QueueEntry, recipients: list[str]) -> list[RecipientResult]:
        try:
            message = self._spool.read_message(entry.qid)
        except OSError as error:
            return [
                RecipientResult(
                    r, Outcome.DEFERRED, "4.3.0", f"cannot read queued message: {error}"
                )
                for r in recipients
            ]
        return self.deliver_message(entry, recipients, message)

    def deliver_message(
        self, entry: QueueEntry, recipients: list[str], message: bytes
    ) -> list[RecipientResult]:
        """Blocking: `message` (as queued, without our trace headers) to each of `recipients`."""
        ids = self._delivery_ids(entry, recipients)
        return [self._deliver_one(entry, r, ids[r], message) for r in recipients]

    def stage(
        self,
        entry: QueueEntry,
        recipients: list[str],
        message: bytes,
        staged: list[Staged],
        device: int,
    ) -> None:
        """Blocking: the first step of deliveries that the caller makes durable (AtReception):
        each recipient's copy written into its mailbox's tmp/, not synced, on file system
        `device`, and added to `staged`. A recipient whose copy was not written is left out."""
        ids = self._delivery_ids(entry, recipients)
        folder = self.folder(entry)
        for recipient in recipients:
            try:
                mailbox = self._store.mailbox(recipient, folder)
            except ValueError:
                continue
            data = _trace_headers(entry.sender, recipient) + message
            try:
                key = mailbox.stage(data, delivery_id=ids[recipient], sync=False, device=device)
            except OSError:
                mailbox.close()
                continue
            staged.append(Staged(recipient, mailbox, key))

    @staticmethod
    def _delivery_ids(entry: QueueEntry, recipients: list[str]) -> dict[str, str]:
        """``<qid>-<index>`` of each recipient: its position in the queue entry."""
        position: dict[str, int] = {}
        for index, state in enumerate(entry.recipients):
            position.setdefault(state.address, index)
        missing = [r for r in recipients if r not in position]
        if missing:
            raise ValueError(f"{entry.qid}: {', '.join(missing)} not among its recipients")
        return {r: f"{entry.qid}-{position[r]}" for r in recipients}

    def delivered(
        self, entry: QueueEntry, recipient: str, *, before: bool = False
    ) -> RecipientResult:
        """The result of a delivery into `recipient`'s mailbox (`before` a restart)."""
        place = f"mailbox {recipient} on {self._hostname}"
        folder = self.folder(entry)
        if before:
            detail = f"already in {place} (delivered before a restart)"
        else:
            detail = f"delivered to {place}" + ("" if folder == "INBOX" else f" ({folder})")
        return RecipientResult(recipient, Outcome.DELIVERED, "2.0.0", detail)

    def folder(self, entry: QueueEntry) -> str:
        """Where the message goes: INBOX, or the Junk folder if inbound checks quarantined it."""
        return self._junk if entry.client.get("junk") else "INBOX"  # RFC 7489 §6.3

    def _deliver_one(
        self, entry: QueueEntry, recipient: str, delivery_id: str, message: bytes
    ) -> RecipientResult:
        try:
            mailbox = self._store.mailbox(recipient, self.folder(entry))
        except ValueError as error:
            return RecipientResult(recipient, Outcome.FAILED, "5.1.3", str(error))
        try:
            if entry.recovered and mailbox.has_delivery(delivery_id):
                return self.delivered(entry, recipient, before=True)
            data = _trace_headers(entry.sender, recipient) + message
            mailbox.deliver(data, delivery_id=delivery_id)
        except OSError as error:
            return _deferred(recipient, error)
        finally:
            mailbox.close()
        return self.delivered(entry, recipient)


@dataclass(slots=True)
class Staged:
    """A recipient's copy written into its mailbox's tmp/ (`LocalDeliveryAgent.stage`)."""

    recipient: str
    mailbox: Mailbox
    key: str


class AtReception:
    """Delivery into local mailboxes before the 250, for cleanup (`[queue] local_at_reception`).

    A message whose final recipients are all local is written once, into each Maildir,
    instead of into the spool, then read back and written again by the queue: at 20
    sessions that was a fifth of the server's CPU a message (docs/performance.md). mox and
    maddy deliver local mail this way, as an LMTP server does. Taken only with at most
    `AT_RECEPTION_RECIPIENTS` recipients (the client waits for every write).

    With a group commit (`fscommit`, Linux) the copies are written into tmp/ in one batch
    with the loop's other deliveries, renamed into new/ once a syncfs made them durable,
    and the 250 waits for the second syncfs, after the renames: one disk job and two
    syncfs for all the deliveries of a loop round, instead of each copy's own fsyncs
    (file, then new/) in a hop of its own. That is still the way of a lone session
    (`inline`, on the loop: no batch to share, and no hop), and of systems without syncfs.

    A recipient not delivered (disk full, a mailbox that cannot be written, one on
    another file system than the data dir) stays pending, and the message goes into the
    spool for it like any other: the queue retries and bounces as usual. A crash after a
    delivery and before the 250 makes the client send again: a duplicate, which RFC 5321
    §6.1 prefers to a loss.
    """

    def __init__(
        self,
        router: Callable[[str], DeliveryAgent],
        agent: LocalDeliveryAgent,
        *,
        commit: GroupCommit | None = None,
        max_recipients: int = AT_RECEPTION_RECIPIENTS,
    ) -> None:
        self._router = router
        self._agent = agent
        self._commit = commit
        self._max = max_recipients

    def takes(self, addresses: Sequence[str]) -> bool:
        """Whether a message for these final recipients is delivered at reception."""
        return 0 < len(addresses) <= self._max and all(
            self._router(address) is self._agent for address in addresses
        )

    async def deliver(self, entry: QueueEntry, message: bytes, *, inline: bool = False) -> None:
        """Deliver to every pending recipient; those delivered are settled. `inline`: on
        the calling thread, blocking (cleanup's `inline`)."""
        pending = {r.address: r for r in entry.pending}
        if inline or self._commit is None:
            deliver = functools.partial(self._agent.deliver_message, entry, list(pending), message)
            for result in deliver() if inline else await diskio.run(deliver):
                if result.outcome is Outcome.DELIVERED:
                    settle(pending[result.recipient], result)
            return
        commit, staged = self._commit, list[Staged]()
        stage = functools.partial(
            self._agent.stage, entry, list(pending), message, staged, commit.device
        )
        try:
            await commit.run(stage, functools.partial(_publish, staged))
        except OSError:  # a batch not known to be durable: nothing delivered, all pending
            await diskio.run(_withdraw, staged)
        else:
            for copy in staged:
                copy.mailbox.announce()
                settle(pending[copy.recipient], self._agent.delivered(entry, copy.recipient))
        finally:
            for copy in staged:
                copy.mailbox.close()


def _publish(staged: list[Staged]) -> None:
    """Blocking: rename each staged copy into new/; one that fails is left out of `staged`."""
    published = []
    for copy in staged:
        try:
            copy.mailbox.publish(copy.key)
        except OSError:
            copy.mailbox.close()
            continue
        published.append(copy)
    staged[:] = published


def _withdraw(staged: list[Staged]) -> None:
    for copy in staged:
        copy.mailbox.withdraw(copy.key)
