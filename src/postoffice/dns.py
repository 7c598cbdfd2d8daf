"""DNS lookups for mail: the `Resolver` interface and its dnspython implementation.

Callers (relay, later SPF/DKIM/DMARC) see plain Python values and four
exceptions that say what the failure means for mail, never dnspython types:
`NoSuchDomain` (NXDOMAIN: permanent), `NoRecords` (the name exists but has no
records of the asked type), `DnsTemporaryError` (SERVFAIL, timeout, refused,
network error: try again later), all under `DnsError`. `DnsPythonResolver`
asks exactly the configured nameservers (`addr:port`, so tests can run their
own server on a high port) or, without any, the system's; names are always
absolute, so no search list applies. dnspython itself follows CNAME chains in
an answer and retries over TCP when a UDP answer comes back truncated. There
is no cache: every lookup asks the nameserver, so data changed there is seen
at once.

Standards: RFC 1035 §4.2 (UDP, TCP on truncation), RFC 1034 §3.6.2 (CNAME),
RFC 2308 §2 (NXDOMAIN vs NODATA), RFC 5321 §5.1 (A and AAAA for mail),
RFC 2782 (SRV), RFC 7208 §3.3 (TXT strings joined)
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rcode
import dns.resolver
import dns.reversename
from dns.resolver import Answer

from postoffice.config import parse_hostport

_TRY_TIMEOUT = 2.0  # seconds, at most, for one try at one nameserver


class DnsError(Exception):
    """A lookup failed; `str(error)` reads "name: reason"."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


class NoSuchDomain(DnsError):
    """NXDOMAIN: the name does not exist (permanent)."""


class NoRecords(DnsError):
    """NOERROR/NODATA: the name exists but has no records of the asked type."""


class DnsTemporaryError(DnsError):
    """SERVFAIL, timeout, refusal or network error: retry later."""


class Resolver(Protocol):
    async def mx(self, domain: str) -> list[tuple[int, str]]:
        """(preference, host) pairs in answer order; host "." is a null MX."""
        ...

    async def addresses(self, host: str) -> list[str]:
        """The IPv4 then the IPv6 addresses of `host`, CNAMEs followed."""
        ...

    async def txt(self, name: str) -> list[str]:
        """One string per TXT record, its character-strings joined."""
        ...

    async def srv(self, name: str) -> list[tuple[int, int, int, str]]:
        """(priority, weight, port, target) tuples in answer order."""
        ...

    async def ptr(self, ip: str) -> list[str]:
        """The names of `ip` (raises ValueError when `ip` is not an address)."""
        ...


def _host(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


class DnsPythonResolver:
    """`Resolver` on dnspython's asyncio stub resolver."""

    def __init__(self, nameservers: list[str] | None = None, timeout: float = 5.0) -> None:
        if nameservers:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(*parse_hostport(text)) for text in nameservers
            ]
        else:
            try:
                self._resolver = dns.asyncresolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration as exc:
                raise DnsError("system resolver", f"no usable configuration: {exc}") from None
        # The whole lookup gets `timeout`; each try a share of it, so that a silent
        # nameserver leaves time to ask the next one.
        self._resolver.lifetime = timeout
        self._resolver.timeout = min(_TRY_TIMEOUT, timeout / len(self._resolver.nameservers))

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        answer = await self._query(domain, "MX")
        return [(rdata.preference, _host(rdata.exchange)) for rdata in answer]

    async def addresses(self, host: str) -> list[str]:
        # RFC 5321 §5.1: both families are looked up; either one alone is enough.
        outcomes = await asyncio.gather(
            self._query(host, "A"), self._query(host, "AAAA"), return_exceptions=True
        )
        found = [rdata.address for o in outcomes if isinstance(o, Answer) for rdata in o]
        if found:
            return found
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        for error in errors:
            if not isinstance(error, DnsError):
                raise error
        # A temporary failure outranks NXDOMAIN outranks NODATA: a retry may yet find addresses.
        for kind in (DnsTemporaryError, NoSuchDomain):
            for error in errors:
                if isinstance(error, kind):
                    raise error
        raise NoRecords(host, "no A or AAAA records")

    async def txt(self, name: str) -> list[str]:
        answer = await self._query(name, "TXT")
        # RFC 7208 §3.3: a record's character-strings are joined without spaces.
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]

    async def srv(self, name: str) -> list[tuple[int, int, int, str]]:
        answer = await self._query(name, "SRV")
        return [(r.priority, r.weight, r.port, _host(r.target)) for r in answer]

    async def ptr(self, ip: str) -> list[str]:
        name = dns.reversename.from_address(str(ipaddress.ip_address(ip)))
        answer = await self._query(name.to_text(), "PTR")
        return [_host(rdata.target) for rdata in answer]

    async def _query(self, name: str, rdtype: str) -> Answer:
        """One lookup, with dnspython's exceptions turned into ours."""
        try:
            qname = dns.name.from_text(name)
        except dns.exception.SyntaxError as exc:
            raise NoSuchDomain(name, f"not a valid domain name ({exc})") from None
        try:
            return await self._resolver.resolve(qname, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise NoSuchDomain(name, "domain does not exist (NXDOMAIN)") from None
        except dns.resolver.NoAnswer:
            raise NoRecords(name, f"no {rdtype} records") from None
        except dns.resolver.NoNameservers as exc:
            raise DnsTemporaryError(name, _server_failures(exc)) from None
        except dns.exception.Timeout:
            raise DnsTemporaryError(name, f"{rdtype} lookup timed out") from None
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsTemporaryError(name, f"{rdtype} lookup failed: {exc}") from None


def _server_failures(exc: dns.resolver.NoNameservers) -> str:
    """The reason text, e.g. "DNS server failure (SERVFAIL)", from dnspython's per-server errors."""
    # Each error is (server, tcp, port, exception or rcode text, response).
    reasons = sorted({str(error[3]) for error in exc.kwargs.get("errors") or []})
    return f"DNS server failure ({', '.join(reasons) or 'no nameserver answered'})"
