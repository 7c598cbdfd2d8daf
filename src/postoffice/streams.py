"""Switching an asyncio stream pair to TLS in place, without carrying plaintext across.

STARTTLS (SMTP, POP3 STLS, IMAP STARTTLS) needs this move: hand the transport to
`loop.start_tls` and continue on a brand-new reader. Bytes that arrived in plaintext after
the command are left behind in the old reader and can never be read as if they came through
TLS (CVE-2011-0411, "NO STARTTLS"). The old writer is returned too: the caller keeps a
reference, because a collected StreamWriter closes its transport. Implicit-TLS listeners
start from a socket instead (`accept_tls`): nothing was read yet.

Standards: RFC 3207 §4.2, RFC 2595 §4, RFC 8314 §3
"""

from __future__ import annotations

import asyncio
import socket
import ssl


async def start_tls(
    writer: asyncio.StreamWriter,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None = None,
    timeout: float = 60.0,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Run the handshake on `writer`'s transport; return fresh (reader, writer) over TLS.

    Raises OSError (ssl.SSLError included) or TimeoutError when the handshake fails, and
    ConnectionResetError when the peer went away during it.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 16)
    protocol = _TlsStreamProtocol(reader)
    transport = await loop.start_tls(
        writer.transport,
        protocol,
        context,
        server_side=server_side,
        server_hostname=server_hostname,
        ssl_handshake_timeout=timeout,
    )
    if transport is None:
        raise ConnectionResetError("connection closed during the TLS handshake")
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def accept_tls(
    sock: socket.socket, context: ssl.SSLContext, *, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An accepted socket from which nothing was read, as a stream pair over TLS (server).

    Raises OSError (ssl.SSLError included) or TimeoutError when the handshake fails.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 16)
    protocol = _TlsStreamProtocol(reader)
    transport, _ = await loop.connect_accepted_socket(
        lambda: protocol, sock, ssl=context, ssl_handshake_timeout=timeout
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class _TlsStreamProtocol(asyncio.StreamReaderProtocol):
    """A stream protocol for TLS: an EOF ends the connection (half-close has no TLS form)."""

    def eof_received(self) -> bool:
        super().eof_received()
        return False  # asyncio warns when True is returned over SSL, and ignores it
