"""DKIM: the key store, signing with RSA and Ed25519, verification over the loopback DNS server."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from postoffice.cli import cli
from postoffice.dns import DnsPythonResolver
from postoffice.dnsrecords import key_records
from postoffice.policy.authres import Result
from postoffice.policy.dkim import (
    DkimKeyError,
    DkimResult,
    KeySet,
    KeyStore,
    generate,
    sign,
    sign_message,
    verify,
)
from postoffice.testing.dns import DnsServer

MESSAGE = (
    b"From: Alice <alice@a.test>\r\n"
    b"To: bob@b.test\r\n"
    b"Subject: hello\r\n"
    b"Date: Tue, 14 Jan 2025 10:00:00 +0000\r\n"
    b"Message-ID: <1@a.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hi Bob,\r\n\r\nsee you.\r\n"
)


@pytest.fixture(scope="module")
def keys() -> KeySet:
    return generate("a.test", "sel1", 1736848800.0)


@pytest.fixture
def server(keys: KeySet) -> Iterator[DnsServer]:
    # As zone lines: the RSA record is longer than one 255-octet TXT string.
    with DnsServer("\n".join(record.zone_line() for record in key_records(keys))) as dns_server:
        yield dns_server


@pytest.fixture
def resolver(server: DnsServer) -> DnsPythonResolver:
    return DnsPythonResolver([server.address], timeout=0.5)


def verified(message: bytes, resolver: DnsPythonResolver) -> list[DkimResult]:
    return asyncio.run(verify(message, resolver))


# --- keys ----------------------------------------------------------------------------------


def test_generated_records(keys: KeySet) -> None:
    rsa_key, ed_key = keys.keys
    assert (rsa_key.selector, ed_key.selector) == ("sel1-rsa", "sel1-ed25519")
    rsa_record = rsa_key.dns_record()
    assert rsa_record.startswith("v=DKIM1; k=rsa; p=MIIBIjAN")  # a 2048-bit SubjectPublicKeyInfo
    assert len(base64.b64decode(rsa_record.split("p=")[1])) == 294
    ed_record = ed_key.dns_record()
    assert ed_record.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(ed_record.split("p=")[1])) == 32  # RFC 8463 §4.2: raw key
    assert "PRIVATE" not in repr(rsa_key)


def test_rotate_stores_keys_privately(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    first = store.rotate("A.Test", "po", now=1736848800.0)  # 2025-01-14
    assert (first.domain, first.selector) == ("a.test", "po20250114")
    directory = tmp_path / "dkim" / "a.test"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("po20250114.rsa.key", "po20250114.ed25519.key"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
        assert (directory / name).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    state = json.loads((directory / "selectors.json").read_text())
    assert state["active"] == "po20250114"
    assert store.active("a.test") == first
    assert store.domains() == ["a.test"]


def test_rotation_keeps_old_selectors_published_until_retired(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    first = store.rotate("a.test", now=1736848800.0)
    second = store.rotate("a.test", now=1736848900.0)  # same day: a letter is added
    assert second.selector == first.selector + "b"
    assert store.active("a.test") == second
    assert [s.selector for s in store.published("a.test")] == [first.selector, second.selector]
    with pytest.raises(DkimKeyError, match="active selector"):
        store.retire("a.test", second.selector)
    assert store.retire("a.test", first.selector) == first
    assert [s.selector for s in store.published("a.test")] == [second.selector]
    assert not (tmp_path / "dkim" / "a.test" / f"{first.selector}.rsa.key").exists()
    with pytest.raises(DkimKeyError, match="no published selector"):
        store.retire("a.test", first.selector)
    store.rotate("a.test", now=1736848800.0)
    third = store.rotate("a.test", now=1736848800.0)
    assert third.selector == first.selector + "d"  # a retired selector is never reused


def test_ensure_creates_once(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    assert store.active("a.test") is None and store.published("a.test") == []
    created = store.ensure("a.test")
    assert store.ensure("a.test") == created


def test_signing_keys_of_a_parent_domain(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    keys = store.rotate("a.test")
    assert store.signing_keys("a.test") == keys
    assert store.signing_keys("Lists.A.Test") == keys  # relaxed alignment still holds
    assert store.signing_keys("b.test") is None
    assert store.signing_keys("../etc") is None  # never a path outside the store


@pytest.mark.parametrize("name", ["../a.test", "a.test/x", "a..test", "-a.test", ""])
def test_bad_domain_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(DkimKeyError):
        KeyStore(tmp_path).rotate(name)


def test_bad_selector_prefix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DkimKeyError, match="prefix"):
        KeyStore(tmp_path).rotate("a.test", "bad_prefix.")


# --- signing and verifying -----------------------------------------------------------------


def test_sign_then_verify_both_algorithms(keys: KeySet, resolver: DnsPythonResolver) -> None:
    signatures = sign(MESSAGE, keys)
    assert signatures.count(b"DKIM-Signature:") == 2
    assert b"a=rsa-sha256" in signatures and b"a=ed25519-sha256" in signatures
    assert b"c=relaxed/relaxed" in signatures
    assert b"h=from : from : sender" in signatures  # From signed twice (RFC 6376 §5.4)
    results = verified(signatures + MESSAGE, resolver)
    assert [(r.result, r.domain, r.selector) for r in results] == [
        (Result.PASS, "a.test", "sel1-rsa"),
        (Result.PASS, "a.test", "sel1-ed25519"),
    ]
    info = str(results[1].resinfo())
    assert info.startswith(
        "dkim=pass header.d=a.test header.s=sel1-ed25519 header.a=ed25519-sha256"
    )
    assert "header.b=" in info and results[1].signature[:8] in info


def test_relaxed_canonicalization_survives_whitespace_changes(
    keys: KeySet, resolver: DnsPythonResolver
) -> None:
    signed = sign(MESSAGE, keys) + MESSAGE
    rewrapped = signed.replace(b"Subject: hello", b"Subject:   hello ").replace(
        b"see you.\r\n", b"see   you.  \r\n\r\n\r\n"
    )
    assert {r.result for r in verified(rewrapped, resolver)} == {Result.PASS}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"see you.", b"see you!"),  # body
        (b"Subject: hello", b"Subject: hello again"),  # a signed header
        (b"To: bob@b.test\r\n", b"To: bob@b.test\r\nFrom: mallory@evil.test\r\n"),  # extra From
        (b"MIME-Version: 1.0\r\n", b"MIME-Version: 1.0\r\nCc: eve@evil.test\r\n"),  # added Cc
    ],
)
def test_altered_messages_fail(
    keys: KeySet, resolver: DnsPythonResolver, old: bytes, new: bytes
) -> None:
    signed = sign(MESSAGE, keys) + MESSAGE
    results = verified(signed.replace(old, new, 1), resolver)
    assert [r.result for r in results] == [Result.FAIL, Result.FAIL]


def test_unsigned_header_may_change(keys: KeySet, resolver: DnsPythonResolver) -> None:
    signed = sign(MESSAGE, keys) + MESSAGE
    with_trace = b"Received: from somewhere\r\nX-Spam: no\r\n" + signed
    assert {r.result for r in verified(with_trace, resolver)} == {Result.PASS}


def test_no_signature_gives_no_results(resolver: DnsPythonResolver) -> None:
    assert verified(MESSAGE, resolver) == []


def test_missing_key_record_is_permerror(
    keys: KeySet, server: DnsServer, resolver: DnsPythonResolver
) -> None:
    server.set_records("sel1-rsa._domainkey.a.test", [])
    results = verified(sign(MESSAGE, keys) + MESSAGE, resolver)
    assert [r.result for r in results] == [Result.PERMERROR, Result.PASS]
    assert "no key record" in results[0].reason


def test_dns_timeout_is_temperror(
    keys: KeySet, server: DnsServer, resolver: DnsPythonResolver
) -> None:
    server.timeout("sel1-ed25519._domainkey.a.test")
    results = verified(sign(MESSAGE, keys) + MESSAGE, resolver)
    assert [r.result for r in results] == [Result.PASS, Result.TEMPERROR]


def test_bad_key_record_is_permerror(
    keys: KeySet, server: DnsServer, resolver: DnsPythonResolver
) -> None:
    server.set_records("sel1-rsa._domainkey.a.test", ['TXT "v=DKIM1; k=rsa; p=bm90IGEga2V5"'])
    results = verified(sign(MESSAGE, keys) + MESSAGE, resolver)
    assert results[0].result is Result.PERMERROR and "bad key record" in results[0].reason


def test_key_of_another_selector_fails(
    keys: KeySet, server: DnsServer, resolver: DnsPythonResolver
) -> None:
    other = generate("a.test", "sel2", 0.0)
    server.set_records("sel1-ed25519._domainkey.a.test", [f'TXT "{other.keys[1].dns_record()}"'])
    results = verified(sign(MESSAGE, keys) + MESSAGE, resolver)
    assert [r.result for r in results] == [Result.PASS, Result.FAIL]


def test_malformed_signature_is_neutral(resolver: DnsPythonResolver) -> None:
    broken = b"DKIM-Signature: v=1; a=rsa-sha256; d=a.test\r\n" + MESSAGE
    (result,) = verified(broken, resolver)
    assert result.result is Result.NEUTRAL and "unusable signature" in result.reason


def test_sign_message_picks_the_from_domain(tmp_path: Path, server: DnsServer) -> None:
    store = KeyStore(tmp_path)
    assert sign_message(MESSAGE, store) == b""  # no keys for a.test yet
    keys = store.rotate("a.test")
    server.add("\n".join(record.zone_line() for record in key_records(keys)))
    signatures = sign_message(MESSAGE, store)
    assert f"s={keys.selector}-rsa".encode() in signatures.replace(b"\r\n ", b" ")
    resolver = DnsPythonResolver([server.address], timeout=0.5)
    assert {r.result for r in verified(signatures + MESSAGE, resolver)} == {Result.PASS}
    assert sign_message(MESSAGE.replace(b"alice@a.test", b"x@other.test"), store) == b""


# --- the dkim command ----------------------------------------------------------------------


def test_dkim_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    home = ["--data-dir", str(tmp_path / "data")]
    assert runner.invoke(cli, ["domain", "add", "a.test", *home]).exit_code == 0
    made = runner.invoke(cli, ["dkim", "list", *home]).output.splitlines()
    assert len(made) == 1 and made[0].startswith("* a.test po")  # domain add made keys
    refused = runner.invoke(cli, ["dkim", "rotate", "b.test", *home])
    assert refused.exit_code == 1 and "not a local domain" in str(refused.exception)
    first = runner.invoke(cli, ["dkim", "rotate", "a.test", *home])
    assert first.exit_code == 0, first.output
    assert "-rsa._domainkey.a.test. 3600 IN TXT" in first.output
    assert "-ed25519._domainkey.a.test. 3600 IN TXT" in first.output
    second = runner.invoke(cli, ["dkim", "rotate", "a.test", "--prefix", "k", *home])
    assert second.exit_code == 0
    listing = runner.invoke(cli, ["dkim", "list", *home]).output.splitlines()
    assert len(listing) == 3  # the key of domain add, the first and the second rotation
    assert listing[0].startswith("  a.test po") and listing[2].startswith("* a.test k")
    assert "rsa,ed25519 created 20" in listing[2]
    for line in listing[:2]:
        old = line.split()[1]
        retired = runner.invoke(cli, ["dkim", "retire", "a.test", old, *home])
        assert retired.exit_code == 0 and f"{old}-rsa._domainkey.a.test" in retired.output
    assert len(runner.invoke(cli, ["dkim", "list", "a.test", *home]).output.splitlines()) == 1
