"""The queue manager: decides when each queued message is tried, and by which agents.

Postfix's qmgr in one asyncio task. The scheduler keeps a timetable in memory
(queue id -> due time, in a heap); the spool stays the source of truth: each
attempt reloads the entry from disk, so an entry removed or held meanwhile is
skipped. The one exception is the first attempt of an entry handed over by
`notify` (just stored, recovered or released) and due now: it uses that entry
as it was when written, sparing a read of what was just written (up to
`_FRESH_MAX` are kept; `hold`, the only way to change one before that attempt,
drops it). Entries come from `recover` at start-up (call it before the
servers accept mail) and from `notify` after each store; `flush` makes
deferred entries due now. The loop sleeps on the injected clock until the
earliest due time or until a notify/flush/finished attempt wakes it; at most
`concurrency` attempts run at once. An attempt routes each pending recipient
to its agent, delivers per agent in parallel, records every result on the
recipient, then removes the entry (all recipients final) or saves it deferred
with the next retry time from `Backoff`, before reporting anything. Pending
recipients of an expired entry fail with 4.4.7. An agent that raises defers its
recipients with 4.3.0; an attempt that fails on our side (the spool) is retried
after `min_backoff`, flagged `recovered` like one cut off by a crash. Failed
recipients go to the `on_failed` hook (bounces), which runs before the entry is
saved or removed. When an entry is deferred at least `delay_warning` seconds
after its arrival, its pending recipients go once to the `on_delayed` hook
(delay warnings): `warned` is set, and saved with the entry, only when the hook
succeeded, so a warning that could not be queued is tried at the next deferral.
Every per-recipient outcome goes to `on_event` for the log/trace layer.

Removing a finished entry is synced to disk unless repeating this attempt
would be harmless: when every recipient it finalised was delivered by an agent
with a true `detects_repeats` attribute (local delivery, which recognises its
earlier copy when the entry comes back `recovered`). A machine crash that
undoes such an unsynced removal then costs a second, idempotent attempt, never
a duplicate; remote deliveries and failures (bounces) keep the synced removal.
Since nothing waits for them, unsynced removals are batched: the attempt hands
its queue id over and reports at once, and one disk job removes every id handed
over meanwhile (a crash before that job is the same harmless repeat); until
then `hold` treats the id as gone. Blocking spool work runs on the shared disk
pool (`postoffice.diskio`).

Standards: RFC 5321 §4.5.4.1 (retry strategy), §6.1 (responsibility until
delivered or bounced); RFC 3463 §3.4/§3.5 (4.3.0, 4.4.7); RFC 3464 §2.3.3
(the "delayed" action).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Awaitable, Callable

from postoffice import diskio
from postoffice.clock import Clock
from postoffice.delivery.base import DeliveryAgent, Outcome, RecipientResult, settle
from postoffice.queue.backoff import Backoff
from postoffice.queue.entry import QueueEntry, QueueState, RecipientState, RecipientStatus
from postoffice.queue.spool import Spool, UnknownQid

logger = logging.getLogger(__name__)

Router = Callable[[str], DeliveryAgent]
EventHook = Callable[[str, QueueEntry, dict[str, object]], None]
RecipientsHook = Callable[[QueueEntry, list[RecipientState]], Awaitable[None]]

_FRESH_MAX = 10_000  # entries kept from `notify` for their first attempt (memory bound)


async def log_failed(entry: QueueEntry, failed: list[RecipientState]) -> None:
    """The default `on_failed` hook, when no bouncer is wired in: only log."""
    for recipient in failed:
        logger.warning(
            "queue %s: <%s> failed (%s %s); no bounce sent",
            entry.qid,
            recipient.address,
            recipient.last_status,
            recipient.last_detail,
        )


class Scheduler:
    def __init__(
        self,
        spool: Spool,
        router: Router,
        clock: Clock,
        backoff: Backoff,
        *,
        concurrency: int = 20,
        on_event: EventHook | None = None,
        on_failed: RecipientsHook = log_failed,
        on_delayed: RecipientsHook | None = None,
        delay_warning: float = 0.0,
    ) -> None:
        """`on_delayed` is called once per entry deferred `delay_warning` (> 0) seconds."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if delay_warning < 0:
            raise ValueError("delay_warning must not be negative")
        self._spool = spool
        self._router = router
        self._clock = clock
        self._backoff = backoff
        self._concurrency = concurrency
        self._on_event = on_event
        self._on_failed = on_failed
        self._on_delayed = on_delayed if delay_warning > 0 else None
        self._delay_warning = delay_warning
        self._due: dict[str, float] = {}  # the timetable; heap items not matching it are stale
        self._heap: list[tuple[float, str]] = []
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._recovered: set[str] = set()
        self._fresh: dict[str, QueueEntry] = {}  # as notified, for their first attempt
        self._removing: list[str] = []  # finished entries awaiting an unsynced removal
        self._remover: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    # -- feeding the timetable ---------------------------------------------------------------

    async def recover(self) -> list[QueueEntry]:
        """Recover the spool after a restart and schedule what it holds."""
        entries = await diskio.run(self._spool.recover)
        for entry in entries:
            self.notify(entry)
        return entries

    def notify(self, entry: QueueEntry) -> None:
        """Hint that `entry` is in the spool (just stored, recovered or released)."""
        if entry.state is QueueState.HOLD:
            return
        if entry.recovered:
            self._recovered.add(entry.qid)
        if entry.state is QueueState.DEFERRED:
            self._schedule(entry.qid, entry.next_attempt)
            return
        if len(self._fresh) < _FRESH_MAX and entry.qid not in self._inflight:
            self._fresh[entry.qid] = entry
        self._schedule(entry.qid, self._clock.time())

    def flush(self, qid: str | None = None) -> int:
        """Make deferred entries (all, or just `qid`) due now; returns how many."""
        qids = list(self._due) if qid is None else [qid] if qid in self._due else []
        now = self._clock.time()
        for each in qids:
            self._schedule(each, now)
        return len(qids)

    async def hold(self, qid: str) -> None:
        """Stop delivering `qid` until released (after its running attempt, if any)."""
        running = self._inflight.get(qid)
        if running is not None:
            await asyncio.wait({running})
        self._due.pop(qid, None)
        self._fresh.pop(qid, None)
        if qid in self._removing:
            raise UnknownQid(qid)  # delivered; its removal is on the way
        entry = await diskio.run(self._spool.load, qid)
        if entry.state is not QueueState.HOLD:
            entry.state = QueueState.HOLD
            await diskio.run(self._spool.save, entry)

    async def release(self, qid: str) -> None:
        """Undo `hold`: the entry becomes due now."""
        entry = await diskio.run(self._spool.load, qid)
        if entry.state is QueueState.HOLD:
            entry.state = QueueState.ACTIVE
            entry.next_attempt = self._clock.time()
            await diskio.run(self._spool.save, entry)
            self.notify(entry)

    def _schedule(self, qid: str, due: float) -> None:
        self._due[qid] = due
        heapq.heappush(self._heap, (due, qid))
        self._wake.set()

    # -- the loop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run` to return once the running attempts have finished."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Deliver due entries until `stop`; cancelling abandons running attempts."""
        try:
            while not self._stopping:
                self._wake.clear()
                self._dispatch_due()
                await self._idle(self._next_wakeup())
        except asyncio.CancelledError:
            for task in self._inflight.values():
                task.cancel()
            raise
        finally:
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)
            if self._remover is not None:
                await asyncio.gather(self._remover, return_exceptions=True)

    def _next_due(self) -> tuple[float, str] | None:
        """The earliest timetable item, dropping stale heap items on the way."""
        while self._heap:
            due, qid = self._heap[0]
            if self._due.get(qid) == due:
                return due, qid
            heapq.heappop(self._heap)
        return None

    def _dispatch_due(self) -> None:
        now = self._clock.time()
        while len(self._inflight) < self._concurrency:
            head = self._next_due()
            if head is None or head[0] > now or head[1] in self._inflight:
                # An attempt still running has rescheduled its entry (and may be due
                # already, when time moved or a flush came): its end wakes us for it.
                return
            heapq.heappop(self._heap)
            qid = head[1]
            del self._due[qid]
            task = asyncio.create_task(self._attempt(qid))
            self._inflight[qid] = task
            task.add_done_callback(lambda _, qid=qid: self._attempt_done(qid))

    def _attempt_done(self, qid: str) -> None:
        del self._inflight[qid]
        self._wake.set()

    def _next_wakeup(self) -> float | None:
        """When to wake without a hint; None when nothing is due or no slot is free."""
        head = self._next_due()
        if head is None or len(self._inflight) >= self._concurrency or head[1] in self._inflight:
            return None
        return head[0]

    async def _idle(self, until: float | None) -> None:
        if until is None:  # only a hint can wake us: no timer tasks to make and cancel
            await self._wake.wait()
            return
        waiters = [
            asyncio.create_task(self._wake.wait()),
            asyncio.create_task(self._sleep_until(until)),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _sleep_until(self, until: float) -> None:
        # The delay is measured when the task starts, not when it was created.
        await self._clock.sleep(until - self._clock.time())

    # -- one attempt -------------------------------------------------------------------------

    async def _attempt(self, qid: str) -> None:
        try:
            await self._deliver_entry(qid)
        except UnknownQid:
            logger.info("queue %s: no longer in the spool", qid)
        except Exception:
            retry = self._clock.time() + self._backoff.delay(1)
            logger.exception("queue %s: attempt failed; retrying at %s", qid, retry)
            self._recovered.add(qid)  # its outcome may not have been saved
            self._schedule(qid, retry)

    async def _deliver_entry(self, qid: str) -> None:
        entry = self._fresh.pop(qid, None) or await diskio.run(self._spool.load, qid)
        if entry.state is QueueState.HOLD:
            return
        entry.recovered = qid in self._recovered
        now = self._clock.time()
        results, harmless = await self._deliver_all(entry)
        events = self._record(entry, results, now)
        if entry.pending and self._backoff.expired(entry, now):
            events += self._expire(entry)
        failed = [r for kind, r in events if kind in {"failed", "expired"}]
        if failed and not await self._report("on_failed", self._on_failed, entry, failed):
            # The bounce could not be queued (disk full?): keep those recipients pending so
            # that the failure, and its notification, are tried again instead of lost.
            for recipient in failed:
                recipient.status = RecipientStatus.PENDING
            events = [(kind, r) for kind, r in events if r not in failed]
        if entry.pending:
            entry.state = QueueState.DEFERRED
            entry.next_attempt = min(
                now + self._backoff.delay(entry.attempts), self._backoff.deadline(entry)
            )
            await self._warn_delayed(entry, now)
            await diskio.run(self._spool.save, entry)
            events += [("deferred", r) for r in entry.pending]
            self._schedule(qid, entry.next_attempt)
        elif any(kind != "delivered" or r.address not in harmless for kind, r in events):
            await diskio.run(self._spool.remove, qid, sync=True)
        else:
            self._remove_later(qid)  # repeating the attempt would be harmless: no fsync
        self._recovered.discard(qid)
        for kind, recipient in events:
            self._emit(kind, entry, recipient)

    def _remove_later(self, qid: str) -> None:
        """Queue an unsynced removal; one disk job takes all those queued meanwhile."""
        self._removing.append(qid)
        if self._remover is None or self._remover.done():
            self._remover = asyncio.create_task(self._remove_queued())

    async def _remove_queued(self) -> None:
        while self._removing:
            batch = self._removing[:]
            await diskio.run(self._remove_unsynced, batch)
            del self._removing[: len(batch)]

    def _remove_unsynced(self, qids: list[str]) -> None:
        for qid in qids:
            try:
                self._spool.remove(qid, sync=False)
            except UnknownQid:
                pass
            except Exception:  # it stays queued: the next start delivers it again, harmlessly
                logger.exception("queue %s: removal failed", qid)

    async def _deliver_all(self, entry: QueueEntry) -> tuple[dict[str, RecipientResult], set[str]]:
        """One result per distinct pending address, whatever the router and agents do.

        Also the addresses whose agent `detects_repeats` (see the module docstring).
        """
        results: dict[str, RecipientResult] = {}
        harmless: set[str] = set()
        groups: dict[int, tuple[DeliveryAgent, list[str]]] = {}
        for address in dict.fromkeys(r.address for r in entry.pending):
            try:
                agent = self._router(address)
            except Exception:
                logger.exception("queue %s: routing <%s> failed", entry.qid, address)
                results[address] = _trouble(address, "routing error")
                continue
            groups.setdefault(id(agent), (agent, []))[1].append(address)
            if getattr(agent, "detects_repeats", False):
                harmless.add(address)
        calls = [self._deliver(entry, agent, addresses) for agent, addresses in groups.values()]
        # One agent (the usual case) needs no gather, which costs a task per call.
        batches = [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls)
        for batch in batches:
            results.update(batch)
        return results, harmless

    async def _deliver(
        self, entry: QueueEntry, agent: DeliveryAgent, addresses: list[str]
    ) -> dict[str, RecipientResult]:
        try:
            answered = {r.recipient: r for r in await agent.deliver(entry, addresses)}
            missing = "delivery agent gave no result"
        except Exception as exc:
            logger.exception("queue %s: delivery agent %r raised", entry.qid, agent)
            answered, missing = {}, f"delivery agent error: {type(exc).__name__}"
        return {a: answered.get(a) or _trouble(a, missing) for a in addresses}

    def _record(
        self, entry: QueueEntry, results: dict[str, RecipientResult], now: float
    ) -> list[tuple[str, RecipientState]]:
        """Apply the results to the recipients; events for those now final."""
        entry.attempts += 1
        entry.last_attempt = now
        events = []
        for recipient in entry.pending:
            result = results[recipient.address]
            settle(recipient, result)
            if recipient.status is not RecipientStatus.PENDING:
                events.append((result.outcome.value, recipient))
        return events

    @staticmethod
    def _expire(entry: QueueEntry) -> list[tuple[str, RecipientState]]:
        expired = entry.pending
        for recipient in expired:
            recipient.status = RecipientStatus.FAILED
            recipient.last_status = "4.4.7"  # RFC 3463 §3.5: delivery time expired
            recipient.last_detail = f"delivery time expired; last error: {recipient.last_detail}"
        return [("expired", r) for r in expired]

    async def _warn_delayed(self, entry: QueueEntry, now: float) -> None:
        """Call `on_delayed` once the entry is `delay_warning` old, at most once per entry."""
        if self._on_delayed is None or entry.warned:
            return
        if now - entry.arrival >= self._delay_warning:
            entry.warned = await self._report("on_delayed", self._on_delayed, entry, entry.pending)

    async def _report(
        self, name: str, hook: RecipientsHook, entry: QueueEntry, recipients: list[RecipientState]
    ) -> bool:
        """Call a hook; its failure is logged, never the attempt's. True if it succeeded."""
        try:
            await hook(entry, recipients)
        except Exception:
            logger.exception("queue %s: %s hook raised", entry.qid, name)
            return False
        return True

    def _emit(self, kind: str, entry: QueueEntry, recipient: RecipientState) -> None:
        if self._on_event is None:
            return
        detail = recipient.as_event()
        if kind == "deferred":
            detail["next_attempt"] = entry.next_attempt
        try:
            self._on_event(kind, entry, detail)
        except Exception:
            logger.exception("queue %s: on_event hook raised", entry.qid)


def _trouble(address: str, detail: str) -> RecipientResult:
    """A temporary failure for trouble on our side (RFC 3463 §3.4: 4.3.0)."""
    return RecipientResult(address, Outcome.DEFERRED, "4.3.0", detail)
