"""The relay agent's connections: per-destination slots, a global bound, idle reuse.

A destination (a domain, or the smarthost) has a semaphore of `destination_concurrency`
slots; all destinations share one of `concurrency`. A connection holds slots only while
in use; afterwards it waits `reuse` seconds in its destination's idle list for the next
message (then gets QUIT). A new connection opens only when the idle list is empty, and
when `concurrency` connections are already open the oldest idle ones elsewhere are closed
to make room, so busy plus idle connections stay within the bounds.

Standards: RFC 5321 §4.1.1.10 (QUIT), §4.5.3.2 (timeouts), §5.1 (connection reuse)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

from postoffice.client.connection import SmtpConnection


@dataclasses.dataclass(eq=False)
class Destination:
    """A domain (or the smarthost): its connection slots and its idle connections."""

    key: str
    slots: asyncio.Semaphore
    idle: list[SmtpConnection] = dataclasses.field(default_factory=list)
    users: int = 0  # deliveries holding or awaiting a slot


class ConnectionPool:
    """Slots and idle connections of every destination."""

    def __init__(self, *, concurrency: int, destination_concurrency: int, reuse: float):
        self._concurrency = concurrency
        self._destination_concurrency = destination_concurrency
        self._reuse = reuse
        self._destinations: dict[str, Destination] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._open = 0  # connections open, busy or idle
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    @contextlib.asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[Destination]:
        """Hold a slot of destination `key` and one of the global bound."""
        destination = self._destinations.get(key)
        if destination is None:
            slots = asyncio.Semaphore(self._destination_concurrency)
            destination = self._destinations[key] = Destination(key, slots)
        destination.users += 1
        try:
            async with destination.slots, self._slots:
                yield destination
        finally:
            destination.users -= 1
            self._forget(destination)

    def take_idle(self, destination: Destination) -> SmtpConnection | None:
        while destination.idle:
            session = _unpool(destination.idle.pop())
            if session.alive:
                return session
            self.discard(session)
        return None

    def opened(self) -> None:
        """Count a new connection (after `make_room`)."""
        self._open += 1

    def release(self, destination: Destination, session: SmtpConnection) -> None:
        """A transaction is over: keep the connection for `reuse` seconds, or close it."""
        if not session.alive or self._closed or self._reuse <= 0:
            self.discard(session)
            return
        session.reused = True
        loop = asyncio.get_running_loop()
        session.timer = loop.call_later(self._reuse, self._expire, destination, session)
        destination.idle.append(session)

    async def make_room(self) -> None:
        """Close the oldest idle connections while a new one would exceed `concurrency`."""
        while self._open >= self._concurrency:
            idle = [(s, d) for d in self._destinations.values() for s in d.idle]
            if not idle:
                return
            session, destination = min(idle, key=lambda pair: _expiry(pair[0]))
            destination.idle.remove(session)
            self._forget(destination)
            self._open -= 1
            await _unpool(session).close()

    def discard(self, session: SmtpConnection) -> None:
        """Close in the background; its slot is free at once."""
        self._open -= 1
        task = asyncio.get_running_loop().create_task(session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Say QUIT on every idle connection and wait until all are closed."""
        self._closed = True
        for destination in list(self._destinations.values()):
            while destination.idle:
                self.discard(_unpool(destination.idle.pop()))
            self._forget(destination)
        await asyncio.gather(*list(self._closing))

    def _expire(self, destination: Destination, session: SmtpConnection) -> None:
        destination.idle.remove(session)
        self.discard(session)
        self._forget(destination)

    def _forget(self, destination: Destination) -> None:
        idle = destination.users == 0 and not destination.idle
        if idle and self._destinations.get(destination.key) is destination:
            del self._destinations[destination.key]


def _unpool(session: SmtpConnection) -> SmtpConnection:
    if session.timer is not None:
        session.timer.cancel()
        session.timer = None
    return session


def _expiry(session: SmtpConnection) -> float:
    return session.timer.when() if session.timer is not None else 0.0
