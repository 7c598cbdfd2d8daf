"""SPF: RFC 7208 check_host() over our asynchronous `dns.Resolver`.

`check` evaluates the MAIL FROM identity, or, for the null reverse-path, the
HELO identity as `postmaster@<helo>`; called with an empty `mail_from` it is
the HELO check. The record is parsed whole before any mechanism runs, so a
syntax error anywhere gives permerror. Mechanisms are tried in order; the
first match gives its qualifier's result, else `redirect=`, else neutral.
Limits are enforced as the RFC sets them: at most 10 DNS-querying terms
(include, a, mx, ptr, exists, redirect) per check, at most 2 void lookups
(NXDOMAIN or no answer), at most 10 MX hosts, 10 PTR names, and a time limit
on the whole. Every DNS failure that is not a plain "no such name / no such
record" ends the check with temperror: a timeout never becomes "fail". The
`exp=` explanation is checked for syntax only and otherwise ignored: replies
are built from the DMARC verdict, not from sender-supplied text. Our own
implementation instead of pyspf, because pyspf's resolver is module-global
and synchronous, while ours is asynchronous and aimed at configured servers.

Standards: RFC 7208 §2.3-2.4 (identities), §4 (check_host), §4.3 (initial
processing), §4.5 (record selection), §4.6 (syntax, evaluation, limits),
§5 (mechanisms), §5.2 (include results), §6 (modifiers), §7 (macros),
RFC 7505 §4.1 (null MX), RFC 8601 §2.7.2 (smtp.mailfrom, smtp.helo).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from postoffice.dns import DnsTemporaryError, NoRecords, NoSuchDomain, Resolver
from postoffice.policy.authres import Resinfo, Result

MAX_LOOKUPS = 10  # §4.6.4: DNS-querying terms per check_host() evaluation
MAX_VOID_LOOKUPS = 2  # §4.6.4
MAX_MX_HOSTS = 10  # §4.6.4: per "mx" mechanism
MAX_PTR_NAMES = 10  # §4.6.4: per "ptr" mechanism or "p" macro
TIME_LIMIT = 20.0  # seconds; §4.6.4 asks for at least 20

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_QUALIFIERS = {
    "+": Result.PASS,
    "": Result.PASS,
    "-": Result.FAIL,
    "~": Result.SOFTFAIL,
    "?": Result.NEUTRAL,
}
_TERM = re.compile(r"([-+~?]?)([A-Za-z][A-Za-z0-9_.-]*)(.*)", re.DOTALL)
_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9_.-]*)=(.*)", re.DOTALL)
# §5.6: ip4-cidr-length and ip6-cidr-length, digits without leading zeros.
_DUAL_CIDR = re.compile(
    r"(?::(?P<spec>.+?))?(?:/(?P<c4>0|[1-9][0-9]?))?(?://(?P<c6>0|[1-9][0-9]{0,2}))?"
)
_IP_CIDR = re.compile(r":(?P<addr>[^/]+)(?:/(?P<len>0|[1-9][0-9]{0,2}))?")
# §7.1: macro-expand / macro-literal; c, r and t are allowed in "exp" only.
_MACRO = re.compile(r"%\{([A-Za-z])([0-9]*)([rR]?)([.\-+,/_=]*)\}|%%|%_|%-|[\x21-\x24\x26-\x7e]")
_EXP_ONLY = frozenset("crt")
_LETTERS = frozenset("slodiphv") | _EXP_ONLY
# §7.1 domain-end: "." toplabel ["."] / macro-expand.
_DOMAIN_END = re.compile(
    r"(?:\.(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])\.?"
    r"|%\{[^}]*\}|%%|%_|%-)\Z",
)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class SpfResult:
    """The result for one identity; `domain` is the domain SPF authenticated if it passed."""

    result: Result
    identity: str  # "mailfrom" or "helo"
    sender: str  # the <sender> checked: the MAIL FROM address, or postmaster@<helo>
    domain: str  # the domain of `sender`, the one DMARC aligns with
    reason: str = ""

    def resinfo(self) -> Resinfo:
        # RFC 8601 §2.7.2: smtp.mailfrom names the reverse-path, smtp.helo the HELO name.
        if self.identity == "mailfrom":
            prop = ("smtp.mailfrom", self.sender)
        else:
            prop = ("smtp.helo", self.domain)
        return Resinfo("spf", self.result, (prop,), self.reason)


class _Stop(Exception):
    """check_host() ends here with `result` (temperror or permerror)."""

    def __init__(self, result: Result, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Mechanism:
    qualifier: Result
    name: str  # lower case
    spec: str | None = None  # domain-spec, unexpanded
    cidr4: int = 32
    cidr6: int = 128
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None  # ip4 / ip6
    text: str = ""


@dataclass(frozen=True, slots=True)
class _Record:
    mechanisms: tuple[_Mechanism, ...]
    redirect: str | None


async def check(
    resolver: Resolver, ip: str, mail_from: str, helo: str, *, time_limit: float = TIME_LIMIT
) -> SpfResult:
    """check_host() for the MAIL FROM identity, or for HELO when `mail_from` is empty (§2.4)."""
    helo = helo.strip().rstrip(".")
    if mail_from:
        local, _, domain = mail_from.rpartition("@")
        identity = "mailfrom"
    else:
        local, domain, identity = "postmaster", helo, "helo"
    # §4.3: a sender without a local part is taken as postmaster.
    sender = f"{local or 'postmaster'}@{domain}"
    domain = domain.lower().rstrip(".")

    def result(value: Result, reason: str = "") -> SpfResult:
        return SpfResult(value, identity, sender, domain, reason)

    try:
        address = _client_ip(ip)
    except ValueError:
        return result(Result.NONE, f"client address {ip!r} is not an IP address")
    if not _valid_domain(domain):
        return result(Result.NONE, f"{domain!r} is not a domain name to check")  # §4.3
    checker = _Checker(resolver, address, sender, helo)
    try:
        async with asyncio.timeout(time_limit):
            value, reason = await checker.check_host(domain)
    except _Stop as stop:
        return result(stop.result, stop.reason)
    except TimeoutError:
        return result(Result.TEMPERROR, f"no verdict within {time_limit:g} seconds")
    return result(value, reason)


def expand_macros(
    text: str,
    *,
    sender: str,
    domain: str,
    ip: IPAddress,
    helo: str,
    validated_name: str = "unknown",
) -> str:
    """§7.3: the macro-string `text` with its macros expanded (raises ValueError if malformed)."""
    local, _, sender_domain = sender.rpartition("@")
    if ip.version == 4:
        dotted, version = str(ip), "in-addr"
    else:
        dotted, version = ".".join(ip.exploded.replace(":", "")), "ip6"  # §7.3: nibbles
    values = {
        "s": sender,
        "l": local,
        "o": sender_domain,
        "d": domain,
        "i": dotted,
        "p": validated_name,
        "v": version,
        "h": helo,
    }
    out: list[str] = []
    for token in _macro_tokens(text, exp=False):
        if token.group(1) is None:
            out.append({"%%": "%", "%_": " ", "%-": "%20"}.get(token.group(0), token.group(0)))
            continue
        letter, digits, reverse, delimiters = token.groups()
        parts = re.split(f"[{re.escape(delimiters or '.')}]", values[letter.lower()])
        if reverse:
            parts.reverse()
        if digits:
            parts = parts[-int(digits) :]
        value = ".".join(parts)
        # §7.3: an upper-case macro letter means the value is URL-escaped.
        out.append(urllib.parse.quote(value, safe="") if letter.isupper() else value)
    return "".join(out)


def _macro_tokens(text: str, *, exp: bool) -> list[re.Match[str]]:
    """The tokens of a macro-string (§7.1); ValueError on a syntax error."""
    tokens: list[re.Match[str]] = []
    position = 0
    while position < len(text):
        token = _MACRO.match(text, position)
        if token is None:
            raise ValueError(f"bad macro syntax at {text[position:]!r}")
        letter, digits = token.group(1), token.group(2)
        if letter is not None:
            lower = letter.lower()
            if lower not in _LETTERS or (lower in _EXP_ONLY and not exp):
                raise ValueError(f"unknown macro letter {letter!r}")
            if digits and int(digits) == 0:  # §7.1: the number of parts must be nonzero
                raise ValueError("a macro transformer of zero parts")
        tokens.append(token)
        position = token.end()
    return tokens


def _check_domain_spec(spec: str, *, exp: bool = False) -> None:
    """Syntax of a domain-spec: macro-string ending in a toplabel or a macro (§7.1)."""
    _macro_tokens(spec, exp=exp)
    if _DOMAIN_END.search(spec) is None:
        raise ValueError(f"{spec!r} does not end in a top-level label or a macro")


def _parse(record: str) -> _Record:
    """The record's terms (§4.6.1, §5, §6); _Stop(permerror) on any syntax error."""
    mechanisms: list[_Mechanism] = []
    modifiers: dict[str, str] = {}
    for term in record.split(" ")[1:]:
        if not term:
            continue
        try:
            modifier = _MODIFIER.fullmatch(term)
            if modifier is not None:
                name, value = modifier.group(1).lower(), modifier.group(2)
                if name in modifiers and name in ("redirect", "exp"):
                    raise ValueError(f"{name}= appears twice")  # §6
                if name in ("redirect", "exp"):
                    _check_domain_spec(value, exp=name == "exp")
                    modifiers[name] = value
                else:
                    _macro_tokens(value, exp=False)  # §6: unknown modifiers are ignored
                continue
            mechanisms.append(_mechanism(term))
        except ValueError as exc:
            raise _Stop(Result.PERMERROR, f"invalid term {term!r}: {exc}") from None
    return _Record(tuple(mechanisms), modifiers.get("redirect"))


def _mechanism(term: str) -> _Mechanism:
    match = _TERM.fullmatch(term)
    if match is None:
        raise ValueError("not a mechanism")
    qualifier, name, rest = _QUALIFIERS[match.group(1)], match.group(2).lower(), match.group(3)
    if name == "all":
        if rest:
            raise ValueError("all takes no argument")
        return _Mechanism(qualifier, name, text=term)
    if name in ("include", "exists"):
        if not rest.startswith(":"):
            raise ValueError(f"{name} needs a domain")
        _check_domain_spec(rest[1:])
        return _Mechanism(qualifier, name, rest[1:], text=term)
    if name in ("a", "mx", "ptr"):
        cidr = _DUAL_CIDR.fullmatch(rest)
        if cidr is None or (name == "ptr" and (cidr["c4"] or cidr["c6"])):
            raise ValueError("bad argument")
        if cidr["spec"] is not None:
            _check_domain_spec(cidr["spec"])
        c4, c6 = int(cidr["c4"] or 32), int(cidr["c6"] or 128)
        if c4 > 32 or c6 > 128:
            raise ValueError("prefix length too long")
        return _Mechanism(qualifier, name, cidr["spec"], c4, c6, text=term)
    if name in ("ip4", "ip6"):
        found = _IP_CIDR.fullmatch(rest)
        if found is None:
            raise ValueError("bad address")
        length = found["len"] or ("32" if name == "ip4" else "128")
        address = ipaddress.ip_address(found["addr"])  # ValueError when malformed
        if address.version != int(name[2]):
            raise ValueError(f"not an IPv{name[2]} address")
        network = ipaddress.ip_network(f"{address}/{length}", strict=False)
        return _Mechanism(qualifier, name, network=network, text=term)
    raise ValueError(f"unknown mechanism {name!r}")


class _Checker:
    """One check_host() evaluation with its shared lookup and void-lookup counters."""

    def __init__(self, resolver: Resolver, ip: IPAddress, sender: str, helo: str) -> None:
        self.resolver = resolver
        self.ip = ip
        self.sender = sender
        self.helo = helo
        self.lookups = 0
        self.voids = 0
        self._handlers: dict[str, Callable[[_Mechanism, str], Awaitable[bool]]] = {
            "all": self._all,
            "include": self._include,
            "a": self._a,
            "mx": self._mx,
            "ptr": self._ptr,
            "ip4": self._ip,
            "ip6": self._ip,
            "exists": self._exists,
        }

    async def check_host(self, domain: str) -> tuple[Result, str]:
        """§4: the result for `domain`, and which term decided it."""
        record = await self._record(domain)
        if record is None:
            return Result.NONE, f"no SPF record at {domain}"
        parsed = _parse(record)
        for mechanism in parsed.mechanisms:  # §4.6.2: in order, the first match decides
            if await self._handlers[mechanism.name](mechanism, domain):
                return mechanism.qualifier, f"{domain}: matched {mechanism.text}"
        if parsed.redirect is not None:  # §6.1
            self._count_lookup()
            target = await self._expand(parsed.redirect, domain)
            result, reason = await self.check_host(target)
            if result is Result.NONE:
                raise _Stop(Result.PERMERROR, f"redirect to {target}: no SPF record there")
            return result, reason
        return Result.NEUTRAL, f"{domain}: no mechanism matched"  # §4.7

    async def _record(self, domain: str) -> str | None:
        """§4.4-4.5: the one "v=spf1" TXT record of `domain`, or None."""
        if not _valid_domain(domain):
            return None
        try:
            texts = await self.resolver.txt(domain)
        except (NoSuchDomain, NoRecords):
            return None
        except DnsTemporaryError as exc:
            raise _Stop(Result.TEMPERROR, str(exc)) from None
        records = [t for t in texts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]
        if len(records) > 1:
            raise _Stop(Result.PERMERROR, f"{domain} has {len(records)} SPF records")
        return records[0] if records else None

    # --- mechanisms (§5) -------------------------------------------------------------------

    async def _all(self, mechanism: _Mechanism, domain: str) -> bool:
        return True

    async def _include(self, mechanism: _Mechanism, domain: str) -> bool:
        self._count_lookup()
        target = await self._expand(mechanism.spec or "", domain)
        result, _ = await self.check_host(target)
        # §5.2: pass matches; fail, softfail, neutral do not; none is a permerror.
        if result is Result.NONE:
            raise _Stop(Result.PERMERROR, f"include:{target}: no SPF record there")
        return result is Result.PASS

    async def _a(self, mechanism: _Mechanism, domain: str) -> bool:
        self._count_lookup()
        target = await self._target(mechanism, domain)
        return self._in_any(await self._addresses(target, self.ip.version), mechanism)

    async def _mx(self, mechanism: _Mechanism, domain: str) -> bool:
        self._count_lookup()
        target = await self._target(mechanism, domain)
        hosts = await self._lookup(self.resolver.mx, target)
        hosts = [host for _, host in hosts if host not in (".", "")]  # RFC 7505: null MX
        if len(hosts) > MAX_MX_HOSTS:
            raise _Stop(Result.PERMERROR, f"{target} has more than {MAX_MX_HOSTS} MX hosts")
        for host in hosts:
            addresses = await self._lookup(self.resolver.addresses, host, void=False)
            if self._in_any(_of_version(addresses, self.ip.version), mechanism):
                return True
        return False

    async def _ptr(self, mechanism: _Mechanism, domain: str) -> bool:
        self._count_lookup()
        target = (await self._target(mechanism, domain)).lower()
        names = await self._validated_names()
        return any(name == target or name.endswith("." + target) for name in names)

    async def _ip(self, mechanism: _Mechanism, domain: str) -> bool:
        return mechanism.network is not None and self.ip in mechanism.network

    async def _exists(self, mechanism: _Mechanism, domain: str) -> bool:
        self._count_lookup()
        target = await self._expand(mechanism.spec or "", domain)
        return bool(await self._addresses(target, 4))  # §5.7: always an A lookup

    # --- helpers ---------------------------------------------------------------------------

    def _count_lookup(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:  # §4.6.4
            raise _Stop(Result.PERMERROR, f"more than {MAX_LOOKUPS} DNS lookups")

    async def _lookup(
        self, query: Callable[[str], Awaitable[list[_T]]], name: str, *, void: bool = True
    ) -> list[_T]:
        """Answers to `query(name)`; none counts as a void lookup, a DNS failure is temperror."""
        if not _valid_domain(name):
            return []
        try:
            return await query(name)
        except (NoSuchDomain, NoRecords):
            if void:
                self.voids += 1
                if self.voids > MAX_VOID_LOOKUPS:  # §4.6.4
                    reason = f"more than {MAX_VOID_LOOKUPS} void lookups"
                    raise _Stop(Result.PERMERROR, reason) from None
            return []
        except DnsTemporaryError as exc:
            raise _Stop(Result.TEMPERROR, str(exc)) from None

    async def _addresses(self, name: str, version: int) -> list[IPAddress]:
        return _of_version(await self._lookup(self.resolver.addresses, name), version)

    def _in_any(self, addresses: list[IPAddress], mechanism: _Mechanism) -> bool:
        length = mechanism.cidr4 if self.ip.version == 4 else mechanism.cidr6
        return any(
            self.ip in ipaddress.ip_network(f"{address}/{length}", strict=False)
            for address in addresses
        )

    async def _target(self, mechanism: _Mechanism, domain: str) -> str:
        """The expanded domain-spec, or the current domain when the term has none."""
        return domain if mechanism.spec is None else await self._expand(mechanism.spec, domain)

    async def _expand(self, spec: str, domain: str) -> str:
        """§7.3: expand, then drop labels from the left until it fits in 253 octets."""
        needs_p = re.search(r"%\{p", spec, re.IGNORECASE) is not None
        names = await self._validated_names() if needs_p else []
        # §7.3 "p": a validated name in <domain> if any, else any validated name.
        preferred = [n for n in names if n == domain or n.endswith("." + domain)] + names
        expanded = expand_macros(
            spec,
            sender=self.sender,
            domain=domain,
            ip=self.ip,
            helo=self.helo,
            validated_name=preferred[0] if preferred else "unknown",
        ).rstrip(".")
        while len(expanded) > 253 and "." in expanded:
            expanded = expanded.split(".", 1)[1]
        return expanded

    async def _validated_names(self) -> list[str]:
        """§5.5: names of the client whose addresses lead back to it; errors just skip."""
        try:
            names = await self.resolver.ptr(str(self.ip))
        except (NoSuchDomain, NoRecords, DnsTemporaryError):
            return []  # §5.5: a failed PTR lookup makes the mechanism not match
        validated: list[str] = []
        for name in names[:MAX_PTR_NAMES]:
            try:
                addresses = await self.resolver.addresses(name)
            except (NoSuchDomain, NoRecords, DnsTemporaryError):
                continue  # §5.5: that name is skipped
            if self.ip in _of_version(addresses, self.ip.version):
                validated.append(name.lower().rstrip("."))
        return validated


def _client_ip(text: str) -> IPAddress:
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # an IPv4 client seen through an IPv6 socket
    return address


def _of_version(addresses: list[str], version: int) -> list[IPAddress]:
    found: list[IPAddress] = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        if address.version == version:
            found.append(address)
    return found


def _valid_domain(name: str) -> bool:
    """§4.3: a multi-label name whose labels and whole fit DNS limits (no address literal)."""
    labels = name.rstrip(".").split(".")
    return (
        0 < len(name) <= 253
        and re.fullmatch(r"[\x21-\x7e]+", name) is not None
        and "[" not in name
        and len(labels) > 1
        and not labels[-1].isdigit()
        and all(0 < len(label) <= 63 for label in labels)
    )
