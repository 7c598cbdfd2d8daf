"""STARTTLS under attack: plaintext injected behind the command, the session reset, old TLS
versions, and a certificate reload on SIGHUP that running sessions survive.

The injection test is CVE-2011-0411 ("NO STARTTLS"): a man in the middle appends commands to
the client's STARTTLS in the same packet; a server that reads them after the handshake runs
them as if the client had sent them inside TLS.

Standards: RFC 3207 §4.2 (discard all knowledge obtained before TLS), RFC 8314 §3.3 (implicit
TLS), RFC 8996 (no TLS 1.0/1.1).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import trustme

from postoffice.protocols.sasl import client_plain, encode_b64
from postoffice.testing.server import ServerProcess
from tests.abuse.helpers import CaFiles, RawClient, add_user, make_ca, running, sighup, sources
from tests.test_tls import client_up_to

IPS = sources(31)
PLAIN_BOB = encode_b64(client_plain("bob@localhost", "pw-bob-1"))
INJECTED = {
    "rset": b"RSET\r\n",
    "ehlo": b"EHLO evil.test\r\n",
    "transaction": b"EHLO evil.test\r\nMAIL FROM:<bob@localhost>\r\nRCPT TO:<bob@localhost>\r\n",
    "auth": f"AUTH PLAIN {PLAIN_BOB}\r\n".encode(),
}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, CaFiles]:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, ca: tuple[trustme.CA, CaFiles]
) -> Iterator[ServerProcess]:
    files = ca[1]
    proc = ServerProcess(tmp_path_factory.mktemp("starttls") / "data")
    proc.configure("tls", cert=str(files.cert), key=str(files.key))
    add_user(proc, "bob@localhost", "pw-bob-1")
    with running(proc):
        yield proc


@pytest.fixture
def trusted(ca: tuple[trustme.CA, CaFiles]) -> ssl.SSLContext:
    return ca[1].context()


@pytest.mark.parametrize("injected", INJECTED.values(), ids=INJECTED.keys())
@pytest.mark.parametrize("port", ["smtp_port", "submission_port"])
def test_plaintext_after_starttls_is_never_answered_under_tls(
    tls_server: ServerProcess, trusted: ssl.SSLContext, port: str, injected: bytes
) -> None:
    with RawClient(getattr(tls_server, port), source=next(IPS)) as client:
        client.ehlo()
        client.starttls(trusted, injected=injected)
        assert client.command("HELP").code == 214  # the first reply under TLS answers us
        # Nothing injected took effect: no EHLO, no transaction, no login.
        assert client.command("MAIL FROM:<bob@localhost>").code == 503
        client.ehlo()
        reply = client.command("MAIL FROM:<bob@localhost>")
        assert reply.code == (530 if port == "submission_port" else 250), reply
    (line,) = [
        line
        for line in tls_server.log_path.read_text().splitlines()
        if f" starttls client={client.local} " in line
    ]
    assert line.endswith(f" discarded={len(injected)}")


def test_starttls_forgets_helo_and_login(
    tls_server: ServerProcess, trusted: ssl.SSLContext
) -> None:
    with RawClient(tls_server.submission_port, source=next(IPS)) as client:
        client.ehlo()
        assert client.auth_plain("bob@localhost", "pw-bob-1").code == 235  # loopback plaintext
        client.starttls(trusted)
        assert client.command("MAIL FROM:<bob@localhost>").code == 503  # no EHLO yet
        ehlo = client.ehlo()
        assert "STARTTLS" not in ehlo.lines  # RFC 3207 §4: not offered twice
        assert "AUTH SCRAM-SHA-256 PLAIN LOGIN" in ehlo.lines
        reply = client.command("MAIL FROM:<bob@localhost>")
        assert (reply.code, reply.text[:5]) == (530, "5.7.0")  # the login is gone too
        assert client.command("STARTTLS").code == 503


def test_starttls_is_refused_inside_a_transaction(tls_server: ServerProcess) -> None:
    with RawClient(tls_server.smtp_port, source=next(IPS)) as client:
        client.ehlo()
        assert client.command("MAIL FROM:<a@example.org>").code == 250
        assert client.command("STARTTLS").code == 503
        assert client.command("RCPT TO:<bob@localhost>").code == 250  # transaction intact


def test_implicit_tls_offers_no_starttls(
    tls_server: ServerProcess, trusted: ssl.SSLContext
) -> None:
    with RawClient(tls_server.submissions_port, source=next(IPS), tls=trusted) as client:
        ehlo = client.ehlo()
        assert "STARTTLS" not in ehlo.lines
        assert "AUTH SCRAM-SHA-256 PLAIN LOGIN" in ehlo.lines
        assert client.command("STARTTLS").code == 503


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
def test_tls_before_1_2_is_refused_and_1_2_accepted(
    tls_server: ServerProcess, implicit: bool
) -> None:
    def handshake(maximum: ssl.TLSVersion) -> str | None:
        port = tls_server.submissions_port if implicit else tls_server.submission_port
        with RawClient(port, source=next(IPS), greeting=not implicit) as client:
            if not implicit:
                client.ehlo()
                assert client.command("STARTTLS").code == 220
            client.sock = client_up_to(maximum).wrap_socket(client.sock)
            if implicit:
                assert client.reply().code == 220
            return client.sock.version()

    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(ssl.TLSVersion.TLSv1_1)
    assert handshake(ssl.TLSVersion.TLSv1_2) == "TLSv1.2"


def test_sighup_reloads_the_certificate_and_sessions_go_on(
    tls_server: ServerProcess, ca: tuple[trustme.CA, CaFiles], trusted: ssl.SSLContext
) -> None:
    def serial(client: RawClient) -> int:
        assert isinstance(client.sock, ssl.SSLSocket)
        cert = client.sock.getpeercert()
        assert cert is not None
        return int(str(cert["serialNumber"]), 16)

    with RawClient(tls_server.submissions_port, source=next(IPS), tls=trusted) as old:
        old.ehlo()
        before = serial(old)
        ca[1].reissue(ca[0])
        sighup(tls_server)
        with RawClient(tls_server.submissions_port, source=next(IPS), tls=trusted) as new:
            assert serial(new) != before
            new.ehlo()
            assert new.auth_plain("bob@localhost", "pw-bob-1").code == 235
        # The session that began with the old certificate carries on.
        assert old.auth_plain("bob@localhost", "pw-bob-1").code == 235
        assert old.command("MAIL FROM:<bob@localhost>").code == 250
