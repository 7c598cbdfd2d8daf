"""Listening sockets shared by every protocol server: accept, limit, track, shut down.

A `Listener` binds the configured addresses, refuses connections beyond the
connection limit with a protocol-specific line, and keeps the set of live
sessions so that shutdown can stop accepting, tell idle sessions goodbye and
give sessions in a transaction a bounded grace period. Closing a connection
waits a bounded time for it to go: a peer that reads nothing is aborted, and a
socket handed to TLS is not waited on through its plaintext writer (only the TLS
layer hears of its end), so every connection frees its slot when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from typing import Protocol

from postoffice import heap
from postoffice.config import parse_hostport
from postoffice.logs import EventLog
from postoffice.policy.limits import ClientLimits
from postoffice.streams import start_tls
from postoffice.tls import describe


class Session(Protocol):
    """What the listener needs from a protocol session."""

    writer: asyncio.StreamWriter  # the current one (a TLS writer after STARTTLS)

    async def run(self) -> None: ...
    def request_stop(self) -> None:
        """Finish the current transaction, then say goodbye; idle sessions leave now."""
        ...

    async def abort(self) -> None:
        """Grace is over: say goodbye at once and close."""
        ...


PREBOUND_BACKLOG = 1024  # the kernel's queue of a socket bound before the fork (workers.py)

# (reader, writer, tls) -> session; `tls` describes an implicit-TLS handshake, "" if none
SessionFactory = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str], Session]


class Listener:
    """Accepts connections for one protocol on one or more addresses."""

    def __init__(
        self,
        name: str,
        addresses: tuple[str, ...],
        factory: SessionFactory,
        *,
        max_connections: int,
        busy_line: bytes,
        log: EventLog,
        counter: ConnectionCounter,
        client_limits: ClientLimits,
        tls: Callable[[], ssl.SSLContext] | None = None,
        handshake_timeout: float = 60.0,  # also bounds the wait for a peer at close
        sockets: list[socket.socket] | None = None,  # bound already (workers.py): use these
    ):
        self.name = name
        self.addresses = addresses
        self.factory = factory
        self.max_connections = max_connections
        self.busy_line = busy_line
        self.log = log
        self.counter = counter
        self.client_limits = client_limits
        self.tls = tls  # implicit TLS (RFC 8314): the handshake comes before any protocol
        self.handshake_timeout = handshake_timeout
        self.prebound = sockets
        self.sessions: dict[Session, asyncio.Task[None]] = {}
        self.servers: list[asyncio.Server] = []

    async def start(self) -> list[str]:
        """Bind every address; return them as "addr:port" for the start-up banner."""
        if self.prebound is not None:
            for sock in self.prebound:  # this process's own (workers.py): listening now
                server = await asyncio.start_server(
                    self._accept, sock=sock, limit=1 << 16, backlog=PREBOUND_BACKLOG
                )
                self.servers.append(server)
            return list(self.addresses)
        bound = []
        for text in self.addresses:
            host, port = parse_hostport(text)
            server = await asyncio.start_server(self._accept, host, port, limit=1 << 16)
            self.servers.append(server)
            bound.append(text)
        return bound

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) else ""
        if self.counter.total >= self.max_connections:
            await self._refuse(writer, peer, "busy")
            return
        if not self.client_limits.connection_opened(ip):
            await self._refuse(writer, peer, "too many connections from this address")
            return
        self.counter.opened()
        plaintext = writer
        try:
            described = ""
            if self.tls is not None:
                try:
                    reader, writer = await start_tls(
                        writer, self.tls(), server_side=True, timeout=self.handshake_timeout
                    )
                except (OSError, TimeoutError) as exc:
                    self.log.event(
                        "tls_failed",
                        listener=self.name,
                        client=_peer(peer),
                        error=str(exc) or repr(exc),
                    )
                    return
                described = describe(writer.get_extra_info("ssl_object"))
            session = self.factory(reader, writer, described)
            task = asyncio.current_task()
            assert task is not None
            self.sessions[session] = task
            try:
                await session.run()
            finally:
                self.sessions.pop(session, None)
                await _close(session.writer, self.handshake_timeout)
        finally:
            self.counter.closed()
            self.client_limits.connection_closed(ip)
            await _close(plaintext, self.handshake_timeout)

    async def _refuse(self, writer: asyncio.StreamWriter, peer: object, reason: str) -> None:
        """Say the protocol's "busy" line in plaintext and hang up."""
        self.log.warning("refused", listener=self.name, client=_peer(peer), reason=reason)
        if self.tls is None:
            with contextlib.suppress(OSError):
                writer.write(self.busy_line)
                await writer.drain()
        await _close(writer, self.handshake_timeout)

    def stop_accepting(self) -> None:
        for server in self.servers:
            server.close()

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, let transactions finish within `grace` seconds, then close all."""
        self.stop_accepting()
        for session in list(self.sessions):
            session.request_stop()
        await _wait_tasks(list(self.sessions.values()), grace)
        for session in list(self.sessions):
            await session.abort()
        await _wait_tasks(list(self.sessions.values()), 2.0)
        for task in self.sessions.values():
            task.cancel()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()


class ConnectionCounter:
    """Connections open across all listeners (max_connections is a server-wide limit).

    `TRIM_AFTER` seconds after the last one closed, if none is open then, `on_idle` runs:
    by default the heap's free pages go back to the system (heap.trim). glibc keeps what a
    busy spell freed for later mallocs, and a receiver process, which reads no mailboxes (the
    other moment a trim is due, storage/indexcache.py), would otherwise never give it back:
    ~1 MiB each after the bench's SMTP loads.
    """

    TRIM_AFTER = 2.0  # seconds without a connection

    def __init__(self, on_idle: Callable[[], None] = heap.trim) -> None:
        self.total = 0
        self._on_idle = on_idle
        self._timer: asyncio.TimerHandle | None = None

    def opened(self) -> None:
        self.total += 1

    def closed(self) -> None:
        self.total -= 1
        if self.total == 0 and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.TRIM_AFTER, self._idle)

    def _idle(self) -> None:
        self._timer = None
        if self.total == 0:
            self._on_idle()


async def _close(writer: asyncio.StreamWriter, timeout: float) -> None:
    """Close `writer` and wait, at most `timeout` seconds, until its connection is gone."""
    writer.close()
    if not isinstance(writer.transport.get_protocol(), asyncio.StreamReaderProtocol):
        # The transport was handed to TLS: its end reaches the TLS layer, never this
        # writer's protocol, so wait_closed() would wait forever.
        return
    try:
        async with asyncio.timeout(timeout):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()  # a peer that reads nothing would keep the socket forever
    except (OSError, asyncio.CancelledError, ssl.SSLError):
        pass


async def _wait_tasks(tasks: list[asyncio.Task[None]], timeout: float) -> None:
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)


def _peer(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
