"""Routing: which delivery agent takes a final recipient address.

Local domains go to the local (Maildir) agent, everything else to the remote
agent. The scheduler calls the router once per recipient.
"""

from __future__ import annotations

from postoffice.delivery.base import DeliveryAgent
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
