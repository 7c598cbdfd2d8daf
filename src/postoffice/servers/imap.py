"""The IMAP server: a thin asyncio adapter around the IMAP core and the Maildir store.

The core (`protocols/imap`) frames commands and literals, enforces the state table and
serialises responses; this module reads and writes, times out idle sessions, logs in
through the shared `LoginGate` (passwords only under TLS, or from loopback when
`[imap] allow_plaintext_loopback`), and maps each command event to a handler that writes
untagged data and returns the tagged completion. Folders are the user's Maildir++ folders
("." is the hierarchy delimiter); INBOX, Sent, Drafts, Trash, Junk and Archive are created
at the first login and carry RFC 6154 special-use attributes. Subscriptions are a plain
`postoffice-subscriptions` file in the user's Maildir. The selected mailbox
(imap_mailbox.py) is compared with the store before every completion, so other sessions'
changes appear at the next command. IDLE does not poll: the session watches the selected
mailbox through the store (`MailStore.watch`), which every writer in this process —
delivery, POP3, other IMAP sessions — notifies once a change is on disk, and re-reads the
mailbox when woken. Changes by other processes (a `postoffice` command, a foreign Maildir
tool) are not announced; an idling session re-checks for them every `RECHECK` seconds.
APPEND's date-time becomes the message's INTERNALDATE through the store, which keeps it
where it keeps every arrival time (the file name; the index reads it from there).
QRESYNC (RFC 7162 §3.2), once enabled, replaces EXPUNGE responses by VANISHED and lets
SELECT/EXAMINE (QRESYNC (uidvalidity modseq [known-uids])) and UID FETCH ... (CHANGEDSINCE n
VANISHED) report what vanished since a modseq: the store remembers each expunged UID with
the modseq of its expunge, whoever removed the file (IMAP, POP3, a foreign Maildir reader).

A user may have `[imap] max_connections_per_user` sessions logged in at once, counted over
both listeners; one more login is refused with NO [LIMIT] (RFC 5530) and that session stays
unauthenticated, free to try again.

Standards: RFC 9051 (IMAP4rev2), RFC 3501 (IMAP4rev1), RFC 2177 (IDLE), RFC 2971 (ID),
RFC 2342 (NAMESPACE), RFC 3502 (MULTIAPPEND), RFC 4315 (UIDPLUS), RFC 4731 (ESEARCH),
RFC 4959 (SASL-IR), RFC 5161 (ENABLE), RFC 5182 (SEARCHRES), RFC 5258/RFC 5819
(LIST-EXTENDED, LIST-STATUS), RFC 5530 (LIMIT), RFC 6154 (SPECIAL-USE), RFC 6851 (MOVE),
RFC 7162 (CONDSTORE, QRESYNC), RFC 7888 (LITERAL+), RFC 7889 (APPENDLIMIT),
RFC 8314 (implicit TLS)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from postoffice.config import Config
from postoffice.logs import EventLog
from postoffice.policy.limits import ClientLimits
from postoffice.protocols import sasl
from postoffice.protocols.imap import (
    NEED_DATA,
    PAUSED,
    Bad,
    Bye,
    Continuation,
    Limits,
    No,
    Ok,
    UntaggedOk,
    codes,
    events,
    responses,
)
from postoffice.protocols.imap.connection import ServerConnection
from postoffice.protocols.imap.states import State
from postoffice.servers.imap_folders import FolderCommands
from postoffice.servers.imap_mailbox import SelectedMailbox
from postoffice.servers.imap_messages import MessageCommands
from postoffice.servers.login import Login, LoginGate
from postoffice.servers.session import BaseSession
from postoffice.storage.base import MailboxWatch, MailStore
from postoffice.tls import ServerTls

IMPLEMENTATION = "postoffice"
BUSY_LINE = b"* BYE [UNAVAILABLE] too many connections, try again later\r\n"
TIMEOUT = Bye("idle too long, closing connection")
SHUTTING_DOWN = Bye("server shutting down", codes.UNAVAILABLE)
TOO_MANY_ERRORS = Bye("too many errors, closing connection")
TOO_FAST = Bye("too many commands, slow down", codes.UNAVAILABLE)
NEEDS_TLS = No("use STARTTLS (or port 993) before logging in", codes.PRIVACYREQUIRED)
LOGIN_FAILED = No("invalid user name or password", codes.AUTHENTICATIONFAILED)
LOCKED_OUT = No("too many failed logins, try again later", codes.UNAVAILABLE)
TOO_MANY_SESSIONS = No("too many sessions for this user, log out of one first", codes.LIMIT)
RECHECK = 30.0  # seconds between IDLE re-checks for changes made by other processes
_CAPS = [
    "IMAP4rev2",
    "IMAP4rev1",
    "LITERAL+",
    "ENABLE",
    "ID",
    "IDLE",
    "NAMESPACE",
    "UIDPLUS",
    "MOVE",
    "UNSELECT",
    "CHILDREN",
    "SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "SEARCHRES",
    "MULTIAPPEND",
]
# RFC 9051 §7.4.1: no EXPUNGE during FETCH, STORE, SEARCH by message number
_NUMBERED = (events.Fetch, events.Store, events.Search, events.Copy)


class UserSessions:
    """Logged-in IMAP sessions per user, over both listeners; outlives SIGHUP's new context."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def enter(self, user: str, limit: int) -> bool:
        """Count one more session of `user`; False (not counted) when it has `limit` already."""
        count = self._open.get(user, 0)
        if count >= limit:
            return False
        self._open[user] = count + 1
        return True

    def leave(self, user: str) -> None:
        count = self._open.pop(user, 0) - 1
        if count > 0:
            self._open[user] = count


@dataclass(slots=True)
class ImapContext:
    """What every IMAP session shares (swapped whole on SIGHUP, but not `sessions`)."""

    config: Config
    store: MailStore
    gate: LoginGate
    tls: ServerTls
    client_limits: ClientLimits
    log: EventLog
    sessions: UserSessions


class ImapSession(MessageCommands, FolderCommands, BaseSession):
    """One client connection."""

    def __init__(
        self,
        context: Callable[[], ImapContext],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        tls: str = "",
    ):
        super().__init__(reader, writer, tls)
        self.ctx = context()
        self.limits = Limits(literal=self.ctx.config.limits.message_size)
        self.conn = ServerConnection(self.limits, tls=bool(tls))
        self.user = ""
        self.login: Login | None = None
        self.selected: SelectedMailbox | None = None
        self.watch: MailboxWatch | None = None  # the selected mailbox's change notifications
        self.idling = False
        self.errors = 0

    # -- the loop -------------------------------------------------------------------------

    def out(self, response: responses.Response) -> None:
        self.writer.write(self.conn.send(response))

    listener_name = "imap"

    async def greet(self) -> None:
        caps = codes.capability_code(self.capabilities())
        self.out(UntaggedOk(f"{IMPLEMENTATION} IMAP ready", caps))

    def finish(self) -> None:
        self.deselect()
        if self.user:
            self.ctx.sessions.leave(self.user)

    def summary(self) -> dict[str, Any]:
        return {"user": self.user or None, "errors": self.errors}

    async def loop(self) -> None:
        conn = self.conn
        while not conn.closed:
            event = conn.next_event()
            if event is NEED_DATA:
                self.writer.write(conn.data_to_send())  # "+" for synchronising literals
                await self.writer.drain()
                data = await self.read()
                if data is None:
                    return
                conn.receive_data(data)
                continue
            if event is PAUSED:
                if conn.state is State.LOGOUT:
                    break
                raise RuntimeError("IMAP core paused with no reply pending")
            if isinstance(event, events.ConnectionClosed):
                return
            if not self.ctx.client_limits.command(self.client_ip):
                await self.goodbye(TOO_FAST)
                return
            response = await _HANDLERS[type(event)](self, event)
            if (
                isinstance(response, Ok | No | Bad)
                and self.selected is not None
                and not isinstance(event, events.CommandError)
                and not conn.closed
            ):
                expunges = not (isinstance(event, _NUMBERED) and not event.uid)
                for update in await asyncio.to_thread(self.selected.refresh, expunges=expunges):
                    self.out(update)
            if not conn.closed:
                self.out(response)
            await self.run_after_reply()
            if self.stopping and not conn.closed and conn.state is not State.IDLE:
                await self.goodbye(SHUTTING_DOWN)
                return
        await self.writer.drain()

    async def read(self) -> bytes | None:
        """The next bytes from the client; while in IDLE, updates are sent as they happen."""
        self.idle = True
        deadline = time.monotonic() + self.ctx.config.imap.idle_timeout
        reading = asyncio.ensure_future(self.reader.read(65536))
        changed: asyncio.Future[None] | None = None
        try:
            if self.stopping:
                raise asyncio.CancelledError
            while True:
                limit = max(deadline - time.monotonic(), 0)
                waiting: set[asyncio.Future[Any]] = {reading}
                if self.idling and self.watch is not None:
                    changed = asyncio.ensure_future(self.watch.wait())
                    waiting.add(changed)
                    limit = min(limit, RECHECK)
                await asyncio.wait(waiting, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
                if changed is not None:
                    changed.cancel()
                if reading.done():
                    return reading.result()
                if time.monotonic() >= deadline:
                    raise TimeoutError
                if self.selected is not None:  # IDLE: RFC 2177 §3 updates as they happen
                    for update in await asyncio.to_thread(self.selected.refresh):
                        self.out(update)
                    await self.writer.drain()
        except TimeoutError:
            await self.goodbye(TIMEOUT)  # RFC 9051 §5.4: autologout
            return None
        except asyncio.CancelledError:
            if not self.stopping:
                raise
            await self.goodbye(SHUTTING_DOWN)
            return None
        finally:
            reading.cancel()  # a cancelled read leaves unread bytes in the reader's buffer
            if changed is not None:
                changed.cancel()
            self.idle = False

    async def goodbye(self, reply: Bye) -> None:
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            self.out(reply)
            await self.writer.drain()
        self.writer.close()

    def deselect(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        if self.selected is not None:
            self.selected.close()
            self.selected = None

    # -- any state ------------------------------------------------------------------------

    @property
    def login_allowed(self) -> bool:
        """RFC 9051 §6.2.3: passwords only under TLS, or from loopback when configured."""
        return bool(self.tls) or (self.loopback and self.ctx.config.imap.allow_plaintext_loopback)

    def capabilities(self) -> tuple[str, ...]:
        caps = list(_CAPS)
        if self.conn.state is State.NOT_AUTHENTICATED:
            if not self.tls:
                caps.append("STARTTLS")
            if self.login_allowed:
                caps += ["SASL-IR", *(f"AUTH={m}" for m in sasl.mechanism_names())]
            else:
                caps.append("LOGINDISABLED")
        caps.append(f"APPENDLIMIT={self.limits.literal}")
        return tuple(caps)

    async def on_capability(self, event: events.Capability) -> responses.Response:
        self.out(responses.Capabilities(self.capabilities()))
        return Ok("CAPABILITY completed")

    async def on_noop(self, event: events.Noop | events.Check) -> responses.Response:
        return Ok("NOOP completed")

    async def on_logout(self, event: events.Logout) -> responses.Response:
        self.out(Bye(f"{IMPLEMENTATION} IMAP signing off"))
        self.deselect()
        return Ok("LOGOUT completed")

    async def on_id(self, event: events.Id) -> responses.Response:
        self.out(responses.IdResult((("name", IMPLEMENTATION),)))
        return Ok("ID completed")

    async def on_error(self, event: events.CommandError) -> responses.Response:
        self.errors += 1
        self.login = None
        if isinstance(event.response, Bye):
            self.out(event.response)
            self.writer.close()
            return event.response
        if self.errors >= self.ctx.config.limits.errors_per_session:
            self.ctx.log.event("too_many_errors", listener="imap", client=self.client)
            self.after_reply = self.hang_up
        if event.tag is None:  # untagged BAD: nothing pending to complete
            return event.response
        return event.response

    async def hang_up(self) -> None:
        await self.goodbye(TOO_MANY_ERRORS)

    # -- not authenticated ----------------------------------------------------------------

    async def on_starttls(self, event: events.StartTls) -> responses.Response:
        self.after_reply = self.upgrade
        return Ok("begin TLS negotiation now")

    async def upgrade(self) -> None:
        """After OK to STARTTLS: drop buffered plaintext (RFC 9051 §6.2.1), then the handshake."""
        await self.writer.drain()
        self.conn.start_tls()
        await self.switch_to_tls(self.ctx.tls.context(), 60.0, self.ctx.log)

    async def on_login(self, event: events.Login) -> responses.Response:
        if not self.login_allowed:
            return NEEDS_TLS
        if self.ctx.gate.ip_locked(self.client_ip):
            return LOCKED_OUT
        self.login = self.ctx.gate.password(self.client_ip)
        initial = sasl.encode_b64(sasl.client_plain(event.user, event.password))
        return await self.auth_step(await self.login.start(initial))

    async def on_authenticate(self, event: events.Authenticate) -> responses.Response:
        if not self.login_allowed:
            return NEEDS_TLS
        if self.ctx.gate.ip_locked(self.client_ip):
            return LOCKED_OUT
        login = self.ctx.gate.begin(self.client_ip, event.mechanism)
        if login is None:
            return No("unsupported SASL mechanism", codes.CANNOT)
        self.login = login
        return await self.auth_step(await login.start(event.initial_response))

    async def on_authenticate_data(self, event: events.AuthenticateData) -> responses.Response:
        if self.login is None:
            return Bad("no authentication in progress")
        return await self.auth_step(await self.login.respond(event.line))

    async def auth_step(self, step: sasl.Step) -> responses.Response:
        login = self.login
        assert login is not None
        if isinstance(step, sasl.Challenge):
            return Continuation(sasl.encode_b64(step.data))
        self.login = None
        if isinstance(step, sasl.Success):
            login.succeeded(step.user)
            return await self.logged_in(step.user)
        if step.kind is not sasl.FailureKind.REJECTED:
            return Bad("authentication cancelled or malformed")
        await login.failed()
        self.ctx.log.event("auth_failed", listener="imap", client=self.client, reason=step.reason)
        return LOCKED_OUT if login.locked else LOGIN_FAILED

    async def logged_in(self, user: str) -> responses.Response:
        if not self.ctx.sessions.enter(user, self.ctx.config.imap.max_connections_per_user):
            self.ctx.log.event("too_many_sessions", listener="imap", client=self.client, user=user)
            return TOO_MANY_SESSIONS  # RFC 5530 §3: LIMIT; NO keeps NOT AUTHENTICATED
        try:
            await asyncio.to_thread(self.create_defaults, user)
        except OSError as exc:
            self.ctx.sessions.leave(user)
            self.ctx.log.warning("mailbox_error", client=self.client, user=user, error=str(exc))
            return No("cannot open the mailboxes, try again later", codes.UNAVAILABLE)
        self.user = user
        self.ctx.log.event(
            "login", listener="imap", client=self.client, user=user, tls=self.tls or None
        )
        return Ok("logged in", codes.capability_code(self.capabilities_after_login()))

    def capabilities_after_login(self) -> tuple[str, ...]:
        return (*_CAPS, f"APPENDLIMIT={self.limits.literal}")

    # -- selected -------------------------------------------------------------------------

    async def on_close(self, event: events.Close | events.Unselect) -> responses.Response:
        view = self.mailbox_view()
        if isinstance(event, events.Close) and not view.readonly:
            await asyncio.to_thread(view.expunge)  # RFC 9051 §6.4.1: silently
        self.deselect()
        return Ok("CLOSE completed")

    async def on_idle(self, event: events.Idle) -> responses.Response:
        self.idling = True
        return Continuation("idling")

    async def on_done(self, event: events.Done) -> responses.Response:
        self.idling = False
        return Ok("IDLE terminated")


# Each event of the core to its handler, unbound: one table for every session (a table of
# bound methods on each session made it a reference cycle, freed only by the collector).
_HANDLERS: dict[type, Callable[[ImapSession, Any], Awaitable[responses.Response]]] = {
    events.Capability: ImapSession.on_capability,
    events.Noop: ImapSession.on_noop,
    events.Check: ImapSession.on_noop,
    events.Logout: ImapSession.on_logout,
    events.Id: ImapSession.on_id,
    events.StartTls: ImapSession.on_starttls,
    events.Login: ImapSession.on_login,
    events.Authenticate: ImapSession.on_authenticate,
    events.AuthenticateData: ImapSession.on_authenticate_data,
    events.Enable: ImapSession.on_enable,
    events.Namespace: ImapSession.on_namespace,
    events.List: ImapSession.on_list,
    events.Lsub: ImapSession.on_lsub,
    events.Create: ImapSession.on_create,
    events.Delete: ImapSession.on_delete,
    events.Rename: ImapSession.on_rename,
    events.Subscribe: ImapSession.on_subscribe,
    events.Unsubscribe: ImapSession.on_unsubscribe,
    events.Status: ImapSession.on_status,
    events.Select: ImapSession.on_select,
    events.Examine: ImapSession.on_select,
    events.Fetch: ImapSession.on_fetch,
    events.Store: ImapSession.on_store,
    events.Search: ImapSession.on_search,
    events.Expunge: ImapSession.on_expunge,
    events.Close: ImapSession.on_close,
    events.Unselect: ImapSession.on_close,
    events.Append: ImapSession.on_append,
    events.Copy: ImapSession.on_copy,
    events.Move: ImapSession.on_copy,
    events.Idle: ImapSession.on_idle,
    events.Done: ImapSession.on_done,
    events.CommandError: ImapSession.on_error,
}
