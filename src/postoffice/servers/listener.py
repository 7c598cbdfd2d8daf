"""Listening sockets shared by every protocol server: accept, limit, track, shut down.

A `Listener` binds the configured addresses, refuses connections beyond the
connection limit with a protocol-specific line, and keeps the set of live
sessions so that shutdown can stop accepting, tell idle sessions goodbye and
give sessions in a transaction a bounded grace period. Closing a connection
waits a bounded time for it to go: a peer that reads nothing is aborted, and a
socket handed to TLS is not waited on through its plaintext writer (only the TLS
layer hears of its end), so every connection frees its slot when it ends.
Implicit-TLS listeners accept connections themselves (`_accept_tls_on` says why).
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
from postoffice.servers import binding
from postoffice.streams import accept_tls
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


ADMIT_GRACE = 0.05  # seconds a connection at a limit waits for closed ones to be counted out

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
        self.accepting: list[asyncio.Task[None]] = []  # implicit TLS: one per socket
        self.tls_tasks: set[asyncio.Task[None]] = set()  # implicit TLS: each connection's

    async def start(self) -> list[str]:
        """Bind every address; return them as "addr:port" for the start-up banner."""
        if self.tls is not None:
            sockets = self.prebound
            if sockets is None:
                sockets = binding.bind(binding.endpoints(self.addresses))
            for sock in sockets:
                sock.setblocking(False)
                sock.listen(binding.BACKLOG)
                self.accepting.append(asyncio.create_task(self._accept_tls_on(sock)))
            return list(self.addresses)
        if self.prebound is not None:
            for sock in self.prebound:  # this process's own (workers.py): listening now
                server = await asyncio.start_server(
                    self._accept, sock=sock, limit=1 << 16, backlog=binding.BACKLOG
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
        """A plaintext connection, accepted by asyncio's server."""
        peer = writer.get_extra_info("peername")
        ip = _ip(peer)
        if not await self._admit(ip, peer, writer):
            return
        try:
            await self._serve(self.factory(reader, writer, ""))
        finally:
            await _close(writer, self.handshake_timeout)  # the plaintext one, after STARTTLS
            self._closed(ip)

    async def _accept_tls_on(self, sock: socket.socket) -> None:
        """Accept implicit-TLS connections on `sock` until cancelled.

        Not asyncio's server, which reads from a connection as soon as it is accepted:
        under uvloop the ClientHello then lands in a plaintext reader before the TLS
        layer exists, and the handshake waits forever for bytes already consumed
        (MagicStack/uvloop#707). A socket accepted here is handed straight to the TLS
        layer, after the connection limits, as the plaintext listeners check them.
        """
        loop = asyncio.get_running_loop()
        with sock:
            while True:
                try:
                    conn, peer = await loop.sock_accept(sock)
                except ConnectionError:  # the client gave up before it was accepted
                    continue
                except OSError as exc:  # out of file descriptors or memory: back off
                    self.log.warning("accept_failed", listener=self.name, error=str(exc))
                    await asyncio.sleep(1.0)
                    continue
                task = asyncio.create_task(self._accept_tls(conn, peer))
                self.tls_tasks.add(task)
                task.add_done_callback(self.tls_tasks.discard)

    async def _accept_tls(self, conn: socket.socket, peer: object) -> None:
        """An accepted implicit-TLS connection (RFC 8314 §3): the handshake comes first."""
        ip = _ip(peer)
        if not await self._admit(ip, peer, None):
            conn.close()
            return
        try:
            assert self.tls is not None
            try:
                reader, writer = await accept_tls(conn, self.tls(), timeout=self.handshake_timeout)
            except (OSError, TimeoutError) as exc:
                conn.close()
                error = str(exc) or repr(exc)
                self.log.event("tls_failed", listener=self.name, client=_peer(peer), error=error)
                return
            described = describe(writer.get_extra_info("ssl_object"))
            await self._serve(self.factory(reader, writer, described))
        finally:
            self._closed(ip)

    async def _admit(self, ip: str, peer: object, writer: asyncio.StreamWriter | None) -> bool:
        """Count a new connection in, or refuse it (False) when a limit is reached.

        At a limit, the refusal waits `ADMIT_GRACE` and looks again: a client that closed a
        connection and at once opened the next is still counted for the old one until the
        loop has seen it close, a few turns of the loop later (more of them under uvloop).
        """
        reason = self._at_limit(ip)
        if reason is not None:
            await asyncio.sleep(ADMIT_GRACE)
            reason = self._at_limit(ip)
        if reason is not None:
            await self._refuse(writer, peer, reason)
            return False
        self.counter.opened()
        return True

    def _at_limit(self, ip: str) -> str | None:
        """Why a connection from `ip` cannot be taken now; None: taken (its slot counted)."""
        if self.counter.total >= self.max_connections:
            return "busy"
        if not self.client_limits.connection_opened(ip):
            return "too many connections from this address"
        return None

    def _closed(self, ip: str) -> None:
        self.counter.closed()
        self.client_limits.connection_closed(ip)

    async def _serve(self, session: Session) -> None:
        """Run `session` to its end, tracked for shutdown, and close its connection."""
        task = asyncio.current_task()
        assert task is not None
        self.sessions[session] = task
        try:
            await session.run()
        finally:
            self.sessions.pop(session, None)
            await _close(session.writer, self.handshake_timeout)

    async def _refuse(self, writer: asyncio.StreamWriter | None, peer: object, reason: str) -> None:
        """Say the protocol's "busy" line in plaintext and hang up (TLS: just hang up)."""
        self.log.warning("refused", listener=self.name, client=_peer(peer), reason=reason)
        if writer is None:
            return
        with contextlib.suppress(OSError):
            writer.write(self.busy_line)
            await writer.drain()
        await _close(writer, self.handshake_timeout)

    def stop_accepting(self) -> None:
        for server in self.servers:
            server.close()
        for task in self.accepting:
            task.cancel()

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, let transactions finish within `grace` seconds, then close all."""
        self.stop_accepting()
        for session in list(self.sessions):
            session.request_stop()
        await _wait_tasks(list(self.sessions.values()), grace)
        for session in list(self.sessions):
            await session.abort()
        await _wait_tasks(list(self.sessions.values()), 2.0)
        for task in [*self.sessions.values(), *self.tls_tasks]:
            task.cancel()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        await asyncio.gather(*self.accepting, return_exceptions=True)  # their sockets closed


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
    if not writer.transport.is_closing():
        writer.close()  # once: a second close() of asyncio's TLS transport drops its protocol
    if _handed_to_tls(writer):
        # Its end reaches the TLS layer, never this writer's protocol, so wait_closed()
        # would wait forever.
        return
    try:
        async with asyncio.timeout(timeout):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()  # a peer that reads nothing would keep the socket forever
    except (OSError, asyncio.CancelledError, ssl.SSLError):
        pass


def _handed_to_tls(writer: asyncio.StreamWriter) -> bool:
    """Whether `writer` is the plaintext writer of a connection that went on over TLS."""
    try:
        return not isinstance(writer.transport.get_protocol(), asyncio.StreamReaderProtocol)
    except AttributeError:  # asyncio's TLS transport, closed twice: TLS itself, never handed
        return False


async def _wait_tasks(tasks: list[asyncio.Task[None]], timeout: float) -> None:
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)


def _ip(peer: object) -> str:
    """The address of a peer name, "" when it has none (per-address limits)."""
    return str(peer[0]) if isinstance(peer, tuple) else ""


def _peer(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
