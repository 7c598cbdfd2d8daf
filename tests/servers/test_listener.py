"""servers/listener.py: the connection count, the heap trim once the last one closes, and
implicit TLS (accepted by the listener itself) on both event loops the server runs on."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import trustme
import uvloop

from postoffice.clock import SystemClock
from postoffice.logs import EventLog
from postoffice.policy.limits import ClientLimits
from postoffice.servers.listener import ConnectionCounter, Listener


class _LineSession:
    """Says hello, waits for one line, ends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def run(self) -> None:
        self.writer.write(b"hello\r\n")
        await self.reader.readline()

    def request_stop(self) -> None: ...

    async def abort(self) -> None: ...


def _listener(
    sock: socket.socket,
    *,
    counter: ConnectionCounter | None = None,
    tls: ssl.SSLContext | None = None,
    log: io.StringIO | None = None,
    max_connections: int = 10,
    max_per_ip: int = 10,
) -> Listener:
    port = sock.getsockname()[1]
    return Listener(
        "test",
        (f"127.0.0.1:{port}",),
        lambda reader, writer, tls: _LineSession(reader, writer),
        max_connections=max_connections,
        busy_line=b"busy\r\n",
        log=EventLog(stream=log if log is not None else io.StringIO()),
        counter=counter if counter is not None else ConnectionCounter(on_idle=lambda: None),
        client_limits=ClientLimits(
            SystemClock(), max_per_ip=max_per_ip, commands_per_minute=1000, messages_per_minute=100
        ),
        tls=(lambda: tls) if tls is not None else None,
        handshake_timeout=5.0,
        sockets=[sock],
    )


@contextlib.asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[int]:
    """A started `_listener(..., **options)` on a free loopback port: that port."""
    sock = socket.create_server(("127.0.0.1", 0))
    listener = _listener(sock, **options)
    await listener.start()
    try:
        yield sock.getsockname()[1]
    finally:
        await listener.shutdown(0.1)


def test_the_heap_is_trimmed_once_the_last_connection_has_closed() -> None:
    asyncio.run(asyncio.wait_for(_last_connection_closes(), 10))


async def _last_connection_closes() -> None:
    trims: list[int] = []
    counter = ConnectionCounter(on_idle=lambda: trims.append(counter.total))
    counter.TRIM_AFTER = 0.2
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    listener = _listener(sock, counter=counter)
    await listener.start()
    try:
        clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for reader, _ in clients:
            assert await reader.readline() == b"hello\r\n"
        assert counter.total == 2
        reader, writer = clients[0]
        writer.write(b"bye\r\n")
        assert await reader.read() == b""  # the first session ended: one still open
        await asyncio.sleep(0.5)
        assert trims == []
        reader, writer = clients[1]
        writer.write(b"bye\r\n")
        assert await reader.read() == b""
        await asyncio.sleep(0.5)
        assert trims == [0]  # once, with nothing open
    finally:
        for _, writer in clients:
            writer.close()
        listener.stop_accepting()


# --- on asyncio's loop and on uvloop's -------------------------------------------------------

Runner = Callable[[Coroutine[Any, Any, None]], None]
LOOPS = {"asyncio": asyncio.run, "uvloop": uvloop.run}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Runner:
    return lambda main: LOOPS[request.param](asyncio.wait_for(main, 10))


@pytest.fixture(scope="module")
def client_tls(tls_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    tls_ca.configure_trust(context)
    return context


def test_a_client_at_its_limit_may_reconnect_as_soon_as_it_has_closed(run: Runner) -> None:
    """One connection per address: closing it and opening the next at once is no excess,
    though the server learns of the close a few turns of its loop later."""

    async def main() -> None:
        log = io.StringIO()
        async with serving(log=log, max_per_ip=1) as port:
            for _ in range(20):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                assert await reader.readline() == b"hello\r\n"
                writer.close()  # gone without a word: the server sees the end of the stream
            assert "refused" not in log.getvalue()

    run(main())


def test_an_implicit_tls_session_is_served(
    run: Runner, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    """The client speaks first (its ClientHello): the handshake must still find it."""

    async def main() -> None:
        async with serving(tls=server_tls) as port:
            for _ in range(5):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=client_tls, server_hostname="mx.tls.test"
                )
                assert await reader.readline() == b"hello\r\n"
                writer.write(b"bye\r\n")
                assert await reader.read() == b""
                writer.close()

    run(main())


def test_a_failed_handshake_is_logged_and_frees_its_slot(
    run: Runner, server_tls: ssl.SSLContext
) -> None:
    async def main() -> None:
        log = io.StringIO()
        counter = ConnectionCounter(on_idle=lambda: None)
        async with serving(tls=server_tls, log=log, counter=counter) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"EHLO plaintext.test\r\n" * 10)
            assert await reader.read() == b""  # no TLS record, no greeting: hung up
            writer.close()
            for _ in range(100):
                if counter.total == 0:
                    break
                await asyncio.sleep(0.01)
            assert counter.total == 0
            assert "tls_failed listener=test client=127.0.0.1:" in log.getvalue()

    run(main())


def test_beyond_the_connection_limit_tls_is_refused_before_any_handshake(
    run: Runner, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    async def main() -> None:
        log = io.StringIO()
        async with serving(tls=server_tls, log=log, max_connections=1) as port:
            first = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_tls, server_hostname="mx.tls.test"
            )
            assert await first[0].readline() == b"hello\r\n"
            with pytest.raises((ssl.SSLError, OSError)):
                await asyncio.open_connection(
                    "127.0.0.1", port, ssl=client_tls, server_hostname="mx.tls.test"
                )
            assert "refused listener=test" in log.getvalue() and "reason=busy" in log.getvalue()
            first[1].close()

    run(main())
