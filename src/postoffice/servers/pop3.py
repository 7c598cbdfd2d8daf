"""The POP3 server: a thin asyncio adapter around the POP3 core and the mail store.

The core (`protocols/pop3`) frames and parses commands, tracks AUTHORIZATION /
TRANSACTION / UPDATE and byte-stuffs multi-line answers; this module reads and writes,
times out idle sessions, logs in through the shared `LoginGate`, and keeps the maildrop
semantics users rely on: an exclusive lock per user for the whole session (`[IN-USE]`
for a second one; the lock dies with the session or the process), a message list frozen
at login, DELE as a mark that RSET clears, deletions only in the UPDATE state after QUIT
(fsync'ed by the store), nothing deleted when the connection drops. RETR and TOP take a
message of up to `CHUNK` octets that is wholly in the page cache on the event loop (the
store's `read_cached` never waits for the disk, and the loop encodes chunks of that size
anyway), others of up to `WHOLE_MESSAGE` octets in one hop to the disk pool; the status
line, the message and the terminator then go out in one write. Larger messages are
streamed in chunks. Octet counts are those of the stored CRLF form RETR sends. In the
TRANSACTION state, what needs no waiting is answered straight from the transport's
`data_received` while the session's task sleeps (`Parked`): a download then costs no task
wake-up per message.

Standards: RFC 1939 (POP3), RFC 2449 (CAPA, response codes, PIPELINING), RFC 2595 (STLS),
RFC 3206 ([SYS/*], [AUTH]), RFC 5034 (AUTH), RFC 8314 (implicit TLS)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar, Literal

from postoffice import diskio
from postoffice.config import Config
from postoffice.logs import EventLog
from postoffice.policy.limits import ClientLimits
from postoffice.protocols import pop3, sasl
from postoffice.protocols.pop3 import NEED_DATA, PAUSED, Err, Ok, OkLines, Signal, events
from postoffice.servers.login import Login, LoginGate
from postoffice.servers.parked import reader_is_empty
from postoffice.servers.pop3_parked import Parked
from postoffice.servers.session import BaseSession
from postoffice.storage.base import Mailbox, MailStore, MessageInfo
from postoffice.storage.locks import MaildropLock
from postoffice.tls import ServerTls

IMPLEMENTATION = "postoffice"
CHUNK = 64 * 1024
WHOLE_MESSAGE = 1024 * 1024  # up to this size RETR/TOP read the file at once
_UIDL_OK = re.compile(r"[\x21-\x7e]{1,70}")  # RFC 1939 §7: 1 to 70 characters 0x21-0x7E

BUSY = Err("too many connections, try again later", "SYS/TEMP")
TOO_FAST = Err("too many commands, slow down", "SYS/TEMP")
TOO_MANY_ERRORS = Err("too many errors, closing connection")
TIMEOUT = Err("idle too long, closing connection")
SHUTTING_DOWN = Err("server shutting down", "SYS/TEMP")
NEEDS_TLS = Err("use STLS (or port 995) before logging in", "AUTH")
LOGIN_FAILED = Err("invalid user name or password", "AUTH")
LOCKED_OUT = Err("too many failed logins, try again later", "LOGIN-DELAY")
IN_USE = Err("maildrop already locked by another session", "IN-USE")
NO_SUCH_MESSAGE = Err("no such message")
DELETED = Err("message already deleted")


@dataclass(slots=True)
class Pop3Context:
    """What every POP3 session shares (swapped whole on SIGHUP)."""

    config: Config
    store: MailStore
    gate: LoginGate
    tls: ServerTls
    client_limits: ClientLimits
    log: EventLog


def uidl_of(info: MessageInfo) -> str:
    """The Maildir key when it is a valid UIDL, else a stable digest of it (RFC 1939 §7)."""
    key = info.key
    if _UIDL_OK.fullmatch(key):
        return key
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:40]


class Pop3Session(BaseSession):
    """One client connection."""

    QUICK: ClassVar[dict[type, Callable[[Pop3Session, Any], bytes | None]]]  # set below

    def __init__(
        self,
        context: Callable[[], Pop3Context],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        tls: str = "",
    ):
        super().__init__(reader, writer, tls)
        self.ctx = context()
        self.conn = pop3.ServerConnection(tls=bool(tls))
        self.user = ""
        self.pending_user = ""  # from USER, until PASS
        self.login: Login | None = None
        self.lock: MaildropLock | None = None
        self.mailbox: Mailbox | None = None
        self.messages: list[MessageInfo] = []  # frozen at login (RFC 1939 §4)
        self.deleted: set[int] = set()  # message numbers marked by DELE
        self.sized_files = True  # files hold the listed (CRLF) octets: no fstat to read one
        self.errors = 0
        self.idle_since = 0.0  # loop time when the session began waiting for the client
        self.idle_timer: asyncio.TimerHandle | None = None
        self.timed_out = False
        self.admitted: events.Event | None = None  # counted by Parked, not answered quickly
        self.retrieved = 0  # the message a RETR just answered from the cache (0: none)
        self.ahead: tuple[int, bytes] | None = None  # the next one, stuffed (<= CHUNK read)

    # -- the loop -------------------------------------------------------------------------

    listener_name = "pop3"

    async def greet(self) -> None:
        self.writer.write(self.conn.send(Ok(f"{IMPLEMENTATION} POP3 server ready")))

    def finish(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.release()

    def summary(self) -> dict[str, Any]:
        return {"user": self.user or None, "errors": self.errors}

    async def loop(self) -> None:
        conn = self.conn
        while not conn.closed:
            event = conn.next_event()  # commands already buffered are served without a read
            if event is NEED_DATA:
                self.read_ahead()
                if self.writer.transport.get_write_buffer_size():
                    await self.writer.drain()  # RFC 2449 §6.6: answers flushed before waiting
                if self.mailbox is not None and not self.stopping and reader_is_empty(self.reader):
                    event = await self.wait(self.parked)  # TRANSACTION: see Parked
                    if event is None:
                        return
                if event is NEED_DATA:
                    data = await self.wait(self.read)
                    if data is None:
                        return
                    conn.receive_data(data)
                    continue
            if event is PAUSED:
                raise RuntimeError("POP3 core paused with no reply pending")
            if type(event) is events.ConnectionClosed:
                return
            admitted, self.admitted = self.admitted is event, None  # by Parked, quick tried
            if not admitted and not self.ctx.client_limits.command(self.client_ip):
                await self.goodbye(TOO_FAST)
                return
            quick = None if admitted else _QUICK.get(type(event))
            reply = quick(self, event) if quick is not None else None
            if reply is None:
                reply = await _HANDLERS[type(event)](self, event)
            self.writer.write(reply)
            if self.after_reply is not None:
                await self.run_after_reply()
            if self.stopping and not conn.closed and self.idle_between_commands:
                await self.goodbye(SHUTTING_DOWN)
                return
        await self.writer.drain()

    @property
    def idle_between_commands(self) -> bool:
        return self.login is None

    async def wait(self, waiting: Callable[[], Awaitable[Any]]) -> Any:
        """Wait for the client; None once the session ended for idling or shutdown.

        RFC 1939 §3's autologout runs on one timer per session that checks, when it fires,
        how long the client has been waiting (`_check_idle`), instead of a timeout armed
        and cancelled around every read: that costs a timer handle per command.
        """
        loop = asyncio.get_running_loop()
        self.idle, self.idle_since = True, loop.time()
        if self.idle_timer is None:
            self.idle_timer = loop.call_at(
                self.idle_since + self.ctx.config.pop3.idle_timeout, self._check_idle
            )
        try:
            if self.stopping:
                raise asyncio.CancelledError
            return await waiting()
        except asyncio.CancelledError:
            if self.timed_out:
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                await self.goodbye(TIMEOUT)  # RFC 1939 §3: autologout, no UPDATE
                return None
            if not self.stopping:
                raise
            await self.goodbye(SHUTTING_DOWN)
            return None
        finally:
            self.idle = False

    async def read(self) -> bytes:
        return await self.reader.read(65536)

    async def parked(self) -> events.Event | Literal[Signal.NEED_DATA]:
        """Lend the transport to `Parked` until a command needs this task: that command, or
        NEED_DATA when the stream reader has news (end of file, an error)."""
        parked = Parked(self, self.writer.transport)
        try:
            return await parked.waiter
        finally:
            parked.unpark()

    def _check_idle(self) -> None:
        """The idle timer: log out a client idle for `idle_timeout`, else look again later."""
        loop = asyncio.get_running_loop()
        timeout = self.ctx.config.pop3.idle_timeout
        deadline = (self.idle_since if self.idle else loop.time()) + timeout
        if self.idle and loop.time() >= deadline and self.task is not None:
            self.idle_timer, self.timed_out = None, True
            self.task.cancel()
        else:
            self.idle_timer = loop.call_at(deadline, self._check_idle)

    async def goodbye(self, reply: Err) -> None:
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            self.writer.write(self.conn.send(reply))
            await self.writer.drain()
        self.writer.close()

    def release(self) -> None:
        """Give back the maildrop lock and close the mailbox's index; marked messages stay
        (no UPDATE without QUIT)."""
        self.ahead = None
        if self.mailbox is not None:
            self.mailbox.close()  # its index file, not left to the garbage collector
            self.mailbox = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # -- AUTHORIZATION --------------------------------------------------------------------

    @property
    def login_allowed(self) -> bool:
        """RFC 2595 §2: passwords only under TLS, or from loopback when configured."""
        return bool(self.tls) or (self.loopback and self.ctx.config.pop3.allow_plaintext_loopback)

    async def on_capa(self, event: events.Capa) -> bytes:
        # RFC 2449 §5: what AUTHORIZATION announces is announced in TRANSACTION too
        allowed = self.login_allowed
        return self.conn.send(
            pop3.capabilities(
                tls_active=bool(self.tls),
                user_allowed=allowed,
                sasl=sasl.mechanism_names() if allowed else (),
                implementation=IMPLEMENTATION,
                login_delay=None,
                expire=None,
            )
        )

    async def on_stls(self, event: events.Stls) -> bytes:
        if self.tls:
            return self.conn.send(Err("TLS already active"))
        self.after_reply = self.upgrade
        return self.conn.send(Ok("begin TLS negotiation"))

    async def upgrade(self) -> None:
        """After +OK to STLS: drop buffered plaintext (RFC 2595 §4), then the handshake."""
        await self.writer.drain()
        self.conn.start_tls()
        await self.switch_to_tls(self.ctx.tls.context(), 60.0, self.ctx.log)

    async def on_user(self, event: events.User) -> bytes:
        if not self.login_allowed:
            return self.conn.send(NEEDS_TLS)
        self.pending_user = event.name
        return self.conn.send(Ok("send PASS"))

    async def on_pass(self, event: events.Pass) -> bytes:
        user, self.pending_user = self.pending_user, ""
        if not self.login_allowed:
            return self.conn.send(NEEDS_TLS)
        if self.ctx.gate.ip_locked(self.client_ip):
            return self.conn.send(LOCKED_OUT)
        self.login = self.ctx.gate.password(self.client_ip)
        initial = sasl.encode_b64(sasl.client_plain(user, event.password))
        return await self.auth_step(await self.login.start(initial))

    async def on_auth(self, event: events.Auth) -> bytes:
        if event.mechanism is None:  # RFC 1734 style: list the mechanisms
            names = sasl.mechanism_names() if self.login_allowed else ()
            return self.conn.send(OkLines("SASL mechanisms follow", names))
        if not self.login_allowed:
            return self.conn.send(NEEDS_TLS)
        if self.ctx.gate.ip_locked(self.client_ip):
            return self.conn.send(LOCKED_OUT)
        login = self.ctx.gate.begin(self.client_ip, event.mechanism)
        if login is None:
            return self.conn.send(Err("unsupported SASL mechanism"))
        self.login = login
        return await self.auth_step(await login.start(event.initial_response))

    async def on_auth_data(self, event: events.AuthData) -> bytes:
        if self.login is None:
            return self.conn.send(Err("no authentication in progress"))
        return await self.auth_step(await self.login.respond(event.line))

    async def auth_step(self, step: sasl.Step) -> bytes:
        login = self.login
        assert login is not None
        if isinstance(step, sasl.Challenge):
            return self.conn.send(pop3.Continue(sasl.encode_b64(step.data)))
        self.login = None
        if isinstance(step, sasl.Success):
            login.succeeded(step.user)
            return self.conn.send(await self.open_maildrop(step.user))
        if step.kind is not sasl.FailureKind.REJECTED:
            return self.conn.send(Err("authentication cancelled or malformed"))
        await login.failed()
        self.ctx.log.event("auth_failed", listener="pop3", client=self.client, reason=step.reason)
        return self.conn.send(LOCKED_OUT if login.locked else LOGIN_FAILED)

    async def open_maildrop(self, user: str) -> Ok | Err:
        """Lock the maildrop and freeze its message list (RFC 1939 §4, §8)."""
        store = self.ctx.store
        try:
            # held by the session at once, so that release() frees them whatever happens next
            self.lock = await asyncio.to_thread(store.lock_maildrop, user)
            if self.lock is None:
                return IN_USE
            self.mailbox = store.mailbox(user)
            messages = await asyncio.to_thread(self.mailbox.messages)
        except OSError as exc:
            self.release()
            self.ctx.log.warning("maildrop_error", client=self.client, user=user, error=str(exc))
            return Err("cannot open the maildrop, try again later", "SYS/TEMP")
        self.messages, self.user = messages, user
        self.ctx.log.event(
            "login", listener="pop3", client=self.client, user=user, tls=self.tls or None
        )
        count, octets = self.totals()
        return Ok(f"{user} has {count} messages ({octets} octets)")

    # -- TRANSACTION ----------------------------------------------------------------------

    def totals(self) -> tuple[int, int]:
        live = [m for n, m in enumerate(self.messages, 1) if n not in self.deleted]
        return len(live), sum(m.size for m in live)

    def message(self, number: int) -> MessageInfo | Err:
        if not 1 <= number <= len(self.messages):
            return NO_SUCH_MESSAGE
        if number in self.deleted:
            return DELETED
        return self.messages[number - 1]

    def on_stat(self, event: events.Stat) -> bytes:
        count, octets = self.totals()
        return self.conn.send(Ok(f"{count} {octets}"))

    def on_list(self, event: events.List) -> bytes:
        return self.listing(event.msg, lambda info: str(info.size), "scan listing")

    def on_uidl(self, event: events.Uidl) -> bytes:
        return self.listing(event.msg, uidl_of, "unique-id listing")

    def listing(self, number: int | None, value: Callable[[MessageInfo], str], title: str) -> bytes:
        if number is not None:
            info = self.message(number)
            return self.conn.send(info if isinstance(info, Err) else Ok(f"{number} {value(info)}"))
        lines = tuple(
            f"{n} {value(m)}" for n, m in enumerate(self.messages, 1) if n not in self.deleted
        )
        return self.conn.send(OkLines(f"{title} follows", lines))

    def cached_message(self, event: events.Retr | events.Top) -> bytes | None:
        """RETR or TOP of a message wholly in the page cache (or read ahead), answered
        without waiting; None when it must come from the disk (RFC 1939 §5, §7)."""
        info = self.message(event.msg)
        if isinstance(info, Err):
            return self.conn.send(info)
        if type(event) is events.Top:
            content = self.read_cached(info)
            return None if content is None else self.encode_message(info, content, event.lines)
        ahead, self.ahead = self.ahead, None
        block = ahead[1] if ahead is not None and ahead[0] == event.msg else self.stuffed(info)
        if block is None:
            return None
        self.retrieved = event.msg
        return self.conn.send_stuffed(Ok(f"{info.size} octets"), block)

    def read_cached(self, info: MessageInfo) -> bytes | None:
        """The message if it is wholly in the page cache and at most CHUNK octets, else None."""
        assert self.mailbox is not None
        return self.mailbox.read_cached(info.key, CHUNK, info.size if self.sized_files else None)

    def stuffed(self, info: MessageInfo) -> bytes | None:
        """`read_cached`, byte-stuffed and terminated: a RETR answer's block."""
        content = self.read_cached(info)
        return None if content is None else pop3.stuff(content)

    def read_ahead(self) -> None:
        """Read and stuff the message after the one a RETR just sent, while the client reads
        that one: a client downloading the maildrop asks for it next, and finds its answer
        ready. Only from the page cache, as `cached_message`: never a wait for the disk.
        Called once the commands received are answered; a DELE of it before its RETR is
        still refused (`message` is asked again), and its content cannot change. Nothing
        to do unless the last command answered was a RETR from the cache."""
        if not self.retrieved:
            return
        number, self.retrieved = self.retrieved + 1, 0
        info = self.message(number)
        if isinstance(info, Err):
            return
        block = self.stuffed(info)
        if block is not None:
            self.ahead = (number, block)

    async def on_retr(self, event: events.Retr) -> bytes:
        return await self.send_message(event.msg, None)

    async def on_top(self, event: events.Top) -> bytes:
        return await self.send_message(event.msg, event.lines)

    async def send_message(self, number: int, body_lines: int | None) -> bytes:
        """Stream the message (RETR) or its header and first lines (TOP, RFC 1939 §7) from
        the disk: `cached_message` found it (or part of it) not in the page cache."""
        info = self.message(number)
        if isinstance(info, Err):
            return self.conn.send(info)
        mailbox = self.mailbox
        assert mailbox is not None
        try:
            if info.size <= WHOLE_MESSAGE:
                content: bytes | BinaryIO = await diskio.run(mailbox.read, info.key)
            else:
                content = await diskio.run(mailbox.open, info.key)
        except (OSError, KeyError):
            return self.conn.send(Err("message vanished from the maildrop", "SYS/PERM"))
        if isinstance(content, bytes):
            if len(content) != info.size:  # stored with LF: sized reads would always miss
                self.sized_files = False
            return self.encode_message(info, content, body_lines)
        status = self.conn.send_multiline_start(Ok(f"{info.size} octets"))
        encoder = self.conn.message_encoder()
        limiter = _TopLimiter(body_lines)
        self.writer.write(status)
        with content:
            while not limiter.done:
                chunk = await diskio.run(content.read, CHUNK)
                if not chunk:
                    self.writer.write(encoder.feed(limiter.rest()))
                    break
                self.writer.write(encoder.feed(limiter.cut(chunk)))
                await self.writer.drain()
        return encoder.finish()

    def encode_message(self, info: MessageInfo, content: bytes, body_lines: int | None) -> bytes:
        """The whole answer to RETR or TOP: status line, stuffed message, ".", for one write."""
        if body_lines is not None:
            limiter = _TopLimiter(body_lines)
            content = limiter.cut(content) + limiter.rest()
        return self.conn.send_message(Ok(f"{info.size} octets"), content)

    def on_dele(self, event: events.Dele) -> bytes:
        info = self.message(event.msg)
        if isinstance(info, Err):
            return self.conn.send(info)
        self.deleted.add(event.msg)  # RFC 1939 §5: only marked; removed in UPDATE
        return self.conn.send(Ok(f"message {event.msg} deleted"))

    def on_noop(self, event: events.Noop) -> bytes:
        return self.conn.send(Ok())

    def on_rset(self, event: events.Rset) -> bytes:
        self.deleted.clear()
        count, octets = self.totals()
        return self.conn.send(Ok(f"maildrop has {count} messages ({octets} octets)"))

    async def on_quit(self, event: events.Quit) -> bytes:
        """In TRANSACTION: the UPDATE state — remove what DELE marked, durably (RFC 1939 §6)."""
        if self.mailbox is None or not self.deleted:
            self.release()
            return self.conn.send(Ok(f"{IMPLEMENTATION} POP3 server signing off"))
        keys = [self.messages[n - 1].key for n in sorted(self.deleted)]
        try:
            await asyncio.to_thread(self.mailbox.remove, keys)
        except OSError as exc:
            self.ctx.log.warning(
                "update_failed", client=self.client, user=self.user, error=str(exc)
            )
            self.release()
            return self.conn.send(Err("some deleted messages not removed", "SYS/TEMP"))
        self.ctx.log.event("update", listener="pop3", user=self.user, deleted=len(keys))
        self.deleted.clear()
        self.release()
        left = len(self.messages) - len(keys)
        return self.conn.send(
            Ok(f"{IMPLEMENTATION} POP3 server signing off ({left} messages left)")
        )

    async def on_error(self, event: events.CommandError) -> bytes:
        self.errors += 1
        if self.conn.state is not pop3.State.AUTH:
            self.login = None  # the core ended any SASL exchange
        if self.errors >= self.ctx.config.limits.errors_per_session:
            self.ctx.log.event("too_many_errors", listener="pop3", client=self.client)
            self.after_reply = self.hang_up
        return self.conn.send(event.reply)

    async def hang_up(self) -> None:
        await self.goodbye(TOO_MANY_ERRORS)


class _TopLimiter:
    """Passes the header and the first `lines` body lines of a message (None: everything)."""

    def __init__(self, lines: int | None):
        self.lines = lines
        self.in_body = False
        self.done = False
        self._tail = b""

    def cut(self, chunk: bytes) -> bytes:
        if self.lines is None:
            return chunk
        out = bytearray()
        data = self._tail + chunk
        self._tail = b""
        start = 0
        while not self.done:
            end = data.find(b"\n", start)
            if end < 0:
                self._tail = data[start:]
                break
            line = data[start : end + 1]
            start = end + 1
            if self.in_body:
                if self.lines <= 0:
                    self.done = True
                    break
                self.lines -= 1
                out += line
            else:
                out += line
                if line in (b"\r\n", b"\n"):
                    self.in_body = True
                    if self.lines <= 0:
                        self.done = True
        return bytes(out)

    def rest(self) -> bytes:
        """What is left at the end of the file: a last line without a line end."""
        tail, self._tail = self._tail, b""
        if self.done or (self.in_body and self.lines is not None and self.lines <= 0):
            return b""
        return tail


# Each event of the core to its handler, unbound: one table for every session. Tables of
# bound methods on each session made every session a reference cycle, left with all it held
# (a 10,000-message listing: 2.7 MiB) until the collector's next full pass.
# Quick handlers answer at once, and a parked session answers them without its task (Parked).
_QUICK: dict[type, Callable[[Pop3Session, Any], bytes | None]] = {
    events.Stat: Pop3Session.on_stat,
    events.List: Pop3Session.on_list,
    events.Uidl: Pop3Session.on_uidl,
    events.Retr: Pop3Session.cached_message,
    events.Top: Pop3Session.cached_message,
    events.Dele: Pop3Session.on_dele,
    events.Noop: Pop3Session.on_noop,
    events.Rset: Pop3Session.on_rset,
}
_HANDLERS: dict[type, Callable[[Pop3Session, Any], Awaitable[bytes]]] = {
    events.Capa: Pop3Session.on_capa,
    events.Stls: Pop3Session.on_stls,
    events.User: Pop3Session.on_user,
    events.Pass: Pop3Session.on_pass,
    events.Auth: Pop3Session.on_auth,
    events.AuthData: Pop3Session.on_auth_data,
    events.Retr: Pop3Session.on_retr,
    events.Top: Pop3Session.on_top,
    events.Quit: Pop3Session.on_quit,
    events.CommandError: Pop3Session.on_error,
}
Pop3Session.QUICK = _QUICK
