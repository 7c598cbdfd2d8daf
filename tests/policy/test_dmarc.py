"""DMARC: organizational domains, alignment, record discovery and the verdict."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest

from postoffice.dns import DnsPythonResolver, DnsTemporaryError
from postoffice.policy.authres import Result
from postoffice.policy.dkim import DkimResult
from postoffice.policy.dmarc import (
    DmarcResult,
    Policy,
    aligned,
    author_domain,
    check,
    discover,
    organizational_domain,
    parse_record,
)
from postoffice.policy.spf import SpfResult
from postoffice.testing.dns import DnsServer

ZONE = {
    "_dmarc.a.test": ['TXT "v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@a.test"'],
    "_dmarc.q.test": ['TXT "v=DMARC1; p=quarantine; adkim=s; aspf=s"'],
    "_dmarc.n.test": ['TXT "v=DMARC1; p=none"'],
    "_dmarc.two.test": ['TXT "v=DMARC1; p=reject"', 'TXT "v=DMARC1; p=none"'],
    "_dmarc.other.test": ['TXT "not dmarc"', 'TXT "v=DMARC1; p=reject"'],
}


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer(ZONE) as dns_server:
        yield dns_server


@pytest.fixture
def resolver(server: DnsServer) -> DnsPythonResolver:
    return DnsPythonResolver([server.address], timeout=0.5)


def spf_result(result: Result, domain: str) -> SpfResult:
    return SpfResult(result, "mailfrom", f"bounce@{domain}", domain)


def dkim_result(result: Result, domain: str) -> DkimResult:
    return DkimResult(result, domain, "sel-rsa", "rsa-sha256", "abcdefgh")


def run(
    resolver: DnsPythonResolver,
    domain: str | None,
    spf: SpfResult,
    dkim: list[DkimResult],
    rng: random.Random | None = None,
) -> DmarcResult:
    return asyncio.run(check(resolver, domain, spf, dkim, rng=rng))


@pytest.mark.parametrize(
    ("domain", "organizational"),
    [
        ("a.test", "a.test"),
        ("mail.a.test", "a.test"),
        ("Deep.Mail.A.Test.", "a.test"),
        ("www.example.co.uk", "example.co.uk"),  # from the public suffix list package
        ("co.uk", "co.uk"),
    ],
)
def test_organizational_domain(domain: str, organizational: str) -> None:
    assert organizational_domain(domain) == organizational


def test_alignment_modes() -> None:
    assert aligned("mail.a.test", "a.test", "r")
    assert aligned("A.TEST", "a.test", "s")
    assert not aligned("mail.a.test", "a.test", "s")
    assert not aligned("a.test", "b.test", "r")
    assert not aligned("", "a.test", "r")
    assert not aligned("example.co.uk", "other.co.uk", "r")  # a public suffix is no org


@pytest.mark.parametrize(
    ("head", "domain"),
    [
        (b"From: Alice <alice@Mail.A.Test>\r\n", "mail.a.test"),
        (b"From: =?utf-8?q?Al=C3=AFce?= <alice@a.test>\r\nSubject: x\r\n", "a.test"),
        (b"From: alice@a.test\r\nFrom: eve@evil.test\r\n", None),  # two From fields
        (b"From: alice@a.test, eve@evil.test\r\n", None),  # two authors
        (b"Subject: no author\r\n", None),
        (b"From: undisclosed\r\n", None),
    ],
)
def test_author_domain(head: bytes, domain: str | None) -> None:
    assert author_domain(head + b"\r\nFrom: body@ignored.test\r\n") == domain


def test_parse_record_tags_and_defaults() -> None:
    record = parse_record("v=DMARC1; p=Reject; pct=50; adkim=s; rua=mailto:a@a.test,bad")
    assert record is not None
    assert (record.policy, record.subdomain_policy, record.pct) == (Policy.REJECT,) * 2 + (50,)
    assert (record.adkim, record.aspf, record.rua) == ("s", "r", ("mailto:a@a.test",))
    lenient = parse_record("v=DMARC1; p=quarantine; pct=500; aspf=x; sp=bogus")
    assert lenient is not None and lenient.pct == 100 and lenient.aspf == "r"
    assert lenient.subdomain_policy is Policy.QUARANTINE
    # RFC 7489 §6.6.3 step 6: no valid p, but a report address: treated as p=none.
    reports_only = parse_record("v=DMARC1; rua=mailto:a@a.test")
    assert reports_only is not None and reports_only.policy is Policy.NONE
    assert parse_record("v=DMARC1; p=maybe") is None


def test_discovery_falls_back_to_the_organizational_domain(resolver: DnsPythonResolver) -> None:
    found = asyncio.run(discover(resolver, "mail.a.test"))
    assert found is not None and found[1] == "a.test"
    assert asyncio.run(discover(resolver, "b.test")) is None
    assert asyncio.run(discover(resolver, "two.test")) is None  # two records: no policy
    other = asyncio.run(discover(resolver, "other.test"))
    assert other is not None and other[0].policy is Policy.REJECT


def test_discovery_timeout_raises(server: DnsServer, resolver: DnsPythonResolver) -> None:
    server.timeout("_dmarc.a.test")
    with pytest.raises(DnsTemporaryError):
        asyncio.run(discover(resolver, "a.test"))


def test_pass_through_aligned_spf(resolver: DnsPythonResolver) -> None:
    result = run(resolver, "a.test", spf_result(Result.PASS, "bounces.a.test"), [])
    assert result.result is Result.PASS
    assert str(result.resinfo()) == "dmarc=pass (p=reject sp=quarantine) header.from=a.test"


def test_pass_through_aligned_dkim(resolver: DnsPythonResolver) -> None:
    dkim = [dkim_result(Result.FAIL, "a.test"), dkim_result(Result.PASS, "mail.a.test")]
    result = run(resolver, "a.test", spf_result(Result.FAIL, "a.test"), dkim)
    assert result.result is Result.PASS


def test_unaligned_passes_fail(resolver: DnsPythonResolver) -> None:
    dkim = [dkim_result(Result.PASS, "evil.test")]
    result = run(resolver, "a.test", spf_result(Result.PASS, "evil.test"), dkim)
    assert (result.result, result.policy) == (Result.FAIL, Policy.REJECT)
    assert str(result.resinfo()) == (
        "dmarc=fail (p=reject sp=quarantine dis=reject) header.from=a.test"
    )


def test_strict_alignment(resolver: DnsPythonResolver) -> None:
    sub = run(resolver, "q.test", spf_result(Result.PASS, "mail.q.test"), [])
    assert (sub.result, sub.policy) == (Result.FAIL, Policy.QUARANTINE)
    exact = run(resolver, "q.test", spf_result(Result.PASS, "q.test"), [])
    assert exact.result is Result.PASS


def test_subdomain_policy_applies_below_the_record(resolver: DnsPythonResolver) -> None:
    result = run(resolver, "mail.a.test", spf_result(Result.FAIL, "mail.a.test"), [])
    assert (result.result, result.policy) == (Result.FAIL, Policy.QUARANTINE)


def test_pct_lowers_the_policy_outside_the_sample(
    server: DnsServer, resolver: DnsPythonResolver
) -> None:
    server.set_records("_dmarc.a.test", ['TXT "v=DMARC1; p=reject; pct=30"'])
    spf = spf_result(Result.FAIL, "a.test")
    policies = {run(resolver, "a.test", spf, [], random.Random(seed)).policy for seed in range(20)}
    assert policies == {Policy.REJECT, Policy.QUARANTINE}


def test_no_record_is_none(resolver: DnsPythonResolver) -> None:
    result = run(resolver, "b.test", spf_result(Result.FAIL, "b.test"), [])
    assert (result.result, result.policy) == (Result.NONE, None)


def test_without_a_single_author_domain_is_permerror(resolver: DnsPythonResolver) -> None:
    assert run(resolver, None, spf_result(Result.PASS, "a.test"), []).result is Result.PERMERROR


def test_aligned_temperror_is_never_fail(resolver: DnsPythonResolver) -> None:
    dkim = [dkim_result(Result.TEMPERROR, "a.test")]
    result = run(resolver, "a.test", spf_result(Result.FAIL, "a.test"), dkim)
    assert (result.result, result.policy) == (Result.TEMPERROR, Policy.REJECT)
    unaligned = [dkim_result(Result.TEMPERROR, "evil.test")]
    assert run(resolver, "a.test", spf_result(Result.FAIL, "a.test"), unaligned).result is (
        Result.FAIL
    )


def test_record_lookup_timeout_is_temperror(server: DnsServer, resolver: DnsPythonResolver) -> None:
    server.timeout("_dmarc.a.test")
    result = run(resolver, "a.test", spf_result(Result.FAIL, "a.test"), [])
    assert (result.result, result.policy) == (Result.TEMPERROR, None)
