"""The SMTP server: a thin asyncio adapter that moves bytes and asks policy.

Parsing, framing, dot-unstuffing and state live in the sans-I/O core
(`protocols/smtp`); recipient decisions in `policy/recipients`; queueing in
`queue/cleanup`. This module only reads, writes, times out and dispatches each
event to a handler through an explicit table.

STARTTLS switches the streams in place through `streams.start_tls`, so plaintext
pipelined after the command is never read inside TLS; AUTH runs the shared SASL
exchange through the `LoginGate` (lockouts, growing delays). The submission role
requires AUTH before MAIL and a sender the user owns (RFC 6409 §4.3, §6.1).

Timeouts: a whole command must arrive within `command_timeout` of the server
starting to wait for it (a client dribbling a byte at a time is as idle as a
silent one); in a message body each read gets `data_timeout`. Replies are flushed
within the same limits, so a client that never reads cannot hold its session.

Standards: RFC 5321 (SMTP), RFC 6409 (submission port), RFC 2920
(PIPELINING: replies are flushed when the input is drained), RFC 1870, 6152,
6531, 2034, 3030 (advertised in EHLO), RFC 3207 (STARTTLS), RFC 4954 (AUTH),
RFC 3848 (ESMTPSA), RFC 5321 §4.5.3.2 (timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from postoffice.config import Config
from postoffice.dns import Resolver
from postoffice.logs import EventLog
from postoffice.mail.address import Address
from postoffice.policy import inbound
from postoffice.policy.limits import ClientLimits
from postoffice.policy.recipients import RecipientPolicy
from postoffice.protocols import sasl
from postoffice.protocols.smtp import (
    NEED_DATA,
    PAUSED,
    Limits,
    Reply,
    ServerConnection,
    State,
    events,
)
from postoffice.protocols.smtp.replies import TOO_MANY_RECIPIENTS
from postoffice.queue.cleanup import Cleanup, Origin, Refused
from postoffice.servers.listener import ConnectionCounter
from postoffice.servers.login import Login, LoginGate
from postoffice.servers.parked import reader_is_empty
from postoffice.servers.session import BaseSession
from postoffice.servers.smtp_parked import Parked
from postoffice.storage.base import Directory
from postoffice.tls import ServerTls

SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, closing connection")
TIMEOUT = Reply(421, "4.4.2", "Timeout, closing connection")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
BUSY = Reply(421, "4.7.0", "Too many connections, try again later")
TEMP_FAILURE = Reply(451, "4.3.0", "Temporary failure, try again later")
TOO_FAST = Reply(421, "4.7.0", "Too many commands, slow down and try again later")
TOO_MANY_MESSAGES = Reply(450, "4.7.1", "Too many messages, slow down and try again later")
READY_FOR_TLS = Reply(220, "2.0.0", "Ready to start TLS")
ALREADY_TLS = Reply(503, "5.5.1", "TLS already active")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_LOCKED = Reply(454, "4.7.0", "Too many failed logins, try again later")
AUTH_LOCKED_BYE = Reply(421, "4.7.0", "Too many failed logins, closing connection")
AUTH_TWICE = Reply(503, "5.5.1", "Already authenticated")
AUTH_NEEDS_TLS = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
AUTH_UNKNOWN = Reply(504, "5.5.4", "Unrecognized authentication type")
AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication cancelled")
AUTH_MALFORMED = Reply(501, "5.5.2", "Cannot decode the response")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
NOT_YOURS = Reply(553, "5.7.1", "Sender address not owned by the authenticated user")
# Fixed replies are built (and checked) once, not for every message.
OK = Reply(250, "2.0.0", "Ok")
SENDER_OK = Reply(250, "2.1.0", "Ok")
GO_AHEAD = Reply(354, None, "End data with <CR><LF>.<CR><LF>")
LOCKED_STRIKES = 3  # AUTH attempts while locked out before the 421

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
    tls: ServerTls
    gate: LoginGate
    client_limits: ClientLimits
    directory: Directory
    resolver: Resolver
    connections: ConnectionCounter  # every protocol's, in this process

    @property
    def submission(self) -> bool:
        return self.role == "submission"

    @property
    def limits(self) -> Limits:
        lim = self.config.limits
        return Limits(
            command_line=512,
            text_line=lim.line_length,
            message_size=lim.message_size,
            recipients=lim.recipients,
        )

    def ehlo_lines(self, *, tls: bool, auth: tuple[str, ...]) -> tuple[str, ...]:
        lines = [
            f"{self.config.hostname} Hello",
            "PIPELINING",
            f"SIZE {self.config.limits.message_size}",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "CHUNKING",
        ]
        if not tls:
            lines.append("STARTTLS")  # RFC 3207 §4: not offered again once active
        if auth:
            lines.append("AUTH " + " ".join(auth))  # RFC 4954 §3
        return tuple(lines)


class SmtpSession(BaseSession):
    """One client connection.

    Slots and a dispatch table shared by the class: a server holds thousands of idle
    sessions, and each instance dict or table of bound methods would cost every one of them.
    """

    __slots__ = (
        "body_octets",
        "body_started",
        "command_deadline",
        "conn",
        "ctx",
        "errors",
        "helo",
        "locked_strikes",
        "login",
        "messages",
        "recipients",
        "sender",
        "user",
    )

    QUICK: ClassVar[dict[type, Callable[[SmtpSession, Any], Reply]]]  # set below the class

    def __init__(
        self,
        context: Callable[[], SmtpContext],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        tls: str = "",
    ):
        super().__init__(reader, writer, tls)
        self.ctx = context()
        self.user = ""  # the authenticated user
        self.login: Login | None = None  # an AUTH exchange in progress
        self.locked_strikes = 0
        self.conn = ServerConnection(limits=self.ctx.limits)
        self.helo = ""
        self.sender: Address | None = None
        self.recipients: list[Address] = []
        self.errors = 0
        self.messages = 0
        self.command_deadline: float | None = None  # loop time the next command is due by
        self.body_started: float | None = None  # loop time the message body began
        self.body_octets = 0

    # -- the loop -------------------------------------------------------------------------

    @property
    def listener_name(self) -> str:
        return self.ctx.role

    async def greet(self) -> None:
        await self.write(Reply(220, None, f"{self.ctx.config.hostname} ESMTP postoffice"))

    def summary(self) -> dict[str, Any]:
        return {"messages": self.messages, "errors": self.errors}

    async def loop(self) -> None:
        conn = self.conn
        while not conn.closed:
            event = conn.next_event()
            if event is NEED_DATA:
                event = await self.receive()
                if event is None:
                    return
                if event is NEED_DATA:
                    continue
            if event is PAUSED:  # cannot happen: every event is answered below
                raise RuntimeError("SMTP core paused with no reply pending")
            self.command_deadline = None  # a command arrived whole: the next one is timed anew
            if isinstance(event, events.ConnectionClosed):
                return
            if not self.ctx.client_limits.command(self.client_ip):
                self.ctx.log.event("rate_limited", client=self.client, what="commands")
                await self.goodbye(TOO_FAST)
                return
            quick = _QUICK.get(type(event))
            reply = quick(self, event) if quick else await _WAITING[type(event)](self, event)
            self.writer.write(conn.send(reply))
            await self.run_after_reply()
            if self.stopping and self.between_transactions and not conn.closed:
                self.writer.write(conn.send(SHUTTING_DOWN))
        await self.flush()

    async def receive(self) -> object | None:
        """Flush replies, then wait for the client within the current phase's time limit.

        Parked (smtp_parked.py) while nothing is buffered: returns the first event its quick
        handlers could not answer, or NEED_DATA. Otherwise it reads into the core and returns
        NEED_DATA. None: hang up.
        """
        self.idle = self.between_transactions
        try:
            if self.stopping and self.idle:
                raise asyncio.CancelledError
            now = asyncio.get_running_loop().time()
            async with asyncio.timeout_at(self.deadline(now)) as timer:
                await self.writer.drain()  # RFC 2920: flush replies before waiting for input
                if reader_is_empty(self.reader):
                    lent = Parked(self, self.writer.transport, timer)
                    try:
                        return await lent.waiter
                    finally:
                        lent.unpark()
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
        self.count_body(data)
        self.conn.receive_data(data)
        return NEED_DATA

    def deadline(self, now: float) -> float:
        """When the client must have sent the next command, or more of the body."""
        limits = self.ctx.config.limits
        if self.conn.state in _BODY_STATES:
            # RFC 5321 §4.5.3.2.5: a silence limit per read, and (like Postfix's
            # smtpd_min_data_rate) an overall one: a client dribbling a byte now and then
            # must still send `min_data_rate` octets a second on average.
            if self.body_started is None:
                self.body_started, self.body_octets = now, 0
            earned = self.body_octets / limits.min_data_rate
            return min(now, self.body_started + earned) + limits.data_timeout
        # RFC 5321 §4.5.3.2.7: the time allowed for the next command
        self.body_started = None
        if self.command_deadline is None:
            self.command_deadline = now + limits.command_timeout
        return self.command_deadline

    def count_body(self, data: bytes) -> None:
        """Octets received while waiting for the body count towards its minimum rate."""
        if self.body_started is not None:
            self.body_octets += len(data)

    async def goodbye(self, reply: Reply) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.writer.write(self.conn.send(reply))
        await self.flush()

    async def flush(self) -> None:
        """Send what is written, giving a client that reads nothing at most command_timeout."""
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(self.ctx.config.limits.command_timeout):
                await self.writer.drain()

    async def write(self, reply: Reply) -> None:
        self.writer.write(self.conn.send(reply))
        await self.writer.drain()

    @property
    def between_transactions(self) -> bool:
        return self.conn.state in _IDLE_STATES

    async def abort(self) -> None:
        self.idle = True  # the read raises CancelledError as for an idle session: say 421
        await super().abort()

    # -- handlers -------------------------------------------------------------------------

    def reset(self) -> None:
        self.sender = None
        self.recipients = []

    def on_helo(self, event: events.Helo) -> Reply:
        self.reset()
        self.helo = event.domain
        if event.extended:
            auth = () if self.user or not self.auth_allowed else sasl.mechanism_names()
            return Reply(250, None, self.ctx.ehlo_lines(tls=bool(self.tls), auth=auth))
        return Reply(250, None, f"{self.ctx.config.hostname} Hello")

    @property
    def auth_allowed(self) -> bool:
        """RFC 4954 §4: AUTH only under TLS, or from loopback when the config allows it."""
        return bool(self.tls) or (
            self.loopback and self.ctx.config.submission.allow_plaintext_loopback
        )

    # -- STARTTLS (RFC 3207) and AUTH (RFC 4954) ---------------------------------------------

    async def on_starttls(self, event: events.StartTls) -> Reply:
        if self.tls:
            return ALREADY_TLS
        self.after_reply = self.upgrade
        return READY_FOR_TLS

    async def upgrade(self) -> None:
        """After the 220: drop buffered plaintext, handshake, start the session over."""
        await self.flush()
        dropped = self.conn.start_tls()  # RFC 3207 §4.2: nothing sent before counts
        timeout = self.ctx.config.limits.command_timeout
        await self.switch_to_tls(self.ctx.tls.context(), timeout, self.ctx.log)
        self.helo, self.user = "", ""
        self.reset()
        self.ctx.log.event("starttls", client=self.client, tls=self.tls, discarded=dropped or None)

    async def on_auth(self, event: events.Auth) -> Reply:
        if self.user:
            return AUTH_TWICE
        if not self.auth_allowed:
            return AUTH_NEEDS_TLS
        if self.ctx.gate.ip_locked(self.client_ip):
            return self.locked_out()
        login = self.ctx.gate.begin(self.client_ip, event.mechanism)
        if login is None:
            return AUTH_UNKNOWN
        self.login = login
        return await self.auth_step(await login.start(event.initial_response))

    async def on_auth_data(self, event: events.AuthData) -> Reply:
        if self.login is None:  # the core only sends AuthData after our 334
            return AUTH_CANCELLED
        return await self.auth_step(await self.login.respond(event.line))

    async def auth_step(self, step: sasl.Step) -> Reply:
        login = self.login
        assert login is not None
        if isinstance(step, sasl.Challenge):
            return Reply(334, None, sasl.encode_b64(step.data))
        self.login = None
        if isinstance(step, sasl.Success):
            login.succeeded(step.user)
            self.user = step.user
            self.ctx.log.event("auth", client=self.client, user=step.user)
            return AUTH_OK
        if step.kind is sasl.FailureKind.CANCELLED:
            return AUTH_CANCELLED
        if step.kind is sasl.FailureKind.MALFORMED:
            return AUTH_MALFORMED
        await login.failed()
        self.ctx.log.event("auth_failed", client=self.client, reason=step.reason)
        if login.locked:
            return self.locked_out()
        return AUTH_FAILED

    def locked_out(self) -> Reply:
        self.locked_strikes += 1
        self.ctx.log.event("auth_locked", client=self.client, strikes=self.locked_strikes)
        return AUTH_LOCKED_BYE if self.locked_strikes >= LOCKED_STRIKES else AUTH_LOCKED

    def on_mail(self, event: events.MailFrom) -> Reply:
        self.reset()
        if self.ctx.submission:
            if not self.user:  # RFC 6409 §4.3: submission needs an authenticated user
                return AUTH_REQUIRED
            if event.sender is not None and not self.ctx.directory.owns(
                self.user, str(event.sender)
            ):
                self.ctx.log.event(
                    "reject", client=self.client, user=self.user, sender=_addr(event.sender)
                )
                return NOT_YOURS
        if not self.ctx.client_limits.message(self.client_ip):
            self.ctx.log.event("rate_limited", client=self.client, what="messages")
            return TOO_MANY_MESSAGES
        self.sender = event.sender
        return SENDER_OK

    def on_rcpt(self, event: events.RcptTo) -> Reply:
        policy = self.ctx.policy
        rcpt = policy.normalize(event.recipient)
        verdict = policy.check(rcpt, self.client_ip, authenticated=bool(self.user))
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

    def on_data(self, event: events.Data) -> Reply:
        return GO_AHEAD

    def on_bdat_chunk(self, event: events.BdatChunk) -> Reply:
        return Reply(250, "2.0.0", f"{event.size} octets received")

    async def on_end_of_data(self, event: events.EndOfData) -> Reply:
        # RFC 3848: ESMTP, then S for TLS and A for AUTH (ESMTPSA)
        protocol = ("ESMTP" if self.conn.extended else "SMTP") + ("S" if self.tls else "")
        protocol += "A" if self.user else ""
        origin = Origin(
            client_ip=self.client_ip,
            helo=self.helo,
            protocol=protocol,
            tls=self.tls,
            auth=self.user,
            auth_in_header=self.ctx.config.submission.received_identity,
            submission=self.ctx.submission,
        )
        sender, recipients = self.sender, self.recipients
        self.reset()
        data = event.data
        if self.needs_checks:
            verdict = await self.check_inbound(data, sender)
            if verdict.reply is not None:
                return verdict.reply
            data = verdict.header + verdict.message
            if verdict.action is inbound.Action.JUNK:
                origin.extra["junk"] = "1"  # RFC 7489 §6.3 quarantine: the Junk folder
        try:
            # The only session of this process: store without the hop to the disk pool.
            alone = self.ctx.connections.total == 1
            entry = await self.ctx.cleanup.submit(sender, recipients, data, origin, inline=alone)
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
            tls=self.tls or None,
            auth=self.user or None,
            sender=_addr(sender),
            rcpt=[str(r) for r in recipients],
            size=entry.size,
            message_id=entry.message_id or None,
        )
        return Reply(250, "2.0.0", f"Ok: queued as {entry.qid}")

    @property
    def needs_checks(self) -> bool:
        """SPF/DKIM/DMARC judge mail from the internet: port 25, not our users or relays."""
        return (
            self.ctx.role == "smtp"
            and not self.user
            and not self.ctx.policy.may_relay(self.client_ip)
        )

    async def check_inbound(self, data: bytes, sender: Address | None) -> inbound.InboundVerdict:
        config = self.ctx.config
        verdict = await inbound.evaluate(
            data,
            client_ip=self.client_ip,
            helo=self.helo,
            mail_from=str(sender) if sender else "",
            resolver=self.ctx.resolver,
            authserv_id=config.hostname,
            settings=config.checks,
        )
        self.ctx.log.event(
            "checks",
            client=self.client,
            sender=_addr(sender),
            action=str(verdict.action),
            spf=verdict.spf.result if verdict.spf else None,
            dmarc=verdict.dmarc.result if verdict.dmarc else None,
        )
        return verdict

    def on_rset(self, event: events.Rset) -> Reply:
        self.reset()
        return OK

    def on_noop(self, event: events.Noop) -> Reply:
        return OK

    def on_quit(self, event: events.Quit) -> Reply:
        return Reply(221, "2.0.0", "Bye")

    def on_vrfy(self, event: events.Vrfy) -> Reply:
        # RFC 5321 §3.5.3: 252 neither confirms nor denies that a user exists.
        return Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")

    def on_help(self, event: events.Help) -> Reply:
        return Reply(
            214,
            "2.0.0",
            "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP",
        )

    def on_not_offered(self, event: object) -> Reply:
        return Reply(502, "5.5.1", "Command not implemented")

    def on_error(self, event: events.CommandError) -> Reply:
        reply = event.reply
        # RFC 5321 §4.5.3.1.10: past the recipient limit a client is told 452 and sends the
        # rest in another transaction; counting these would hang up on pipelined mailings.
        if reply != TOO_MANY_RECIPIENTS:
            self.errors += 1
        self.ctx.log.event(
            "error", client=self.client, reply=f"{reply.code} {reply.status} {reply.text}"
        )
        if self.errors >= self.ctx.config.limits.errors_per_session:
            self.ctx.log.event("too_many_errors", client=self.client, errors=self.errors)
            return TOO_MANY_ERRORS
        if self.conn.state not in (State.MAIL, State.RCPT):
            self.reset()  # the core ended the transaction (e.g. a refused DATA body)
        return event.reply


# Each event of the core to its handler (unbound: one table for every session). Quick
# handlers answer at once, and a parked session answers them without its task (Parked).
_QUICK: dict[type, Callable[[SmtpSession, Any], Reply]] = {
    events.Helo: SmtpSession.on_helo,
    events.MailFrom: SmtpSession.on_mail,
    events.RcptTo: SmtpSession.on_rcpt,
    events.Data: SmtpSession.on_data,
    events.BdatChunk: SmtpSession.on_bdat_chunk,
    events.Rset: SmtpSession.on_rset,
    events.Noop: SmtpSession.on_noop,
    events.Quit: SmtpSession.on_quit,
    events.Vrfy: SmtpSession.on_vrfy,
    events.Expn: SmtpSession.on_not_offered,
    events.Help: SmtpSession.on_help,
    events.CommandError: SmtpSession.on_error,
}
_WAITING: dict[type, Callable[[SmtpSession, Any], Awaitable[Reply]]] = {
    events.EndOfData: SmtpSession.on_end_of_data,
    events.StartTls: SmtpSession.on_starttls,
    events.Auth: SmtpSession.on_auth,
    events.AuthData: SmtpSession.on_auth_data,
}
SmtpSession.QUICK = _QUICK


def _addr(address: Address | None) -> str:
    return f"<{address}>" if address else "<>"
