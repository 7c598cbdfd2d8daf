"""Finding a domain's submission, IMAP and POP3 servers the way mail clients do.

RFC 6186 publishes them as SRV records: `_submissions._tcp` (implicit TLS, RFC 8314 §5.1
prefers it) and `_submission._tcp` (STARTTLS), `_imaps._tcp` and `_imap._tcp`,
`_pop3s._tcp` and `_pop3._tcp`. Records
are taken in priority order, the higher weight first within one priority (a client that
tries them one after another needs no random draw), and a target of "." says the service
is not offered (RFC 6186 §4, RFC 2782). Without any SRV record for a protocol, the guesses
are the domain's MX hosts and then `mail.<domain>`, each on the standard ports, implicit
TLS first. The caller tries the candidates in order and keeps the first that lets it log in.

Standards: RFC 6186 §3-§4, RFC 8314 §5.1, RFC 2782
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from postoffice.client.network import Endpoint, Security
from postoffice.dns import DnsError, Resolver

SUBMISSION_SERVICES = (("_submissions._tcp", Security.TLS), ("_submission._tcp", Security.STARTTLS))
IMAP_SERVICES = (("_imaps._tcp", Security.TLS), ("_imap._tcp", Security.STARTTLS))
POP3_SERVICES = (("_pop3s._tcp", Security.TLS), ("_pop3._tcp", Security.STARTTLS))
SUBMISSION_PORTS = ((465, Security.TLS), (587, Security.STARTTLS))  # RFC 8314 §3.3, RFC 6409
IMAP_PORTS = ((993, Security.TLS), (143, Security.STARTTLS))  # RFC 8314 §3.3, RFC 9051
POP3_PORTS = ((995, Security.TLS), (110, Security.STARTTLS))  # RFC 8314 §3.3, RFC 1939


@dataclass(frozen=True, slots=True)
class Candidates:
    """Servers to try, best first."""

    submission: list[Endpoint]
    pop3: list[Endpoint]
    imap: list[Endpoint]


async def _srv(resolver: Resolver, name: str, security: Security) -> list[Endpoint]:
    try:
        records = await resolver.srv(name)
    except DnsError:
        return []
    ordered = sorted(records, key=lambda record: (record[0], -record[1]))
    return [Endpoint(target, port, security) for _, _, port, target in ordered if target != "."]


async def _from_srv(
    resolver: Resolver, domain: str, services: tuple[tuple[str, Security], ...]
) -> list[Endpoint]:
    found = await asyncio.gather(
        *(_srv(resolver, f"{service}.{domain}", security) for service, security in services)
    )
    return [endpoint for endpoints in found for endpoint in endpoints]


async def _guessed_hosts(resolver: Resolver, domain: str) -> list[str]:
    try:
        mx = await resolver.mx(domain)
    except DnsError:
        mx = []
    hosts = [host for _, host in sorted(mx) if host not in ("", ".")]
    return list(dict.fromkeys([*hosts, f"mail.{domain}"]))


def guesses(hosts: list[str], ports: tuple[tuple[int, Security], ...]) -> list[Endpoint]:
    """Each host on each standard port, in that order."""
    return [Endpoint(host, port, security) for host in hosts for port, security in ports]


async def discover(resolver: Resolver, domain: str) -> Candidates:
    """The candidates for `domain`: its SRV records, else guesses from MX and `mail.`."""
    submission, pop3, imap = await asyncio.gather(
        _from_srv(resolver, domain, SUBMISSION_SERVICES),
        _from_srv(resolver, domain, POP3_SERVICES),
        _from_srv(resolver, domain, IMAP_SERVICES),
    )
    if not (submission and pop3 and imap):
        hosts = await _guessed_hosts(resolver, domain)
        submission = submission or guesses(hosts, SUBMISSION_PORTS)
        pop3 = pop3 or guesses(hosts, POP3_PORTS)
        imap = imap or guesses(hosts, IMAP_PORTS)
    return Candidates(submission, pop3, imap)
