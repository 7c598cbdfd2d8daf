"""The figures of the benchmark: what each measures, how, and against which peer.

Each `Figure` collects one number per round per system; the report takes medians. The
measuring functions run one system once and leave it as they found it: every message sent
is waited for in the recipient's Maildir and then deleted, so the next run (often another
system's) starts on a quiet machine and an empty Maildir.

| key | what | how |
| --- | ---- | --- |
| a   | SMTP accept, 20 sessions, reuse | smtp-source -s 20 -d: messages / time to its exit |
| b   | the same, a connection per message | smtp-source -s 20 |
| c   | the same, one session | smtp-source -s 1 -d |
| d   | end to end, the load of (a) | messages / time until the last is in the Maildir |
| e   | relay A → B with STARTTLS | smtp-source -s 20 -d into A, until all are in B's Maildir |
| f   | POP3 download, 5,000 and 10,000 | poplib: USER/PASS, STAT, UIDL, RETR each, QUIT |
| g   | memory, 1,000 idle SMTP sessions | after greeting and EHLO: RSS, or PSS sum (Postfix) |
| h   | end of DATA → 250, p50 and p99 | our asyncio client, 20 sessions, the load of (a) |
| i   | IMAP, the 10,000-message mailbox | imaplib: SELECT, UID FETCH, bodies, IDLE (imap.py) |

Standards: none of its own.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from bench.imap import Deliver, ImapTarget, Reading, idle_latency, read_mailbox, smtp_delivery
from bench.load import (
    LoadRun,
    clear_maildir,
    idle_sessions,
    maildir_count,
    message,
    smtp_load,
    smtp_source,
)
from bench.pop3 import Fetch, fetch_all
from bench.procs import footprint_kib
from bench.systems import IMAP_USER, PASSWORD, SENDER, SmtpTarget, Systems

LATENCY_SESSIONS = 20


@dataclass(slots=True)
class Figure:
    """One row of the table: samples per system, one per round."""

    key: str
    title: str
    unit: str
    peer: str
    target: str  # the goal, as the issue states it
    higher_is_better: bool = True
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, system: str, value: float) -> None:
        self.samples.setdefault(system, []).append(value)

    def median(self, system: str) -> float | None:
        values = self.samples.get(system)
        return statistics.median(values) if values else None

    def ratio(self) -> float | None:
        """How many times better postoffice does than the peer (> 1: postoffice ahead)."""
        ours, theirs = self.median("postoffice"), self.median(self.peer)
        if not ours or not theirs:
            return None
        return ours / theirs if self.higher_is_better else theirs / ours


def catalogue(maildrops: tuple[int, int], idle: int) -> dict[str, Figure]:
    """Every figure of the table, in the order of the issue (counts as this run uses them)."""
    rate = "msg/s"
    small, large = (f"{count:,}" for count in maildrops)
    figures = [
        Figure("a", "(a) SMTP accept, 20 sessions, connection reuse", rate, "postfix", "≥ 1.5x"),
        Figure("a-sink", "(a) the same vs a minimal aiosmtpd Maildir server", rate, "aiosmtpd", ""),
        Figure("b", "(b) SMTP accept, new connection per message", rate, "postfix", "≥ 1.0x"),
        Figure("c", "(c) SMTP accept, single session", rate, "postfix", "≥ 1.0x"),
        Figure("d", "(d) end to end, 20 sessions → recipient's Maildir", rate, "postfix", "≥ 1.0x"),
        Figure("e", "(e) relay A → B (STARTTLS), into A → B's Maildir", rate, "postfix", "≥ 1.0x"),
        Figure("f-small", f"(f) POP3 download, {small} messages", rate, "dovecot", "≥ 1.0x"),
        Figure("f-large", f"(f) POP3 download, {large} messages", rate, "dovecot", "≥ 1.0x"),
        Figure(
            "f-login", f"(f) POP3 login to the {large}-message maildrop", "ms", "dovecot", "",
            higher_is_better=False,
        ),
        Figure(
            "g", f"(g) memory, {idle:,} idle SMTP sessions", "MiB", "postfix", "≤ 64 MiB",
            higher_is_better=False,
        ),
        Figure(
            "h50", "(h) latency p50, end of DATA → 250", "ms", "postfix", "",
            higher_is_better=False,
        ),
        Figure(
            "h99", "(h) latency p99, end of DATA → 250", "ms", "postfix", "≤ Postfix",
            higher_is_better=False,
        ),
        Figure(
            "i-select", f"(i) IMAP LOGIN + SELECT of the {large}-message INBOX", "ms", "dovecot",
            "≥ 1.0x", higher_is_better=False,
        ),
        Figure(
            "i-select-only", f"(i) IMAP SELECT alone, {large} messages", "ms", "dovecot", "",
            higher_is_better=False,
        ),
        Figure(
            "i-flags", "(i) IMAP UID FETCH 1:* (UID FLAGS RFC822.SIZE)", "ms", "dovecot",
            "≥ 1.0x", higher_is_better=False,
        ),
        Figure("i-bodies", "(i) IMAP every body, UID FETCH BODY.PEEK[]", rate, "dovecot", "≥ 1.0x"),
        Figure(
            "i-idle", "(i) IMAP IDLE, start of delivery → EXISTS (median)", "ms", "dovecot",
            "≥ 1.0x", higher_is_better=False,
        ),
    ]  # fmt: skip
    return {figure.key: figure for figure in figures}


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (fraction 0.99 for p99)."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def accept(
    target: SmtpTarget, *, sessions: int, messages: int, reuse: bool, timeout: float
) -> tuple[float, float]:
    """smtp-source at `target`: (accepted msg/s, end-to-end msg/s); the Maildir is emptied."""
    try:
        run = smtp_source(
            target.host,
            target.port,
            sessions=sessions,
            messages=messages,
            reuse=reuse,
            sender=SENDER,
            recipient=target.recipient,
            maildir=target.maildir,
            timeout=timeout,
        )
    except BaseException:
        drain(target, timeout=timeout)
        raise
    clear_maildir(target.maildir)  # smtp-source returns once every message is there
    return messages / run.accepted, messages / run.delivered


def latency(target: SmtpTarget, *, messages: int, timeout: float) -> LoadRun:
    """Our client with the load of (a): the run, with per-message latencies."""
    try:
        run = smtp_load(
            target.host,
            target.port,
            sessions=LATENCY_SESSIONS,
            messages=messages,
            sender=SENDER,
            recipient=target.recipient,
            timeout=timeout,
        )
    except BaseException:
        drain(target, timeout=timeout)
        raise
    drain(target, expected=messages, timeout=timeout)
    return run


def scale(target: SmtpTarget, *, sessions: int, messages: int, timeout: float) -> dict[str, float]:
    """Rate, p99 and peak memory with `sessions` concurrent sessions."""
    target.shed_idle()
    try:
        run = smtp_load(
            target.host,
            target.port,
            sessions=sessions,
            messages=messages,
            sender=SENDER,
            recipient=target.recipient,
            timeout=timeout,
            sample=lambda: footprint_kib(target.pids()),
        )
    except BaseException:
        drain(target, timeout=timeout)
        raise
    drain(target, expected=messages, timeout=timeout)
    return {
        "rate": messages / run.elapsed,
        "p50_ms": percentile(run.latencies, 0.50) * 1000,
        "p99_ms": percentile(run.latencies, 0.99) * 1000,
        "memory_mib": max(run.samples) / 1024,
    }


def idle_memory(target: SmtpTarget, *, sessions: int, timeout: float) -> float:
    """MiB the server holds with `sessions` idle sessions open."""
    target.shed_idle()
    kib = idle_sessions(
        target.host,
        target.port,
        sessions=sessions,
        settle=1.0,
        measure=lambda: footprint_kib(target.pids()),
        timeout=timeout,
    )
    return kib / 1024


def pop3(systems: Systems, system: str, user: str, timeout: float) -> Fetch:
    """Download `user`'s maildrop from postoffice or Dovecot."""
    if system == "postoffice":
        server = systems.postoffice
        return fetch_all(server.host, server.pop3_port, f"{user}@po.test", PASSWORD, timeout)
    dovecot = systems.dovecot
    return fetch_all(dovecot.address, dovecot.port, user, PASSWORD, timeout)


def _imap_target(systems: Systems, system: str) -> ImapTarget:
    if system == "postoffice":
        server = systems.postoffice
        return ImapTarget(server.host, server.imap_port, f"{IMAP_USER}@po.test", PASSWORD)
    dovecot = systems.dovecot
    return ImapTarget(dovecot.address, dovecot.imap_port, IMAP_USER, PASSWORD)


def imap_read(systems: Systems, system: str, timeout: float) -> Reading:
    """One imaplib session reading the IMAP user's whole mailbox (bench/imap.py)."""
    return read_mailbox(_imap_target(systems, system), timeout)


@contextlib.contextmanager
def _delivery(systems: Systems, system: str) -> Iterator[Deliver]:
    """Each system's own way into the IMAP user's INBOX: SMTP, or dovecot-lda."""
    if system == "postoffice":
        server = systems.postoffice
        with smtp_delivery(server.host, server.smtp_port, SENDER, f"{IMAP_USER}@po.test") as send:
            yield send
    else:
        yield lambda message: systems.dovecot.deliver(IMAP_USER, message)


def imap_idle(systems: Systems, system: str, deliveries: int, timeout: float) -> list[float]:
    """Seconds from the start of each delivery to the EXISTS in IDLE."""
    data = message(SENDER, f"{IMAP_USER}@bench.test")
    with _delivery(systems, system) as deliver:
        return idle_latency(
            _imap_target(systems, system), deliver, data, deliveries=deliveries, timeout=timeout
        )


def drain(target: SmtpTarget, *, expected: int | None = None, timeout: float) -> None:
    """Wait for the mail still on its way, then empty the Maildir.

    With `expected`, until that many messages are there; without (after a failed run),
    until the count has stood still for two seconds.
    """
    deadline = time.monotonic() + timeout
    last, still_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = maildir_count(target.maildir)
        if expected is not None and count >= expected:
            break
        if count != last:
            last, still_since = count, time.monotonic()
        elif expected is None and time.monotonic() - still_since > 2.0:
            break
        time.sleep(0.1)
    clear_maildir(target.maildir)
