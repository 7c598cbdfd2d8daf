"""The SMTP server: a thin asyncio adapter that moves bytes and asks policy.

Parsing, framing, dot-unstuffing and state live in the sans-I/O core
(`protocols/smtp`); recipient decisions in `policy/recipients`; queueing in
`queue/cleanup`. This module only reads, writes, times out and dispatches each
event to a handler through an explicit table.

Standards: RFC 5321 (SMTP), RFC 6409 (submission port), RFC 2920
(PIPELINING: replies are flushed when the input is drained), RFC 1870, 6152,
6531, 2034, 3030 (advertised in EHLO), RFC 5321 §4.5.3.2 (timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from postoffice.config import Config
from postoffice.logs import EventLog
from postoffice.mail.address import Address
from postoffice.policy.recipients import RecipientPolicy
from postoffice.protocols.smtp import (
    NEED_DATA,
    PAUSED,
    Limits,
    Reply,
    ServerConnection,
    State,
    events,
)
from postoffice.queue.cleanup import Cleanup, Origin, Refused

SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, closing connection")
TIMEOUT = Reply(421, "4.4.2", "Timeout, closing connection")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
BUSY = Reply(421, "4.7.0", "Too many connections, try again later")
TEMP_FAILURE = Reply(451, "4.3.0", "Temporary failure, try again later")

# States in which a client is between transactions: shutdown may say goodbye there.
_IDLE_STATES = frozenset({State.CONNECTED, State.GREETED, State.CLOSED})
_BODY_STATES = frozenset({State.DATA, State.BDAT})


@dataclass(slots=True)
class SmtpContext:
    """What every SMTP session of one server shares (swapped whole on SIGHUP)."""

    config: Config
    policy: RecipientPolicy
    cleanup: Cleanup
    log: EventLog
    role: str  # "smtp" (port 25) or "submission" (RFC 6409)

    @property
    def limits(self) -> Limits:
        lim = self.config.limits
        return Limits(
            command_line=512,
            text_line=lim.line_length,
            message_size=lim.message_size,
            recipients=lim.recipients,
        )

    def ehlo_lines(self) -> tuple[str, ...]:
        return (
            f"{self.config.hostname} Hello",
            "PIPELINING",
            f"SIZE {self.config.limits.message_size}",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "CHUNKING",
        )


class SmtpSession:
    """One client connection."""

    def __init__(
        self,
        context: Callable[[], SmtpContext],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ):
        self.ctx = context()
        self.reader = reader
        self.writer = writer
        self.conn = ServerConnection(limits=self.ctx.limits)
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.client_ip = str(peer[0])
        self.client = f"{peer[0]}:{peer[1]}"
        self.helo = ""
        self.sender: Address | None = None
        self.recipients: list[Address] = []
        self.errors = 0
        self.messages = 0
        self.stopping = False
        self.idle = False
        self.task: asyncio.Task[None] | None = None
        self.handlers: dict[type, Callable[[object], Awaitable[Reply]]] = {
            events.Helo: self.on_helo,  # type: ignore[dict-item]
            events.MailFrom: self.on_mail,  # type: ignore[dict-item]
            events.RcptTo: self.on_rcpt,  # type: ignore[dict-item]
            events.Data: self.on_data,  # type: ignore[dict-item]
            events.BdatChunk: self.on_bdat_chunk,  # type: ignore[dict-item]
            events.EndOfData: self.on_end_of_data,  # type: ignore[dict-item]
            events.Rset: self.on_rset,  # type: ignore[dict-item]
            events.Noop: self.on_noop,  # type: ignore[dict-item]
            events.Quit: self.on_quit,  # type: ignore[dict-item]
            events.Vrfy: self.on_vrfy,  # type: ignore[dict-item]
            events.Expn: self.on_not_offered,  # type: ignore[dict-item]
            events.Help: self.on_help,  # type: ignore[dict-item]
            events.StartTls: self.on_not_offered,  # type: ignore[dict-item]
            events.Auth: self.on_not_offered,  # type: ignore[dict-item]
            events.AuthData: self.on_not_offered,  # type: ignore[dict-item]
            events.CommandError: self.on_error,  # type: ignore[dict-item]
        }

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        self.task = asyncio.current_task()
        log = self.ctx.log
        log.event("connect", listener=self.ctx.role, client=self.client)
        started = time.monotonic()
        try:
            hostname = self.ctx.config.hostname
            await self.write(Reply(220, None, f"{hostname} ESMTP postoffice"))
            await self.loop()
        except (ConnectionError, OSError):
            pass
        finally:
            log.event(
                "disconnect",
                listener=self.ctx.role,
                client=self.client,
                messages=self.messages,
                errors=self.errors,
                duration=round(time.monotonic() - started, 3),
            )

    async def loop(self) -> None:
        conn = self.conn
        while not conn.closed:
            event = conn.next_event()
            if event is NEED_DATA:
                await self.writer.drain()  # RFC 2920: flush replies before waiting for input
                data = await self.read()
                if data is None:
                    return
                conn.receive_data(data)
                continue
            if event is PAUSED:  # cannot happen: every event is answered below
                raise RuntimeError("SMTP core paused with no reply pending")
            if isinstance(event, events.ConnectionClosed):
                return
            handler = self.handlers[type(event)]
            reply = await handler(event)
            self.writer.write(conn.send(reply))
            if self.stopping and self.between_transactions and not conn.closed:
                self.writer.write(conn.send(SHUTTING_DOWN))
        await self.writer.drain()

    async def read(self) -> bytes | None:
        """Read from the client with the timeout of the current phase; None means hang up."""
        limits = self.ctx.config.limits
        in_body = self.conn.state in _BODY_STATES
        timeout = limits.data_timeout if in_body else limits.command_timeout
        self.idle = self.between_transactions
        try:
            if self.stopping and self.idle:
                raise asyncio.CancelledError
            async with asyncio.timeout(timeout):
                data = await self.reader.read(65536)
        except TimeoutError:
            await self.goodbye(TIMEOUT)
            self.ctx.log.event("timeout", client=self.client)
            return None
        except asyncio.CancelledError:
            if not self.stopping:
                raise
            await self.goodbye(SHUTTING_DOWN)
            return None
        finally:
            self.idle = False
        return data

    async def goodbye(self, reply: Reply) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.writer.write(self.conn.send(reply))
            await self.writer.drain()

    async def write(self, reply: Reply) -> None:
        self.writer.write(self.conn.send(reply))
        await self.writer.drain()

    @property
    def between_transactions(self) -> bool:
        return self.conn.state in _IDLE_STATES

    def request_stop(self) -> None:
        self.stopping = True
        if self.idle and self.task is not None:
            self.task.cancel()

    async def abort(self) -> None:
        self.stopping = True
        self.idle = True
        if self.task is not None:
            self.task.cancel()

    # -- handlers -------------------------------------------------------------------------

    def reset(self) -> None:
        self.sender = None
        self.recipients = []

    async def on_helo(self, event: events.Helo) -> Reply:
        self.reset()
        self.helo = event.domain
        if event.extended:
            return Reply(250, None, self.ctx.ehlo_lines())
        return Reply(250, None, f"{self.ctx.config.hostname} Hello")

    async def on_mail(self, event: events.MailFrom) -> Reply:
        self.reset()
        self.sender = event.sender
        return Reply(250, "2.1.0", "Ok")

    async def on_rcpt(self, event: events.RcptTo) -> Reply:
        policy = self.ctx.policy
        rcpt = policy.normalize(event.recipient)
        verdict = policy.check(rcpt, self.client_ip)
        if verdict.accepted:
            self.recipients.append(rcpt)
        else:
            self.ctx.log.event(
                "reject",
                client=self.client,
                sender=_addr(self.sender),
                rcpt=str(rcpt),
                reply=f"{verdict.reply.code} {verdict.reply.status} {verdict.reply.text}",
            )
        return verdict.reply

    async def on_data(self, event: events.Data) -> Reply:
        return Reply(354, None, "End data with <CR><LF>.<CR><LF>")

    async def on_bdat_chunk(self, event: events.BdatChunk) -> Reply:
        return Reply(250, "2.0.0", f"{event.size} octets received")

    async def on_end_of_data(self, event: events.EndOfData) -> Reply:
        origin = Origin(
            client_ip=self.client_ip,
            helo=self.helo,
            protocol="ESMTP" if self.conn.extended else "SMTP",
        )
        sender, recipients = self.sender, self.recipients
        self.reset()
        try:
            entry = await self.ctx.cleanup.submit(sender, recipients, event.data, origin)
        except Refused as refused:
            self.ctx.log.event(
                "refused", client=self.client, sender=_addr(sender), reply=refused.reply.text
            )
            return refused.reply
        except Exception as exc:  # never a traceback to the client; nothing was acknowledged
            self.ctx.log.warning("error", client=self.client, error=repr(exc))
            return TEMP_FAILURE
        self.messages += 1
        self.ctx.log.event(
            "queued",
            qid=entry.qid,
            client=self.client,
            helo=self.helo or None,
            protocol=origin.protocol,
            sender=_addr(sender),
            rcpt=[str(r) for r in recipients],
            size=entry.size,
            message_id=entry.message_id or None,
        )
        return Reply(250, "2.0.0", f"Ok: queued as {entry.qid}")

    async def on_rset(self, event: events.Rset) -> Reply:
        self.reset()
        return Reply(250, "2.0.0", "Ok")

    async def on_noop(self, event: events.Noop) -> Reply:
        return Reply(250, "2.0.0", "Ok")

    async def on_quit(self, event: events.Quit) -> Reply:
        return Reply(221, "2.0.0", "Bye")

    async def on_vrfy(self, event: events.Vrfy) -> Reply:
        # RFC 5321 §3.5.3: 252 neither confirms nor denies that a user exists.
        return Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")

    async def on_help(self, event: events.Help) -> Reply:
        return Reply(
            214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP"
        )

    async def on_not_offered(self, event: object) -> Reply:
        return Reply(502, "5.5.1", "Command not implemented")

    async def on_error(self, event: events.CommandError) -> Reply:
        self.errors += 1
        reply = event.reply
        self.ctx.log.event(
            "error", client=self.client, reply=f"{reply.code} {reply.status} {reply.text}"
        )
        if self.errors >= self.ctx.config.limits.errors_per_session:
            self.ctx.log.event("too_many_errors", client=self.client, errors=self.errors)
            return TOO_MANY_ERRORS
        if self.conn.state not in (State.MAIL, State.RCPT):
            self.reset()  # the core ended the transaction (e.g. a refused DATA body)
        return event.reply


def _addr(address: Address | None) -> str:
    return f"<{address}>" if address else "<>"
