"""The checks on mail arriving on port 25, as one call at the end of DATA.

`evaluate` removes `Authentication-Results:` fields that claim our authserv-id,
runs SPF for the MAIL FROM and HELO identities and verifies every DKIM
signature at the same time, then evaluates DMARC for the From domain, and
returns our `Authentication-Results:` field with the action the settings call
for. DKIM is verified on the message as it arrived, before anything is
removed, so the removal cannot break a signature we check. Only DMARC decides:
`reject` is refused with 550 5.7.1 (or put in Junk when `dmarc_reject` is
off), `quarantine` goes to Junk, and a DMARC temperror (its record, or an
aligned check, failed on DNS) is deferred with 451 4.4.3 or accepted,
as `temperror` says, but never refused for good. `mode = "monitor"` computes
and records everything yet always accepts; `mode = "off"` skips the checks
(forged fields are still removed).

Standards: RFC 7489 §6.6.2-6.6.4, §10.3 (rejecting at SMTP time), RFC 7208
§2.3-2.4 (identities), RFC 6376 §6, RFC 8601 §5 (forged fields), RFC 5321
§4.2.5 (replies to the end of data), RFC 3463 (5.7.1, 4.4.3).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from postoffice.dns import Resolver
from postoffice.policy import authres, dkim, dmarc, spf
from postoffice.policy.authres import Resinfo, Result
from postoffice.protocols.smtp import Reply

DEFERRED = Reply(451, "4.4.3", "Temporary DNS failure while authenticating the message, try later")


class Settings(Protocol):
    """The `[checks]` section as this module reads it."""

    @property
    def mode(self) -> str: ...  # "enforce", "monitor" or "off"

    @property
    def dmarc_reject(self) -> bool: ...  # False: p=reject goes to Junk instead

    @property
    def temperror(self) -> str: ...  # "tempfail" (451) or "accept"


class Action(StrEnum):
    ACCEPT = "accept"
    JUNK = "junk"  # deliver into the recipient's Junk folder
    REJECT = "reject"  # answer `reply` (5xx) to the end of data
    TEMPFAIL = "tempfail"  # answer `reply` (4xx): the client tries again later


@dataclass(frozen=True, slots=True)
class InboundVerdict:
    """What to do with the message; queue `header + message` unless refused."""

    action: Action
    header: bytes  # our Authentication-Results field (b"" when the checks are off)
    message: bytes  # the message without forged Authentication-Results fields
    reply: Reply | None = None  # for REJECT and TEMPFAIL
    spf: spf.SpfResult | None = None
    dkim: tuple[dkim.DkimResult, ...] = ()
    dmarc: dmarc.DmarcResult | None = None


async def evaluate(
    message: bytes,
    *,
    client_ip: str,
    helo: str,
    mail_from: str,
    resolver: Resolver,
    authserv_id: str,
    settings: Settings,
    rng: random.Random | None = None,
) -> InboundVerdict:
    """Check `message` from `client_ip`; `mail_from` is "" for the null reverse-path."""
    cleaned = authres.strip_forged(message, authserv_id)
    if settings.mode == "off":
        return InboundVerdict(Action.ACCEPT, b"", cleaned)
    helo_check = spf.check(resolver, client_ip, "", helo)
    if mail_from:
        mail_result, helo_result, signatures = await asyncio.gather(
            spf.check(resolver, client_ip, mail_from, helo),
            helo_check,
            dkim.verify(message, resolver),
        )
        spf_results = [helo_result, mail_result]
    else:  # §2.4: with the null reverse-path the HELO check is the MAIL FROM check
        mail_result, signatures = await asyncio.gather(helo_check, dkim.verify(message, resolver))
        spf_results = [mail_result]
    verdict = await dmarc.check(
        resolver, dmarc.author_domain(message), mail_result, signatures, rng=rng
    )
    infos = [result.resinfo() for result in spf_results]
    infos += [result.resinfo() for result in signatures] or [Resinfo("dkim", Result.NONE)]
    infos.append(verdict.resinfo())
    action, reply = _decide(verdict, settings)
    if settings.mode == "monitor":
        action, reply = Action.ACCEPT, None
    return InboundVerdict(
        action,
        authres.header(authserv_id, infos),
        cleaned,
        reply,
        mail_result,
        tuple(signatures),
        verdict,
    )


def _decide(verdict: dmarc.DmarcResult, settings: Settings) -> tuple[Action, Reply | None]:
    policy = verdict.policy
    if verdict.result is Result.FAIL and policy is dmarc.Policy.REJECT:
        if not settings.dmarc_reject:
            return Action.JUNK, None
        # RFC 7489 §10.3: refuse during the SMTP transaction rather than bounce later.
        text = f"Message rejected by the DMARC policy of {verdict.domain}"
        return Action.REJECT, Reply(550, "5.7.1", text)
    if verdict.result is Result.FAIL and policy is dmarc.Policy.QUARANTINE:
        return Action.JUNK, None
    # A policy that is unknown or asks for action, and an outcome DNS left open: defer or
    # accept as configured, never a 5xx.
    deferrable = verdict.result is Result.TEMPERROR and policy is not dmarc.Policy.NONE
    if deferrable and settings.temperror == "tempfail":
        return Action.TEMPFAIL, DEFERRED
    return Action.ACCEPT, None
