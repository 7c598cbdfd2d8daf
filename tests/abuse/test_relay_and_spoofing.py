"""Relaying and sender spoofing: the relay tricks in every session state, who may relay, and
the submission rules (AUTH first, an owned MAIL FROM, completed headers, a private identity).

Only 127.0.0.9 is in `relay_networks`, so every other loopback address is "the internet".

Standards: RFC 5321 §3.6 (relaying), §3.6.1 and §4.1.1.3 (source routes are ignored),
RFC 6409 §4.3 and §6.1 (submission: authentication, sender ownership), §8.2-8.3 (Date,
Message-ID), RFC 3848 (ESMTPSA), RFC 4954 §4.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from postoffice.testing.server import ServerProcess
from tests.abuse.helpers import (
    RawClient,
    add_user,
    header_section,
    logged,
    running,
    self_signed_context,
    sighup,
    sources,
    wait_for_message,
)

IPS = sources(51)
RELAY_CLIENT = "127.0.0.9"
# Each names the remote user@b.test while looking like an address of the local a.test.
TRICKS = ["user%b.test@a.test", "b.test!user@a.test", '"user@b.test"@a.test']
SOURCE_ROUTE = "@a.test:user@b.test"


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("relay") / "data")
    proc.configure("smtp", relay_networks=[f"{RELAY_CLIENT}/32"])
    proc.cli("domain", "add", "a.test")
    add_user(proc, "bob@a.test", "pw-bob-1")
    add_user(proc, "carol@a.test", "pw-carol-1")
    proc.cli("alias", "add", "team@a.test", "bob@a.test", "carol@a.test")
    proc.cli("alias", "add", "sales@a.test", "carol@a.test")
    with running(proc):
        yield proc


def logged_in(proc: ServerProcess, port: int) -> RawClient:
    """A session on `port` over STARTTLS, authenticated as bob@a.test."""
    client = RawClient(port, source=next(IPS))
    client.ehlo()
    client.starttls(self_signed_context(proc))
    client.ehlo()
    assert client.auth_plain("bob@a.test", "pw-bob-1").code == 235
    return client


@pytest.mark.parametrize("state", ["plaintext", "tls", "tls-after-failed-auth"])
def test_relay_tricks_are_refused_whatever_the_session_state(
    relay: ServerProcess, state: str
) -> None:
    with RawClient(relay.smtp_port, source=next(IPS)) as client:
        client.ehlo()
        if state != "plaintext":
            client.starttls(self_signed_context(relay))
            client.ehlo()
        if state == "tls-after-failed-auth":
            assert client.auth_plain("bob@a.test", "wrong").code == 535
        assert client.command("MAIL FROM:<x@example.org>").code == 250
        for trick in TRICKS:
            reply = client.command(f"RCPT TO:<{trick}>")
            assert (reply.code, reply.text[:5]) == (550, "5.1.1"), trick  # a local address
        for remote in (SOURCE_ROUTE, "user@b.test"):
            reply = client.command(f"RCPT TO:<{remote}>")
            assert (reply.code, reply.text[:5]) == (554, "5.7.1"), remote
        assert client.command("DATA").code == 503  # no recipient: no message
    assert not logged(relay, "queued", client)


@pytest.mark.parametrize("port", ["smtp_port", "submission_port"])
def test_authenticated_relaying_never_reads_tricks_as_routes(
    relay: ServerProcess, port: str
) -> None:
    with logged_in(relay, getattr(relay, port)) as client:
        assert client.command("MAIL FROM:<bob@a.test>").code == 250
        for trick in TRICKS:
            reply = client.command(f"RCPT TO:<{trick}>")
            assert (reply.code, reply.text[:5]) == (550, "5.1.1"), trick
        # A source route is ignored: the same as writing the final address.
        assert client.command(f"RCPT TO:<{SOURCE_ROUTE}>") == client.command(
            "RCPT TO:<user@b.test>"
        )
        reply = client.command("RCPT TO:<someone@example.org>")
        assert reply.code == 250 and "relay" in reply.text  # authenticated: any domain


def test_port_25_takes_local_mail_from_anyone_and_relays_only_for_relay_networks(
    relay: ServerProcess,
) -> None:
    with RawClient(relay.smtp_port, source=next(IPS)) as outside:
        outside.ehlo()
        assert outside.command("MAIL FROM:<x@example.org>").code == 250
        assert outside.command("RCPT TO:<bob@a.test>").code == 250  # no AUTH needed
        assert outside.command("RCPT TO:<team@a.test>").code == 250
        assert outside.command("RCPT TO:<nobody@a.test>").code == 550
        assert outside.command("RCPT TO:<someone@example.org>").code == 554
    with RawClient(relay.smtp_port, source=RELAY_CLIENT) as inside:
        inside.ehlo()
        assert inside.command("MAIL FROM:<x@example.org>").code == 250
        assert inside.command("RCPT TO:<someone@example.org>").code == 250


OWNED = ["bob@a.test", "BOB@A.TEST", "bob+lists@a.test", "team@a.test"]
NOT_OWNED = [
    "carol@a.test",
    '"carol"@a.test',
    "carol+bob@a.test",
    "sales@a.test",
    "nobody@a.test",
    "bob@example.org",
]


def test_submission_needs_auth_and_an_owned_sender(relay: ServerProcess) -> None:
    with RawClient(relay.submission_port, source=next(IPS)) as anonymous:
        anonymous.ehlo()
        reply = anonymous.command("MAIL FROM:<bob@a.test>")
        assert (reply.code, reply.text[:5]) == (530, "5.7.0")
    with logged_in(relay, relay.submission_port) as client:
        for sender in OWNED:
            assert client.command(f"MAIL FROM:<{sender}>").code == 250, sender
            assert client.command("RSET").code == 250
        for sender in NOT_OWNED:
            reply = client.command(f"MAIL FROM:<{sender}>")
            assert (reply.code, reply.text[:5]) == (553, "5.7.1"), sender
            assert client.command("RCPT TO:<carol@a.test>").code == 503  # no transaction
    assert logged(relay, "reject", client)


def received(headers: bytes) -> bytes:
    """The first Received: field, folded lines included."""
    lines = headers.split(b"\r\n")
    start = next(n for n, line in enumerate(lines) if line.startswith(b"Received:"))
    end = next(n for n in range(start + 1, len(lines)) if not lines[n][:1].isspace())
    return b"\r\n".join(lines[start:end])


def submit(client: RawClient, to: str, message: bytes) -> None:
    assert client.command("MAIL FROM:<bob@a.test>").code == 250
    assert client.command(f"RCPT TO:<{to}>").code == 250
    assert client.command("DATA").code == 354
    reply = client.command(message + b"\r\n.")
    assert reply.code == 250, reply


def test_submission_completes_headers_and_keeps_the_identity_private(
    relay: ServerProcess,
) -> None:
    with logged_in(relay, relay.submission_port) as client:
        submit(client, "carol@a.test", b"Subject: bare-submission\r\n\r\nhello")
        submit(
            client,
            "carol@a.test",
            b"Message-ID: <own@a.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
            b"Subject: complete-submission\r\n\r\nhello",
        )
    bare = header_section(wait_for_message(relay, "carol@a.test", b"bare-submission"))
    assert bare.count(b"\r\nMessage-ID: <") == 1 and bare.count(b"\r\nDate: ") == 1
    assert b" with ESMTPSA id " in received(bare)
    assert b"bob" not in received(bare) and b"authenticated as" not in bare
    complete = header_section(wait_for_message(relay, "carol@a.test", b"complete-submission"))
    assert complete.count(b"Message-ID:") == 1 and b"Message-ID: <own@a.test>" in complete
    assert complete.count(b"\r\nDate: ") == 1


def test_received_identity_names_the_user_once_configured(relay: ServerProcess) -> None:
    original = relay.config_path.read_text()
    relay.configure("submission", received_identity=True)
    sighup(relay)  # for sessions from now on
    try:
        with logged_in(relay, relay.submission_port) as client:
            submit(client, "carol@a.test", b"Subject: named\r\n\r\nhello")
    finally:
        relay.config_path.write_text(original)
        sighup(relay)
    headers = header_section(wait_for_message(relay, "carol@a.test", b"Subject: named"))
    assert b"(authenticated as bob@a.test)" in received(headers)
