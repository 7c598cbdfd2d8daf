"""Bounces and delay warnings: the scheduler's failed and delayed reports become DSN messages.

`Bouncer` supplies the scheduler's `on_failed` and `on_delayed` hooks. Each
reads the header section of the queued message (never more than
`HEADER_LIMIT` octets), builds the notification with `mail.dsn` and queues it
through the same door as every other message, `Cleanup.submit`, with the null
reverse-path, so that nothing ever answers it. A message whose own sender was
<> is a notification already: returning it would start a loop, so its failure
goes to the postmaster as a copy instead, and when such a postmaster copy
fails in turn it is only logged. Messages with sender <> get no delay
warnings; the scheduler sends at most one per message (`QueueEntry.warned`).
The origin of each notification (`Origin.internal`) stays in its queue entry,
which is how a failing postmaster copy is recognised.

Standards: RFC 3464 §2 (delivery status notifications), RFC 5321 §4.5.5 (the
null reverse-path for notifications), §6.1 (responsibility; no bounce loops),
RFC 3834 §2 (never answer automatic replies).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from postoffice.clock import Clock
from postoffice.logs import EventLog
from postoffice.mail.address import parse_address
from postoffice.mail.dsn import Action, build_dsn, notify_address
from postoffice.queue.backoff import Backoff
from postoffice.queue.cleanup import Cleanup, Origin
from postoffice.queue.entry import QueueEntry, RecipientState
from postoffice.queue.spool import Spool

logger = logging.getLogger(__name__)

HEADER_LIMIT = 102_400  # octets of original headers returned, as Postfix's header_size_limit
NOTICE = "dsn"  # Origin.internal source of a notification to a sender
POSTMASTER_COPY = "dsn-postmaster"  # ... and of a copy for the postmaster (sender was <>)
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING}


class Bouncer:
    """The `on_failed`/`on_delayed` hooks; `postmaster` is a full address."""

    def __init__(
        self,
        cleanup: Cleanup,
        spool: Spool,
        *,
        hostname: str,
        postmaster: str,
        clock: Clock,
        log: EventLog | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._cleanup = cleanup
        self._spool = spool
        self._hostname = hostname
        self._postmaster = str(parse_address(postmaster))
        self._clock = clock
        self._log = log
        self._backoff = backoff  # for Will-Retry-Until in delay warnings

    async def on_failed(self, entry: QueueEntry, failed: list[RecipientState]) -> None:
        """Return a "failed" DSN to the sender (to the postmaster if the sender was <>)."""
        if not entry.sender:
            if entry.client.get("source") == POSTMASTER_COPY:
                # RFC 5321 §6.1: nobody is left to tell; another notice would loop
                self._event("bounce-discarded", entry, failed, level="warning")
                return
            self._event("double-bounce", entry, failed, level="warning", to=self._postmaster)
        await self._send(entry, failed, "failed")

    async def on_delayed(self, entry: QueueEntry, pending: list[RecipientState]) -> None:
        """Warn the sender that `pending` are still being retried (never for sender <>)."""
        if entry.sender:
            await self._send(entry, pending, "delayed")

    async def _send(
        self, entry: QueueEntry, recipients: list[RecipientState], action: Action
    ) -> None:
        headers = await asyncio.to_thread(read_headers, self._spool, entry.qid)
        deadline = self._backoff.deadline(entry) if self._backoff is not None else None
        dsn = build_dsn(
            entry=entry,
            recipients=recipients,
            action=action,
            reporting_mta=self._hostname,
            original_headers=headers,
            now=self._clock.time(),
            postmaster=self._postmaster,
            retry_until=deadline if action == "delayed" else None,
        )
        to = notify_address(entry.sender, self._postmaster)
        origin = Origin.internal(NOTICE if entry.sender else POSTMASTER_COPY)
        # RFC 5321 §4.5.5: notifications are sent with the null reverse-path
        notice = await self._cleanup.submit(None, [parse_address(to)], dsn, origin)
        kind = "bounce" if action == "failed" else "delay-warning"
        self._event(kind, entry, recipients, to=to, dsn=notice.qid)

    def _event(
        self,
        kind: str,
        entry: QueueEntry,
        recipients: list[RecipientState],
        *,
        level: str = "info",
        **fields: Any,
    ) -> None:
        """One line in the event log, or the Python log when no event log is given."""
        fields = {"qid": entry.qid, "rcpt": [r.address for r in recipients]} | fields
        if self._log is not None:
            self._log.event(kind, level=level, **fields)
        else:
            logger.log(_LEVELS[level], "%s %s", kind, fields)


def read_headers(spool: Spool, qid: str) -> bytes:
    """The header section of a queued message, whole lines of at most `HEADER_LIMIT` octets."""
    with spool.open_message(qid) as message:
        head = message.read(HEADER_LIMIT)
    end = head.find(b"\r\n\r\n")
    if end < 0 and len(head) == HEADER_LIMIT:  # cut short: keep whole lines only
        end = head.rfind(b"\r\n")
    return head[: end + 2] if end >= 0 else head  # no blank line: the message is all header
