"""A small asyncio POP3 client for the user agent's download (step 7 of the journey).

Written on the project's `LineBuffer` rather than on stdlib `poplib`: the rest of the user
agent is asyncio, STLS must drop every plaintext byte that arrived after the +OK (RFC 2595
§4; `poplib.stls` keeps its file object), and the RETR body is read as raw octets and
unstuffed in one pass instead of line by line, so a long line in a message is never cut
(poplib refuses lines over 2048 octets). Status lines and listings are bounded lines;
a message body is bounded by `MAX_MESSAGE`, every read by a timeout.

The client always encrypts: implicit TLS (port 995) or STLS, which it sends whether or not
CAPA lists it (a -ERR ends the attempt; there is no plaintext fallback). It logs in with
AUTH PLAIN when CAPA offers SASL PLAIN (RFC 5034, initial response), else USER/PASS.
`close()` without `quit()` drops the connection, so the server deletes nothing
(RFC 1939 §6: deletions happen only in the UPDATE state after QUIT).

Standards: RFC 1939 §3-§7 (commands, byte-stuffing, UIDL), RFC 2449 §5 (CAPA) and §8
(response codes), RFC 2595 §4 (STLS), RFC 5034 §4 (AUTH), RFC 8314 §3 (implicit TLS)
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from postoffice.protocols._buffer import TOO_LONG, LineBuffer
from postoffice.protocols.sasl import client_plain, encode_b64
from postoffice.streams import start_tls

CHUNK = 64 * 1024
MAX_LINE = 8192  # RFC 2449 §4 allows 512 octets for a response; be generous
MAX_MESSAGE = 256 * 1024 * 1024  # a server sending more than this is not sending mail
_UIDL_CHARS = frozenset(range(0x21, 0x7F))  # RFC 1939 §7


class Pop3Error(Exception):
    """The server answered -ERR; `code` is its RFC 2449 response code ("AUTH", "IN-USE")."""

    def __init__(self, command: str, text: str) -> None:
        super().__init__(f"{command} refused: -ERR {text}".rstrip())
        self.command = command
        code, bracket, _ = text[1:].partition("]") if text.startswith("[") else ("", "", "")
        self.code = code.upper() if bracket else ""


class Pop3ProtocolError(Exception):
    """The server's answer does not follow the protocol."""


class Pop3Client:
    """One POP3 connection; `connect()` opens it encrypted and ready for `login()`."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._plaintext: asyncio.StreamWriter | None = None  # kept alive under TLS
        self._buffer = LineBuffer()
        self._timeout = timeout
        self._done = False
        self.capabilities: dict[str, str] = {}  # CAPA keyword -> its arguments

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext,
        implicit_tls: bool,
        address: str | None = None,
        timeout: float = 30.0,
    ) -> Pop3Client:
        """Connect to `address` (default `host`), with TLS checked against `host`."""
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                address or host,
                port,
                ssl=tls if implicit_tls else None,
                server_hostname=host if implicit_tls else None,
            )
        client = cls(reader, writer, timeout)
        try:
            await client._status("greeting")
            if not implicit_tls:
                await client._command("STLS")
                client._buffer.clear()  # RFC 2595 §4: nothing sent before TLS counts after
                client._plaintext = client._writer
                client._reader, client._writer = await start_tls(
                    client._writer, tls, server_side=False, server_hostname=host, timeout=timeout
                )
            await client._capa()
        except BaseException:
            await client.close()
            raise
        return client

    # -- commands ----------------------------------------------------------------------

    async def login(self, user: str, password: str) -> None:
        """AUTH PLAIN when offered, else USER and PASS; Pop3Error (code "AUTH") if refused."""
        if "PLAIN" in self.capabilities.get("SASL", "").upper().split():
            secret = encode_b64(client_plain(user, password))
            await self._command(f"AUTH PLAIN {secret}", shown="AUTH")
        else:
            await self._command(f"USER {user}", shown="USER")
            await self._command(f"PASS {password}", shown="PASS")

    async def uidl(self) -> list[tuple[int, str]]:
        """(message number, unique id) for every message in the maildrop."""
        await self._command("UIDL")
        listing = []
        for line in await self._listing():
            number, _, uid = line.partition(" ")
            if not number.isdigit() or not uid or any(ord(c) not in _UIDL_CHARS for c in uid):
                raise Pop3ProtocolError(f"bad UIDL line {line[:80]!r}")
            listing.append((int(number), uid))
        return listing

    async def retr(self, number: int) -> bytes:
        """Message `number` as the server stores it (CRLF lines, unstuffed)."""
        await self._command(f"RETR {number}")
        return await self._body()

    async def dele(self, number: int) -> None:
        """Mark message `number` deleted; the server removes it only after `quit()`."""
        await self._command(f"DELE {number}")

    async def quit(self) -> None:
        """QUIT: the server commits the deletions (RFC 1939 §6) and confirms with +OK."""
        await self._command("QUIT")
        self._done = True
        await self.close()

    async def close(self) -> None:
        """Close; without a confirmed QUIT the connection is dropped and nothing deleted."""
        if not self._done:
            self._writer.transport.abort()
            return
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(self._timeout):
                await self._writer.wait_closed()

    # -- the wire ----------------------------------------------------------------------

    async def _capa(self) -> None:
        """RFC 2449 §5; a server without CAPA offers nothing we rely on."""
        try:
            await self._command("CAPA")
        except Pop3Error:
            return
        for line in await self._listing():
            keyword, _, arguments = line.partition(" ")
            self.capabilities[keyword.upper()] = arguments

    async def _command(self, line: str, *, shown: str | None = None) -> str:
        if any(c in line for c in "\r\n\0"):
            name = (shown or line).split(" ", 1)[0]
            raise ValueError(f"CR, LF or NUL in the POP3 {name} command")
        self._writer.write(line.encode("utf-8") + b"\r\n")
        async with asyncio.timeout(self._timeout):
            await self._writer.drain()
        return await self._status(shown or line)

    async def _status(self, command: str) -> str:
        line = (await self._line()).decode("utf-8", "replace")
        if line.startswith("+OK"):
            return line[3:].strip()
        if line.startswith("-ERR"):
            raise Pop3Error(command, line[4:].strip())
        raise Pop3ProtocolError(f"{command}: unexpected answer {line[:80]!r}")

    async def _line(self) -> bytes:
        while (line := self._buffer.next_line(MAX_LINE)) is None:
            self._buffer.feed(await self._read())
        if line is TOO_LONG:
            raise Pop3ProtocolError(f"response line longer than {MAX_LINE} octets")
        return line.rstrip(b"\r\n")

    async def _listing(self) -> list[str]:
        """The lines of a multi-line response, unstuffed (RFC 1939 §3)."""
        lines = []
        while (line := await self._line()) != b".":
            text = line.decode("utf-8", "replace")
            lines.append(text[1:] if text.startswith(".") else text)
        return lines

    async def _body(self) -> bytes:
        """A dot-terminated body as raw octets, unstuffed (RFC 1939 §3)."""
        data = bytearray(b"\r\n")  # a line start in front, so the first line is no special case
        searched = 0
        while (end := data.find(b"\r\n.\r\n", searched)) < 0:
            if len(data) > MAX_MESSAGE:
                raise Pop3ProtocolError(f"message larger than {MAX_MESSAGE} octets")
            searched = max(0, len(data) - 4)
            data += self._buffer.take() or await self._read()
        self._buffer.unread(bytes(data[end + 5 :]))
        return bytes(data[: end + 2]).replace(b"\r\n..", b"\r\n.")[2:]

    async def _read(self) -> bytes:
        async with asyncio.timeout(self._timeout):
            data = await self._reader.read(CHUNK)
        if not data:
            raise ConnectionResetError("connection closed by the server")
        return data
