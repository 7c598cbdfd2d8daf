"""DMARC: policy discovery for the author's domain and the SPF/DKIM alignment verdict.

The author domain is the domain of the one address in the one `From:` field.
Its policy record is looked up at `_dmarc.<author domain>` and, when there is
none, at `_dmarc.<organizational domain>`, found with the public suffix list
that the `publicsuffixlist` package ships (nothing is downloaded at run time).
The message passes when SPF passed for a domain aligned with the author
domain, or any DKIM signature passed with an aligned `d=` (relaxed: same
organizational domain; strict: the very same name). When nothing aligned
passes but an aligned check ended in temperror, the verdict is temperror:
a DNS failure never turns into a permanent "fail". The policy in force is `p`
(or `sp` for a subdomain whose record came from the organizational domain),
lowered one step for messages outside the `pct` sample.

Standards: RFC 7489 §3.1 (identifier alignment), §3.2 (organizational
domain), §6.3 (record tags), §6.6.1 (extracting the author domain), §6.6.2
(determining the outcome), §6.6.3 (policy discovery), §6.6.4 (pct), §11.2
(Authentication-Results method).
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import functools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from publicsuffixlist import PublicSuffixList

from postoffice.dns import DnsTemporaryError, NoRecords, NoSuchDomain, Resolver
from postoffice.policy.authres import Resinfo, Result

if TYPE_CHECKING:
    from postoffice.policy.dkim import DkimResult
    from postoffice.policy.spf import SpfResult


class Policy(StrEnum):
    """The p= / sp= values (RFC 7489 §6.3)."""

    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


_WEAKER = {Policy.REJECT: Policy.QUARANTINE, Policy.QUARANTINE: Policy.NONE}  # §6.6.4
_TAG = re.compile(r"\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*?)\s*")


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    """The tags of one policy record that change the verdict (RFC 7489 §6.3)."""

    policy: Policy
    subdomain_policy: Policy
    pct: int = 100
    adkim: str = "r"  # "r" relaxed or "s" strict
    aspf: str = "r"
    rua: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DmarcResult:
    """The verdict for one message: `policy` is what the author domain asks for it."""

    result: Result  # pass, fail, none, temperror, permerror
    domain: str  # the author (From) domain; "" when there is no single one
    policy: Policy | None = None  # after sp and pct; None when no record applies
    record: DmarcRecord | None = None
    reason: str = ""

    def resinfo(self) -> Resinfo:
        comment = ""
        if self.record is not None:
            comment = f"p={self.record.policy} sp={self.record.subdomain_policy}"
            if self.result is not Result.PASS and self.policy is not None:
                comment += f" dis={self.policy}"
        properties = (("header.from", self.domain),) if self.domain else ()
        return Resinfo("dmarc", self.result, properties, self.reason, comment)


@functools.cache
def _suffix_list() -> PublicSuffixList:
    return PublicSuffixList()  # the copy shipped inside the package


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label (the name itself when it is a suffix)."""
    domain = domain.lower().rstrip(".")
    return _suffix_list().privatesuffix(domain) or domain


def aligned(identifier: str, author_domain: str, mode: str) -> bool:
    """RFC 7489 §3.1: strict needs the same name, relaxed the same organizational domain."""
    identifier, author_domain = identifier.lower().rstrip("."), author_domain.lower().rstrip(".")
    if not identifier:
        return False
    if mode == "s":
        return identifier == author_domain
    return organizational_domain(identifier) == organizational_domain(author_domain)


def author_domain(message: bytes) -> str | None:
    """The domain of the single From address (RFC 7489 §6.6.1), or None when not exactly one."""
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    fields = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
    values = fields.get_all("From") or []
    addresses = email.utils.getaddresses([str(value) for value in values])
    if len(values) != 1 or len(addresses) != 1:
        return None
    _, at, domain = addresses[0][1].rpartition("@")
    domain = domain.strip().lower().rstrip(".")
    return domain if at and domain else None


def parse_record(text: str) -> DmarcRecord | None:
    """The record's tags, or None when it applies no policy (RFC 7489 §6.3, §6.6.3 step 6)."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        match = _TAG.fullmatch(part)
        if match is not None:
            tags.setdefault(match[1].lower(), match[2])
    rua = tuple(uri.strip() for uri in tags.get("rua", "").split(",") if _uri(uri.strip()))
    policy = _policy(tags.get("p", ""))
    if policy is None:
        if not rua:
            return None  # no valid p and no report address: no DMARC processing
        policy = Policy.NONE  # §6.6.3 step 6: act as if p=none was published
    subdomain = _policy(tags.get("sp", "")) or policy
    pct = tags.get("pct", "100")
    return DmarcRecord(
        policy=policy,
        subdomain_policy=subdomain,
        pct=int(pct) if pct.isdigit() and int(pct) <= 100 else 100,  # §6.3: bad tags → default
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
        rua=rua,
    )


async def discover(resolver: Resolver, domain: str) -> tuple[DmarcRecord, str] | None:
    """The record that applies to `domain` and the name it was found at (RFC 7489 §6.6.3).

    Raises DnsTemporaryError when a lookup fails temporarily.
    """
    organizational = organizational_domain(domain)
    for name in dict.fromkeys((domain, organizational)):
        try:
            texts = await resolver.txt(f"_dmarc.{name}")
        except (NoSuchDomain, NoRecords):
            continue
        # §6.6.3 steps 2-3: only records starting "v=DMARC1"; more than one means none.
        records = [text for text in texts if re.match(r"v\s*=\s*DMARC1\s*(;|$)", text)]
        if len(records) == 1:
            record = parse_record(records[0])
            return None if record is None else (record, name)
        if records:
            return None
    return None


async def check(
    resolver: Resolver,
    message_domain: str | None,
    spf: SpfResult,
    dkim: Sequence[DkimResult],
    *,
    rng: random.Random | None = None,
) -> DmarcResult:
    """The DMARC verdict for a message whose author domain is `message_domain`."""
    if not message_domain:
        # §6.6.1: without exactly one author domain there is nothing to evaluate reliably.
        return DmarcResult(Result.PERMERROR, "", reason="no single From domain")
    try:
        found = await discover(resolver, message_domain)
    except DnsTemporaryError as exc:
        return DmarcResult(Result.TEMPERROR, message_domain, reason=str(exc))
    if found is None:
        return DmarcResult(Result.NONE, message_domain)
    record, policy_domain = found
    # §6.6.2: SPF counts for the domain it checked, DKIM for each signature's d=.
    results = [spf.result] if aligned(spf.domain, message_domain, record.aspf) else []
    results += [sig.result for sig in dkim if aligned(sig.domain, message_domain, record.adkim)]
    if Result.PASS in results:
        return DmarcResult(Result.PASS, message_domain, record=record)
    published = record.policy if policy_domain == message_domain else record.subdomain_policy
    in_force = published
    roll = rng.randrange(100) if rng is not None else random.randrange(100)
    if roll >= record.pct:
        in_force = _WEAKER.get(published, published)  # §6.6.4: outside the sample
    if Result.TEMPERROR in results:
        # An aligned check could not finish: it might yet pass, so no permanent verdict.
        reason = "an aligned SPF or DKIM check failed temporarily"
        return DmarcResult(Result.TEMPERROR, message_domain, in_force, record, reason)
    return DmarcResult(Result.FAIL, message_domain, in_force, record)


def _policy(value: str) -> Policy | None:
    try:
        return Policy(value.lower())
    except ValueError:
        return None


def _uri(text: str) -> bool:
    """A report URI as §6.2 describes it (a scheme, e.g. mailto:, and something after it)."""
    return re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:\S+", text) is not None
