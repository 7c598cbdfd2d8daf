"""Routing: which delivery agent takes a final recipient address.

Local domains go to the local (Maildir) agent, everything else to the remote
agent. The scheduler calls the router once per recipient, on the event loop, so
the directory's answer for a domain is reused for `CACHE_TTL` seconds, as the
RCPT policy does: a domain added or removed with the CLI is routed the new way
at most that much later.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from postoffice.delivery.base import DeliveryAgent
from postoffice.policy.recipients import CACHE_SIZE, CACHE_TTL
from postoffice.storage.base import Directory


class Router:
    """Maps an address to the agent that delivers it."""

    def __init__(
        self,
        directory: Directory,
        local: DeliveryAgent,
        remote: DeliveryAgent,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.directory = directory
        self.local = local
        self.remote = remote
        self._monotonic = monotonic
        self._local_domains: dict[str, tuple[float, bool]] = {}  # domain -> (expiry, local)

    def __call__(self, address: str) -> DeliveryAgent:
        domain = address.rpartition("@")[2]
        now = self._monotonic()
        cached = self._local_domains.get(domain)
        if cached is None or cached[0] <= now:
            if len(self._local_domains) >= CACHE_SIZE:
                self._local_domains.clear()
            cached = (now + CACHE_TTL, self.directory.is_local_domain(domain))
            self._local_domains[domain] = cached
        return self.local if cached[1] else self.remote
