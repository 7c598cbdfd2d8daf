"""SMTP smuggling through TLS and AUTH: no end-of-data spelling but <CRLF>.<CRLF> ends a
message, whichever port, however the session was encrypted or authenticated.

Each published sequence is put in a message, followed by a smuggled transaction (a forged
sender) and the real end marker; the whole message must be refused with one reply and
nothing queued. A clean message over the same path is delivered, so "nothing delivered"
means something.

Standards: RFC 5321 §2.3.8 and §4.1.1.4 (CRLF, the end of data), RFC 3207, RFC 8314,
RFC 4954; the SMTP smuggling advisories of December 2023.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from postoffice.testing.server import ServerProcess
from tests.abuse.helpers import (
    RawClient,
    add_user,
    delivered,
    logged,
    parse_replies,
    running,
    self_signed_context,
    sources,
    wait_for_message,
)
from tests.e2e.test_smuggling_e2e import SEQUENCES

IPS = sources(71)
SMUGGLED = (
    b"MAIL FROM:<admin@localhost>\r\nRCPT TO:<alice@localhost>\r\nDATA\r\n"
    b"From: admin@localhost\r\nSubject: smuggled\r\n\r\nsend money\r\n"
)


@pytest.fixture(scope="module")
def mx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("smuggling") / "data")
    add_user(proc, "alice@localhost", "pw-alice-1")
    add_user(proc, "bob@localhost", "pw-bob-1")
    with running(proc):
        yield proc


def port_25_starttls(proc: ServerProcess) -> RawClient:
    client = RawClient(proc.smtp_port, source=next(IPS))
    client.ehlo()
    client.starttls(self_signed_context(proc))
    client.ehlo()
    assert client.command("MAIL FROM:<a@example.org>").code == 250
    return client


def submission_starttls(proc: ServerProcess) -> RawClient:
    client = RawClient(proc.submission_port, source=next(IPS))
    client.ehlo()
    client.starttls(self_signed_context(proc))
    return _logged_in(client)


def submission_implicit_tls(proc: ServerProcess) -> RawClient:
    client = RawClient(proc.submissions_port, source=next(IPS), tls=self_signed_context(proc))
    return _logged_in(client)


def _logged_in(client: RawClient) -> RawClient:
    client.ehlo()
    assert client.auth_plain("bob@localhost", "pw-bob-1").code == 235
    assert client.command("MAIL FROM:<bob@localhost>").code == 250
    return client


PATHS: dict[str, Callable[[ServerProcess], RawClient]] = {
    "port25-starttls": port_25_starttls,
    "submission-starttls-auth": submission_starttls,
    "submissions-implicit-auth": submission_implicit_tls,
}


def send_message(client: RawClient, body: bytes) -> list[int]:
    """RCPT, DATA and `body` (with its end marker) then QUIT in one packet: the reply codes."""
    assert client.command("RCPT TO:<alice@localhost>").code == 250
    assert client.command("DATA").code == 354
    client.send(body + b"QUIT\r\n")
    data, _ = client.until_closed(10)
    return [reply.code for reply in parse_replies(data)]


@pytest.mark.parametrize("path", PATHS)
def test_a_clean_message_is_delivered(mx: ServerProcess, path: str) -> None:
    with PATHS[path](mx) as client:
        subject = f"Subject: clean {path}".encode()
        assert send_message(client, subject + b"\r\n\r\nhello\r\n.\r\n") == [250, 221]
    wait_for_message(mx, "alice@localhost", subject)


@pytest.mark.parametrize("sequence", SEQUENCES, ids=repr)
@pytest.mark.parametrize("path", PATHS)
def test_smuggled_transaction_is_refused_with_its_carrier(
    mx: ServerProcess, path: str, sequence: bytes
) -> None:
    with PATHS[path](mx) as client:
        body = b"Subject: outer\r\n\r\nbody" + sequence + SMUGGLED + b".\r\n"
        assert send_message(client, body) == [554, 221]  # one refusal, then our QUIT
    assert not logged(mx, "queued", client)
    assert not [m for m in delivered(mx, "alice@localhost") if b"smuggled" in m]
