"""Lending a session's transport to a protocol object while its task waits for the client.

With streams, every command costs a future, a task wake-up and an extra turn of the event
loop. A session that waits for its client can instead lend the transport to a `Parked`
protocol, which answers the commands that need no waiting right as their bytes arrive and
wakes the task only for the rest (servers/pop3_parked.py, servers/smtp_parked.py say which).
This module is the lending itself: taking the transport over, giving it back once, passing
flow control and the end of the connection on to the stream protocol.

Bytes already in the stream reader when a session would park must be read first: parked,
they would wait behind bytes that arrive later (`reader_is_empty`).

Standards: none of its own.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar


def reader_is_empty(reader: asyncio.StreamReader) -> bool:
    """Nothing buffered, no end of file, no error: the next bytes come from the transport.

    Reads the reader's private fields: StreamReader has no public way to ask.
    """
    return not reader._buffer and not reader._eof and reader._exception is None


class Parked(asyncio.Protocol):
    """The transport's protocol while a session's task waits; `waiter` wakes the task.

    Subclasses implement `data_received`: answer what needs no waiting, `unpark(event)`
    for the rest. Anything unexpected (end of file, a lost connection) unparks too, and the
    stream protocol gets to see it.
    """

    NOTHING: ClassVar[object]  # what the task gets when no command is handed over

    def __init__(self, session: Any, transport: asyncio.BaseTransport):
        self.session = session
        self.transport = transport
        self.inner = transport.get_protocol()
        self.loop = asyncio.get_running_loop()  # once: each call costs a getpid() syscall
        self.waiter: asyncio.Future[Any] = self.loop.create_future()
        transport.set_protocol(self)

    def unpark(self, result: object = None) -> None:
        """Give the transport back to the stream protocol and wake the task (once)."""
        if self.transport.get_protocol() is self:
            self.transport.set_protocol(self.inner)
        if not self.waiter.done():
            self.waiter.set_result(self.NOTHING if result is None else result)

    def hand_back(self, data: bytes) -> bool:
        """When the task stopped waiting (cancelled: idle, shutdown): give `data` to the
        stream protocol, and True."""
        if not self.waiter.done():
            return False
        self.unpark()
        self.inner.data_received(data)  # type: ignore[attr-defined]
        return True

    def eof_received(self) -> bool | None:
        self.unpark()
        return self.inner.eof_received()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.unpark()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
