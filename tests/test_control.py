"""The control socket end to end, and the queue commands served on it by a real scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from postoffice.control import (
    ControlError,
    ControlServer,
    ControlUnavailable,
    Handler,
    request,
)
from postoffice.delivery.base import Outcome, RecipientResult
from postoffice.journal import Journal
from postoffice.queue.admin import control_handlers
from postoffice.queue.backoff import Backoff
from postoffice.queue.entry import QueueEntry, QueueState
from postoffice.queue.scheduler import Scheduler
from postoffice.queue.spool import Spool
from postoffice.testing.clock import FakeClock


def asyncio_test(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 20))

    return run


async def ask(path: Path, command: str, **args: Any) -> dict[str, Any]:
    """The blocking client, off the event loop that serves it."""
    return await asyncio.to_thread(request, path, command, **args)


@contextlib.asynccontextmanager
async def serving(path: Path, handlers: dict[str, Handler]) -> AsyncIterator[ControlServer]:
    server = ControlServer(path, handlers, max_request=1024)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def echo(args: dict[str, Any]) -> dict[str, Any]:
    return {"echo": args}


async def refuse(args: dict[str, Any]) -> dict[str, Any]:
    raise ControlError(f"no message with queue id {args['qid']} in the queue")


async def crash(args: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("handler bug")


HANDLERS: dict[str, Handler] = {"echo": echo, "refuse": refuse, "crash": crash}


@asyncio_test
async def test_round_trip_and_a_private_socket(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    async with serving(path, HANDLERS):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert await ask(path, "echo", qid="Q1", n=2) == {"echo": {"qid": "Q1", "n": 2}}
    assert not path.exists()  # removed on close


@asyncio_test
async def test_errors_come_back_as_one_line(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    async with serving(path, HANDLERS):
        with pytest.raises(ControlError, match="unknown command 'nope'"):
            await ask(path, "nope")
        with pytest.raises(ControlError, match="no message with queue id X in the queue"):
            await ask(path, "refuse", qid="X")
        with pytest.raises(ControlError, match="crash failed on the server"):
            await ask(path, "crash")
        assert await ask(path, "echo") == {"echo": {}}  # the server still serves


def raw(path: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(data)
        with sock.makefile("rb") as stream:
            return stream.readline()


@asyncio_test
async def test_malformed_and_oversized_requests_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    async with serving(path, HANDLERS):
        assert b"not a JSON line" in await asyncio.to_thread(raw, path, b"hello\n")
        assert b"must be an object" in await asyncio.to_thread(raw, path, b"[1]\n")
        big = b'{"command": "echo", "args": {"x": "' + b"x" * 5000 + b'"}}\n'
        assert b"longer than 1024 octets" in await asyncio.to_thread(raw, path, big)


def test_no_server_means_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    with pytest.raises(ControlUnavailable):
        request(path, "echo")  # no socket file
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # a socket file nobody listens on, as a crash leaves it
    stale.close()
    with pytest.raises(ControlUnavailable):
        request(path, "echo")


@asyncio_test
async def test_start_replaces_a_stale_socket_but_not_a_live_one(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    async with serving(path, HANDLERS):
        assert await ask(path, "echo") == {"echo": {}}
        with pytest.raises(OSError, match="another server is listening"):
            await ControlServer(path, HANDLERS).start()
        assert await ask(path, "echo") == {"echo": {}}
    path.write_text("not a socket")
    with pytest.raises(FileExistsError):
        await ControlServer(path, HANDLERS).start()


@asyncio_test
async def test_a_path_too_long_for_sun_path_still_works(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "control.sock"
    async with serving(path, HANDLERS):
        assert await ask(path, "echo") == {"echo": {}}


# -- the queue commands, served by a real scheduler ----------------------------------------------


class Deferring:
    """A delivery agent that always defers, so entries stay in the queue."""

    def __init__(self) -> None:
        self.calls = 0

    async def deliver(self, entry: QueueEntry, recipients: list[str]) -> list[RecipientResult]:
        self.calls += 1
        return [
            RecipientResult(r, Outcome.DEFERRED, "4.4.1", "connection refused") for r in recipients
        ]


async def eventually(predicate: Callable[[], bool]) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


@asyncio_test
async def test_queue_commands_act_through_the_scheduler(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "queue")
    agent = Deferring()
    clock = FakeClock()
    scheduler = Scheduler(spool, lambda _: agent, clock, Backoff())
    journal = Journal(tmp_path / "journal")
    path = tmp_path / "control.sock"
    entry = spool.store(
        "a@x.test",
        [("b@y.test", "b@y.test")],
        b"Subject: s\r\n\r\n",
        client={},
        message_id="<m@x.test>",
        arrival=clock.time(),
    )
    task = asyncio.create_task(scheduler.run())
    try:
        scheduler.notify(entry)
        await eventually(lambda: spool.load(entry.qid).state is QueueState.DEFERRED)
        async with serving(path, control_handlers(scheduler, spool, journal)):
            assert await ask(path, "flush") == {"flushed": 1}
            await eventually(lambda: agent.calls == 2)
            assert await ask(path, "hold", qid=entry.qid) == {"qid": entry.qid}
            assert spool.load(entry.qid).state is QueueState.HOLD
            with pytest.raises(ControlError, match="is on hold"):
                await ask(path, "flush", qid=entry.qid)
            await ask(path, "release", qid=entry.qid)
            await eventually(lambda: agent.calls == 3)
            await eventually(lambda: spool.load(entry.qid).state is QueueState.DEFERRED)
            assert await ask(path, "flush", qid=entry.qid) == {"flushed": 1}
            await ask(path, "delete", qid=entry.qid)
            assert spool.list() == []
            for command in ("hold", "release", "delete", "flush"):
                with pytest.raises(ControlError, match=f"no message with queue id {entry.qid}"):
                    await ask(path, command, qid=entry.qid)
            with pytest.raises(ControlError, match="a queue id is needed"):
                await ask(path, "hold")
    finally:
        scheduler.stop()
        await task
        journal.close()
    assert [r["event"] for r in journal.find(entry.qid)] == [
        "flushed",
        "held",
        "released",
        "flushed",
        "deleted",
    ]
