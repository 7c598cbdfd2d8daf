"""Who may send to whom: the RCPT TO decision (local user, relay, or refusal).

Mail for a local domain is accepted only for addresses the directory
resolves (users, aliases, catch-alls, postmaster); mail for any other domain
only from clients allowed to relay. Addresses are taken literally: `%`, `!`,
quoted `@` and source routes never turn into routing (the relay tricks), since
the parser already gave us one local part and one domain.

The directory's answer for an address (is its domain local, does it resolve)
is reused until the directory changes (`storage/lookup_cache.py`), the good and
the bad alike: a user added or removed with the CLI is seen at the next RCPT.

Standards: RFC 5321 §3.6 (relaying), §4.5.1 (postmaster), RFC 3463 codes.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

from postoffice.mail.address import Address
from postoffice.policy.limits import parse_ip
from postoffice.protocols.smtp import Reply
from postoffice.storage.base import Directory
from postoffice.storage.lookup_cache import CACHE_SIZE, LookupCache

ACCEPT_LOCAL = Reply(250, "2.1.5", "Ok")
ACCEPT_RELAY = Reply(250, "2.1.5", "Ok, will relay")
NO_SUCH_USER = Reply(550, "5.1.1", "No such user here")
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
NO_DOMAIN = Reply(501, "5.1.3", "Recipient address needs a domain")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Verdict:
    reply: Reply
    accepted: bool


class RecipientPolicy:
    """Decides each RCPT TO from the directory and the relay networks."""

    def __init__(
        self,
        directory: Directory,
        relay_networks: list[str],
        default_domain: str,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.directory = directory
        # address -> None: not a local domain, else whether the address resolves
        self._cache: LookupCache[str, bool | None] = LookupCache(
            directory.version, monotonic=monotonic
        )
        self._relay: dict[str, bool] = {}  # client address -> in relay_networks
        self.relay_networks: list[Network] = [
            ipaddress.ip_network(n, strict=False) for n in relay_networks
        ]
        self.default_domain = default_domain

    def may_relay(self, client_ip: str, authenticated: bool = False) -> bool:
        if authenticated:
            return True
        relay = self._relay.get(client_ip)
        if relay is None:  # asked for each message: parsing costs more than remembering
            ip = parse_ip(client_ip)
            relay = ip is not None and any(ip in net for net in self.relay_networks)
            if len(self._relay) >= CACHE_SIZE:
                self._relay.clear()
            self._relay[client_ip] = relay
        return relay

    def normalize(self, rcpt: Address) -> Address:
        """`<Postmaster>` without a domain means our postmaster (RFC 5321 §4.1.1.3)."""
        if not rcpt.domain and rcpt.local.lower() == "postmaster":
            return Address("postmaster", self.default_domain)
        return rcpt

    def check(self, rcpt: Address, client_ip: str, authenticated: bool = False) -> Verdict:
        if not rcpt.domain:
            return Verdict(NO_DOMAIN, False)
        match self.local_recipient(str(rcpt), rcpt.domain):
            case True:
                return Verdict(ACCEPT_LOCAL, True)
            case False:
                return Verdict(NO_SUCH_USER, False)
        if self.may_relay(client_ip, authenticated):
            return Verdict(ACCEPT_RELAY, True)
        return Verdict(RELAY_DENIED, False)

    def local_recipient(self, address: str, domain: str) -> bool | None:
        """None if `domain` is not local, else whether `address` resolves; cached."""
        return self._cache.get(
            address,
            lambda _: (
                self.directory.resolve(address) is not None
                if self.directory.is_local_domain(domain)
                else None
            ),
        )
