"""The scheduler on a real spool, a fake clock and recording delivery agents."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from postoffice.delivery.base import DeliveryAgent, Outcome, RecipientResult
from postoffice.queue.backoff import Backoff
from postoffice.queue.entry import QueueEntry, QueueState, RecipientState, RecipientStatus
from postoffice.queue.scheduler import Scheduler
from postoffice.queue.spool import Spool, UnknownQid
from postoffice.testing.clock import FakeClock

REPLIES = {
    Outcome.DELIVERED: ("2.0.0", "delivered"),
    Outcome.DEFERRED: ("4.4.1", "connection refused"),
    Outcome.FAILED: ("5.1.1", "no such user"),
}


class RecordingAgent:
    """Answers per recipient from a script (default: delivered) and records every call."""

    def __init__(self, script: dict[str, list[Outcome]] | None = None) -> None:
        self.script = script or {}
        self.calls: list[tuple[str, list[str]]] = []
        self.recovered: list[bool] = []
        self.gate: asyncio.Event | None = None  # when set, deliveries wait for it to open
        self.running = self.most_running = 0
        self.misbehave: Callable[[], list[RecipientResult]] | None = None  # next call only

    async def deliver(self, entry: QueueEntry, recipients: list[str]) -> list[RecipientResult]:
        self.calls.append((entry.qid, list(recipients)))
        self.recovered.append(entry.recovered)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.misbehave is not None:
                misbehave, self.misbehave = self.misbehave, None
                return misbehave()
            return [self._result(r) for r in recipients]
        finally:
            self.running -= 1

    def _result(self, recipient: str) -> RecipientResult:
        planned = self.script.get(recipient)
        outcome = planned.pop(0) if planned else Outcome.DELIVERED
        status, detail = REPLIES[outcome]
        return RecipientResult(recipient, outcome, status, detail, remote_reply=f"{status} x")


class World:
    def __init__(
        self,
        root: Path,
        agent: RecordingAgent | None = None,
        *,
        router: Callable[[str], DeliveryAgent] | None = None,
        backoff: Backoff | None = None,
        concurrency: int = 20,
        clock: FakeClock | None = None,
        delay_warning: float = 0.0,
    ) -> None:
        self.spool = Spool(root)
        self.clock = clock or FakeClock()
        self.agent = agent or RecordingAgent()
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.failed: list[tuple[str, list[str]]] = []
        self.delayed: list[tuple[float, str, list[str]]] = []
        self.delayed_fails = 0  # how many more on_delayed calls raise
        self.failed_fails = 0  # how many more on_failed calls raise
        self.scheduler = Scheduler(
            self.spool,
            router or (lambda _address: self.agent),
            self.clock,
            backoff or Backoff(),
            concurrency=concurrency,
            on_event=lambda kind, entry, detail: self.events.append((kind, entry.qid, detail)),
            on_failed=self._record_failed,
            on_delayed=self._record_delayed,
            delay_warning=delay_warning,
        )

    async def _record_failed(self, entry: QueueEntry, failed: list[RecipientState]) -> None:
        self.failed.append((entry.qid, [r.address for r in failed]))
        if self.failed_fails:
            self.failed_fails -= 1
            raise OSError(errno.ENOSPC, "disk full")

    async def _record_delayed(self, entry: QueueEntry, pending: list[RecipientState]) -> None:
        self.delayed.append((self.clock.time(), entry.qid, [r.address for r in pending]))
        if self.delayed_fails:
            self.delayed_fails -= 1
            raise OSError(errno.ENOSPC, "disk full")

    def store(self, *recipients: str) -> QueueEntry:
        return self.spool.store(
            "alice@example.org",
            [(r, r) for r in recipients],
            b"Subject: test\r\n\r\nbody\r\n",
            client={},
            message_id="<t@example.org>",
            arrival=self.clock.time(),
        )

    def kinds(self) -> list[tuple[str, str]]:
        return [(kind, detail["recipient"]) for kind, _, detail in self.events]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self.scheduler.run())
        try:
            yield
        finally:
            self.scheduler.stop()
            await asyncio.wait_for(task, 5)


def asyncio_test(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 10))

    return run


async def eventually(predicate: Callable[[], bool]) -> None:
    """Wait (in real time) for the scheduler, its threads and agents to get there."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def quiet() -> None:
    """Give a wrongly eager scheduler the chance to act."""
    await asyncio.sleep(0.05)


@asyncio_test
async def test_delivers_a_notified_entry_and_removes_it(tmp_path: Path) -> None:
    world = World(tmp_path)
    async with world.running():
        entry = world.store("bob@example.net", "carol@example.org")
        world.scheduler.notify(entry)
        await eventually(lambda: len(world.events) == 2)
    assert world.agent.calls == [(entry.qid, ["bob@example.net", "carol@example.org"])]
    assert world.kinds() == [("delivered", "bob@example.net"), ("delivered", "carol@example.org")]
    assert world.spool.list() == []
    assert world.failed == []


@asyncio_test
async def test_groups_recipients_by_agent(tmp_path: Path) -> None:
    local, remote = RecordingAgent(), RecordingAgent()
    world = World(tmp_path, router=lambda a: local if a.endswith("@example.org") else remote)
    async with world.running():
        entry = world.store("a@example.org", "b@example.net", "c@example.org")
        world.scheduler.notify(entry)
        await eventually(lambda: len(world.events) == 3)
    assert local.calls == [(entry.qid, ["a@example.org", "c@example.org"])]
    assert remote.calls == [(entry.qid, ["b@example.net"])]


@asyncio_test
async def test_mixed_results_then_retry_of_the_deferred_recipient_after_backoff(
    tmp_path: Path,
) -> None:
    agent = RecordingAgent({"b@x": [Outcome.FAILED], "c@x": [Outcome.DEFERRED]})
    world = World(tmp_path, agent)
    start = world.clock.time()
    async with world.running():
        entry = world.store("a@x", "b@x", "c@x")
        world.scheduler.notify(entry)
        await eventually(lambda: len(world.events) == 3)
        assert world.kinds() == [("delivered", "a@x"), ("failed", "b@x"), ("deferred", "c@x")]
        assert world.events[2][2]["next_attempt"] == start + 300
        assert world.failed == [(entry.qid, ["b@x"])]

        [saved] = world.spool.list()
        assert saved.state is QueueState.DEFERRED
        assert (saved.attempts, saved.next_attempt, saved.last_attempt) == (1, start + 300, start)
        a, b, c = saved.recipients
        assert (a.status, a.last_status) == (RecipientStatus.DELIVERED, "2.0.0")
        assert (b.status, b.last_status, b.last_detail) == (
            RecipientStatus.FAILED,
            "5.1.1",
            "no such user",
        )
        assert (c.status, c.attempts, c.remote_reply) == (RecipientStatus.PENDING, 1, "4.4.1 x")

        world.clock.advance(299)
        await quiet()
        assert len(agent.calls) == 1
        world.clock.advance(1)
        await eventually(lambda: len(world.events) == 4)
    assert agent.calls[1] == (entry.qid, ["c@x"])
    assert world.kinds()[3] == ("delivered", "c@x")
    assert world.spool.list() == []


@asyncio_test
async def test_retry_delay_doubles(tmp_path: Path) -> None:
    agent = RecordingAgent({"a@x": [Outcome.DEFERRED] * 3})
    world = World(tmp_path, agent)
    start = world.clock.time()
    async with world.running():
        world.scheduler.notify(world.store("a@x"))
        for n, delay in enumerate([300, 600, 1200], start=1):
            await eventually(lambda n=n: len(world.events) == n)
            assert world.events[-1][2]["next_attempt"] == world.clock.time() + delay
            world.clock.advance(delay)
        await eventually(lambda: len(world.events) == 4)
    assert world.kinds()[-1] == ("delivered", "a@x")
    assert world.clock.time() == start + 2100


@asyncio_test
async def test_expired_entry_fails_its_pending_recipients(tmp_path: Path) -> None:
    agent = RecordingAgent({"a@x": [Outcome.DEFERRED] * 10})
    world = World(tmp_path, agent, backoff=Backoff(max_lifetime=1000))
    async with world.running():
        entry = world.store("a@x", "b@x")
        world.scheduler.notify(entry)
        for delay in [300, 600, 100]:  # the last retry is pulled in to the deadline
            await eventually(lambda: ("deferred", "a@x") in world.kinds())
            world.events.clear()
            world.clock.advance(delay)
        await eventually(lambda: world.failed != [])
    assert len(agent.calls) == 4
    assert world.kinds() == [("expired", "a@x")]
    detail = world.events[0][2]
    assert detail["status"] == "4.4.7"
    assert "connection refused" in detail["detail"]
    assert world.failed == [(entry.qid, ["a@x"])]
    assert world.spool.list() == []


@asyncio_test
async def test_held_entry_is_not_delivered_until_released(tmp_path: Path) -> None:
    agent = RecordingAgent({"a@x": [Outcome.DEFERRED]})
    world = World(tmp_path, agent)
    async with world.running():
        entry = world.store("a@x")
        world.scheduler.notify(entry)
        await eventually(lambda: len(world.events) == 1)
        await world.scheduler.hold(entry.qid)
        assert [e.state for e in world.spool.list()] == [QueueState.HOLD]

        assert world.scheduler.flush() == 0
        world.clock.advance(10_000)
        world.scheduler.notify(entry)  # a stale hint: the spool says held
        await quiet()
        assert len(agent.calls) == 1

        await world.scheduler.release(entry.qid)
        await eventually(lambda: len(world.events) == 2)
    assert world.kinds()[-1] == ("delivered", "a@x")
    assert world.spool.list() == []


@asyncio_test
async def test_hold_waits_for_the_running_attempt(tmp_path: Path) -> None:
    agent = RecordingAgent({"a@x": [Outcome.DEFERRED]})
    agent.gate = asyncio.Event()
    world = World(tmp_path, agent)
    async with world.running():
        entry = world.store("a@x")
        world.scheduler.notify(entry)
        await eventually(lambda: agent.running == 1)
        hold = asyncio.create_task(world.scheduler.hold(entry.qid))
        await quiet()
        assert not hold.done()
        agent.gate.set()
        await hold
        world.clock.advance(300)
        await quiet()
    assert len(agent.calls) == 1
    assert [e.state for e in world.spool.list()] == [QueueState.HOLD]


@asyncio_test
async def test_flush_makes_deferred_entries_due_now(tmp_path: Path) -> None:
    agent = RecordingAgent({"a@x": [Outcome.DEFERRED]})
    world = World(tmp_path, agent)
    async with world.running():
        entry = world.store("a@x")
        world.scheduler.notify(entry)
        await eventually(lambda: len(world.events) == 1)
        assert world.scheduler.flush("NOSUCHQUEUEID000") == 0
        assert world.scheduler.flush(entry.qid) == 1
        await eventually(lambda: len(world.events) == 2)
    assert world.kinds()[-1] == ("delivered", "a@x")


def _raise() -> list[RecipientResult]:
    raise RuntimeError("agent bug")


@pytest.mark.parametrize(
    ("misbehave", "detail"),
    [(_raise, "delivery agent error: RuntimeError"), (list, "delivery agent gave no result")],
)
@asyncio_test
async def test_misbehaving_agent_defers_with_4_3_0(
    tmp_path: Path,
    misbehave: Callable[[], list[RecipientResult]],
    detail: str,
) -> None:
    world = World(tmp_path)
    world.agent.misbehave = misbehave
    async with world.running():
        entry = world.store("a@x")
        world.scheduler.notify(entry)
        await eventually(lambda: len(world.events) == 1)
        kind, _, info = world.events[0]
        assert (kind, info["status"], info["detail"]) == ("deferred", "4.3.0", detail)
        world.clock.advance(300)
        await eventually(lambda: len(world.events) == 2)
    assert world.kinds()[-1] == ("delivered", "a@x")


@asyncio_test
async def test_attempt_whose_outcome_cannot_be_saved_is_retried_as_recovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(tmp_path, RecordingAgent({"a@x": [Outcome.DEFERRED]}))
    real_save = world.spool.save

    def save_fails_once(entry: QueueEntry) -> None:
        monkeypatch.setattr(world.spool, "save", real_save)
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(world.spool, "save", save_fails_once)
    async with world.running():
        entry = world.store("a@x")
        world.scheduler.notify(entry)
        await eventually(lambda: world.spool.save is real_save)
        await quiet()
        assert world.events == []  # nothing reported that did not happen
        world.clock.advance(300)
        await eventually(lambda: len(world.events) == 1)
    assert world.kinds() == [("delivered", "a@x")]
    assert world.agent.recovered == [False, True]
    assert world.spool.list() == []


@asyncio_test
async def test_restart_resumes_from_the_saved_state(tmp_path: Path) -> None:
    agent = RecordingAgent({"b@x": [Outcome.DEFERRED]})
    first = World(tmp_path, agent)
    async with first.running():
        deferred = first.store("a@x", "b@x")
        first.scheduler.notify(deferred)
        await eventually(lambda: len(first.events) == 2)
    fresh = first.store("c@x")  # stored, then the process died before notify

    second = World(tmp_path, clock=first.clock)
    recovered = await second.scheduler.recover()
    assert [e.qid for e in recovered] == [deferred.qid, fresh.qid]
    async with second.running():
        await eventually(lambda: len(second.agent.calls) == 1)
        assert second.agent.calls == [(fresh.qid, ["c@x"])]
        second.clock.advance(300)
        await eventually(lambda: len(second.events) == 2)
    assert second.agent.calls[1] == (deferred.qid, ["b@x"])
    assert second.agent.recovered == [True, True]
    assert second.spool.list() == []


@asyncio_test
async def test_concurrency_is_bounded(tmp_path: Path) -> None:
    world = World(tmp_path, concurrency=2)
    world.agent.gate = asyncio.Event()
    async with world.running():
        for _ in range(5):
            world.scheduler.notify(world.store("a@x"))
        await eventually(lambda: world.agent.running == 2)
        await quiet()
        assert len(world.agent.calls) == 2
        world.agent.gate.set()
        await eventually(lambda: len(world.events) == 5)
    assert world.agent.most_running == 2
    assert world.spool.list() == []


@asyncio_test
async def test_delay_warning_once_when_deferred_past_the_threshold(tmp_path: Path) -> None:
    agent = RecordingAgent({"a@x": [Outcome.DEFERRED] * 5, "b@x": [Outcome.DEFERRED]})
    world = World(tmp_path, agent, delay_warning=800)
    start = world.clock.time()
    async with world.running():
        entry = world.store("a@x", "b@x", "c@x")
        world.scheduler.notify(entry)
        # attempts at +0, +300, +900 (the first deferral past 800), +2100, +4500
        for n, delay in enumerate([300, 600, 1200, 2400], start=1):
            await eventually(
                lambda n=n: (
                    len(agent.calls) == n
                    and bool(world.events)
                    and world.events[-1][0] == "deferred"
                )
            )
            await quiet()
            assert len(world.delayed) == (0 if n < 3 else 1)
            world.clock.advance(delay)
        await eventually(lambda: len(agent.calls) == 5)
        await quiet()
    assert world.delayed == [(start + 900, entry.qid, ["a@x"])]
    [saved] = world.spool.list()
    assert saved.warned


@asyncio_test
async def test_no_delay_warning_when_switched_off(tmp_path: Path) -> None:
    world = World(tmp_path, RecordingAgent({"a@x": [Outcome.DEFERRED] * 2}))
    async with world.running():
        world.scheduler.notify(world.store("a@x"))
        await eventually(lambda: len(world.events) == 1)
        world.clock.advance(10_000)
        await eventually(lambda: len(world.events) == 2)
    assert world.delayed == []
    assert not world.spool.list()[0].warned


@asyncio_test
async def test_a_failed_delay_warning_is_tried_again_at_the_next_deferral(tmp_path: Path) -> None:
    world = World(tmp_path, RecordingAgent({"a@x": [Outcome.DEFERRED] * 3}), delay_warning=1)
    world.delayed_fails = 1
    entry = world.store("a@x")
    world.clock.advance(1)  # the first attempt comes a second after arrival
    async with world.running():
        world.scheduler.notify(entry)
        await eventually(lambda: len(world.events) == 1)
        assert not world.spool.list()[0].warned
        world.clock.advance(300)
        await eventually(lambda: len(world.events) == 2)
        world.clock.advance(600)
        await eventually(lambda: len(world.events) == 3)
    assert len(world.delayed) == 2
    assert world.spool.list()[0].warned


def test_delay_warning_must_not_be_negative(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="delay_warning"):
        World(tmp_path, delay_warning=-1)


@asyncio_test
async def test_a_bounce_that_cannot_be_queued_keeps_the_failure_pending(tmp_path: Path) -> None:
    agent = RecordingAgent({"b@x": [Outcome.FAILED, Outcome.FAILED]})
    world = World(tmp_path, agent)
    world.failed_fails = 1
    async with world.running():
        entry = world.store("b@x")
        world.scheduler.notify(entry)
        await eventually(lambda: len(world.failed) == 1)
        await quiet()
        [saved] = world.spool.list()  # not removed: the bounce was not queued
        assert saved.state is QueueState.DEFERRED
        assert saved.recipients[0].status is RecipientStatus.PENDING
        world.clock.advance(300)
        await eventually(lambda: len(world.failed) == 2)
        await quiet()
    assert world.spool.list() == []
    assert world.kinds()[-1] == ("failed", "b@x")


class RepeatDetectingAgent(RecordingAgent):
    """Like local delivery: a repeated delivery of a `recovered` entry is recognised."""

    detects_repeats = True


@pytest.mark.parametrize(
    ("agent", "script", "synced"),
    [
        (RepeatDetectingAgent(), {}, False),  # a repeat would be a no-op: no fsync needed
        (RepeatDetectingAgent(), {"b@x": [Outcome.FAILED]}, True),  # would bounce twice
        (RecordingAgent(), {}, True),  # e.g. remote: would send twice
    ],
)
@asyncio_test
async def test_removal_is_synced_unless_repeating_the_attempt_is_harmless(
    tmp_path: Path, agent: RecordingAgent, script: dict[str, list[Outcome]], synced: bool
) -> None:
    agent.script = script
    world = World(tmp_path, agent)
    removals: list[bool] = []
    real_remove = world.spool.remove

    def remove(qid: str, *, sync: bool = True) -> None:
        removals.append(sync)
        real_remove(qid, sync=sync)

    world.spool.remove = remove  # type: ignore[method-assign]
    async with world.running():
        world.scheduler.notify(world.store("a@x", "b@x"))
        await eventually(lambda: removals != [])
    assert removals == [synced]
    assert world.spool.list() == []


@asyncio_test
async def test_the_first_attempt_uses_the_notified_entry_and_retries_read_the_spool(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, RecordingAgent({"a@x": [Outcome.DEFERRED]}))
    loads: list[str] = []
    real_load = world.spool.load

    def load(qid: str) -> QueueEntry:
        loads.append(qid)
        return real_load(qid)

    world.spool.load = load  # type: ignore[method-assign]
    async with world.running():
        entry = world.store("a@x")
        world.scheduler.notify(entry)
        await eventually(lambda: len(world.events) == 1)
        assert loads == []  # it was just written: nothing to read back
        world.clock.advance(300)
        await eventually(lambda: len(world.events) == 2)
    assert loads == [entry.qid]  # a retry reads what the spool holds now
    assert world.kinds() == [("deferred", "a@x"), ("delivered", "a@x")]


@asyncio_test
async def test_a_delivered_entry_awaiting_its_unsynced_removal_cannot_be_held(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, RepeatDetectingAgent())
    gate = threading.Event()
    removed: list[tuple[str, bool]] = []
    real_remove = world.spool.remove

    def remove(qid: str, *, sync: bool = True) -> None:
        gate.wait(5)
        removed.append((qid, sync))
        real_remove(qid, sync=sync)

    world.spool.remove = remove  # type: ignore[method-assign]
    async with world.running():
        entries = [world.store(f"{n}@x") for n in range(3)]
        for entry in entries:
            world.scheduler.notify(entry)
        await eventually(lambda: len(world.events) == 3)  # reported before removal
        with pytest.raises(UnknownQid):  # it is gone for the queue; no HOLD file resurrects it
            await world.scheduler.hold(entries[0].qid)
        gate.set()
        await eventually(lambda: len(removed) == 3)
    assert sorted(removed) == sorted((entry.qid, False) for entry in entries)
    assert world.spool.list() == []


@asyncio_test
async def test_a_flush_while_an_attempt_reports_is_not_lost(tmp_path: Path) -> None:
    agent = RecordingAgent({"a@x": [Outcome.DEFERRED]})
    world = World(tmp_path, agent)
    report = world.scheduler._on_event
    flushed: list[int] = []

    def on_event(kind: str, entry: QueueEntry, detail: dict[str, object]) -> None:
        assert report is not None
        report(kind, entry, detail)
        if not flushed:  # the entry is rescheduled, its attempt not yet over
            flushed.append(world.scheduler.flush())

    world.scheduler._on_event = on_event
    async with world.running():
        world.scheduler.notify(world.store("a@x"))
        await eventually(lambda: len(world.events) == 2)
    assert flushed == [1]
    assert world.kinds() == [("deferred", "a@x"), ("delivered", "a@x")]
