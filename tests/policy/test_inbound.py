"""The port-25 checks end to end on a loopback DNS world: A signs, B verifies and decides."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from postoffice.dns import DnsPythonResolver
from postoffice.dnsrecords import key_records
from postoffice.policy.dkim import KeyStore, sign_message
from postoffice.policy.inbound import Action, InboundVerdict, evaluate
from postoffice.testing.dns import DnsServer

A_IP = "127.0.0.2"
AUTHSERV_ID = "mx.b.test"


@dataclass(frozen=True)
class Settings:
    mode: str = "enforce"
    dmarc_reject: bool = True
    temperror: str = "tempfail"


def message(sender: str = "alice@a.test", body: bytes = b"Hello Bob.\r\n") -> bytes:
    return (
        f"From: Alice <{sender}>\r\n"
        "To: bob@b.test\r\n"
        "Subject: lunch\r\n"
        "Date: Tue, 14 Jan 2025 10:00:00 +0000\r\n"
        "Message-ID: <lunch@a.test>\r\n"
        "\r\n"
    ).encode() + body


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    keys = KeyStore(tmp_path_factory.mktemp("data"))
    keys.rotate("a.test")
    keys.rotate("q.test")
    return keys


@pytest.fixture
def server(store: KeyStore) -> Iterator[DnsServer]:
    zone = {
        "a.test": ['TXT "v=spf1 mx -all"', "MX 10 mx.a.test."],
        "mx.a.test": [f"A {A_IP}", 'TXT "v=spf1 a -all"'],
        "_dmarc.a.test": ['TXT "v=DMARC1; p=reject; rua=mailto:postmaster@a.test"'],
        "q.test": [f'TXT "v=spf1 ip4:{A_IP} -all"'],
        "_dmarc.q.test": ['TXT "v=DMARC1; p=quarantine"'],
        "n.test": ['TXT "v=spf1 -all"'],
        "_dmarc.n.test": ['TXT "v=DMARC1; p=none"'],
    }
    with DnsServer(zone) as dns_server:
        for domain in ("a.test", "q.test"):
            key_set = store.active(domain)
            assert key_set is not None
            dns_server.add("\n".join(r.zone_line() for r in key_records(key_set)))
        yield dns_server


@pytest.fixture
def resolver(server: DnsServer) -> DnsPythonResolver:
    return DnsPythonResolver([server.address], timeout=0.3)


def check(
    data: bytes,
    resolver: DnsPythonResolver,
    *,
    ip: str = A_IP,
    mail_from: str = "alice@a.test",
    helo: str = "mx.a.test",
    settings: Settings | None = None,
) -> InboundVerdict:
    return asyncio.run(
        evaluate(
            data,
            client_ip=ip,
            helo=helo,
            mail_from=mail_from,
            resolver=resolver,
            authserv_id=AUTHSERV_ID,
            settings=settings or Settings(),
        )
    )


def signed(store: KeyStore, data: bytes) -> bytes:
    return sign_message(data, store) + data


def test_signed_mail_from_its_server_passes_everything(
    store: KeyStore, resolver: DnsPythonResolver
) -> None:
    verdict = check(signed(store, message()), resolver)
    assert verdict.action is Action.ACCEPT and verdict.reply is None
    text = verdict.header.decode()
    assert text.startswith("Authentication-Results: mx.b.test;\r\n\t")
    assert "spf=pass reason=" in text and "smtp.helo=mx.a.test" in text
    assert "smtp.mailfrom=alice@a.test" in text
    assert text.count("dkim=pass header.d=a.test") == 2  # RSA and Ed25519
    assert "dmarc=pass (p=reject sp=reject) header.from=a.test" in text


def test_altered_body_fails_dkim_but_aligned_spf_still_passes_dmarc(
    store: KeyStore, resolver: DnsPythonResolver
) -> None:
    data = signed(store, message()).replace(b"Hello Bob.", b"Hello Bob, send money.")
    verdict = check(data, resolver)
    text = verdict.header.decode()
    assert text.count("dkim=fail") == 2 and "dmarc=pass" in text
    assert verdict.action is Action.ACCEPT


def test_altered_header_fails_dkim(store: KeyStore, resolver: DnsPythonResolver) -> None:
    data = signed(store, message()).replace(b"Subject: lunch", b"Subject: invoice")
    assert check(data, resolver).header.decode().count("dkim=fail") == 2


def test_spoofed_sender_is_refused_by_dmarc_reject(resolver: DnsPythonResolver) -> None:
    verdict = check(message(), resolver, ip="127.0.0.66", helo="evil.test")
    text = verdict.header.decode()
    assert "spf=fail" in text and "dkim=none" in text and "dmarc=fail" in text
    assert verdict.action is Action.REJECT
    assert verdict.reply is not None and (verdict.reply.code, verdict.reply.status) == (
        550,
        "5.7.1",
    )
    assert "a.test" in str(verdict.reply.text)


def test_monitor_mode_only_records(resolver: DnsPythonResolver) -> None:
    verdict = check(message(), resolver, ip="127.0.0.66", settings=Settings(mode="monitor"))
    assert verdict.action is Action.ACCEPT and verdict.reply is None
    assert b"dmarc=fail" in verdict.header


def test_reject_can_be_junk_instead(resolver: DnsPythonResolver) -> None:
    verdict = check(message(), resolver, ip="127.0.0.66", settings=Settings(dmarc_reject=False))
    assert verdict.action is Action.JUNK


def test_quarantine_goes_to_junk(store: KeyStore, resolver: DnsPythonResolver) -> None:
    spoof = check(message("boss@q.test"), resolver, ip="127.0.0.66", mail_from="boss@q.test")
    assert spoof.action is Action.JUNK and spoof.reply is None
    good = check(signed(store, message("boss@q.test")), resolver, mail_from="boss@q.test")
    assert good.action is Action.ACCEPT


def test_policy_none_is_accepted(resolver: DnsPythonResolver) -> None:
    verdict = check(message("x@n.test"), resolver, mail_from="x@n.test")
    assert b"dmarc=fail" in verdict.header and verdict.action is Action.ACCEPT


def test_forged_authentication_results_are_removed(
    store: KeyStore, resolver: DnsPythonResolver
) -> None:
    forged = b"Authentication-Results: MX.B.TEST; dmarc=pass header.from=a.test\r\n"
    theirs = b"Authentication-Results: mx.a.test; spf=pass\r\n"
    data = forged + theirs + signed(store, message())
    verdict = check(data, resolver)
    assert forged not in verdict.message and theirs in verdict.message
    assert verdict.message.endswith(message())
    assert verdict.header.count(b"dkim=pass") == 2  # removal happens after verification


def test_dns_timeout_defers_or_accepts_but_never_rejects(
    server: DnsServer, resolver: DnsPythonResolver
) -> None:
    for name in ("a.test", "_dmarc.a.test", "mx.a.test"):
        server.timeout(name)
    deferred = check(message(), resolver, ip="127.0.0.66")
    assert b"spf=temperror" in deferred.header and b"dmarc=temperror" in deferred.header
    assert deferred.action is Action.TEMPFAIL
    assert deferred.reply is not None and (deferred.reply.code, deferred.reply.status) == (
        451,
        "4.4.3",
    )
    accepted = check(message(), resolver, ip="127.0.0.66", settings=Settings(temperror="accept"))
    assert accepted.action is Action.ACCEPT


def test_dkim_key_timeout_with_failing_spf_is_temperror(
    store: KeyStore, server: DnsServer, resolver: DnsPythonResolver
) -> None:
    active = store.active("a.test")
    assert active is not None
    for key in active.keys:
        server.timeout(f"{key.selector}._domainkey.a.test")
    verdict = check(signed(store, message()), resolver, ip="127.0.0.66")
    assert verdict.header.count(b"dkim=temperror") == 2 and b"dmarc=temperror" in verdict.header
    assert verdict.action is Action.TEMPFAIL


def test_null_sender_is_checked_by_helo(store: KeyStore, resolver: DnsPythonResolver) -> None:
    bounce = message("mailer-daemon@mx.a.test")
    verdict = check(signed(store, bounce), resolver, mail_from="")
    text = verdict.header.decode()
    assert "spf=pass" in text and "smtp.helo=mx.a.test" in text and "smtp.mailfrom" not in text
    assert "dmarc=pass" in text and verdict.action is Action.ACCEPT
    assert verdict.spf is not None and verdict.spf.identity == "helo"


def test_checks_off(resolver: DnsPythonResolver, server: DnsServer) -> None:
    forged = b"Authentication-Results: mx.b.test; dmarc=pass\r\n"
    verdict = check(forged + message(), resolver, ip="127.0.0.66", settings=Settings(mode="off"))
    assert (verdict.action, verdict.header, verdict.message) == (Action.ACCEPT, b"", message())
    assert server.queries == []  # no DNS at all
