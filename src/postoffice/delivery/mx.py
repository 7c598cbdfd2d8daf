"""Where relay sends a domain's mail: its MX hosts, in order, with their addresses.

`resolve_destination` asks the `Resolver` for the domain's MX records, orders
them by preference with a random order among equal preferences, and looks up
every host's A and AAAA addresses concurrently. The result is the list the
SMTP client walks (and the trace shows): hosts in order, each with all its
addresses. Failures become one `DestinationError` that says whether to bounce
or retry, with an RFC 3463 status and a sentence fit for a DSN: NXDOMAIN and
null MX are permanent, any temporary DNS failure that leaves no usable host
is temporary, and a domain whose hosts all fail permanently is permanent.

Standards: RFC 5321 §5.1 (MX order, implicit MX, all addresses) and §4.1.3
(address literals), RFC 7505 §3-4 (null MX), RFC 3463 (X.1.2, X.1.10, X.4.3,
X.4.4)
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from dataclasses import dataclass

from postoffice.dns import DnsError, NoRecords, NoSuchDomain, Resolver

NULL_MX = "."  # RFC 7505 §3: the exchange of a null MX is the root


@dataclass(frozen=True, slots=True)
class MxHost:
    """One host to try: its name, its MX preference and every address it has."""

    name: str
    preference: int
    addresses: list[str]


class DestinationError(Exception):
    """No host to send to: permanent (bounce) or not (retry later)."""

    def __init__(self, permanent: bool, status: str, detail: str) -> None:
        super().__init__(f"{status} {detail}")
        self.permanent = permanent
        self.status = status  # RFC 3463 enhanced status code, e.g. "5.1.10"
        self.detail = detail  # e.g. "b.test: domain does not exist (NXDOMAIN)"


async def resolve_destination(
    resolver: Resolver, domain: str, *, rng: random.Random | None = None
) -> list[MxHost]:
    """The hosts to try for `domain`, in order; raise DestinationError when there are none."""
    if domain.startswith("["):
        return [_address_literal(domain)]
    try:
        records = await resolver.mx(domain)
    except NoRecords:
        records = [(0, domain)]  # RFC 5321 §5.1: no MX, so the domain itself is the host
    except NoSuchDomain as exc:
        raise DestinationError(True, "5.1.2", str(exc)) from None
    except DnsError as exc:
        raise DestinationError(False, "4.4.3", str(exc)) from None
    if all(host == NULL_MX for _, host in records):
        # RFC 7505 §4.1: a null MX says the domain accepts no mail; do not retry.
        raise DestinationError(True, "5.1.10", f"{domain}: domain accepts no mail (null MX)")
    # RFC 5321 §5.1: lowest preference first, equal preferences in random order.
    shuffle = rng if rng is not None else random.Random()
    ordered = sorted(
        ((pref, host) for pref, host in records if host != NULL_MX),
        key=lambda record: (record[0], shuffle.random()),
    )
    lookups = await asyncio.gather(*(_addresses(resolver, host) for _, host in ordered))
    hosts = [
        MxHost(host, pref, found)
        for (pref, host), found in zip(ordered, lookups, strict=True)
        if isinstance(found, list)
    ]
    if hosts:
        return hosts
    errors = [error for error in lookups if isinstance(error, DnsError)]
    reasons = "; ".join(str(error) for error in errors)
    if not all(isinstance(error, (NoSuchDomain, NoRecords)) for error in errors):
        # A host that could not be looked up now might be usable later.
        raise DestinationError(False, "4.4.3", f"{domain}: no mail host resolvable ({reasons})")
    # RFC 3463 X.4.4: no next hop can be determined from DNS.
    raise DestinationError(True, "5.4.4", f"{domain}: no usable mail host ({reasons})")


async def _addresses(resolver: Resolver, host: str) -> list[str] | DnsError:
    """Every address of `host` (RFC 5321 §5.1: all are tried), or why there are none."""
    try:
        return await resolver.addresses(host)
    except DnsError as exc:
        return exc


def _address_literal(domain: str) -> MxHost:
    """RFC 5321 §4.1.3: "[192.0.2.1]" or "[IPv6:2001:db8::1]" names the host itself."""
    body = domain[1:-1] if domain.endswith("]") else ""
    try:
        if body[:5].lower() == "ipv6:":
            address = str(ipaddress.IPv6Address(body[5:]))
        else:
            address = str(ipaddress.IPv4Address(body))
    except ValueError:
        raise DestinationError(True, "5.1.2", f"{domain}: not a valid address literal") from None
    return MxHost(domain, 0, [address])
