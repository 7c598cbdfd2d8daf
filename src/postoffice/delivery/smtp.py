"""Remote delivery: hand queued mail to other SMTP servers (the MX hosts, or one smarthost).

`deliver` groups the recipients by domain (with a smarthost, everything is one destination) and
serves the destinations concurrently, one transaction each, on a connection from the
destination's idle pool or a new one: the hosts come from `resolve_destination` (minus
ourselves and every host no better), and each address of each host is tried until one greets
with 220, answers EHLO (or HELO), completes STARTTLS as the policy demands and accepts AUTH if
the smarthost wants it. MAIL, the RCPTs and DATA go out together under PIPELINING and their
replies are read in order, so each recipient gets the outcome of its own reply, kept verbatim
for DSNs. The body streams from the spool through the client core's `DataEncoder`. Anything
that breaks mid-transaction defers the recipients not yet answered; it never fails them.
Semaphores bound connections per destination and in all; a connection holds its slots only
while in use and a new one opens only when the pool is empty, so busy plus idle connections
stay within the bounds (idle ones elsewhere are closed to make room). Idle connections get
QUIT after `connection_reuse` seconds; one found dead at its first reply is replaced once.
Protocol detail (reply bounds, commands, dot-stuffing) lives in protocols/smtp/client.py; the
status codes chosen are listed in docs/smtp-client.md.

Standards: RFC 5321 §3.1, §3.2, §3.3, §3.8, §4.1.1.5, §4.1.1.10, §4.5.3.2, §5.1; RFC 1870 §6;
RFC 2920 §3; RFC 3207 §4.1-4.2; RFC 3463; RFC 4954 §4; RFC 6152; RFC 6531 §3.2; RFC 7435
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import ipaddress
import random
import re
import ssl
from collections.abc import Callable
from typing import Any, BinaryIO

from postoffice.client.connection import NETWORK_ERRORS as _NETWORK_ERRORS
from postoffice.client.connection import SmtpConnection
from postoffice.delivery.base import Outcome, RecipientResult
from postoffice.delivery.local import MessageSource
from postoffice.delivery.mx import DestinationError, MxHost, resolve_destination
from postoffice.delivery.smtp_pool import ConnectionPool, Destination
from postoffice.dns import DnsError, Resolver
from postoffice.protocols.smtp import Reply
from postoffice.protocols.smtp import client as smtp
from postoffice.queue.entry import QueueEntry

Record = Callable[..., None]  # record(qid, event, **fields), for the trace journal

_CHUNK = 256 * 1024  # octets read from the spool at a time
_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
_SMARTHOST = "[smarthost]"  # the one destination when everything goes to the smarthost
_POLICIES = ("may", "encrypt", "verify")


@dataclasses.dataclass
class _SetupFailure(Exception):
    """This address cannot take the mail now; try the next one."""

    status: str
    detail: str
    reply: Reply | None = None


class _Stale(Exception):
    """A pooled connection turned out dead at its first reply: retry on a fresh one."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Message:
    qid: str
    sender: str
    size: int
    eight_bit: bool


class SmtpDeliveryAgent:
    """`DeliveryAgent` that relays mail over SMTP; call `close()` at shutdown."""

    def __init__(
        self,
        resolver: Resolver,
        spool: MessageSource,
        *,
        hostname: str,
        port: int = 25,
        tls: str = "may",
        ca_file: str | None = None,
        smarthost: tuple[str, int] | None = None,
        smarthost_auth: tuple[str, str] | None = None,
        destination_concurrency: int = 20,
        concurrency: int = 100,
        connect_timeout: float = 30,
        command_timeout: float = 300,
        connection_reuse: float = 5,
        bind_address: str | None = None,
        record: Record | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if tls not in _POLICIES:
            raise ValueError(f"tls must be one of {', '.join(_POLICIES)}, not {tls!r}")
        self._resolver = resolver
        self._spool = spool
        self._hostname = hostname
        self._port = port
        self._tls = tls
        self._tls_context = _tls_context(tls, ca_file)
        self._smarthost = smarthost
        self._auth = smarthost_auth
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._bind = ipaddress.ip_address(bind_address) if bind_address else None
        self._record = record
        self._rng = rng
        self._pool = ConnectionPool(
            concurrency=concurrency,
            destination_concurrency=destination_concurrency,
            reuse=connection_reuse,
        )

    # --- the agent interface -----------------------------------------------------------------

    async def deliver(self, entry: QueueEntry, recipients: list[str]) -> list[RecipientResult]:
        groups: dict[str, list[str]] = {}
        for recipient in dict.fromkeys(recipients):
            domain = recipient.rpartition("@")[2].lower()
            groups.setdefault(_SMARTHOST if self._smarthost else domain, []).append(recipient)
        try:
            eight_bit = await asyncio.to_thread(self._eight_bit, entry.qid)
        except (OSError, KeyError) as error:
            return [_unreadable(r, error) for r in recipients]
        message = _Message(entry.qid, entry.sender, entry.size, eight_bit)
        batches = await asyncio.gather(
            *(self._deliver_to(message, key, group) for key, group in groups.items())
        )
        results = {result.recipient: result for batch in batches for result in batch}
        for result in results.values():
            fields = dataclasses.asdict(result) | {"outcome": result.outcome.value}
            self._note(entry.qid, "attempt", **fields)
        return [results[r] for r in recipients]

    async def close(self) -> None:
        """Say QUIT on every idle connection and wait until all are closed."""
        await self._pool.close()

    # --- one destination -----------------------------------------------------------------

    async def _deliver_to(
        self, message: _Message, key: str, recipients: list[str]
    ) -> list[RecipientResult]:
        async with self._pool.slot(key) as destination:
            return await self._deliver_in_slot(message, destination, recipients)

    async def _deliver_in_slot(
        self, message: _Message, destination: Destination, recipients: list[str]
    ) -> list[RecipientResult]:
        session = self._pool.take_idle(destination)
        if session is not None:
            self._note(message.qid, "connect", **_peer(session), result="reused")
            with contextlib.suppress(_Stale):
                return await self._use(destination, session, message, recipients)
        try:
            hosts = await self._hosts(destination.key, message.qid)
        except DestinationError as error:
            outcome = Outcome.FAILED if error.permanent else Outcome.DEFERRED
            return [RecipientResult(r, outcome, error.status, error.detail) for r in recipients]
        opened = await self._connect(hosts, message.qid)
        if isinstance(opened, _SetupFailure):
            remote = smtp.describe(opened.reply) if opened.reply else None
            return [
                RecipientResult(r, Outcome.DEFERRED, opened.status, opened.detail, remote)
                for r in recipients
            ]
        return await self._use(destination, opened, message, recipients)

    async def _hosts(self, key: str, qid: str) -> list[MxHost]:
        """Where to connect, in order; DestinationError when there is nowhere."""
        try:
            if self._smarthost is None:
                hosts = self._without_self(
                    key, await resolve_destination(self._resolver, key, rng=self._rng)
                )
            else:
                hosts = [await self._smarthost_host(self._smarthost[0])]
        except DestinationError as error:
            self._note(qid, "dns", domain=key, status=error.status, error=error.detail)
            raise
        listed = [
            {"name": h.name, "preference": h.preference, "addresses": h.addresses} for h in hosts
        ]
        self._note(qid, "dns", domain=key, mx=listed)
        return hosts

    async def _smarthost_host(self, name: str) -> MxHost:
        """The smarthost as given: an address, or a name whose A/AAAA are used (never its MX)."""
        try:
            return MxHost(name, 0, [str(ipaddress.ip_address(name))])
        except ValueError:
            pass
        try:
            return MxHost(name, 0, await self._resolver.addresses(name))
        except DnsError as error:  # a configuration problem to fix: keep the mail queued
            raise DestinationError(False, "4.4.3", f"smarthost {error}") from None

    def _without_self(self, domain: str, hosts: list[MxHost]) -> list[MxHost]:
        """RFC 5321 §5.1: if we are an MX of the domain, only better hosts may be used."""
        me = self._hostname.lower().rstrip(".")
        ours = [h.preference for h in hosts if h.name.lower().rstrip(".") == me]
        if not ours:
            return hosts
        better = [h for h in hosts if h.preference < min(ours)]
        if not better:
            detail = f"{domain}: mail loops back to myself ({me} is its best MX host)"
            raise DestinationError(True, "5.4.6", detail)
        return better

    # --- connections -----------------------------------------------------------------------

    async def _connect(self, hosts: list[MxHost], qid: str) -> SmtpConnection | _SetupFailure:
        """The first address, in host order, that is ready for a transaction."""
        failures: list[_SetupFailure] = []
        for host in hosts:
            for address in host.addresses:
                try:
                    session: SmtpConnection | None = await self._open_session(
                        host.name, address, qid
                    )
                    result = "ok"
                except _SetupFailure as failure:
                    session, result = None, failure.detail
                    failures.append(failure)
                peer = {"host": host.name, "address": address, "port": self._port_to}
                self._note(qid, "connect", **peer, result=result)
                if session is not None:
                    return session
        if not failures:
            return _SetupFailure("4.4.1", "no address to connect to")
        # the most telling reason: a TLS or protocol failure says more than "refused"
        chosen = next((f for f in failures if f.status != "4.4.1"), failures[-1])
        return _SetupFailure(chosen.status, "; ".join(f.detail for f in failures), chosen.reply)

    def _source_for(self, address: str) -> tuple[str, int] | None:
        """Our source address (like Postfix's smtp_bind_address), when of the same family."""
        if self._bind is None or ipaddress.ip_address(address).version != self._bind.version:
            return None
        return (str(self._bind), 0)

    @property
    def _port_to(self) -> int:
        return self._smarthost[1] if self._smarthost else self._port

    async def _open_session(self, host: str, address: str, qid: str) -> SmtpConnection:
        where = f"{host}[{address}]:{self._port_to}"
        await self._pool.make_room()
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(
                    address, self._port_to, local_addr=self._source_for(address)
                )
        except TimeoutError:
            raise _SetupFailure("4.4.1", f"connection to {where} timed out") from None
        except ConnectionRefusedError:
            raise _SetupFailure("4.4.1", f"connection refused by {where}") from None
        except OSError as error:
            raise _SetupFailure("4.4.1", f"cannot connect to {where}: {_reason(error)}") from None
        self._pool.opened()
        session = SmtpConnection(
            reader, writer, host, address, self._port_to, self._command_timeout
        )
        try:
            await self._setup(session, qid)
        except _NETWORK_ERRORS as error:
            failure = _SetupFailure("4.4.2", f"connection with {where} failed: {_reason(error)}")
        except _SetupFailure as setup_failure:
            failure = setup_failure
        except BaseException:  # cancelled: do not leak the connection
            self._pool.discard(session)
            raise
        else:
            return session
        self._flush(qid, session)
        self._pool.discard(session)
        raise failure

    async def _setup(self, session: SmtpConnection, qid: str) -> None:
        """Greeting, EHLO, STARTTLS and AUTH as the policy wants; _SetupFailure if not."""
        greeting = await session.reply()
        if greeting.code != 220:
            # RFC 5321 §3.1, §3.8: a server that will not talk now (421, 554): try the next
            detail = f"{session.where} greeted us with {smtp.describe(greeting)}"
            raise _SetupFailure("4.4.1", detail, greeting)
        await self._hello(session)
        if self._tls != "may" or "STARTTLS" in session.capabilities:
            await self._start_tls(session, qid)
        if self._auth is not None:
            await self._authenticate(session, *self._auth)

    async def _hello(self, session: SmtpConnection) -> None:
        reply = await session.command(smtp.ehlo(self._hostname))
        if reply.code == 250:
            session.capabilities = smtp.Capabilities.from_ehlo(reply)
            return
        if reply.code >= 500:  # RFC 5321 §3.2: a server that does not know EHLO takes HELO
            reply = await session.command(smtp.helo(self._hostname))
            if reply.code == 250:
                session.capabilities = smtp.Capabilities()
                return
        raise _SetupFailure("4.4.1", f"{session.where} refused HELO: {smtp.describe(reply)}", reply)

    async def _start_tls(self, session: SmtpConnection, qid: str) -> None:
        if "STARTTLS" not in session.capabilities:
            detail = f"{session.where} does not offer STARTTLS (TLS is required)"
            raise _SetupFailure("4.7.4", detail)
        reply = await session.command(smtp.STARTTLS)
        if reply.code != 220:
            if self._tls == "may":
                return  # RFC 3207 §4.1: the server may refuse; opportunistic TLS goes on without
            detail = f"{session.where} refused STARTTLS: {smtp.describe(reply)}"
            raise _SetupFailure("4.7.4", detail, reply)
        name = session.address if session.host.startswith("[") else session.host
        try:
            dropped = await session.start_tls(self._tls_context, name)
        except (OSError, TimeoutError) as error:
            detail = f"TLS handshake with {session.where} failed: {_reason(error)}"
            raise _SetupFailure("4.7.5", detail) from None
        tls = session.writer.get_extra_info("ssl_object")
        self._note(
            qid,
            "tls",
            **_peer(session),
            version=tls.version(),
            cipher=tls.cipher()[0],
            verified=self._tls == "verify",
            discarded=dropped,
        )
        await self._hello(session)  # RFC 3207 §4.2: forget what was learned before TLS

    async def _authenticate(self, session: SmtpConnection, user: str, password: str) -> None:
        if not (session.tls or ipaddress.ip_address(session.address).is_loopback):
            # never a password in the clear over a network (RFC 4954 §4, §14)
            raise _SetupFailure("4.7.0", f"will not authenticate to {session.where} without TLS")
        offered = session.capabilities.auth
        mechanism = next((m for m in ("PLAIN", "LOGIN") if m in offered), None)
        if mechanism is None:
            raise _SetupFailure("4.7.0", f"{session.where} offers neither AUTH PLAIN nor LOGIN")
        steps = smtp.auth_commands(mechanism, user, password)
        for index, (line, shown) in enumerate(steps):
            reply = await session.command(line, shown=shown)
            if reply.code != (235 if index == len(steps) - 1 else 334):  # RFC 4954 §4, §6
                status = "4.7.8" if reply.code >= 500 else "4.7.0"
                detail = f"authentication to {session.where} failed: {smtp.describe(reply)}"
                raise _SetupFailure(status, detail, reply)

    # --- the pool and the slots ------------------------------------------------------------

    # --- the transaction -------------------------------------------------------------------

    async def _use(
        self,
        destination: Destination,
        session: SmtpConnection,
        message: _Message,
        recipients: list[str],
    ) -> list[RecipientResult]:
        try:
            return await self._transaction(session, message, recipients)
        finally:
            self._flush(message.qid, session)
            self._pool.release(destination, session)

    async def _transaction(
        self, session: SmtpConnection, message: _Message, recipients: list[str]
    ) -> list[RecipientResult]:
        results = {r: no for r in recipients if (no := self._refusal(session, message, r))}
        todo = [r for r in recipients if r not in results]
        if todo:
            try:
                source = await asyncio.to_thread(self._open_message, message.qid)
            except (OSError, KeyError) as error:
                results |= {r: _unreadable(r, error) for r in todo}
            else:
                with source:
                    await self._exchange(session, message, todo, source, results)
        return [results[r] for r in recipients]

    def _refusal(
        self, session: SmtpConnection, message: _Message, rcpt: str
    ) -> RecipientResult | None:
        """Why this recipient cannot be offered to this server at all, if it cannot."""
        limit = session.capabilities.size
        if limit is not None and message.size > limit:
            # RFC 1870 §6: a message larger than the declared SIZE is not even offered
            detail = f"message of {message.size} octets exceeds the {limit} of {session.where}"
            return RecipientResult(rcpt, Outcome.FAILED, "5.3.4", detail)
        if "SMTPUTF8" not in session.capabilities and not (message.sender + rcpt).isascii():
            # RFC 6531 §3.2: no internationalised address to a server without SMTPUTF8
            detail = f"{session.where} does not support SMTPUTF8, needed for this address"
            return RecipientResult(rcpt, Outcome.FAILED, "5.6.7", detail)
        return None

    async def _exchange(
        self,
        session: SmtpConnection,
        message: _Message,
        todo: list[str],
        source: BinaryIO,
        results: dict[str, RecipientResult],
    ) -> None:
        """MAIL, the RCPTs, DATA and the body; a result in `results` for each of `todo`."""
        pipelining = "PIPELINING" in session.capabilities
        utf8 = not all(a.isascii() for a in (message.sender, *todo))
        mail = smtp.mail_from(
            message.sender,
            session.capabilities,
            size=message.size,
            eight_bit=message.eight_bit,
            smtputf8=utf8,
        )

        async def reply_to(command: bytes) -> Reply:
            # RFC 2920 §3.1: when pipelining, every command is already sent; read its reply
            return await (session.reply() if pipelining else session.command(command))

        stage, answered = "MAIL FROM", False
        try:
            if pipelining:
                await session.send(mail, *map(smtp.rcpt_to, todo), smtp.DATA)
            mail_reply = await reply_to(mail)
            if session.reused and mail_reply.code == 421:  # it gave up on the idle connection
                session.broken = True
                raise _Stale
            stage, answered = "RCPT TO", True
            accepted: list[str] = []
            for rcpt in todo:
                if mail_reply.code // 100 != 2:
                    # RFC 5321 §3.3: a refused MAIL refuses every recipient
                    results[rcpt] = _answer(rcpt, session, mail_reply)
                    if pipelining:
                        await session.reply()  # the 503 to its RCPT
                    continue
                reply = await reply_to(smtp.rcpt_to(rcpt))
                if reply.code // 100 == 2:
                    accepted.append(rcpt)
                else:
                    results[rcpt] = _answer(rcpt, session, reply)
            stage = "DATA"
            data = await reply_to(smtp.DATA) if pipelining or accepted else None
            if data is not None and data.code == 354:
                if not accepted:
                    session.broken = True  # 354 with no recipient: out of step, hang up
                    return
                stage = "the message"
                await self._send_body(session, source)
                stage = "the end of data"
                final = await session.reply()
                results |= {r: _answer(r, session, final) for r in accepted}
                return
            if data is not None:  # DATA refused
                results |= {r: _answer(r, session, data) for r in accepted}
            # RFC 5321 §4.1.1.5: end the failed transaction, keep the connection
            session.broken = (await session.command(smtp.RSET)).code != 250
        except _NETWORK_ERRORS as error:
            if session.reused and not answered:
                raise _Stale from None
            reason = f"connection with {session.where} failed during {stage}: {_reason(error)}"
            for rcpt in todo:
                results.setdefault(rcpt, RecipientResult(rcpt, Outcome.DEFERRED, "4.4.2", reason))

    async def _send_body(self, session: SmtpConnection, source: BinaryIO) -> None:
        """Stream the queued message through the encoder, a chunk at a time."""
        encoder = smtp.DataEncoder()
        octets = 0
        while chunk := await asyncio.to_thread(source.read, _CHUNK):
            octets += len(chunk)
            await session.write(encoder.feed(chunk))
        await session.write(encoder.finish())
        session.transcript += [f"C: <message, {octets} octets>", "C: ."]

    # --- the spool and the journal ---------------------------------------------------------

    def _open_message(self, qid: str) -> BinaryIO:
        opener = getattr(self._spool, "open_message", None)
        if opener is not None:
            source: BinaryIO = opener(qid)
            return source
        return io.BytesIO(self._spool.read_message(qid))

    def _eight_bit(self, qid: str) -> bool:
        """Whether the message has octets above 127 (RFC 6152: then BODY=8BITMIME)."""
        with self._open_message(qid) as source:
            while chunk := source.read(_CHUNK):
                if _EIGHT_BIT.search(chunk):
                    return True
        return False

    def _note(self, qid: str, event: str, **fields: Any) -> None:
        if self._record is not None:
            self._record(qid, event, **fields)

    def _flush(self, qid: str, session: SmtpConnection) -> None:
        if session.transcript:
            self._note(qid, "transcript", **_peer(session), lines=session.transcript)
            session.transcript = []


def _tls_context(policy: str, ca_file: str | None) -> ssl.SSLContext:
    if policy == "verify":
        # the certificate must chain to a trusted root (the system's or ca_file's) and name
        # the MX host (or the smarthost) we meant to reach
        return ssl.create_default_context(cafile=ca_file or None)
    # RFC 7435 §1.3: opportunistic (and "encrypt"): encrypted, the peer not authenticated
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _answer(recipient: str, session: SmtpConnection, reply: Reply) -> RecipientResult:
    """The outcome a server's reply means for one recipient, the reply kept verbatim."""
    text = smtp.describe(reply)
    if reply.code < 300:
        detail = f"delivered to {session.where}: {text}"
        return RecipientResult(recipient, Outcome.DELIVERED, reply.status or "2.0.0", detail, text)
    permanent = reply.code >= 500  # RFC 5321 §4.2.1: 5yz permanent, 4yz transient
    outcome = Outcome.FAILED if permanent else Outcome.DEFERRED
    status = reply.status or ("5.0.0" if permanent else "4.0.0")
    return RecipientResult(recipient, outcome, status, f"{session.where} said: {text}", text)


def _unreadable(recipient: str, error: Exception) -> RecipientResult:
    return RecipientResult(
        recipient, Outcome.DEFERRED, "4.3.0", f"cannot read queued message: {error!r}"
    )


def _peer(session: SmtpConnection) -> dict[str, Any]:
    return {"host": session.host, "address": session.address, "port": session.port}


def _reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
