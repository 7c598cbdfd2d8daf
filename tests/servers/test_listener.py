"""servers/listener.py: the connection count and the heap trim once the last one closes."""

from __future__ import annotations

import asyncio
import io
import socket

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


def test_the_heap_is_trimmed_once_the_last_connection_has_closed() -> None:
    asyncio.run(asyncio.wait_for(_last_connection_closes(), 10))


async def _last_connection_closes() -> None:
    trims: list[int] = []
    counter = ConnectionCounter(on_idle=lambda: trims.append(counter.total))
    counter.TRIM_AFTER = 0.2
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    listener = Listener(
        "test",
        (f"127.0.0.1:{port}",),
        lambda reader, writer, tls: _LineSession(reader, writer),
        max_connections=10,
        busy_line=b"busy\r\n",
        log=EventLog(stream=io.StringIO()),
        counter=counter,
        client_limits=ClientLimits(
            SystemClock(), max_per_ip=10, commands_per_minute=100, messages_per_minute=100
        ),
        sockets=[sock],
    )
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
