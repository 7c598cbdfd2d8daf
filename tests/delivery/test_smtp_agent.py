"""The remote SMTP agent against real postoffice servers and small scripted peers on loopback.

Real servers (child processes on 127.0.0.3) show interoperation: MX order, a dead first MX,
one connection reused for several messages. Scripted peers (asyncio servers on 127.0.0.5/6)
produce what a good server never would: mixed RCPT verdicts, refusing greetings, endless or
overlong replies, plaintext injected after STARTTLS, certificates that do or do not match.
Every test is bounded by the reply bounds or short timeouts, never by a long wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme

from postoffice.delivery.base import Outcome, RecipientResult
from postoffice.delivery.smtp import SmtpDeliveryAgent
from postoffice.dns import DnsPythonResolver
from postoffice.queue.entry import QueueEntry, RecipientState
from postoffice.testing.dns import DnsServer
from postoffice.testing.server import ServerProcess, free_port

ME = "mx.a.test"
ZONES = {
    # the real server B on 127.0.0.3; nothing listens on 127.0.0.4
    "b.test": ["MX 10 mx.b.test."],
    "mx.b.test": ["A 127.0.0.3"],
    "c.test": ["MX 10 dead.c.test.", "MX 20 mx.b.test."],
    "dead.c.test": ["A 127.0.0.4"],
    "dead.test": ["MX 10 dead.c.test."],
    # scripted peers on 127.0.0.5 and 127.0.0.6
    "peer.test": ["MX 10 mx.peer.test."],
    "mx.peer.test": ["A 127.0.0.5"],
    "two.test": ["MX 10 mx1.two.test.", "MX 20 mx2.two.test."],
    "mx1.two.test": ["A 127.0.0.5"],
    "mx2.two.test": ["A 127.0.0.6"],
    "tls.test": ["MX 10 mx.tls.test."],
    "mx.tls.test": ["A 127.0.0.5"],
    "badname.test": ["MX 10 wrong.tls.test."],
    "wrong.tls.test": ["A 127.0.0.5"],
    # we are an MX ourselves
    "loop.test": ["MX 10 mx.a.test."],
    "backup.test": ["MX 5 mx.peer.test.", "MX 10 mx.a.test.", "MX 20 mx2.two.test."],
    "mx.a.test": ["A 127.0.0.7"],
}


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer(ZONES) as server:
        yield server


class Spool:
    """Message bytes by queue id; `streaming` False offers only `read_message`."""

    def __init__(self, *, streaming: bool = True) -> None:
        self.bodies: dict[str, bytes] = {}
        if streaming:
            self.open_message = lambda qid: io.BytesIO(self.bodies[qid])

    def read_message(self, qid: str) -> bytes:
        return self.bodies[qid]

    def entry(self, body: bytes, *recipients: str, sender: str = "alice@a.test") -> QueueEntry:
        qid = f"q{len(self.bodies)}"
        self.bodies[qid] = body
        states = [RecipientState(r, r) for r in recipients]
        return QueueEntry(qid, sender, states, arrival=0.0, size=len(body))


class Journal:
    """The `record` callback: keeps every event, and checks it is plain JSON."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, qid: str, event: str, **fields: Any) -> None:
        json.dumps(fields)
        self.events.append((qid, event, fields))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [fields for _, event, fields in self.events if event == kind]

    def transcript(self) -> list[str]:
        return [line for fields in self.of("transcript") for line in fields["lines"]]


def agent(
    dns: DnsServer, port: int, spool: Spool, journal: Journal, **options: Any
) -> SmtpDeliveryAgent:
    settings: dict[str, Any] = {"connect_timeout": 5, "command_timeout": 5} | options
    resolver = DnsPythonResolver([dns.address])
    return SmtpDeliveryAgent(resolver, spool, hostname=ME, port=port, record=journal, **settings)


def outcomes(results: list[RecipientResult]) -> list[tuple[str, Outcome, str]]:
    return [(r.recipient, r.outcome, r.status) for r in results]


# --- scripted peers --------------------------------------------------------------------------

OK = b"250 2.0.0 Ok\r\n"


@dataclass
class Peer:
    """A scripted SMTP server; it records what it was sent."""

    greeting: bytes = b"220 peer.test ESMTP\r\n"
    ehlo: tuple[str, ...] | None = ("PIPELINING", "SIZE 1000000", "8BITMIME", "SMTPUTF8")
    tls: ssl.SSLContext | None = None  # offer STARTTLS with this context
    inject: bytes = b""  # plaintext sent right after the 220 to STARTTLS
    mail: bytes = b"250 2.1.0 Ok\r\n"
    rcpt: dict[str, bytes] = field(default_factory=dict)  # recipient -> reply (default 250)
    final: bytes = b"250 2.0.0 Ok: queued as 1\r\n"
    hold: float = 0.0  # seconds before the final reply
    endless_rcpt: bool = False  # answer RCPT with a multi-line reply that never ends
    drop_in_data: bool = False  # hang up after the message, before the final reply
    stale_after: int | None = None  # after that many messages on a connection, 421 to MAIL
    commands: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    connections: int = 0
    active: int = 0
    most_active: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.connections += 1
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await self.session(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.active -= 1
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.greeting)
        secure, accepted, received = False, 0, 0
        while line := await reader.readline():
            command = line.decode().rstrip("\r\n")
            self.commands.append(command)
            verb = command.split(" ")[0].upper()
            reply = b"502 5.5.1 not implemented\r\n"
            if verb == "EHLO" and self.ehlo is not None:
                lines = [
                    "peer.test",
                    *self.ehlo,
                    *(["STARTTLS"] if self.tls and not secure else []),
                ]
                reply = b"".join(
                    f"250{' ' if i == len(lines) - 1 else '-'}{text}\r\n".encode()
                    for i, text in enumerate(lines)
                )
            elif verb == "HELO":
                reply = b"250 peer.test\r\n"
            elif verb == "STARTTLS" and self.tls is not None:
                writer.write(b"220 2.0.0 Ready to start TLS\r\n" + self.inject)
                await writer.drain()
                await writer.start_tls(self.tls)
                secure = True
                continue
            elif verb == "AUTH":
                reply = await self.auth(command, reader, writer)
            elif verb == "MAIL":
                if self.stale_after is not None and received >= self.stale_after:
                    writer.write(b"421 4.4.2 peer.test idle too long\r\n")
                    return
                reply, accepted = self.mail, 0
            elif verb == "RCPT":
                if self.endless_rcpt:
                    while True:
                        writer.write(b"250-and more\r\n" * 200)
                        await writer.drain()
                reply = self.rcpt.get(command[9:-1], b"250 2.1.5 Ok\r\n")
                accepted += reply.startswith(b"2")
            elif verb == "DATA":
                if not accepted:
                    reply = b"503 5.5.1 no valid recipients\r\n"
                else:
                    writer.write(b"354 go ahead\r\n")
                    self.messages.append((await reader.readuntil(b"\r\n.\r\n"))[:-3])
                    received += 1
                    if self.drop_in_data:
                        return
                    await asyncio.sleep(self.hold)
                    reply = self.final
            elif verb in ("RSET", "NOOP"):
                reply = OK
            elif verb == "QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                return
            writer.write(reply)
            await writer.drain()

    async def auth(
        self, command: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        if command.upper() == "AUTH LOGIN":
            for prompt in (b"334 VXNlcm5hbWU6\r\n", b"334 UGFzc3dvcmQ6\r\n"):
                writer.write(prompt)
                self.commands.append((await reader.readline()).decode().rstrip("\r\n"))
        return b"235 2.7.0 Authentication successful\r\n"

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def serving(*peers: tuple[str, Peer]) -> AsyncIterator[int]:
    """Run each peer on its address, all on one port (the agent's port); yield the port."""
    servers: list[asyncio.Server] = []
    for _ in range(20):
        port = free_port(peers[0][0])
        try:
            for address, peer in peers:
                servers.append(await asyncio.start_server(peer.handle, address, port))
            break
        except OSError:
            for server in servers:
                server.close()
            servers = []
    try:
        yield port
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()
        for _, peer in peers:
            await peer.stop()


async def deliver_once(
    dns: DnsServer, peers: list[tuple[str, Peer]], entry_args: tuple[Any, ...], **options: Any
) -> tuple[list[RecipientResult], Journal]:
    spool, journal = Spool(), Journal()
    entry = spool.entry(*entry_args)
    async with serving(*peers) as port:
        smtp = agent(dns, port, spool, journal, **options)
        try:
            results = await smtp.deliver(entry, [r.address for r in entry.recipients])
        finally:
            await smtp.close()
    return results, journal


# --- real servers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("b") / "data", host="127.0.0.3")
    for domain in ("b.test", "c.test"):
        proc.cli("domain", "add", domain)
    for user in ("bob@b.test", "carol@c.test"):
        proc.cli("user", "add", user, "--password-stdin", stdin="secret-password\n")
    proc.start()
    yield proc
    proc.stop()


def connections_to(proc: ServerProcess) -> int:
    return proc.log_path.read_text().count(" connect listener=smtp ")


def test_delivers_to_the_mx_host(dns: DnsServer, server_b: ServerProcess) -> None:
    spool, journal = Spool(), Journal()
    entry = spool.entry(b"Subject: hi\r\n\r\nhello\n.dot line\n", "bob@b.test")

    async def main() -> list[RecipientResult]:
        smtp = agent(dns, server_b.smtp_port, spool, journal)
        try:
            return await smtp.deliver(entry, ["bob@b.test"])
        finally:
            await smtp.close()

    (result,) = asyncio.run(main())
    assert (result.outcome, result.status) == (Outcome.DELIVERED, "2.0.0")
    assert result.remote_reply is not None and "queued as" in result.remote_reply
    (path,) = server_b.wait_for_mail("bob@b.test")
    assert b"\r\nhello\r\n.dot line\r\n" in path.read_bytes()
    (dns_event,) = journal.of("dns")
    assert dns_event["mx"] == [{"name": "mx.b.test", "preference": 10, "addresses": ["127.0.0.3"]}]
    assert [c["result"] for c in journal.of("connect")] == ["ok"]
    lines = journal.transcript()
    assert lines[:2] == ["S: 220 mx.test ESMTP postoffice", f"C: EHLO {ME}"]
    assert f"C: MAIL FROM:<alice@a.test> SIZE={entry.size}" in lines
    assert journal.of("attempt")[0]["outcome"] == "delivered"


def test_first_mx_down_second_mx_takes_it(dns: DnsServer, server_b: ServerProcess) -> None:
    spool, journal = Spool(), Journal()
    entry = spool.entry(b"Subject: backup\r\n\r\nvia the second MX\r\n", "carol@c.test")

    async def main() -> list[RecipientResult]:
        smtp = agent(dns, server_b.smtp_port, spool, journal)
        try:
            return await smtp.deliver(entry, ["carol@c.test"])
        finally:
            await smtp.close()

    (result,) = asyncio.run(main())
    assert result.outcome is Outcome.DELIVERED
    server_b.wait_for_mail("carol@c.test")
    tried = [(c["address"], c["result"]) for c in journal.of("connect")]
    port = server_b.smtp_port
    assert tried == [
        ("127.0.0.4", f"connection refused by dead.c.test[127.0.0.4]:{port}"),
        ("127.0.0.3", "ok"),
    ]


def test_one_connection_carries_several_messages(dns: DnsServer, server_b: ServerProcess) -> None:
    spool, journal = Spool(), Journal()
    entries = [
        spool.entry(f"Subject: n{i}\r\n\r\nbody\r\n".encode(), "bob@b.test") for i in range(3)
    ]
    before = connections_to(server_b)
    already = len(server_b.wait_for_mail("bob@b.test", 0))

    async def main() -> None:
        smtp = agent(dns, server_b.smtp_port, spool, journal)
        try:
            for entry in entries:
                (result,) = await smtp.deliver(entry, ["bob@b.test"])
                assert result.outcome is Outcome.DELIVERED
        finally:
            await smtp.close()

    asyncio.run(main())
    server_b.wait_for_mail("bob@b.test", already + 3)
    assert connections_to(server_b) - before == 1
    assert [c["result"] for c in journal.of("connect")] == ["ok", "reused", "reused"]
    assert "C: QUIT" not in journal.transcript()  # said once, at close(), after the last message


def test_all_hosts_unreachable_is_deferred(dns: DnsServer) -> None:
    results, _ = asyncio.run(
        deliver_once(dns, [("127.0.0.5", Peer())], (b"x\r\n", "someone@dead.test"))
    )
    ((_, outcome, status),) = outcomes(results)
    assert (outcome, status) == (Outcome.DEFERRED, "4.4.1")
    assert results[0].detail.startswith("connection refused by dead.c.test[127.0.0.4]")


# --- per-recipient results -----------------------------------------------------------------

MIXED_RCPT = {
    "busy@peer.test": b"450 4.2.1 mailbox busy\r\n",
    "gone@peer.test": b"550 5.1.1 <gone@peer.test>: user unknown\r\n",
}


@pytest.mark.parametrize("pipelining", [True, False])
def test_mixed_recipient_replies_in_one_transaction(dns: DnsServer, pipelining: bool) -> None:
    ehlo = ("PIPELINING", "8BITMIME") if pipelining else ("8BITMIME",)
    peer = Peer(ehlo=ehlo, rcpt=MIXED_RCPT)
    recipients = ("ok@peer.test", "busy@peer.test", "gone@peer.test")
    results, journal = asyncio.run(
        deliver_once(dns, [("127.0.0.5", peer)], (b"Subject: m\r\n\r\nhi\r\n", *recipients))
    )
    assert outcomes(results) == [
        ("ok@peer.test", Outcome.DELIVERED, "2.0.0"),
        ("busy@peer.test", Outcome.DEFERRED, "4.2.1"),
        ("gone@peer.test", Outcome.FAILED, "5.1.1"),
    ]
    assert results[2].remote_reply == "550 5.1.1 <gone@peer.test>: user unknown"
    assert results[0].remote_reply == "250 2.0.0 Ok: queued as 1"
    assert peer.messages == [b"Subject: m\r\n\r\nhi\r\n"]
    lines = journal.transcript()
    first_reply = next(i for i, line in enumerate(lines) if line.startswith("S: 250 2.1.0"))
    sent_before_reply = [line for line in lines[:first_reply] if line.startswith("C: ")]
    assert ("C: DATA" in sent_before_reply) is pipelining  # RFC 2920: all sent, then read
    assert [a["outcome"] for a in journal.of("attempt")] == ["delivered", "deferred", "failed"]


def test_no_recipient_accepted_means_no_data(dns: DnsServer) -> None:
    peer = Peer(rcpt=MIXED_RCPT)
    results, _ = asyncio.run(
        deliver_once(dns, [("127.0.0.5", peer)], (b"x\r\n", "busy@peer.test", "gone@peer.test"))
    )
    assert [r.outcome for r in results] == [Outcome.DEFERRED, Outcome.FAILED]
    assert peer.messages == []
    assert peer.commands[-2:] == ["RSET", "QUIT"]


def test_refused_sender_refuses_every_recipient(dns: DnsServer) -> None:
    peer = Peer(mail=b"550 5.7.1 sender rejected\r\n")
    results, _ = asyncio.run(
        deliver_once(dns, [("127.0.0.5", peer)], (b"x\r\n", "a@peer.test", "b@peer.test"))
    )
    assert [(r.outcome, r.status) for r in results] == [(Outcome.FAILED, "5.7.1")] * 2
    assert results[0].remote_reply == "550 5.7.1 sender rejected"
    assert peer.messages == []


@pytest.mark.parametrize(
    ("final", "outcome", "status"),
    [
        (b"451 4.3.0 try again later\r\n", Outcome.DEFERRED, "4.3.0"),
        (b"554 5.6.0 content refused\r\n", Outcome.FAILED, "5.6.0"),
        (b"552 too big\r\n", Outcome.FAILED, "5.0.0"),
    ],
)
def test_final_reply_decides_for_accepted_recipients(
    dns: DnsServer, final: bytes, outcome: Outcome, status: str
) -> None:
    results, _ = asyncio.run(
        deliver_once(dns, [("127.0.0.5", Peer(final=final))], (b"x\r\n", "a@peer.test"))
    )
    assert [(r.outcome, r.status) for r in results] == [(outcome, status)]


def test_connection_lost_after_data_defers_never_fails(dns: DnsServer) -> None:
    peer = Peer(drop_in_data=True, rcpt=MIXED_RCPT)
    results, _ = asyncio.run(
        deliver_once(dns, [("127.0.0.5", peer)], (b"x\r\n", "a@peer.test", "gone@peer.test"))
    )
    assert outcomes(results) == [
        ("a@peer.test", Outcome.DEFERRED, "4.4.2"),
        ("gone@peer.test", Outcome.FAILED, "5.1.1"),
    ]
    assert "during the end of data" in results[0].detail


def test_silent_server_times_out_to_deferred(dns: DnsServer) -> None:
    peer = Peer(hold=2.0)
    results, _ = asyncio.run(
        deliver_once(dns, [("127.0.0.5", peer)], (b"x\r\n", "a@peer.test"), command_timeout=0.3)
    )
    assert [(r.outcome, r.status) for r in results] == [(Outcome.DEFERRED, "4.4.2")]
    assert results[0].detail.endswith("during the end of data: timeout")


# --- hosts and greetings -------------------------------------------------------------------


def test_refusing_greeting_moves_on_to_the_next_mx(dns: DnsServer) -> None:
    busy, good = Peer(greeting=b"421 4.3.2 mx1 busy, try later\r\n"), Peer()
    results, journal = asyncio.run(
        deliver_once(
            dns, [("127.0.0.5", busy), ("127.0.0.6", good)], (b"x\r\n", "someone@two.test")
        )
    )
    assert results[0].outcome is Outcome.DELIVERED
    assert len(good.messages) == 1 and busy.messages == []
    first, second = journal.of("connect")
    assert first["host"] == "mx1.two.test" and "421 4.3.2 mx1 busy" in first["result"]
    assert (second["host"], second["result"]) == ("mx2.two.test", "ok")


def test_ehlo_refused_falls_back_to_helo(dns: DnsServer) -> None:
    peer = Peer(ehlo=None)
    results, _ = asyncio.run(deliver_once(dns, [("127.0.0.5", peer)], (b"x\r\n", "a@peer.test")))
    assert results[0].outcome is Outcome.DELIVERED
    assert peer.commands[:3] == [f"EHLO {ME}", f"HELO {ME}", "MAIL FROM:<alice@a.test>"]


def test_we_never_send_to_ourselves_or_worse_mx_hosts(dns: DnsServer) -> None:
    peer = Peer()
    spool, journal = Spool(), Journal()
    looping = spool.entry(b"x\r\n", "a@loop.test")
    backup = spool.entry(b"x\r\n", "b@backup.test")
    missing = spool.entry(b"x\r\n", "c@nowhere.test")

    async def main() -> list[RecipientResult]:
        async with serving(("127.0.0.5", peer)) as port:
            smtp = agent(dns, port, spool, journal)
            try:
                return [
                    *await smtp.deliver(looping, ["a@loop.test"]),
                    *await smtp.deliver(backup, ["b@backup.test"]),
                    *await smtp.deliver(missing, ["c@nowhere.test"]),
                ]
            finally:
                await smtp.close()

    assert [(r.outcome, r.status) for r in asyncio.run(main())] == [
        (Outcome.FAILED, "5.4.6"),
        (Outcome.DELIVERED, "2.0.0"),
        (Outcome.FAILED, "5.1.2"),
    ]
    dns_events = journal.of("dns")
    assert dns_events[0]["status"] == "5.4.6"
    assert [h["name"] for h in dns_events[1]["mx"]] == ["mx.peer.test"]  # RFC 5321 §5.1
    assert len(peer.messages) == 1


# --- malformed and hostile replies ---------------------------------------------------------


def test_endless_multi_line_reply_is_cut_off_by_the_bounds(dns: DnsServer) -> None:
    peer = Peer(endless_rcpt=True)
    started = time.monotonic()
    results, _ = asyncio.run(
        deliver_once(dns, [("127.0.0.5", peer)], (b"x\r\n", "a@peer.test"), command_timeout=60)
    )
    assert time.monotonic() - started < 10
    assert [(r.outcome, r.status) for r in results] == [(Outcome.DEFERRED, "4.4.2")]
    assert "more than 100 lines" in results[0].detail


def test_reply_line_of_100_kilobytes_is_refused(dns: DnsServer) -> None:
    peer = Peer(greeting=b"220 " + b"x" * 100_000 + b"\r\n")
    results, _ = asyncio.run(
        deliver_once(dns, [("127.0.0.5", peer)], (b"x\r\n", "a@peer.test"), command_timeout=60)
    )
    assert [(r.outcome, r.status) for r in results] == [(Outcome.DEFERRED, "4.4.2")]
    assert "longer than 512 octets" in results[0].detail
    assert peer.commands == []


def test_stored_body_arrives_as_exactly_one_clean_message(dns: DnsServer) -> None:
    body = b"Subject: tricky\n\nbare LF\n.\nlone dot above\r\n.\r\nMAIL FROM:<evil@x>\rend"
    peer = Peer()
    results, journal = asyncio.run(deliver_once(dns, [("127.0.0.5", peer)], (body, "a@peer.test")))
    assert results[0].outcome is Outcome.DELIVERED
    assert peer.messages == [
        b"Subject: tricky\r\n\r\nbare LF\r\n..\r\nlone dot above\r\n..\r\n"
        b"MAIL FROM:<evil@x>\r\nend\r\n"
    ]
    assert peer.commands.count("MAIL FROM:<evil@x>") == 0
    assert peer.commands[-1] == "QUIT"
    assert f"C: <message, {len(body)} octets>" in journal.transcript()


def test_message_over_the_size_limit_is_not_sent(dns: DnsServer) -> None:
    peer = Peer(ehlo=("PIPELINING", "SIZE 100"))
    spool, journal = Spool(streaming=False), Journal()
    entry = spool.entry(b"x" * 998 + b"\r\n", "a@peer.test")

    async def main() -> list[RecipientResult]:
        async with serving(("127.0.0.5", peer)) as port:
            smtp = agent(dns, port, spool, journal)
            try:
                return await smtp.deliver(entry, ["a@peer.test"])
            finally:
                await smtp.close()

    (result,) = asyncio.run(main())
    assert (result.outcome, result.status) == (Outcome.FAILED, "5.3.4")
    assert not any(c.startswith("MAIL") for c in peer.commands)


def test_eight_bit_and_utf8_envelopes(dns: DnsServer) -> None:
    body = "Subject: café\r\n\r\nnaïve\r\n".encode()
    full, plain = Peer(), Peer(ehlo=("PIPELINING", "8BITMIME"))
    results, _ = asyncio.run(
        deliver_once(dns, [("127.0.0.5", full)], (body, "jö@peer.test", "a@peer.test"))
    )
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 2
    assert full.commands[1] == f"MAIL FROM:<alice@a.test> SIZE={len(body)} BODY=8BITMIME SMTPUTF8"
    results, _ = asyncio.run(
        deliver_once(dns, [("127.0.0.5", plain)], (body, "jö@peer.test", "a@peer.test"))
    )
    assert outcomes(results) == [
        ("jö@peer.test", Outcome.FAILED, "5.6.7"),
        ("a@peer.test", Outcome.DELIVERED, "2.0.0"),
    ]
    assert plain.commands[1:3] == [
        "MAIL FROM:<alice@a.test> BODY=8BITMIME",
        "RCPT TO:<a@peer.test>",
    ]


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


def test_plaintext_injected_after_starttls_is_discarded(
    dns: DnsServer, server_tls: ssl.SSLContext
) -> None:
    peer = Peer(tls=server_tls, inject=b"554 5.0.0 injected\r\n")
    results, journal = asyncio.run(
        deliver_once(dns, [("127.0.0.5", peer)], (b"x\r\n", "a@tls.test"))
    )
    assert results[0].outcome is Outcome.DELIVERED
    assert not any("injected" in line for line in journal.transcript())
    assert peer.commands[:3] == [f"EHLO {ME}", "STARTTLS", f"EHLO {ME}"]
    (tls,) = journal.of("tls")
    assert tls["version"].startswith("TLS") and tls["verified"] is False


@pytest.mark.parametrize(
    ("domain", "outcome"), [("tls.test", Outcome.DELIVERED), ("badname.test", Outcome.DEFERRED)]
)
def test_verify_policy_checks_the_mx_name(
    dns: DnsServer, server_tls: ssl.SSLContext, ca_file: str, domain: str, outcome: Outcome
) -> None:
    peer = Peer(tls=server_tls)
    results, journal = asyncio.run(
        deliver_once(
            dns, [("127.0.0.5", peer)], (b"x\r\n", f"a@{domain}"), tls="verify", ca_file=ca_file
        )
    )
    assert results[0].outcome is outcome
    if outcome is Outcome.DEFERRED:
        assert results[0].status == "4.7.5" and "certificate" in results[0].detail.lower()
        assert not any(c.startswith("MAIL") for c in peer.commands)
    else:
        assert journal.of("tls")[0]["verified"] is True


def test_encrypt_policy_never_falls_back_to_plaintext(dns: DnsServer) -> None:
    peer = Peer()
    results, _ = asyncio.run(
        deliver_once(dns, [("127.0.0.5", peer)], (b"x\r\n", "a@peer.test"), tls="encrypt")
    )
    assert [(r.outcome, r.status) for r in results] == [(Outcome.DEFERRED, "4.7.4")]
    assert peer.commands == [f"EHLO {ME}", "QUIT"]


@pytest.mark.parametrize("mechanisms", ["AUTH PLAIN LOGIN", "AUTH LOGIN"])
def test_smarthost_auth_on_loopback_hides_the_secret(dns: DnsServer, mechanisms: str) -> None:
    peer = Peer(ehlo=("PIPELINING", mechanisms))
    spool, journal = Spool(), Journal()
    entry = spool.entry(b"x\r\n", "anyone@far.example", "other@else.example")

    async def main() -> list[RecipientResult]:
        async with serving(("127.0.0.5", peer)) as port:
            smtp = agent(
                dns, 1, spool, journal, smarthost=("127.0.0.5", port), smarthost_auth=("user", "pw")
            )
            try:
                return await smtp.deliver(entry, ["anyone@far.example", "other@else.example"])
            finally:
                await smtp.close()

    assert [r.outcome for r in asyncio.run(main())] == [Outcome.DELIVERED] * 2
    assert len(peer.messages) == 1  # one destination: both recipients in one transaction
    if mechanisms == "AUTH LOGIN":
        assert peer.commands[1:4] == ["AUTH LOGIN", "dXNlcg==", "cHc="]
    else:
        assert peer.commands[1] == "AUTH PLAIN AHVzZXIAcHc="
    lines = journal.transcript()
    assert not any("AHVzZXIAcHc=" in line or "cHc=" in line for line in lines)
    assert "C: <secret>" in lines or "C: AUTH PLAIN <secret>" in lines


# --- connections: reuse, staleness, concurrency --------------------------------------------


def test_idle_connection_is_closed_with_quit(dns: DnsServer) -> None:
    peer = Peer()
    spool, journal = Spool(), Journal()
    entry = spool.entry(b"x\r\n", "a@peer.test")

    async def main() -> None:
        async with serving(("127.0.0.5", peer)) as port:
            smtp = agent(dns, port, spool, journal, connection_reuse=0.2)
            try:
                await smtp.deliver(entry, ["a@peer.test"])
                assert peer.active == 1
                for _ in range(50):
                    if peer.active == 0:
                        break
                    await asyncio.sleep(0.05)
                assert peer.active == 0 and peer.commands[-1] == "QUIT"  # before close()
            finally:
                await smtp.close()

    asyncio.run(main())


def test_stale_pooled_connection_is_replaced_once(dns: DnsServer) -> None:
    peer = Peer(stale_after=1)
    spool, journal = Spool(), Journal()
    entries = [spool.entry(b"x\r\n", "a@peer.test") for _ in range(2)]

    async def main() -> list[RecipientResult]:
        async with serving(("127.0.0.5", peer)) as port:
            smtp = agent(dns, port, spool, journal)
            try:
                return [r for e in entries for r in await smtp.deliver(e, ["a@peer.test"])]
            finally:
                await smtp.close()

    assert [r.outcome for r in asyncio.run(main())] == [Outcome.DELIVERED] * 2
    assert peer.connections == 2 and len(peer.messages) == 2
    assert [c["result"] for c in journal.of("connect")] == ["ok", "reused", "ok"]


def test_destination_concurrency_is_honoured(dns: DnsServer) -> None:
    peer = Peer(hold=0.15)
    spool, journal = Spool(), Journal()
    entries = [spool.entry(b"x\r\n", f"u{i}@peer.test") for i in range(6)]

    async def main() -> list[RecipientResult]:
        async with serving(("127.0.0.5", peer)) as port:
            smtp = agent(dns, port, spool, journal, destination_concurrency=2)
            try:
                batches = await asyncio.gather(
                    *(smtp.deliver(e, [e.recipients[0].address]) for e in entries)
                )
            finally:
                await smtp.close()
            return [r for batch in batches for r in batch]

    assert [r.outcome for r in asyncio.run(main())] == [Outcome.DELIVERED] * 6
    assert peer.most_active == 2 and peer.connections == 2
    assert len(peer.messages) == 6


def test_total_concurrency_closes_idle_connections_to_make_room(dns: DnsServer) -> None:
    first, second = Peer(), Peer()
    spool, journal = Spool(), Journal()
    one, two = spool.entry(b"x\r\n", "a@peer.test"), spool.entry(b"x\r\n", "b@two.test")

    async def main() -> None:
        async with serving(("127.0.0.5", first), ("127.0.0.6", second)) as port:
            smtp = agent(dns, port, spool, journal, concurrency=1)
            try:
                await smtp.deliver(one, ["a@peer.test"])
                await smtp.deliver(two, ["b@two.test"])  # mx1.two.test is 127.0.0.5 too
            finally:
                await smtp.close()

    asyncio.run(main())
    assert first.connections == 2 and first.commands.count("QUIT") == 2
    assert first.most_active == 1


def test_unreadable_message_is_deferred(dns: DnsServer) -> None:
    spool = Spool()
    entry = QueueEntry("gone", "a@a.test", [RecipientState("x@peer.test", "x@peer.test")], 0.0, 3)
    smtp = agent(dns, 1, spool, Journal())
    (result,) = asyncio.run(smtp.deliver(entry, ["x@peer.test"]))
    assert (result.outcome, result.status) == (Outcome.DEFERRED, "4.3.0")
