"""Routing: which delivery agent takes a final recipient address.

Local domains go to the local (Maildir) agent, everything else to the remote
agent. The scheduler calls the router once per recipient, on the event loop, so
the directory's answer for a domain is reused until the directory changes
(`storage/lookup_cache.py`), as the RCPT policy does.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from postoffice.delivery.base import DeliveryAgent
from postoffice.storage.base import Directory
from postoffice.storage.lookup_cache import LookupCache


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
        self._local_domains: LookupCache[str, bool] = LookupCache(
            directory.version, monotonic=monotonic
        )

    def __call__(self, address: str) -> DeliveryAgent:
        domain = address.rpartition("@")[2]
        local = self._local_domains.get(domain, self.directory.is_local_domain)
        return self.local if local else self.remote
