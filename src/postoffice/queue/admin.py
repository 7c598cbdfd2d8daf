"""Queue administration: flush, hold, release and delete, online and offline.

With a server running, the CLI asks it over the control socket and the
handlers from `control_handlers` act through the scheduler, so it knows at
once: a held entry leaves the timetable, a released one is due now, and a
delete holds first, which waits for an attempt in progress, before removing
the files. With no server running, `OFFLINE` changes the spool directly (the
next start recovers whatever is active or deferred); flushing then means
nothing, as the next start tries everything anyway. Every action leaves a
journal record saying how it was done.

Standards: none (administration; RFC 5321 §4.5.4.1 leaves retry timing to the site).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from postoffice.control import ControlError, Handler
from postoffice.journal import Journal
from postoffice.queue.entry import QueueState
from postoffice.queue.scheduler import Scheduler
from postoffice.queue.spool import Spool, UnknownQid

ONLINE = "control socket"
OFFLINE_VIA = "spool, no server running"

_T = TypeVar("_T")


def unknown(qid: str) -> str:
    """The one-line error for a queue id that is not in the queue."""
    return f"no message with queue id {qid} in the queue"


def control_handlers(scheduler: Scheduler, spool: Spool, journal: Journal) -> dict[str, Handler]:
    """The queue commands of the control socket: flush [qid], hold, release, delete qid."""

    async def flush(args: dict[str, Any]) -> dict[str, Any]:
        if args.get("qid") is None:
            deferred = await asyncio.to_thread(spool.list, QueueState.DEFERRED)
            count = scheduler.flush()
            for entry in deferred:
                journal.record(entry.qid, "flushed", via=ONLINE)
            return {"flushed": count}
        qid = _qid(args)
        entry = await _known(qid, asyncio.to_thread(spool.load, qid))
        if entry.state is QueueState.HOLD:
            raise ControlError(f"{qid} is on hold; release it to deliver it")
        count = scheduler.flush(qid)
        journal.record(qid, "flushed", via=ONLINE)
        return {"flushed": count}

    async def hold(args: dict[str, Any]) -> dict[str, Any]:
        qid = _qid(args)
        await _known(qid, scheduler.hold(qid))
        journal.record(qid, "held", via=ONLINE)
        return {"qid": qid}

    async def release(args: dict[str, Any]) -> dict[str, Any]:
        qid = _qid(args)
        await _known(qid, scheduler.release(qid))
        journal.record(qid, "released", via=ONLINE)
        return {"qid": qid}

    async def delete(args: dict[str, Any]) -> dict[str, Any]:
        qid = _qid(args)
        await _known(qid, scheduler.hold(qid))  # waits for an attempt in progress
        await _known(qid, asyncio.to_thread(spool.remove, qid))
        journal.record(qid, "deleted", via=ONLINE)
        return {"qid": qid}

    return {"flush": flush, "hold": hold, "release": release, "delete": delete}


def _qid(args: dict[str, Any]) -> str:
    qid = args.get("qid")
    if not isinstance(qid, str) or not qid:
        raise ControlError("a queue id is needed")
    return qid


async def _known(qid: str, action: Awaitable[_T]) -> _T:
    try:
        return await action
    except UnknownQid:
        raise ControlError(unknown(qid)) from None


# -- with no server running ------------------------------------------------------------------


def _hold_offline(spool: Spool, journal: Journal, qid: str) -> None:
    _move(spool, qid, {QueueState.ACTIVE, QueueState.DEFERRED}, QueueState.HOLD)
    journal.record(qid, "held", via=OFFLINE_VIA)


def _release_offline(spool: Spool, journal: Journal, qid: str) -> None:
    _move(spool, qid, {QueueState.HOLD}, QueueState.ACTIVE)  # the next start tries it at once
    journal.record(qid, "released", via=OFFLINE_VIA)


def _delete_offline(spool: Spool, journal: Journal, qid: str) -> None:
    spool.remove(qid)
    journal.record(qid, "deleted", via=OFFLINE_VIA)


def _move(spool: Spool, qid: str, sources: set[QueueState], target: QueueState) -> None:
    entry = spool.load(qid)
    if entry.state in sources:
        entry.state = target
        spool.save(entry)


OFFLINE: dict[str, Callable[[Spool, Journal, str], None]] = {
    "hold": _hold_offline,
    "release": _release_offline,
    "delete": _delete_offline,
}
