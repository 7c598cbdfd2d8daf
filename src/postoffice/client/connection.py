"""One SMTP client connection: streams, reply parser, capabilities, STARTTLS and the transcript.

Shared by the remote delivery agent (delivery/smtp.py) and the user agent: both drive the
sans-I/O client core (protocols/smtp/client.py) through this thin asyncio wrapper, which
adds per-reply timeouts, a `C:`/`S:` transcript for the trace and the demo, and the
STARTTLS switch that drops every plaintext byte received after the 220.

Standards: RFC 5321 §4.1.1.10, §4.5.3.2; RFC 3207 §4.2
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl

from postoffice.protocols.smtp import Reply
from postoffice.protocols.smtp import client as smtp
from postoffice.streams import start_tls

CHUNK = 256 * 1024  # octets read from the socket at a time
CLOSE_TIMEOUT = 10.0  # at most this long for QUIT and the close after it
NETWORK_ERRORS = (smtp.ProtocolError, OSError, TimeoutError)  # ssl.SSLError is an OSError


@dataclasses.dataclass(eq=False)
class SmtpConnection:
    """One connection: streams, reply parser, what EHLO offered, and the transcript."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    host: str
    address: str
    port: int
    timeout: float  # per reply or write (RFC 5321 §4.5.3.2)
    parser: smtp.ReplyParser = dataclasses.field(default_factory=smtp.ReplyParser)
    capabilities: smtp.Capabilities = dataclasses.field(default_factory=smtp.Capabilities)
    tls: bool = False
    reused: bool = False  # taken from the idle pool
    broken: bool = False  # out of step with the server: never reuse, never QUIT
    timer: asyncio.TimerHandle | None = None  # idle expiry while pooled
    transcript: list[str] = dataclasses.field(default_factory=list)
    plaintext: asyncio.StreamWriter | None = None  # the writer from before STARTTLS

    @property
    def where(self) -> str:
        return f"{self.host}[{self.address}]:{self.port}"

    @property
    def alive(self) -> bool:
        return not (self.broken or self.writer.is_closing() or self.reader.at_eof())

    async def send(self, *commands: bytes, shown: str | None = None) -> None:
        """Write commands at once (pipelined when several); `shown` masks a secret."""
        for command in commands:
            self.transcript.append(f"C: {shown or command.decode('utf-8').rstrip()}")
        await self.write(b"".join(commands))

    async def write(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            async with asyncio.timeout(self.timeout):
                await self.writer.drain()
        except BaseException:
            self.broken = True
            raise

    async def reply(self) -> Reply:
        try:
            async with asyncio.timeout(self.timeout):  # RFC 5321 §4.5.3.2: per reply
                while (reply := self.parser.next_reply()) is None:
                    self.parser.feed(await self.reader.read(CHUNK))
        except BaseException:
            self.broken = True
            raise
        self.transcript += (f"S: {line}" for line in smtp.transcript(reply))
        return reply

    async def command(self, command: bytes, shown: str | None = None) -> Reply:
        await self.send(command, shown=shown)
        return await self.reply()

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> int:
        """Continue over TLS with new streams; return how many plaintext octets were dropped.

        RFC 3207 §4.2: bytes that came after the 220, in the parser or still in the old
        reader, are discarded with them and can never pass for replies sent inside TLS.
        """
        dropped = self.parser.discard()
        try:
            reader, writer = await start_tls(
                self.writer,
                context,
                server_side=False,
                server_hostname=server_hostname,
                timeout=self.timeout,
            )
        except BaseException:
            self.broken = True
            raise
        self.plaintext = self.writer  # kept: collected, it would close the socket under TLS
        self.reader, self.writer = reader, writer
        self.tls = True
        return dropped

    async def close(self) -> None:
        """QUIT when still in step (RFC 5321 §4.1.1.10), then close the connection."""
        if not self.alive:
            self.writer.transport.abort()
            return
        self.timeout = min(self.timeout, CLOSE_TIMEOUT)
        with contextlib.suppress(*NETWORK_ERRORS):
            await self.command(smtp.QUIT)
        self.writer.close()
        with contextlib.suppress(*NETWORK_ERRORS):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.writer.wait_closed()
