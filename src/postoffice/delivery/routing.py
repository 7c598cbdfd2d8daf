"""Routing: which delivery agent takes a final recipient address.

Local domains go to the local (Maildir) agent, everything else to the remote
agent. The scheduler calls the router once per recipient.
"""

from __future__ import annotations

from postoffice.delivery.base import DeliveryAgent, Outcome, RecipientResult
from postoffice.queue.entry import QueueEntry
from postoffice.storage.base import Directory


class Router:
    """Maps an address to the agent that delivers it."""

    def __init__(self, directory: Directory, local: DeliveryAgent, remote: DeliveryAgent):
        self.directory = directory
        self.local = local
        self.remote = remote

    def __call__(self, address: str) -> DeliveryAgent:
        domain = address.rpartition("@")[2]
        return self.local if self.directory.is_local_domain(domain) else self.remote


class NoRemoteDelivery:
    """Stands in for the SMTP client until remote delivery exists: keeps mail queued."""

    async def deliver(self, entry: QueueEntry, recipients: list[str]) -> list[RecipientResult]:
        return [
            RecipientResult(r, Outcome.DEFERRED, "4.4.0", "remote delivery is not available yet")
            for r in recipients
        ]
