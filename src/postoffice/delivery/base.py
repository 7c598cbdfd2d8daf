"""The delivery agent interface: how the scheduler hands a message to an agent.

The scheduler decides when and where; an agent decides how (local Maildir,
remote SMTP). Agents sit behind one method so that tests can swap in a
recording agent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from postoffice.queue.entry import QueueEntry, RecipientState, RecipientStatus


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"  # temporary failure: try again later
    FAILED = "failed"  # permanent failure: bounce


@dataclass(frozen=True, slots=True)
class RecipientResult:
    recipient: str
    outcome: Outcome
    status: str  # enhanced status code, e.g. "2.0.0", "4.4.1", "5.1.1"
    detail: str  # human text, e.g. the remote server's reply or "delivered to maildir"
    remote_reply: str | None = None  # the remote SMTP reply verbatim, for DSNs


_OUTCOME_STATUS = {
    Outcome.DELIVERED: RecipientStatus.DELIVERED,
    Outcome.FAILED: RecipientStatus.FAILED,
    Outcome.DEFERRED: RecipientStatus.PENDING,
}


def settle(recipient: RecipientState, result: RecipientResult) -> None:
    """Record one attempt's result on the recipient: pending again only if it was deferred."""
    recipient.attempts += 1
    recipient.last_status = result.status
    recipient.last_detail = result.detail
    recipient.remote_reply = result.remote_reply
    recipient.status = _OUTCOME_STATUS[result.outcome]


class DeliveryAgent(Protocol):
    async def deliver(self, entry: QueueEntry, recipients: list[str]) -> list[RecipientResult]:
        """Deliver the queued message to `recipients`; one result per recipient."""
        ...
