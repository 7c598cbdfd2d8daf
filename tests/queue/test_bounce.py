"""Bouncer on a real spool, cleanup and directory: DSNs enter the queue with the null sender."""

from __future__ import annotations

import asyncio
import email
import email.policy
import functools
from collections.abc import Awaitable, Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from postoffice.delivery.base import Outcome, RecipientResult
from postoffice.mail.address import parse_address
from postoffice.queue.backoff import Backoff
from postoffice.queue.bounce import HEADER_LIMIT, Bouncer, read_headers
from postoffice.queue.cleanup import Cleanup, Origin
from postoffice.queue.entry import QueueEntry, RecipientStatus
from postoffice.queue.scheduler import Scheduler
from postoffice.queue.spool import Spool
from postoffice.storage.directory import SqliteDirectory
from postoffice.testing.clock import FakeClock

HOST = "mx.example.org"
POSTMASTER = "postmaster@example.org"
MESSAGE = (
    b"From: alice@example.org\r\nSubject: hello\r\nMessage-ID: <m1@example.org>\r\n\r\nbody\r\n"
)


class World:
    def __init__(self, root: Path) -> None:
        self.clock = FakeClock()
        self.spool = Spool(root / "queue")
        self.directory = SqliteDirectory(
            root / "directory.sqlite",
            hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
        )
        self.directory.add_domain("example.org")
        self.queued: list[QueueEntry] = []
        self.cleanup = Cleanup(
            self.spool, self.directory, HOST, self.clock, lambda entry, _: self.queued.append(entry)
        )
        self.bouncer = Bouncer(
            self.cleanup,
            self.spool,
            hostname=HOST,
            postmaster=POSTMASTER,
            clock=self.clock,
            backoff=Backoff(),
        )

    async def submit(
        self, sender: str, *recipients: str, origin: Origin | None = None
    ) -> QueueEntry:
        return await self.cleanup.submit(
            parse_address(sender) if sender else None,
            [parse_address(r) for r in recipients],
            MESSAGE,
            origin or Origin("192.0.2.1", helo="client.example.net"),
        )

    def notices(self, original: QueueEntry) -> list[QueueEntry]:
        return [e for e in self.spool.list() if e.qid != original.qid]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.directory.close()


def asyncio_test(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 10))

    return run


async def eventually(predicate: Callable[[], bool]) -> None:
    """Wait (in real time) for the scheduler, its threads and the agent to get there."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def fail(entry: QueueEntry, reply: str = "550 5.1.1 <bob@remote.test>: no such user") -> None:
    for recipient in entry.recipients:
        recipient.status = RecipientStatus.FAILED
        recipient.attempts = 1
        recipient.last_status = "5.1.1"
        recipient.last_detail = "no such user"
        recipient.remote_reply = reply
    entry.last_attempt = entry.arrival


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def delivery_status(message: EmailMessage) -> list[Any]:
    report = list(message.iter_parts())[1]
    payload = report.get_payload()
    assert isinstance(payload, list)
    return payload


@asyncio_test
async def test_a_failed_recipient_is_returned_to_the_sender_with_the_null_sender(
    world: World,
) -> None:
    original = await world.submit("alice@example.org", "bob@remote.test")
    fail(original)
    await world.bouncer.on_failed(original, original.recipients)

    [notice] = world.notices(original)
    assert notice.sender == ""  # RFC 5321 §4.5.5
    assert [(r.address, r.original) for r in notice.recipients] == [
        ("alice@example.org", "alice@example.org")
    ]
    assert notice.client["source"] == "dsn"
    assert world.queued[-1].qid == notice.qid  # the scheduler was told
    data = world.spool.read_message(notice.qid)
    assert data.startswith(f"Received: by {HOST} (postoffice) id {notice.qid}\r\n".encode())
    message = parse(world.spool.read_message(notice.qid))
    assert message["To"] == "alice@example.org"
    assert message["Subject"] == "Undelivered Mail Returned to Sender"
    _, block = delivery_status(message)
    assert block["Final-Recipient"] == "rfc822; bob@remote.test"
    assert block["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@remote.test>: no such user"
    returned = list(message.iter_parts())[2].get_payload(decode=True)
    assert isinstance(returned, bytes)
    assert returned.startswith(b"Received: from client.example.net ([192.0.2.1])")
    assert returned.endswith(b"Subject: hello\r\nMessage-ID: <m1@example.org>\r\n")


@asyncio_test
async def test_a_failed_bounce_goes_to_the_postmaster_never_to_the_null_sender(
    world: World,
) -> None:
    original = await world.submit("", "bob@remote.test")
    fail(original)
    await world.bouncer.on_failed(original, original.recipients)

    [notice] = world.notices(original)
    assert notice.sender == ""
    assert [r.address for r in notice.recipients] == [POSTMASTER]
    assert notice.client["source"] == "dsn-postmaster"
    message = parse(world.spool.read_message(notice.qid))
    assert message["To"] == POSTMASTER
    assert message["Subject"].startswith("Postmaster Copy:")


@asyncio_test
async def test_a_failed_postmaster_copy_is_only_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    original = await world.submit(
        "", "postmaster@remote.test", origin=Origin.internal("dsn-postmaster")
    )
    fail(original)
    await world.bouncer.on_failed(original, original.recipients)
    assert world.notices(original) == []
    assert "bounce-discarded" in caplog.text


@asyncio_test
async def test_no_delay_warning_for_a_null_sender_message(world: World) -> None:
    original = await world.submit("", "bob@remote.test")
    await world.bouncer.on_delayed(original, original.recipients)
    assert world.notices(original) == []


def test_read_headers_stops_at_the_blank_line_and_at_the_limit(world: World) -> None:
    def stored(data: bytes) -> str:
        return world.spool.store(
            "a@x", [("b@x", "b@x")], data, client={}, message_id="", arrival=0.0
        ).qid

    assert read_headers(world.spool, stored(b"A: 1\r\nB: 2\r\n\r\nbody\r\n")) == b"A: 1\r\nB: 2\r\n"
    assert read_headers(world.spool, stored(b"A: 1\r\n")) == b"A: 1\r\n"
    long = b"A: 1\r\n" + b"X: " + b"y" * HEADER_LIMIT + b"\r\n\r\nbody\r\n"
    assert read_headers(world.spool, stored(long)) == b"A: 1\r\n"


class DeferringAgent:
    """Defers bob for ever; records every other message it is handed."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.received: list[bytes] = []

    async def deliver(self, entry: QueueEntry, recipients: list[str]) -> list[RecipientResult]:
        results = []
        for recipient in recipients:
            if recipient == "bob@remote.test":
                reply = "451 4.4.1 try again later"
                results.append(RecipientResult(recipient, Outcome.DEFERRED, "4.4.1", reply, reply))
            else:
                self.received.append(self.spool.read_message(entry.qid))
                results.append(RecipientResult(recipient, Outcome.DELIVERED, "2.0.0", "ok"))
        return results


@asyncio_test
async def test_the_scheduler_sends_one_delay_warning_after_delay_warning_seconds(
    world: World,
) -> None:
    agent = DeferringAgent(world.spool)
    backoff = Backoff(min_backoff=600, max_backoff=3600)
    scheduler = Scheduler(
        world.spool,
        lambda _address: agent,
        world.clock,
        backoff,
        on_failed=world.bouncer.on_failed,
        on_delayed=world.bouncer.on_delayed,
        delay_warning=4 * 3600,
    )
    world.cleanup.on_accepted = lambda entry, _envelope: scheduler.notify(entry)
    start = world.clock.time()
    task = asyncio.create_task(scheduler.run())
    original = await world.submit("alice@example.org", "bob@remote.test")
    attempts: list[float] = []
    for n in range(1, 10):
        await eventually(lambda n=n: world.spool.load(original.qid).attempts == n)
        attempts.append(world.clock.time() - start)
        warnings = 1 if attempts[-1] >= 4 * 3600 else 0
        await eventually(lambda warnings=warnings: len(agent.received) == warnings)
        world.clock.advance(world.spool.load(original.qid).next_attempt - world.clock.time())
    scheduler.stop()
    await task

    # 600 s doubling to 3600 s: the seventh attempt is the first deferral past 4 hours
    assert attempts[:7] == [0, 600, 1800, 4200, 7800, 11400, 15000]
    [warning] = agent.received
    message = parse(warning)
    assert message["Subject"] == "Delayed Mail (still being retried)"
    assert message["To"] == "alice@example.org"
    _, block = delivery_status(message)
    assert (block["Action"], block["Status"]) == ("delayed", "4.4.1")
    assert block["Diagnostic-Code"] == "smtp; 451 4.4.1 try again later"
    assert block["Will-Retry-Until"] == email.utils.formatdate(start + 5 * 86400, localtime=True)
    assert world.spool.load(original.qid).warned
