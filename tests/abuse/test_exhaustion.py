"""Resource exhaustion: connection floods, command and message rates, protocol errors, slow
and deaf clients, huge lines and many recipients.

The `limited` server has small limits and 1.5-second timeouts, so every slow-client test
takes seconds; each test speaks from its own loopback address (127.0.99.0/24 is exempt).

Standards: RFC 5321 §4.5.3.1 (size limits, 452 for too many recipients), §4.5.3.2 (timeouts),
§3.8 and §4.2.2 (421), RFC 3463 (4.7.0, 4.7.1), RFC 2920 (pipelining).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.testing.server import ServerProcess
from tests.abuse.helpers import (
    RawClient,
    ServerClosed,
    add_user,
    logged,
    parse_replies,
    running,
    self_signed_context,
    sources,
    wait_for_message,
)

IPS = sources(61)
EXEMPT = sources(99)
TIMEOUT = 1.5  # command_timeout and data_timeout of the limited server
MIN_DATA_RATE = 100  # octets a second: a byte every 0.3 s is far below it
PER_IP = 3
COMMANDS_PER_MINUTE = 40
MESSAGES_PER_MINUTE = 3
ERRORS = 5


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("limited") / "data")
    proc.configure(
        "limits",
        max_connections_per_ip=PER_IP,
        commands_per_minute=COMMANDS_PER_MINUTE,
        messages_per_minute=MESSAGES_PER_MINUTE,
        exempt_networks=["127.0.99.0/24"],
        command_timeout=TIMEOUT,
        data_timeout=TIMEOUT,
        min_data_rate=MIN_DATA_RATE,
        errors_per_session=ERRORS,
    )
    add_user(proc, "alice@localhost", "pw-alice-1")
    with running(proc):
        yield proc


def accepted_within(port: int, source: str, timeout: float = 5.0) -> bool:
    """A connection from `source` is greeted with 220 before `timeout` (slots free up
    only once the server has seen earlier connections close)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with RawClient(port, source=source, greeting=False) as client:
            if client.reply().code == 220:
                return True
        time.sleep(0.1)
    return False


# -- connections ------------------------------------------------------------------------


def test_a_flood_from_one_address_gets_its_share_and_no_more(limited: ServerProcess) -> None:
    flooder = next(IPS)
    clients = [
        RawClient(limited.smtp_port, source=flooder, greeting=False) for _ in range(PER_IP + 40)
    ]
    try:
        greetings = [client.reply() for client in clients]
        assert Counter(r.code for r in greetings) == {220: PER_IP, 421: 40}, greetings
        for client, reply in zip(clients, greetings, strict=True):
            if reply.code == 421:  # and closed at once
                assert reply.text.startswith("4.7.0 Too many connections")
                assert client.until_closed(5)[0] == b""
        with RawClient(limited.smtp_port, source=next(IPS)) as other:
            assert other.command("NOOP").code == 250  # others are served meanwhile
    finally:
        for client in clients:
            client.close()
    assert accepted_within(limited.smtp_port, flooder)


def test_total_connections_are_capped(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data")
    proc.configure("limits", max_connections=4)
    addresses = sources(62)
    with running(proc), contextlib.ExitStack() as stack:
        for _ in range(4):
            stack.enter_context(RawClient(proc.smtp_port, source=next(addresses)))
        with RawClient(proc.submission_port, source=next(addresses), greeting=False) as extra:
            reply = extra.reply()
            assert (reply.code, reply.text) == (421, "4.7.0 Too many connections, try again later")
            assert extra.until_closed(5)[0] == b""
        stack.close()
        assert accepted_within(proc.smtp_port, next(addresses))


def test_failed_tls_handshakes_free_their_connection_slots(limited: ServerProcess) -> None:
    source = next(IPS)
    for _ in range(PER_IP + 1):
        with RawClient(limited.submission_port, source=source) as client:
            client.ehlo()
            assert client.command("STARTTLS").code == 220
            client.send(b"this is not a TLS client hello\r\n" * 8)
            client.until_closed(5)
        with RawClient(limited.submissions_port, source=source, greeting=False) as client:
            client.send(b"EHLO plaintext.test\r\n")
            client.until_closed(5)
    with contextlib.ExitStack() as stack:
        for _ in range(PER_IP):
            client = stack.enter_context(
                RawClient(limited.smtp_port, source=source, greeting=False)
            )
            assert client.reply().code == 220


def test_exempt_networks_are_never_limited(limited: ServerProcess) -> None:
    source = next(EXEMPT)
    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(RawClient(limited.smtp_port, source=source))
            for _ in range(PER_IP + 2)
        ]
        client = clients[-1]
        client.send(b"NOOP\r\n" * (COMMANDS_PER_MINUTE + 20))
        assert all(client.reply().code == 250 for _ in range(COMMANDS_PER_MINUTE + 20))
        client.ehlo()
        for _ in range(MESSAGES_PER_MINUTE + 2):
            assert client.command("MAIL FROM:<a@example.org>").code == 250
            assert client.command("RSET").code == 250


# -- rates and errors -------------------------------------------------------------------


def test_commands_per_minute(limited: ServerProcess) -> None:
    with RawClient(limited.smtp_port, source=next(IPS)) as client:
        client.ehlo()  # a command too
        client.send(b"NOOP\r\n" * COMMANDS_PER_MINUTE)
        data, _ = client.until_closed(5)
    replies = parse_replies(data)
    assert [r.code for r in replies] == [250] * (COMMANDS_PER_MINUTE - 1) + [421]
    assert replies[-1].text.startswith("4.7.0 Too many commands")


def test_messages_per_minute(limited: ServerProcess) -> None:
    with RawClient(limited.smtp_port, source=next(IPS)) as client:
        client.ehlo()
        for _ in range(MESSAGES_PER_MINUTE):
            assert client.command("MAIL FROM:<a@example.org>").code == 250
            assert client.command("RSET").code == 250
        reply = client.command("MAIL FROM:<a@example.org>")
        assert (reply.code, reply.text[:5]) == (450, "4.7.1")
        assert client.command("RCPT TO:<alice@localhost>").code == 503  # no transaction
        assert client.command("NOOP").code == 250  # a temporary refusal, not a hang-up


def test_errors_per_session(limited: ServerProcess) -> None:
    with RawClient(limited.smtp_port, source=next(IPS)) as client:
        client.ehlo()
        for _ in range(ERRORS - 1):
            assert client.command("BOGUS").code == 500
        reply = client.command("BOGUS")
        assert (reply.code, reply.text) == (421, "4.7.0 Too many errors, closing connection")
        assert client.until_closed(5)[0] == b""


# -- slow and deaf clients --------------------------------------------------------------


def test_a_silent_client_is_closed_after_command_timeout(limited: ServerProcess) -> None:
    with RawClient(limited.smtp_port, source=next(IPS)) as client:
        client.ehlo()
        data, took = client.until_closed(TIMEOUT + 5)
    assert parse_replies(data)[-1].text.startswith("4.4.2")
    assert TIMEOUT - 0.5 < took < TIMEOUT + 2.5


def test_each_command_gives_the_client_a_new_command_timeout(limited: ServerProcess) -> None:
    """Commands answered while the session's task sleeps (smtp_parked.py) move the time
    limit on like any other: a client busy for twice the timeout is not cut off."""
    with RawClient(limited.smtp_port, source=next(IPS)) as client:
        client.ehlo()
        started = time.monotonic()
        while time.monotonic() - started < 2 * TIMEOUT:
            assert client.command("NOOP").code == 250
            time.sleep(TIMEOUT / 3)
        assert client.command("MAIL FROM:<a@example.org>").code == 250
        data, took = client.until_closed(TIMEOUT + 5)
    assert parse_replies(data)[-1].text.startswith("4.4.2")
    assert TIMEOUT - 0.5 < took < TIMEOUT + 2.5


def dribble(client: RawClient, data: bytes, interval: float, limit: float) -> float:
    """Send `data` one byte every `interval` seconds; how long until the server hung up."""
    started = time.monotonic()
    with contextlib.suppress(OSError):
        for byte in data:
            client.send(bytes([byte]))
            if client.pending(interval):
                break
            assert time.monotonic() - started < limit, "the server kept a dribbling client"
    return time.monotonic() - started


def test_a_client_dribbling_a_command_is_closed_after_command_timeout(
    limited: ServerProcess,
) -> None:
    """One byte every 0.3 s: never silent for a whole timeout, yet no command ever ends."""
    with RawClient(limited.smtp_port, source=next(IPS)) as client:
        took = dribble(client, b"NOOP " + b"x" * 100, 0.3, limit=4 * TIMEOUT)
        assert TIMEOUT - 0.5 < took < TIMEOUT + 2.0
    assert logged(limited, "timeout", client, wait=5)


def test_a_client_slow_in_data_is_closed_after_data_timeout(limited: ServerProcess) -> None:
    with RawClient(limited.smtp_port, source=next(IPS)) as client:
        client.ehlo()
        assert client.command("MAIL FROM:<a@example.org>").code == 250
        assert client.command("RCPT TO:<alice@localhost>").code == 250
        assert client.command("DATA").code == 354
        took = dribble(client, b"Subject: slow\r\n\r\n", TIMEOUT + 1.0, limit=3 * TIMEOUT)
        assert took < TIMEOUT + 2.0
    assert logged(limited, "timeout", client, wait=5)
    assert not logged(limited, "queued", client)


def test_a_client_dribbling_its_message_is_closed(limited: ServerProcess) -> None:
    """One byte every 0.3 s in DATA: never silent for data_timeout, yet far below the
    minimum data rate, so the session ends soon after data_timeout (slowloris)."""
    with RawClient(limited.smtp_port, source=next(IPS)) as client:
        client.ehlo()
        assert client.command("MAIL FROM:<a@example.org>").code == 250
        assert client.command("RCPT TO:<alice@localhost>").code == 250
        assert client.command("DATA").code == 354
        took = dribble(client, b"Subject: slow\r\n\r\n" + b"x" * 200, 0.3, limit=4 * TIMEOUT)
        assert took < TIMEOUT + 2.0
    assert logged(limited, "timeout", client, wait=5)
    assert not logged(limited, "queued", client)


def test_a_client_that_never_reads_is_closed(limited: ServerProcess) -> None:
    """Pipelined commands, replies never read: the server must not wait on it forever."""
    client = RawClient(limited.smtp_port, source=next(EXEMPT))
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.sock.settimeout(0.5)
    with contextlib.suppress(TimeoutError):
        for _ in range(10_000):  # until the buffers are full; HELP's long reply fills them fast
            client.sock.sendall(b"HELP\r\n" * 10_000)
    # The reads wait TIMEOUT, the goodbye TIMEOUT more, closing at most TIMEOUT again.
    assert logged(limited, "disconnect", client, wait=3 * TIMEOUT + 3)
    client.close()


# -- size ---------------------------------------------------------------------------------


def server_rss(proc: ServerProcess) -> int:
    """The server's resident memory in kB."""
    assert proc.process is not None
    status = Path(f"/proc/{proc.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


@contextlib.contextmanager
def peak_growth(proc: ServerProcess) -> Iterator[list[int]]:
    """Sample the server's memory while the block runs; yields [growth in kB] after it."""
    baseline, peak, done = server_rss(proc), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], server_rss(proc))

    sampler = threading.Thread(target=sample)
    sampler.start()
    result: list[int] = []
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        result.append(max(peak[0], server_rss(proc)) - baseline)


def test_a_10000_octet_command_line_is_refused(limited: ServerProcess) -> None:
    with RawClient(limited.smtp_port, source=next(IPS)) as client:
        client.ehlo()
        reply = client.command(b"NOOP " + b"x" * 9_993)  # 10,000 octets with CRLF
        assert (reply.code, reply.text) == (500, "5.5.2 Line too long")
        assert client.command("NOOP").code == 250


MEGABYTES = 10
HUGE_LINE = b"x" * (MEGABYTES << 20)


def test_a_10_mb_header_line_is_refused_in_bounded_memory(limited: ServerProcess) -> None:
    with RawClient(limited.smtp_port, source=next(IPS)) as client, peak_growth(limited) as growth:
        client.ehlo()
        assert client.command("MAIL FROM:<a@example.org>").code == 250
        assert client.command("RCPT TO:<alice@localhost>").code == 250
        assert client.command("DATA").code == 354
        reply = client.command(b"Subject: " + HUGE_LINE + b"\r\n\r\nbody\r\n.")
        assert (reply.code, reply.text[:5]) == (554, "5.6.0")
        reply = client.command(b"NOOP " + HUGE_LINE)  # and as a command line
        assert (reply.code, reply.text) == (500, "5.5.2 Line too long")
        assert client.command("NOOP").code == 250
    assert growth[0] < (MEGABYTES << 10) // 4, f"server grew by {growth[0]} kB"
    assert not logged(limited, "queued", client)


def test_1000_recipients(limited: ServerProcess) -> None:
    """RFC 5321 §4.5.3.1.10: past the limit each RCPT gets 452 and the client sends the rest
    in another transaction; the accepted ones still get their message."""
    with RawClient(limited.smtp_port, source=next(EXEMPT)) as client:
        client.ehlo()
        client.send(
            b"MAIL FROM:<a@example.org>\r\n" + b"RCPT TO:<alice@localhost>\r\n" * 1000 + b"DATA\r\n"
        )
        assert client.reply().code == 250
        codes = Counter((r.code, r.text[:5]) for r in (client.reply() for _ in range(1000)))
        assert codes == {(250, "2.1.5"): 100, (452, "4.5.3"): 900}, codes
        assert client.reply().code == 354
        assert client.command(b"Subject: many\r\n\r\nhello\r\n.").code == 250
    wait_for_message(limited, "alice@localhost", b"Subject: many")


def test_tls_sessions_are_limited_like_plaintext_ones(limited: ServerProcess) -> None:
    """The per-address cap counts implicit-TLS connections too (refused before any TLS)."""
    source = next(IPS)
    context = self_signed_context(limited)
    with contextlib.ExitStack() as stack:
        for _ in range(PER_IP):
            stack.enter_context(RawClient(limited.submissions_port, source=source, tls=context))
        with pytest.raises((ssl.SSLError, ConnectionError, ServerClosed)):
            RawClient(limited.submissions_port, source=source, tls=context).close()
