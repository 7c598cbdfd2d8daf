"""Discovery: RFC 6186 SRV records first, then guesses from MX and mail.<domain>."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from postoffice.client.discovery import discover
from postoffice.client.network import Endpoint, Security
from postoffice.dns import DnsPythonResolver
from postoffice.testing.dns import DnsServer

TLS, STARTTLS = Security.TLS, Security.STARTTLS


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with DnsServer({"a.test": ["MX 20 mx2.a.test.", "MX 10 mx1.a.test."]}) as server:
        yield server


def found(dns: DnsServer, domain: str) -> tuple[list[Endpoint], list[Endpoint]]:
    candidates = asyncio.run(discover(DnsPythonResolver([dns.address]), domain))
    return candidates.submission, candidates.pop3


def test_srv_records_in_priority_then_weight_order(dns: DnsServer) -> None:
    dns.add(
        {
            "_submissions._tcp.a.test": ["SRV 5 1 465 late.a.test.", "SRV 0 1 4650 first.a.test."],
            "_submission._tcp.a.test": ["SRV 0 10 587 heavy.a.test.", "SRV 0 90 5870 heavy2."],
            "_pop3s._tcp.a.test": ["SRV 0 1 995 pop.a.test."],
            "_pop3._tcp.a.test": ["SRV 0 0 0 ."],  # RFC 6186 §4: not offered
        }
    )
    submission, pop3 = found(dns, "a.test")
    assert submission == [
        Endpoint("first.a.test", 4650, TLS),
        Endpoint("late.a.test", 465, TLS),
        Endpoint("heavy2", 5870, STARTTLS),
        Endpoint("heavy.a.test", 587, STARTTLS),
    ]
    assert pop3 == [Endpoint("pop.a.test", 995, TLS)]


def test_without_srv_the_mx_hosts_and_mail_host_are_guessed(dns: DnsServer) -> None:
    dns.add({"_pop3s._tcp.a.test": ["SRV 0 1 995 pop.a.test."]})
    submission, pop3 = found(dns, "a.test")
    assert [(e.host, e.port) for e in submission] == [
        ("mx1.a.test", 465), ("mx1.a.test", 587), ("mx2.a.test", 465), ("mx2.a.test", 587),
        ("mail.a.test", 465), ("mail.a.test", 587),
    ]  # fmt: skip
    assert pop3 == [Endpoint("pop.a.test", 995, TLS)]


def test_a_domain_without_records_still_gets_the_mail_host(dns: DnsServer) -> None:
    submission, pop3 = found(dns, "nothing.test")
    assert submission == [
        Endpoint("mail.nothing.test", 465, TLS),
        Endpoint("mail.nothing.test", 587, STARTTLS),
    ]
    assert pop3 == [
        Endpoint("mail.nothing.test", 995, TLS),
        Endpoint("mail.nothing.test", 110, STARTTLS),
    ]


def test_imap_srv_records_imaps_first_else_guesses_on_993_and_143(dns: DnsServer) -> None:
    dns.add(
        {
            "_imap._tcp.a.test": ["SRV 0 1 143 plain.a.test."],
            "_imaps._tcp.a.test": ["SRV 10 1 993 late.a.test.", "SRV 0 1 9930 first.a.test."],
        }
    )
    resolver = DnsPythonResolver([dns.address])
    assert asyncio.run(discover(resolver, "a.test")).imap == [
        Endpoint("first.a.test", 9930, TLS),  # RFC 8314 §5.1: implicit TLS before STARTTLS
        Endpoint("late.a.test", 993, TLS),
        Endpoint("plain.a.test", 143, STARTTLS),
    ]
    assert asyncio.run(discover(resolver, "nothing.test")).imap == [
        Endpoint("mail.nothing.test", 993, TLS),
        Endpoint("mail.nothing.test", 143, STARTTLS),
    ]
    queried = [q.name for q in dns.queries if q.rtype == "SRV"]
    assert "_imaps._tcp.a.test" in queried and "_imap._tcp.nothing.test" in queried
