"""The DNS records a mail domain needs, as zone-file lines, and a check of them against DNS.

`required_records` lists, for one domain served by this host: the MX, SPF for
the domain and for the host name (the HELO identity), one DKIM key record per
published selector and algorithm, DMARC with a report address, MTA-STS and
TLS-RPT, the SRV records by which mail clients find the submission, IMAP and
POP3 services, and, when the server's addresses are known, their A/AAAA and
PTR records. `zone_text` prints them ready to paste into a zone file (long
TXT values split into 255-octet strings); the MTA-STS policy file to serve
over HTTPS comes from `mta_sts_policy`. `check_records` asks DNS about each
record and says whether it is there and right: SPF is judged by evaluating it
for the server's addresses, DKIM by comparing the published key, DMARC,
MTA-STS and TLS-RPT by their syntax (their values are the owner's choice), the
rest by the exact data. A DNS failure makes a finding "unknown", never
"missing".

Standards: RFC 5321 §5.1 (MX), RFC 7208 §3 (SPF records), §2.3 (HELO),
RFC 6376 §3.6.2 (key records), RFC 8463 §4.2, RFC 7489 §6.1, §6.3 (DMARC),
RFC 8461 §3.1-3.2 (MTA-STS TXT record and policy), RFC 8460 §3 (TLS-RPT),
RFC 6186 §3-4, RFC 8314 §5.1 (SRV for mail clients; "." for not offered),
RFC 1035 §3.3.14 (TXT character-strings of at most 255 octets), RFC 1912 §2.1 (PTR).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

import dns.name
import dns.reversename

from postoffice.dns import DnsTemporaryError, NoRecords, NoSuchDomain, Resolver
from postoffice.policy import spf
from postoffice.policy.authres import Result
from postoffice.policy.dkim import KeySet
from postoffice.policy.dmarc import parse_record

TTL = 3600
STS_MAX_AGE = 604800  # one week (RFC 8461 §3.2 suggests weeks)
# (service, priority, port); port 0 with target "." says the service is not offered.
SERVICES = (
    ("_submissions._tcp", 0, 465),  # RFC 8314: implicit TLS, preferred
    ("_submission._tcp", 10, 587),  # RFC 6409 with STARTTLS
    ("_imaps._tcp", 0, 993),
    ("_imap._tcp", 0, 0),  # RFC 8314 §5.1: clients use _imaps
    ("_pop3s._tcp", 10, 995),  # IMAP first, POP3 second (RFC 6186 §3.4)
)


class Status(StrEnum):
    OK = "ok"
    MISSING = "missing"
    WRONG = "wrong"
    UNKNOWN = "unknown"  # DNS did not answer: try again


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record; `value` is the RDATA as text (TXT unquoted)."""

    kind: str  # mx, spf, dkim, dmarc, mta-sts, tls-rpt, srv, address, ptr
    name: str  # owner name, without the final dot
    rtype: str
    value: str
    comment: str = ""

    def zone_line(self) -> str:
        return f"{self.name}. {TTL} IN {self.rtype} {_rdata(self.rtype, self.value)}"


@dataclass(frozen=True, slots=True)
class Finding:
    record: Record
    status: Status
    detail: str = ""


def mta_sts_policy(hostname: str, mode: str) -> str:
    """RFC 8461 §3.2: the policy file for https://mta-sts.<domain>/.well-known/mta-sts.txt."""
    return f"version: STSv1\nmode: {mode}\nmx: {hostname}\nmax_age: {STS_MAX_AGE}\n"


def required_records(
    domain: str,
    *,
    hostname: str,
    addresses: list[str],
    key_sets: list[KeySet],
    rua: str,
    sts_mode: str,
) -> list[Record]:
    """Every record `domain` needs when `hostname` (at `addresses`) serves its mail."""
    domain, hostname = domain.lower().rstrip("."), hostname.lower().rstrip(".")
    ips = [ipaddress.ip_address(text) for text in addresses]
    mechanisms = [f"ip{ip.version}:{ip}" for ip in ips]
    records = [
        Record("mx", domain, "MX", f"10 {hostname}.", "mail for the domain goes to this server"),
        Record(
            "spf",
            domain,
            "TXT",
            " ".join(["v=spf1", "mx", *mechanisms, "-all"]),
            "SPF: only this server sends mail for the domain",
        ),
    ]
    if hostname != domain:
        records.append(
            Record("spf", hostname, "TXT", "v=spf1 a -all", "SPF for the HELO name (RFC 7208 §2.3)")
        )
    for key_set in key_sets:
        records += key_records(key_set)
    policy_id = hashlib.sha256(mta_sts_policy(hostname, sts_mode).encode()).hexdigest()[:20]
    records += [
        Record(
            "dmarc",
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=reject; rua=mailto:{rua}",
            "DMARC: refuse mail that fails SPF and DKIM alignment; reports to rua",
        ),
        Record(
            "mta-sts",
            f"_mta-sts.{domain}",
            "TXT",
            f"v=STSv1; id={policy_id}",
            "MTA-STS: the id changes whenever the policy file does",
        ),
        Record(
            "tls-rpt",
            f"_smtp._tls.{domain}",
            "TXT",
            f"v=TLSRPTv1; rua=mailto:{rua}",
            "TLS reporting (RFC 8460)",
        ),
    ]
    for service, priority, port in SERVICES:
        target = f"{hostname}." if port else "."
        weight = 1 if port else 0
        records.append(
            Record(
                "srv",
                f"{service}.{domain}",
                "SRV",
                f"{priority} {weight} {port} {target}",
                "client set-up discovery (RFC 6186)",
            )
        )
    for ip in ips:
        rtype = "A" if ip.version == 4 else "AAAA"
        records.append(Record("address", hostname, rtype, str(ip), "the server's address"))
        records.append(
            Record(
                "ptr",
                ip.reverse_pointer,
                "PTR",
                f"{hostname}.",
                "reverse DNS of the server (set by whoever owns the address block)",
            )
        )
    return records


def key_records(key_set: KeySet) -> list[Record]:
    """The TXT records that publish `key_set`, one per algorithm (RFC 6376 §3.6.2.1)."""
    return [
        Record(
            "dkim",
            f"{key.selector}._domainkey.{key_set.domain}",
            "TXT",
            key.dns_record(),
            f"DKIM {key.algorithm} key of selector {key_set.selector}",
        )
        for key in key_set.keys
    ]


def zone_text(records: list[Record]) -> str:
    """Zone-file lines, each preceded by its comment."""
    lines: list[str] = []
    for record in records:
        if record.comment:
            lines.append(f"; {record.comment}")
        lines.append(record.zone_line())
    return "\n".join(lines) + "\n"


async def check_records(
    resolver: Resolver, records: list[Record], *, hostname: str, addresses: list[str]
) -> list[Finding]:
    """What DNS answers for each record: ok, missing, wrong, or unknown (DNS failure)."""
    checker = _Checker(resolver, hostname.lower().rstrip("."), addresses)
    return list(await asyncio.gather(*(checker.check(record) for record in records)))


class _Checker:
    def __init__(self, resolver: Resolver, hostname: str, addresses: list[str]) -> None:
        self.resolver = resolver
        self.hostname = hostname
        self.addresses = addresses
        self._kinds: dict[str, Callable[[Record], Awaitable[tuple[Status, str]]]] = {
            "mx": self._mx,
            "spf": self._spf,
            "dkim": self._dkim,
            "dmarc": self._dmarc,
            "mta-sts": self._mta_sts,
            "tls-rpt": self._tls_rpt,
            "srv": self._srv,
            "address": self._address,
            "ptr": self._ptr,
        }

    async def check(self, record: Record) -> Finding:
        try:
            status, detail = await self._kinds[record.kind](record)
        except (NoSuchDomain, NoRecords):
            return Finding(record, Status.MISSING, f"no {record.rtype} record at {record.name}")
        except DnsTemporaryError as exc:
            return Finding(record, Status.UNKNOWN, f"DNS did not answer: {exc.reason}")
        return Finding(record, status, detail)

    async def _tagged(self, record: Record, version: str) -> list[str]:
        """The TXT records at the record's name that start with `version`."""
        texts = await self.resolver.txt(record.name)
        pattern = re.compile(rf"{re.escape(version)}\s*(;|\s|$)", re.IGNORECASE)
        return [text for text in texts if pattern.match(text)]

    async def _one(self, record: Record, version: str) -> tuple[Status, str]:
        found = await self._tagged(record, version)
        if not found:
            return Status.MISSING, f"no {version} record at {record.name}"
        if len(found) > 1:
            return Status.WRONG, f"{len(found)} {version} records at {record.name}; keep one"
        return Status.OK, found[0]

    async def _mx(self, record: Record) -> tuple[Status, str]:
        hosts = [host.lower() for _, host in await self.resolver.mx(record.name)]
        if self.hostname in hosts:
            return Status.OK, ""
        return Status.WRONG, f"MX points to {', '.join(hosts)}, not {self.hostname}"

    async def _spf(self, record: Record) -> tuple[Status, str]:
        status, detail = await self._one(record, "v=spf1")
        if status is not Status.OK:
            return status, detail
        helo = record.name == self.hostname
        for ip in self.addresses:
            # The record must let this server send: evaluate it as a receiver would.
            mail_from = "" if helo else f"postmaster@{record.name}"
            result = await spf.check(self.resolver, ip, mail_from, record.name)
            if result.result is Result.TEMPERROR:
                return Status.UNKNOWN, f"SPF evaluation for {ip}: {result.reason}"
            if result.result is not Result.PASS:
                return Status.WRONG, f"{detail!r} gives {result.result} for {ip}"
        return Status.OK, ""

    async def _dkim(self, record: Record) -> tuple[Status, str]:
        wanted = _tag(record.value, "p")
        texts = await self.resolver.txt(record.name)
        if any(_tag(text, "p") == wanted for text in texts):
            return Status.OK, ""
        return Status.WRONG, "the published key is not this server's key"

    async def _dmarc(self, record: Record) -> tuple[Status, str]:
        status, detail = await self._one(record, "v=DMARC1")
        if status is Status.OK and parse_record(detail) is None:
            return Status.WRONG, f"{detail!r} has no valid p= tag"
        return status, "" if status is Status.OK else detail

    async def _mta_sts(self, record: Record) -> tuple[Status, str]:
        status, detail = await self._one(record, "v=STSv1")
        # RFC 8461 §3.1: id is 1 to 32 letters and digits; a new id makes senders refetch.
        if status is Status.OK and not re.fullmatch(r"[A-Za-z0-9]{1,32}", _tag(detail, "id")):
            return Status.WRONG, f"{detail!r} lacks a valid id="
        if status is Status.OK and _tag(detail, "id") != _tag(record.value, "id"):
            return Status.OK, "id differs from the current policy's; update it with the policy"
        return status, "" if status is Status.OK else detail

    async def _tls_rpt(self, record: Record) -> tuple[Status, str]:
        status, detail = await self._one(record, "v=TLSRPTv1")
        if status is Status.OK and not _tag(detail, "rua"):
            return Status.WRONG, f"{detail!r} has no rua="
        return status, "" if status is Status.OK else detail

    async def _srv(self, record: Record) -> tuple[Status, str]:
        _, _, port, target = record.value.split()
        answers = await self.resolver.srv(record.name)
        if any((found[2], _host(found[3])) == (int(port), _host(target)) for found in answers):
            return Status.OK, ""
        return Status.WRONG, "found " + ", ".join(" ".join(map(str, found)) for found in answers)

    async def _address(self, record: Record) -> tuple[Status, str]:
        found = await self.resolver.addresses(record.name)
        wanted = ipaddress.ip_address(record.value)
        if any(ipaddress.ip_address(text) == wanted for text in found):
            return Status.OK, ""
        return Status.WRONG, f"{record.name} has {', '.join(found)}"

    async def _ptr(self, record: Record) -> tuple[Status, str]:
        ip = dns.reversename.to_address(dns.name.from_text(record.name))
        names = await self.resolver.ptr(ip)
        if self.hostname in (name.lower() for name in names):
            return Status.OK, ""
        return Status.WRONG, f"PTR is {', '.join(names)}, not {self.hostname}"


def _tag(text: str, name: str) -> str:
    """The value of tag `name` in a "k=v; k=v" record, white space removed ("" if absent)."""
    for part in text.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == name:
            return re.sub(r"\s+", "", value)
    return ""


def _host(name: str) -> str:
    """A host name compared without case or final dot; the root "." stays "."."""
    return name.lower().rstrip(".") or "."


def _rdata(rtype: str, value: str) -> str:
    if rtype != "TXT":
        return value
    # RFC 1035 §3.3.14: a TXT record is character-strings of at most 255 octets each.
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)
