"""Composition root: builds directory, store, spool, agents, scheduler and servers.

No globals: everything a part needs is handed to it here. `serve()` runs the
whole server until SIGTERM/SIGINT, reloads safe settings on SIGHUP, and shuts
down gracefully (stop accepting, 421 to idle sessions, bounded grace for
transactions in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
from pathlib import Path

from postoffice import config as configuration
from postoffice import fscommit
from postoffice.clock import Clock, SystemClock
from postoffice.config import Config, ConfigError
from postoffice.control import ControlServer
from postoffice.datadir import DEFAULT_DOMAIN, Paths, StartupError, check_writable, open_directory
from postoffice.delivery.local import AtReception, LocalDeliveryAgent
from postoffice.delivery.routing import Router
from postoffice.delivery.smtp import SmtpDeliveryAgent
from postoffice.dns import DnsError, DnsPythonResolver, Resolver
from postoffice.journal import Journal
from postoffice.logs import EventLog
from postoffice.policy.auth_backend import DirectoryAuthenticator
from postoffice.policy.auth_guard import AuthGuard
from postoffice.policy.dkim import KeyStore, sign_message
from postoffice.policy.limits import ClientLimits
from postoffice.policy.recipients import RecipientPolicy
from postoffice.queue.admin import control_handlers
from postoffice.queue.backoff import Backoff
from postoffice.queue.bounce import Bouncer
from postoffice.queue.cleanup import Cleanup
from postoffice.queue.entry import QueueEntry, QueueState
from postoffice.queue.scheduler import Scheduler
from postoffice.queue.spool import Spool
from postoffice.servers.imap import BUSY_LINE as IMAP_BUSY
from postoffice.servers.imap import ImapContext, ImapSession, UserSessions
from postoffice.servers.listener import ConnectionCounter, Listener, SessionFactory
from postoffice.servers.login import LoginGate
from postoffice.servers.pop3 import BUSY as POP3_BUSY
from postoffice.servers.pop3 import Pop3Context, Pop3Session
from postoffice.servers.smtp import BUSY, SmtpContext, SmtpSession
from postoffice.storage.maildir_store import MaildirStore
from postoffice.tls import ServerTls, TlsError
from postoffice.workers import (
    SMTP_ROLES,
    Prebound,
    QueuedPipe,
    ReceiverSide,
    listen_for_queued,
    reap,
    release,
    signal_receivers,
    wait_for_go,
)


def server_tls(config: Config) -> ServerTls:
    """The server certificate: configured, or self-signed for `hostname` on first start."""

    def path(value: str) -> Path | None:
        if not value:
            return None
        return config.source.parent / value if config.source is not None else Path(value)

    try:
        return ServerTls(
            path(config.tls.cert), path(config.tls.key), config.data_dir, config.hostname
        )
    except TlsError as exc:
        raise StartupError(str(exc)) from None


def prepare_data_dir(config: Config) -> None:
    """First-start work done once, before receivers fork: they would race to do it."""
    check_writable(config.data_dir)
    open_directory(config).close()
    server_tls(config)


def remote_agent(
    config: Config, resolver: Resolver, spool: Spool, journal: Journal
) -> SmtpDeliveryAgent:
    """The SMTP client agent for non-local recipients, from `[relay]` and `[dns]`."""
    relay = config.relay
    smarthost = configuration.parse_hostport(relay.smarthost) if relay.smarthost else None
    auth = (relay.smarthost_user, relay.smarthost_password) if relay.smarthost_user else None
    ca_file = relay.ca_file or None
    if ca_file and config.source is not None:
        ca_file = str(config.source.parent / ca_file)
    return SmtpDeliveryAgent(
        resolver,
        spool,
        hostname=config.hostname,
        port=relay.port,
        tls=relay.tls,
        ca_file=ca_file,
        smarthost=smarthost,
        smarthost_auth=auth,
        destination_concurrency=relay.destination_concurrency,
        concurrency=relay.concurrency,
        connect_timeout=relay.connect_timeout,
        command_timeout=relay.command_timeout,
        connection_reuse=relay.connection_reuse,
        bind_address=relay.bind_address or None,
        record=journal.record,
    )


class Server:
    """The running mail server: one asyncio process (or one of several, see workers.py).

    With `prebound` its SMTP listeners accept on sockets bound before the receivers
    were forked. With `receiver` it is one of those receivers: SMTP only, no delivery,
    no control socket; each stored message is handed to the main process.
    """

    def __init__(
        self,
        config: Config,
        log: EventLog,
        clock: Clock | None = None,
        *,
        prebound: Prebound | None = None,
        receiver: ReceiverSide | None = None,
    ):
        self.config = config
        self.prebound = prebound
        self.receiver = receiver
        self.log = log
        self.clock = clock or SystemClock()
        paths = self.paths = Paths(config.data_dir)
        check_writable(config.data_dir)
        self.journal = Journal(paths.journal, self.clock)
        log.journal = self.journal
        self.directory = open_directory(config)
        self.store = MaildirStore(paths.mail)
        self.spool = Spool(paths.queue)
        local = self.local = LocalDeliveryAgent(
            self.store, self.spool, config.hostname, junk_folder=config.checks.quarantine_folder
        )
        try:
            self.resolver = DnsPythonResolver(list(config.dns.nameservers) or None)
        except DnsError as exc:
            raise StartupError(f"[dns] nameservers: {exc}") from None
        self.remote = remote_agent(config, self.resolver, self.spool, self.journal)
        self.router = Router(self.directory, local, self.remote)
        q = config.queue
        backoff = Backoff(q.min_backoff, q.max_backoff, q.max_lifetime)
        self.keys = KeyStore(config.data_dir)
        commit = fscommit.for_path(config.data_dir)
        self.cleanup = Cleanup(
            self.spool,
            self.directory,
            config.hostname,
            self.clock,
            signer=functools.partial(sign_message, store=self.keys) if config.dkim.sign else None,
            at_reception=(
                AtReception(self.router, local, commit=commit) if q.local_at_reception else None
            ),
            on_event=self._delivery_event,
            commit=commit,
        )
        bouncer = Bouncer(
            self.cleanup,
            self.spool,
            hostname=config.hostname,
            postmaster=f"postmaster@{DEFAULT_DOMAIN}",
            clock=self.clock,
            log=log,
            backoff=backoff,
        )
        self.scheduler = Scheduler(
            self.spool,
            self.router,
            self.clock,
            backoff,
            concurrency=q.concurrency,
            on_event=self._delivery_event,
            on_failed=bouncer.on_failed,
            on_delayed=bouncer.on_delayed,
            delay_warning=q.delay_warning,
        )
        self.cleanup.on_accepted = self._accepted
        self.control = ControlServer(
            paths.control_socket, control_handlers(self.scheduler, self.spool, self.journal)
        )
        self.counter = ConnectionCounter()
        self.tls = server_tls(config)
        lim, auth = config.limits, config.auth
        self.client_limits = ClientLimits(
            self.clock,
            max_per_ip=lim.max_connections_per_ip,
            commands_per_minute=lim.commands_per_minute,
            messages_per_minute=lim.messages_per_minute,
            exempt=lim.exempt_networks,
        )
        guard = AuthGuard(
            self.clock,
            max_failures_per_ip=auth.max_failures_per_ip,
            max_failures_per_account=auth.max_failures_per_account,
            window=auth.window,
            lockout=auth.lockout,
            base_delay=auth.base_delay,
            max_delay=auth.max_delay,
        )
        self.gate = LoginGate(DirectoryAuthenticator(self.directory), guard, self.clock)
        self.listeners: list[Listener] = []
        self._contexts: dict[str, SmtpContext] = {}
        self._imap_sessions = UserSessions()  # per-user IMAP session counts survive SIGHUP
        self._scheduler_task: asyncio.Task[None] | None = None
        self._queued_pipe: QueuedPipe | None = None
        self._smtp_here: asyncio.Task[None] | None = None  # SMTP here too (workers.py)
        self.stopping = False
        self._build_contexts(config)

    def _build_contexts(self, config: Config) -> None:
        """What sessions share; rebuilt on SIGHUP (counters of limits and lockouts are kept)."""
        self._pop3 = Pop3Context(
            config, self.store, self.gate, self.tls, self.client_limits, self.log
        )
        self._imap = ImapContext(
            config,
            self.store,
            self.gate,
            self.tls,
            self.client_limits,
            self.log,
            self._imap_sessions,
        )
        policy = RecipientPolicy(self.directory, list(config.smtp.relay_networks), DEFAULT_DOMAIN)
        for role in ("smtp", "submission"):
            self._contexts[role] = SmtpContext(
                config,
                policy,
                self.cleanup,
                self.log,
                role,
                tls=self.tls,
                gate=self.gate,
                client_limits=self.client_limits,
                directory=self.directory,
                resolver=self.resolver,
                connections=self.counter,
            )

    def _delivery_event(self, kind: str, entry: object, detail: dict[str, object]) -> None:
        qid = getattr(entry, "qid", None)
        arrival = getattr(entry, "arrival", None)
        delay = round(self.clock.time() - arrival, 3) if isinstance(arrival, float) else None
        self.log.event(kind, qid=qid, delay=delay, **detail)

    def _accepted(self, entry: QueueEntry, envelope: bytes | None) -> None:
        """Cleanup took a message: schedule it, unless nothing of it went into the spool."""
        if envelope is not None:
            self.scheduler.notify(entry)

    async def start(self) -> list[tuple[str, str]]:
        """Recover the queue, start delivery and bind every listener."""
        if self.receiver is not None:
            return await self._start_receiver(self.receiver)
        await self.scheduler.recover()  # before anything can store: recovery prunes orphans
        self._scheduler_task = asyncio.create_task(self.scheduler.run())
        try:
            await self.control.start()
        except OSError as exc:
            await self.stop()
            raise StartupError(
                f"{self.paths.control_socket}: cannot open the control socket ({exc}); "
                "is another server running on this data dir?"
            ) from None
        if self.prebound is None:
            return await self._listen(self._roles())
        await listen_for_queued(
            self.prebound, self._queued_elsewhere, self._delivered_elsewhere, self._receiver_exited
        )
        release(self.prebound)
        if self.config.queue.local_at_reception:  # little delivery work left here
            self._answer_smtp_here("smtp_shared")
        smtp = [(name, a) for name, _, addresses, _ in self._smtp_roles() for a in addresses]
        others = [role for role in self._roles() if role[0] not in SMTP_ROLES]
        return smtp + await self._listen(others)  # SMTP: the receivers (and this process)

    async def _start_receiver(self, side: ReceiverSide) -> list[tuple[str, str]]:
        """A receiver: wait until the spool is recovered, then accept SMTP only."""
        if not await wait_for_go(side):
            raise StartupError("the main server process went away before it started")
        pipe = QueuedPipe()
        await pipe.open(side.queued)
        self._queued_pipe = pipe
        self.cleanup.on_accepted = self._accepted_for_main
        return await self._listen(self._smtp_roles())

    def _accepted_for_main(self, entry: QueueEntry, envelope: bytes | None) -> None:
        """A receiver took a message: the main process delivers what it spooled, and wakes
        the IMAP sessions on the mailboxes it delivered to at reception."""
        assert self._queued_pipe is not None
        for recipient in entry.delivered:
            self._queued_pipe.delivered(recipient.address, self.local.folder(entry))
        if envelope is not None:
            self._queued_pipe.queued(envelope)

    def _queued_elsewhere(self, line: bytes) -> None:
        """A receiver stored this entry: schedule it as if it had been stored here."""
        try:
            entry = QueueEntry.from_json(line, QueueState.ACTIVE)
        except ValueError as exc:  # the spool still has it: the next start recovers it
            self.log.warning("queued_elsewhere_unreadable", error=repr(exc))
            return
        self.scheduler.notify(entry)

    def _delivered_elsewhere(self, mailboxes: set[tuple[str, str]]) -> None:
        """A receiver delivered to these (address, folder) mailboxes: only this process's
        hub reaches the IMAP sessions idling on them."""
        for address, folder in mailboxes:
            self.store.changed(address, folder)

    def _roles(self) -> list[tuple[str, str, tuple[str, ...], bool]]:
        conf = self.config
        return [
            ("smtp", "smtp", conf.smtp.listen, False),
            ("submission", "submission", conf.submission.listen, False),
            ("submissions", "submission", conf.submission.listen_tls, True),  # RFC 8314 §3.3
            ("pop3", "pop3", conf.pop3.listen, False),
            ("pop3s", "pop3", conf.pop3.listen_tls, True),
            ("imap", "imap", conf.imap.listen, False),
            ("imaps", "imap", conf.imap.listen_tls, True),
        ]

    def _smtp_roles(self) -> list[tuple[str, str, tuple[str, ...], bool]]:
        return [role for role in self._roles() if role[0] in SMTP_ROLES]

    def _listener(
        self, name: str, role: str, addresses: tuple[str, ...], implicit: bool
    ) -> Listener:
        conf = self.config
        busy = {"pop3": f"-ERR [{POP3_BUSY.code}] {POP3_BUSY.text}\r\n".encode(), "imap": IMAP_BUSY}
        return Listener(
            name,
            addresses,
            self._session_factory(role),
            max_connections=conf.limits.max_connections,
            busy_line=busy.get(role, f"{BUSY.code} {BUSY.status} {BUSY.text}\r\n".encode()),
            log=self.log,
            counter=self.counter,
            client_limits=self.client_limits,
            tls=self.tls.context if implicit else None,
            handshake_timeout=conf.limits.command_timeout,
            sockets=self.prebound.sockets.get(name) if self.prebound else None,
        )

    async def _listen(
        self, roles: list[tuple[str, str, tuple[str, ...], bool]]
    ) -> list[tuple[str, str]]:
        bound: list[tuple[str, str]] = []
        for name, role, addresses, implicit in roles:
            listener = self._listener(name, role, addresses, implicit)
            try:
                addrs = await listener.start()
            except OSError as exc:
                await self.stop()
                raise StartupError(
                    f"cannot listen for {name} on {addresses}: {exc.strerror or exc}"
                ) from None
            self.listeners.append(listener)
            bound += [(name, a) for a in addrs]
        return bound

    def _receiver_exited(self, pid: int) -> None:
        """A receiver ended: before shutdown, this process answers SMTP from now on too."""
        self.log.event("receiver_exited", pid=pid)
        if not self.stopping:
            self._answer_smtp_here("smtp_taken_over")

    def _answer_smtp_here(self, event: str) -> None:
        """Listen on this process's own SMTP sockets too (once), beside the receivers'."""
        if self._smtp_here is not None:
            return
        smtp = [self._listener(*role) for role in self._smtp_roles()]
        self.listeners += smtp
        self._smtp_here = asyncio.create_task(self._start_smtp_here(smtp, event))

    async def _start_smtp_here(self, listeners: list[Listener], event: str) -> None:
        for listener in listeners:
            try:
                await listener.start()  # its sockets were bound at the start: listen() is left
            except OSError as exc:
                self.log.warning("smtp_take_over_failed", listener=listener.name, error=str(exc))
            else:
                self.log.event(event, listener=listener.name)

    def _session_factory(self, role: str) -> SessionFactory:
        """Sessions read their context through a lambda, so SIGHUP reaches new sessions."""
        if role == "pop3":
            return lambda r, w, tls: Pop3Session(lambda: self._pop3, r, w, tls=tls)
        if role == "imap":
            return lambda r, w, tls: ImapSession(lambda: self._imap, r, w, tls=tls)
        return lambda r, w, tls: SmtpSession(lambda: self._contexts[role], r, w, tls=tls)

    def reload(self) -> None:
        """SIGHUP: re-read the config; apply what is safe without dropping sessions."""
        source = self.config.source
        if source is None:
            return
        try:
            new = configuration.load(source, data_dir=self.config.data_dir)
        except ConfigError as exc:
            self.log.warning("reload_failed", error=str(exc))
            return
        kept = ("listen addresses and data_dir need a restart",)
        try:
            self.tls.reload()  # new sessions get the new certificate; running ones keep theirs
        except TlsError as exc:
            self.log.warning("reload_failed", error=str(exc))
        self.config = new
        self.log.configure(new.log.format, new.log.level)
        self._build_contexts(new)  # limits, relay networks, hostname for new sessions
        self.log.event("reloaded", config=str(source), note=kept[0])

    async def stop(self) -> None:
        self.stopping = True  # from here on, receivers ending is expected
        grace = self.config.limits.shutdown_grace
        for listener in self.listeners:
            listener.stop_accepting()
        await asyncio.gather(*(listener.shutdown(grace) for listener in self.listeners))
        await self.control.close()
        self.scheduler.stop()
        if self._scheduler_task is not None:
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(self._scheduler_task, timeout=grace)
        await self.remote.close()
        if self._queued_pipe is not None:
            self._queued_pipe.close()
        self.journal.close()


async def serve(
    config: Config,
    log: EventLog,
    banner: bool = True,
    *,
    prebound: Prebound | None = None,
    receiver: ReceiverSide | None = None,
) -> int:
    """Run until SIGTERM or SIGINT; return the exit status.

    The main process of a server with receivers passes them its signals and waits
    for them when it stops.
    """
    server = Server(config, log, prebound=prebound, receiver=receiver)
    receivers = prebound if receiver is None else None
    # Handlers before the first port opens: a SIGTERM that arrives as soon as a client can
    # connect must still mean a graceful stop, never the default kill.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def reload() -> None:
        server.reload()
        if receivers is not None:
            signal_receivers(receivers, signal.SIGHUP)

    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        bound = await server.start()
    except StartupError:
        if receivers is not None:
            signal_receivers(receivers, signal.SIGTERM)
            await reap(receivers, config.limits.shutdown_grace + 5)
        raise
    if banner:
        _print_banner(config, bound)
    role = {} if prebound is None else {"role": "receiver" if receiver else "main"}
    loop_name = type(loop).__module__.split(".")[0]  # "uvloop" or "asyncio"
    log.event("started", data_dir=str(config.data_dir), pid=os.getpid(), loop=loop_name, **role)
    await stop.wait()
    # Stopping already, within a bounded grace: a second SIGTERM (a service manager's, a
    # test's) must not kill the process in the last steps, after the loop has let go.
    loop.remove_signal_handler(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    log.event("stopping", grace=config.limits.shutdown_grace)
    if receivers is not None:
        signal_receivers(receivers, signal.SIGTERM)  # they finish their transactions too
    await server.stop()
    if receivers is not None:
        await reap(receivers, config.limits.shutdown_grace + 5)
    log.event("stopped")
    return 0


def _command_name() -> str:
    """How the user started us, so the hint can be pasted as is (e.g. .venv/bin/postoffice)."""
    prog = Path(sys.argv[0])
    if prog.name != "postoffice":
        return "postoffice"
    try:
        return str(prog.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return "postoffice"


def _print_banner(config: Config, bound: list[tuple[str, str]]) -> None:
    names = {
        "smtp": "SMTP (port 25 role)",
        "submission": "submission, STARTTLS",
        "submissions": "submission, implicit TLS",
        "pop3": "POP3, STLS",
        "pop3s": "POP3, implicit TLS",
        "imap": "IMAP, STARTTLS",
        "imaps": "IMAP, implicit TLS",
    }
    print(f"postoffice {config.hostname} — data in {config.data_dir}", flush=True)
    for role, addr in bound:
        print(f"  {names[role]:<24} listening on {addr}", flush=True)
    print(
        f"Add a user:  {_command_name()} user add alice@localhost"
        f" --data-dir {config.data_dir}\nStop with Ctrl-C.",
        flush=True,
    )
