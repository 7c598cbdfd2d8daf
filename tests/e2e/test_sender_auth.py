"""SPF, DKIM and DMARC on the loopback world: A signs, B judges, verdicts reach the mailbox."""

from __future__ import annotations

import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.dnsrecords import key_records, zone_text
from postoffice.policy.dkim import KeyStore, sign_message
from postoffice.testing.world import HOSTS, LoopbackWorld


@pytest.fixture
def world(tmp_path: Path) -> Iterator[LoopbackWorld]:
    w = LoopbackWorld(tmp_path)
    w.a.cli("user", "add", "alice@a.test", "--password-stdin", stdin="pw-alice-1\n")
    w.b.cli("user", "add", "bob@b.test", "--password-stdin", stdin="pw-bob-1\n")
    for domain, server in w.servers.items():
        # Only a server's own address may relay: mail from the other one is judged.
        server.configure("smtp", relay_networks=[f"{HOSTS[domain]}/32"])
        w.dns.add(
            {
                domain: [f'TXT "v=spf1 ip4:{HOSTS[domain]} -all"'],
                f"_dmarc.{domain}": ['TXT "v=DMARC1; p=reject"'],
            }
        )
        key_set = KeyStore(server.data_dir).active(domain)
        assert key_set is not None
        w.dns.add(zone_text(key_records(key_set)))
    w.start()
    yield w
    w.stop()


def submit_as_alice(world: LoopbackWorld, body: bytes) -> None:
    with smtplib.SMTP(world.a.host, world.a.submission_port, timeout=10) as client:
        client.login("alice@a.test", "pw-alice-1")
        client.sendmail("alice@a.test", ["bob@b.test"], body)


def inject(host: str, port: int, sender: str, body: bytes, *, source: str) -> tuple[int, bytes]:
    """Talk to B's port 25 from `source`, as another server on the internet would."""
    with smtplib.SMTP(host, port, timeout=20, source_address=(source, 0)) as client:
        client.ehlo("mx.elsewhere.test")
        client.mail(sender)
        client.rcpt("bob@b.test")
        return client.data(body)


def auth_results(path: Path) -> list[bytes]:
    headers = path.read_bytes().split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ")
    return [h for h in headers.split(b"\r\n") if h.lower().startswith(b"authentication-results:")]


def test_signed_at_a_verified_at_b(world: LoopbackWorld) -> None:
    submit_as_alice(world, b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: signed\r\n\r\nhi\r\n")
    (path,) = world.b.wait_for_mail("bob@b.test")
    assert path.read_bytes().count(b"DKIM-Signature:") == 2  # RSA and Ed25519
    (result,) = auth_results(path)
    assert result.startswith(b"Authentication-Results: mx.b.test;")
    for verdict in (b"dkim=pass", b"spf=pass", b"dmarc=pass"):
        assert verdict in result


def test_spoofed_sender_is_refused_by_dmarc_reject(world: LoopbackWorld) -> None:
    body = b"From: alice@a.test\r\nSubject: fake\r\n\r\nsend money\r\n"
    code, text = inject(world.b.host, world.port, "alice@a.test", body, source="127.0.0.1")
    assert (code, text[:5]) == (550, b"5.7.1")
    assert not (world.b.maildir("bob@b.test") / "new").exists() or not list(
        (world.b.maildir("bob@b.test") / "new").iterdir()
    )


def test_quarantine_goes_to_junk(world: LoopbackWorld) -> None:
    world.dns.set_records("_dmarc.a.test", ['TXT "v=DMARC1; p=quarantine"'])
    body = b"From: alice@a.test\r\nSubject: fake\r\n\r\nmaybe\r\n"
    code, _ = inject(world.b.host, world.port, "alice@a.test", body, source="127.0.0.1")
    assert code == 250
    junk = world.b.maildir("bob@b.test") / ".Junk" / "new"
    for _ in range(100):
        if junk.is_dir() and list(junk.iterdir()):
            break
        time.sleep(0.1)
    (path,) = list(junk.iterdir())
    assert b"dmarc=fail" in b" ".join(auth_results(path))


def test_altered_body_fails_dkim_and_forged_results_are_stripped(world: LoopbackWorld) -> None:
    original = b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: orig\r\n\r\nthe real text\r\n"
    signature = sign_message(original, KeyStore(world.a.data_dir))
    forged = b"Authentication-Results: mx.b.test; dkim=pass header.d=a.test\r\n"
    tampered = forged + signature + original.replace(b"the real text", b"a changed text")
    code, _ = inject(world.b.host, world.port, "alice@a.test", tampered, source="127.0.0.2")
    assert code == 250  # SPF passes from A's address, so DMARC passes through SPF alignment
    (path,) = world.b.wait_for_mail("bob@b.test")
    (result,) = auth_results(path)  # the forged field with our authserv-id is gone
    assert b"dkim=fail" in result and b"spf=pass" in result and b"dmarc=pass" in result


def test_dns_timeout_defers_never_rejects(world: LoopbackWorld) -> None:
    world.dns.add({"c.test": ["MX 10 mx.c.test."]})
    world.dns.timeout("c.test")  # SPF: temperror
    world.dns.timeout("_dmarc.c.test")  # DMARC policy unknown: the sender must retry
    body = b"From: carol@c.test\r\nSubject: slow dns\r\n\r\nx\r\n"
    code, _ = inject(world.b.host, world.port, "carol@c.test", body, source="127.0.0.1")
    assert code == 451


def test_dns_check_spots_a_missing_dkim_record(world: LoopbackWorld) -> None:
    key_set = KeyStore(world.a.data_dir).active("a.test")
    assert key_set is not None
    for record in key_records(key_set):
        world.dns.set_records(record.name, [])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "postoffice",
            "dns-check",
            "a.test",
            "--ip",
            HOSTS["a.test"],
            "--data-dir",
            str(world.a.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert key_set.selector in result.stdout + result.stderr
