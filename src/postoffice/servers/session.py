"""What every protocol session shares: the peer, the streams, the switch to TLS, shutdown.

SMTP, POP3 and IMAP sessions differ in their protocol cores and handlers; the parts
around them are the same and live here once: who the client is (and whether it is on
loopback, where plaintext logins may be allowed), the streams that STARTTLS/STLS swap
for TLS ones (keeping the plaintext writer referenced), the action run right after a
reply is written (the handshake after "go ahead"), and the two shutdown verbs the
listener uses — `request_stop` (idle sessions leave now, busy ones after their
transaction) and `abort` (grace is over).

Standards: RFC 3207 §4.2, RFC 2595 §4, RFC 9051 §6.2.1 (no plaintext carried into TLS)
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from postoffice.logs import EventLog
from postoffice.streams import start_tls
from postoffice.tls import describe


class _Context(Protocol):
    log: EventLog


class BaseSession:
    """The protocol-independent half of a session.

    Subclasses say who they are (`listener_name`, a `ctx` with the log), greet, run their loop,
    and may `finish` (release what they hold) and add to the `summary` logged at the end.
    Slots, not an instance dict: thousands of idle sessions each carry these fields.
    """

    __slots__ = (
        "after_reply",
        "client",
        "client_ip",
        "idle",
        "loopback",
        "plaintext",
        "reader",
        "stopping",
        "task",
        "tls",
        "writer",
    )

    ctx: _Context  # set by each subclass: what its sessions share
    listener_name = ""  # "smtp", "pop3", … in the connect/disconnect log lines

    async def greet(self) -> None:
        raise NotImplementedError

    async def loop(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Give back what the session holds (locks, a selected mailbox)."""

    def summary(self) -> dict[str, Any]:
        """Fields for the "disconnect" log line."""
        return {}

    async def run(self) -> None:
        """Greet, serve until the session ends, log both ends; network errors end it quietly."""
        self.task = asyncio.current_task()
        log, listener = self.ctx.log, self.listener_name
        log.event("connect", listener=listener, client=self.client, tls=self.tls or None)
        started = time.monotonic()
        try:
            await self.greet()
            await self.loop()
        except (ConnectionError, OSError):
            pass
        finally:
            self.finish()
            log.event(
                "disconnect",
                listener=listener,
                client=self.client,
                **self.summary(),
                duration=round(time.monotonic() - started, 3),
            )

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: str):
        self.reader, self.writer = reader, writer
        self.plaintext: asyncio.StreamWriter | None = None  # kept alive under TLS
        self.tls = tls  # e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384" once encrypted
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.client_ip = str(peer[0])
        self.client = f"{peer[0]}:{peer[1]}"
        self.loopback = _is_loopback(self.client_ip)
        self.stopping = False
        self.idle = False  # waiting for the client between commands
        self.task: asyncio.Task[None] | None = None
        self.after_reply: Callable[[], Awaitable[None]] | None = None

    async def run_after_reply(self) -> None:
        """Run the action a handler scheduled for after its reply went out."""
        if self.after_reply is not None:
            action, self.after_reply = self.after_reply, None
            await action()

    async def switch_to_tls(self, context: ssl.SSLContext, timeout: float, log: EventLog) -> None:
        """Handshake on the current transport and continue on fresh TLS streams.

        The caller has already made its protocol core drop buffered plaintext; bytes still
        in the old reader are left behind with it.
        """
        try:
            reader, writer = await start_tls(
                self.writer, context, server_side=True, timeout=timeout
            )
        except (OSError, TimeoutError) as exc:
            log.event("tls_failed", client=self.client, error=str(exc) or repr(exc))
            raise ConnectionResetError("TLS handshake failed") from None
        self.plaintext, self.reader, self.writer = self.writer, reader, writer
        self.tls = describe(writer.get_extra_info("ssl_object"))

    def request_stop(self) -> None:
        """Shutdown: an idle session leaves now, a busy one after its transaction."""
        self.stopping = True
        if self.idle and self.task is not None:
            self.task.cancel()

    async def abort(self) -> None:
        """Shutdown grace is over: leave at once."""
        self.stopping = True
        if self.task is not None:
            self.task.cancel()


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%", maxsplit=1)[0]).is_loopback
    except ValueError:  # a Unix socket or an unknown peer
        return False
