"""Several processes receiving SMTP on the same ports, one delivering (`workers = N`).

One Python process uses one core for its Python work; reception is where that work
is (parsing, policy, headers, the store). With `workers > 1` the server binds its
SMTP ports (port 25 role, submission, submissions) *before* anything else, then forks
`workers - 1` receiver processes, which accept SMTP. Each has listening sockets
of its own on those ports (SO_REUSEPORT), and the kernel spreads new connections evenly
over them by a hash of the client's address and port: with one shared socket, whichever
process woke first took most of a burst of sessions and left another idle, and the
main process, which also delivers, answered its share of sessions slowest (A/B in
docs/performance.md). The first process is the only one that delivers, owns the control
socket, POP3 and IMAP: the queue has one scheduler and the mailboxes one notifier. It
has SMTP sockets of its own bound too. With delivery at reception (`[queue]
local_at_reception`, the default) mail for local users never reaches its queue, so it
has little delivery work left and listens on them from the start, taking its share of
sessions beside the receivers (A/B, 20 sessions: accepted 1.12x, p99 unchanged).
Otherwise it keeps them bound but not listening (the kernel gives connections only to
listening ones): delivering everything, it answered its sessions slowest. Either way it
accepts on them when a receiver ends before shutdown, so SMTP goes on being answered
whatever becomes of the receivers. A plain bind of each
address comes first and is closed again: it fails, with the usual one-line error, when
anything else holds the port, another server's SO_REUSEPORT sockets included, which the
shared-port binds themselves would join.

A receiver stores a message durably in the shared spool exactly as the main process
does, answers 250, and then writes the entry (its JSON, one line) to its own pipe to the
main process, which schedules it without reading it back from the disk (one pipe per
receiver, so lines of two receivers never mix). A message it delivered at reception
(`[queue] local_at_reception`) is a line naming each mailbox instead: the main process
wakes the IMAP sessions idling on it, which only its own notifier reaches. A
receiver waits for the main process's go before it accepts, because the main process
first recovers the spool, which removes what a cut-off store left behind. Receivers
fork before any event loop, thread or database exists, and ask the kernel to send them
SIGTERM when the main process dies, so they never outlive it. Per-client limits
(connections per IP, rates, login lockouts) are counted per process: with N workers a
client may get up to N - 1 times as much before it is stopped (N once the main process
answers SMTP too).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import itertools
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from postoffice.config import Config
from postoffice.logs import RoundFlush
from postoffice.servers.binding import BACKLOG, Endpoint, bind, endpoints

SMTP_ROLES = ("smtp", "submission", "submissions")
_DELIVERED = b"D "  # a pipe line naming a mailbox delivered to at reception; JSON starts with {
_PR_SET_PDEATHSIG = 1  # prctl(2)


@dataclass
class Receiver:
    """The main process's view of one receiver process."""

    pid: int
    queued: int  # read end of its pipe of queue ids


@dataclass
class ReceiverSide:
    """What a receiver process keeps: its end of the pipe and the go signal."""

    queued: int  # write end of its pipe of queue ids
    go: int  # read end: one byte when the main process has recovered the spool


@dataclass
class Prebound:
    """A process's own SMTP sockets, bound before forking; in the main process also the
    receivers (their sockets listen, the main process's stay bound until it takes over)."""

    sockets: dict[str, list[socket.socket]]
    receivers: list[Receiver] = field(default_factory=list)
    go: int = -1  # write end of the go pipe (main process only)


def smtp_addresses(config: Config) -> dict[str, tuple[str, ...]]:
    """The configured addresses of each SMTP listener, by listener name."""
    return {
        "smtp": config.smtp.listen,
        "submission": config.submission.listen,
        "submissions": config.submission.listen_tls,
    }


def _close(ports: dict[str, list[socket.socket]]) -> None:
    for sock in itertools.chain.from_iterable(ports.values()):
        sock.close()


def _bind_all(points: dict[str, list[Endpoint]], *, shared: bool) -> dict[str, list[socket.socket]]:
    """`bind` for every listener; nothing stays bound when one address fails."""
    bound: dict[str, list[socket.socket]] = {}
    try:
        for name, where in points.items():
            bound[name] = bind(where, shared=shared)
    except OSError:
        _close(bound)
        raise
    return bound


def _ports_for_each(config: Config, processes: int) -> list[dict[str, list[socket.socket]]]:
    """SMTP sockets for each of `processes`, all on the same ports (SO_REUSEPORT).

    A plain bind first, closed again: an error if anything holds a port, and the port
    numbers the shared binds then use (a configured port 0 is chosen once).
    """
    probes = _bind_all(
        {name: endpoints(addrs) for name, addrs in smtp_addresses(config).items()}, shared=False
    )
    points = {
        name: [(sock.family, sock.type, sock.proto, sock.getsockname()) for sock in sockets]
        for name, sockets in probes.items()
    }
    _close(probes)
    sets: list[dict[str, list[socket.socket]]] = []
    try:
        for _ in range(processes):
            sets.append(_bind_all(points, shared=True))
    except OSError:
        for bound in sets:
            _close(bound)
        raise
    return sets


def prebind_and_fork(
    config: Config, run_receiver: Callable[[Prebound, ReceiverSide], int]
) -> Prebound | None:
    """Bind the SMTP sockets and fork the receivers; None in a single-process server.

    In a receiver this never returns: it runs `run_receiver` and exits with its status.
    """
    if config.workers <= 1:
        return None
    main, *theirs = _ports_for_each(config, config.workers)
    for ports in theirs:  # connections queue from now on, until the receiver accepts
        for sock in itertools.chain.from_iterable(ports.values()):
            sock.listen(BACKLOG)
    prebound = Prebound(main)
    go_read, prebound.go = os.pipe()
    gc.freeze()  # keep the collector off the imported objects: their pages stay shared
    for ports in theirs:
        queued_read, queued_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            for other in (main, *(p for p in theirs if p is not ports)):
                _close(other)
            prebound.sockets = ports
            os.close(queued_read)
            os.close(prebound.go)
            for receiver in prebound.receivers:
                os.close(receiver.queued)
            _die_with_parent()
            status = 1
            try:
                status = run_receiver(prebound, ReceiverSide(queued_write, go_read))
            finally:
                os._exit(status)
        os.close(queued_write)
        prebound.receivers.append(Receiver(pid, queued_read))
    os.close(go_read)
    for ports in theirs:
        _close(ports)
    return prebound


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the main one exits, however it ends."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def release(prebound: Prebound) -> None:
    """Main process: the spool is recovered, receivers may accept now."""
    with contextlib.suppress(OSError):
        os.write(prebound.go, b"g" * len(prebound.receivers))
        os.close(prebound.go)


async def wait_for_go(side: ReceiverSide) -> bool:
    """Receiver: wait for the main process's go; False if it went away first."""
    loop = asyncio.get_running_loop()
    got = await loop.run_in_executor(None, os.read, side.go, 1)
    os.close(side.go)
    return got == b"g"


class QueuedPipe:
    """Receiver: tells the main process of each message it took, never blocking.

    Two kinds of line: a spooled entry (its JSON, as stored), and `D <folder>\t<address>`
    for a mailbox it delivered to at reception (the main process wakes the IMAP sessions
    idling on it). Lines are written once the loop has run its round, so that the
    messages of one round share one write, and the main process one wake-up.
    """

    def __init__(self) -> None:
        self._transport: asyncio.WriteTransport | None = None
        self._lines: list[bytes] = []
        self._round = RoundFlush(self._flush)

    async def open(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.connect_write_pipe(
            asyncio.Protocol, os.fdopen(fd, "wb", buffering=0)
        )

    def queued(self, envelope: bytes) -> None:
        """`envelope`: the entry's JSON as the spool stored it, not encoded again."""
        self._add(envelope)  # one line: JSON escapes newlines

    def delivered(self, address: str, folder: str) -> None:
        self._add(_DELIVERED + f"{folder}\t{address}".encode())

    def _add(self, line: bytes) -> None:
        self._lines.append(line + b"\n")
        if not self._round.request():
            self._flush()

    def _flush(self) -> None:
        lines, self._lines = self._lines, []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(lines))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _QueuedReader(asyncio.Protocol):
    def __init__(
        self,
        on_entry: Callable[[bytes], None],
        on_delivered: Callable[[set[tuple[str, str]]], None],
        on_exit: Callable[[], None],
    ) -> None:
        self._on_entry = on_entry
        self._on_delivered = on_delivered
        self._on_exit = on_exit
        self._partial = b""

    def data_received(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        delivered: set[tuple[str, str]] = set()  # one wake-up per mailbox and read
        for line in lines:
            if line.startswith(_DELIVERED):
                folder, _, address = line[len(_DELIVERED) :].decode().partition("\t")
                delivered.add((address, folder))
            else:
                self._on_entry(line)
        if delivered:
            self._on_delivered(delivered)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_exit()


async def listen_for_queued(
    prebound: Prebound,
    on_entry: Callable[[bytes], None],
    on_delivered: Callable[[set[tuple[str, str]]], None],
    on_exit: Callable[[int], None],
) -> None:
    """Main process: `on_entry` gets each entry a receiver spooled (JSON), `on_delivered` the
    (address, folder) pairs it delivered to at reception, `on_exit` its end.

    `on_exit` gets the receiver's pid once its pipe closes: it has ended.
    """
    loop = asyncio.get_running_loop()
    for receiver in prebound.receivers:
        await loop.connect_read_pipe(
            lambda pid=receiver.pid: _QueuedReader(on_entry, on_delivered, lambda: on_exit(pid)),
            os.fdopen(receiver.queued, "rb", buffering=0),
        )


def signal_receivers(prebound: Prebound, signum: int) -> None:
    for receiver in prebound.receivers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(receiver.pid, signum)


async def reap(prebound: Prebound, timeout: float) -> None:
    """Main process at shutdown: wait for the receivers, killing those that linger."""

    def wait_all() -> None:
        for receiver in prebound.receivers:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(receiver.pid, 0)

    try:
        await asyncio.wait_for(asyncio.to_thread(wait_all), timeout)
    except TimeoutError:
        signal_receivers(prebound, signal.SIGKILL)
        await asyncio.to_thread(wait_all)
