"""AUTH under attack: plaintext refused, every mechanism, brute force locked out, no user oracle.

One server refuses AUTH without TLS even from loopback (`allow_plaintext_loopback = false`,
so loopback stands in for the internet) and locks out after a few failures; each test
speaks from its own loopback address and tries its own accounts, so lockouts never leak
from one test into another. A second server, with a tiny constant delay and thresholds no
test reaches, times unknown users against wrong passwords.

Standards: RFC 4954 §4 (538 before TLS), §6 (535 5.7.8, 454 4.7.0), RFC 4616 (PLAIN),
RFC 5802 and RFC 7677 (SCRAM-SHA-256), RFC 3207 §4.2.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator

import pytest

from postoffice.protocols.sasl import ScramClient, client_plain, decode_b64, encode_b64
from postoffice.testing.server import ServerProcess
from tests.abuse.helpers import (
    RawClient,
    Reply,
    ServerClosed,
    add_user,
    running,
    self_signed_context,
    sources,
)

IPS = sources(41)
PASSWORDS = {
    "bob@localhost": "pw-bob-1",
    "carol@localhost": "pw-carol-1",
    "dave@localhost": "pw-dave-1",
}
BASE_DELAY = 0.1  # the guarded server's first delay; then 0.2, then its maximum 0.4


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("guarded") / "data")
    proc.configure("submission", allow_plaintext_loopback=False)
    proc.configure(
        "auth",
        max_failures_per_ip=3,
        max_failures_per_account=4,
        window=60,
        lockout=60,
        base_delay=BASE_DELAY,
        max_delay=4 * BASE_DELAY,
    )
    for address, password in PASSWORDS.items():
        add_user(proc, address, password)
    with running(proc):
        yield proc


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("timed") / "data")
    proc.configure(
        "auth",
        max_failures_per_ip=1000,
        max_failures_per_account=1000,
        base_delay=0.01,
        max_delay=0.01,
    )
    add_user(proc, "bob@localhost", PASSWORDS["bob@localhost"])
    with running(proc):
        yield proc


def tls_client(proc: ServerProcess) -> RawClient:
    """A fresh address, implicit TLS, EHLO done."""
    client = RawClient(proc.submissions_port, source=next(IPS), tls=self_signed_context(proc))
    client.ehlo()
    return client


# -- the three mechanisms ---------------------------------------------------------------


def auth_plain(client: RawClient, user: str, password: str) -> Reply:
    return client.auth_plain(user, password)


def auth_login(client: RawClient, user: str, password: str) -> Reply:
    """LOGIN with the user name as initial response, then the password."""
    reply = client.command("AUTH LOGIN " + encode_b64(user.encode()))
    assert (reply.code, decode_b64(reply.text)) == (334, b"Password:"), reply
    return client.command(encode_b64(password.encode()))


def auth_scram(client: RawClient, user: str, password: str) -> Reply:
    scram = ScramClient(user, password)
    reply = client.command("AUTH SCRAM-SHA-256 " + encode_b64(scram.first()))
    assert reply.code == 334, reply
    server_first = decode_b64(reply.text)
    assert server_first is not None
    reply = client.command(encode_b64(scram.final(server_first)))
    if reply.code != 334:
        return reply
    server_final = decode_b64(reply.text)
    assert server_final is not None
    scram.verify(server_final)  # the server proved it knows the keys
    return client.command("")


MECHANISMS: dict[str, Callable[[RawClient, str, str], Reply]] = {
    "PLAIN": auth_plain,
    "LOGIN": auth_login,
    "SCRAM-SHA-256": auth_scram,
}


def is_failure(reply: Reply) -> bool:
    return (reply.code, reply.text) == (535, "5.7.8 Authentication credentials invalid")


def is_locked(reply: Reply) -> bool:
    return (reply.code, reply.text[:5]) == (454, "4.7.0")


# -- tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["smtp_port", "submission_port"])
def test_auth_is_neither_offered_nor_accepted_before_tls(guarded: ServerProcess, port: str) -> None:
    with RawClient(getattr(guarded, port), source=next(IPS)) as client:
        assert not any(line.startswith("AUTH") for line in client.ehlo().lines)
        for command in (
            "AUTH PLAIN " + encode_b64(client_plain("bob@localhost", "pw-bob-1")),
            "AUTH LOGIN",
            "AUTH SCRAM-SHA-256",
        ):
            reply = client.command(command)
            assert (reply.code, reply.text[:6]) == (538, "5.7.11"), reply
        if port == "submission_port":
            reply = client.command("MAIL FROM:<bob@localhost>")
            assert (reply.code, reply.text[:5]) == (530, "5.7.0")
        client.starttls(self_signed_context(guarded))
        assert "AUTH SCRAM-SHA-256 PLAIN LOGIN" in client.ehlo().lines
        assert client.auth_plain("bob@localhost", "pw-bob-1").code == 235


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_each_mechanism_logs_in_and_fails_alike_for_unknown_users(
    guarded: ServerProcess, mechanism: str
) -> None:
    login = MECHANISMS[mechanism]
    with tls_client(guarded) as client:
        wrong = login(client, "carol@localhost", "not-her-password")
        unknown = login(client, "nobody@localhost", "whatever")
        assert is_failure(wrong), wrong
        assert unknown == wrong
        reply = login(client, "Bob@LOCALHOST", PASSWORDS["bob@localhost"])
        assert (reply.code, reply.text[:5]) == (235, "2.7.0"), reply
        assert client.command("AUTH PLAIN").code == 503  # once per session


def test_ip_lockout_engages_after_growing_delays(guarded: ServerProcess) -> None:
    client = tls_client(guarded)
    address = client.sock.getsockname()[0]
    took = []
    for n in range(3):  # a different unknown account each time: only the address adds up
        started_at = time.monotonic()
        assert is_failure(client.auth_plain(f"ghost{n}@localhost", "guess"))
        took.append(time.monotonic() - started_at)
    assert took[2] - took[0] > 1.5 * BASE_DELAY, took  # 0.1 s, then 0.4 s
    # Locked: even the right password is refused now, without a check, then 421.
    assert is_locked(client.auth_plain("bob@localhost", "pw-bob-1"))
    assert is_locked(client.auth_plain("bob@localhost", "pw-bob-1"))
    reply = client.auth_plain("bob@localhost", "pw-bob-1")
    assert (reply.code, reply.text[:5]) == (421, "4.7.0")
    with pytest.raises(ServerClosed):
        client.command("NOOP")
    client.close()
    with RawClient(
        guarded.submissions_port, source=address, tls=self_signed_context(guarded)
    ) as again:
        again.ehlo()
        assert is_locked(again.auth_plain("bob@localhost", "pw-bob-1"))
    with tls_client(guarded) as elsewhere:  # another address: bob was never locked
        assert elsewhere.auth_plain("bob@localhost", "pw-bob-1").code == 235


@pytest.mark.parametrize("account", ["dave@localhost", "ghost@localhost"])
def test_account_lockout_engages_across_addresses(guarded: ServerProcess, account: str) -> None:
    for _ in range(4):  # one failure per address: no address reaches its own threshold
        with tls_client(guarded) as client:
            assert is_failure(client.auth_plain(account, "guess"))
    with tls_client(guarded) as client:
        # The right password from a clean address: refused, the same for a user who
        # exists and one who does not (the lockout reveals nothing).
        assert is_locked(client.auth_plain(account, PASSWORDS.get(account, "guess")))
        assert client.auth_plain("bob@localhost", "pw-bob-1").code == 235


def test_unknown_user_costs_what_a_wrong_password_costs(timed: ServerProcess) -> None:
    durations: dict[str, list[float]] = {"nobody@localhost": [], "bob@localhost": []}
    replies = set()
    with RawClient(timed.submission_port, source=next(IPS)) as client:
        client.ehlo()  # plaintext AUTH from loopback: allowed by default
        for _ in range(10):
            for user, times in durations.items():
                started_at = time.monotonic()
                reply = client.auth_plain(user, "wrong-password")
                times.append(time.monotonic() - started_at)
                replies.add(reply)
    assert len(replies) == 1 and is_failure(replies.pop())
    ratio = statistics.median(durations["nobody@localhost"]) / statistics.median(
        durations["bob@localhost"]
    )
    assert 0.5 < ratio < 2.0, durations
