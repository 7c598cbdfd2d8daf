"""The IMAP figures' client: Python's imaplib against postoffice and Dovecot alike.

Both servers hold the same generated mailbox (bench/pop3.py's large maildrop, hard-linked into
each one's INBOX) and are warmed once before the rounds (one SELECT each, so that both have
indexed it); then each round measures, for each server, one session of `read_mailbox`:

- LOGIN + SELECT INBOX: from the connect to the tagged OK of SELECT, and SELECT alone
  (both servers verify the same argon2id password hash: bench/dovecot.py);
- ``UID FETCH 1:* (UID FLAGS RFC822.SIZE)``: one command, every message's UID, flags, size;
- every body: ``UID FETCH a:b BODY.PEEK[]`` over the UIDs just listed, `BODY_CHUNK` at a
  time (PEEK: nothing changes, the next round finds the mailbox as it was);

and `idle_latency`: a session SELECTs INBOX and goes into IDLE, one message is delivered the
way the system delivers mail, and the time from the start of the delivery until the
untagged EXISTS is read is one sample. The delivery is each system's own: for postoffice an
SMTP transaction (MAIL, RCPT, DATA) on an already open session into the server, which spools
the message, delivers it to the Maildir and wakes the idling session through the store's
notify hub; for Dovecot dovecot-lda, its delivery agent (a process per message, as an MTA's
mailbox_command runs it), after which Dovecot's IDLE notices the new file through inotify.
The delivered messages are expunged afterwards, so every round starts from the same mailbox,
and the bench waits `SETTLE` seconds before the next figure.

Standards: RFC 9051 (LOGIN, SELECT, UID FETCH, STORE, EXPUNGE), RFC 2177 (IDLE).
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import smtplib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

BODY_CHUNK = 500  # UIDs per UID FETCH of bodies
# After the IDLE deliveries, before the next figure: postoffice's index trusts a folder's
# mtimes only once they are 2 s old, so within 2 s of a change every command re-lists it.
# That is the figure of a mailbox that just changed, not of reading one (docs/performance.md).
SETTLE = 2.5
_EXISTS = re.compile(rb"\* (\d+) EXISTS\r\n")
_UID = re.compile(rb"UID (\d+)")
Deliver = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class ImapTarget:
    """Where a client logs in, as whom."""

    host: str
    port: int
    user: str
    password: str


@dataclass(frozen=True, slots=True)
class Reading:
    """One `read_mailbox` session: seconds for each step."""

    messages: int
    login: float  # connect and LOGIN
    select: float  # SELECT alone
    flags: float
    bodies: float


def _check(reply: tuple[str, list[object]], what: str) -> list[object]:
    status, data = reply
    if status != "OK":
        raise RuntimeError(f"{what}: {status} {data!r}")
    return data


def _open(target: ImapTarget, timeout: float) -> tuple[imaplib.IMAP4, int, float]:
    """Connect, LOGIN, SELECT INBOX; the client, the message count, when LOGIN completed."""
    client = imaplib.IMAP4(target.host, target.port, timeout=timeout)
    try:
        _check(client.login(target.user, target.password), "LOGIN")
        logged_in = time.perf_counter()
        (count,) = _check(client.select("INBOX"), "SELECT")
    except BaseException:
        client.shutdown()
        raise
    return client, int(count), logged_in  # type: ignore[call-overload]


def _close(client: imaplib.IMAP4) -> None:
    try:
        client.logout()
    except (OSError, imaplib.IMAP4.error):
        client.shutdown()


def read_mailbox(target: ImapTarget, timeout: float) -> Reading:
    """LOGIN + SELECT, the UID/FLAGS/size listing, every body; raise if a message is missing."""
    start = time.perf_counter()
    client, count, logged_in = _open(target, timeout)
    try:
        selected = time.perf_counter()
        listing = _check(client.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE)"), "UID FETCH")
        uids = [int(m[1]) for line in listing if (m := _UID.search(line))]  # type: ignore[arg-type]
        listed = time.perf_counter()
        if len(uids) != count:
            raise RuntimeError(f"UID FETCH listed {len(uids)} of {count} messages")
        bodies = 0
        for first in range(0, count, BODY_CHUNK):
            chunk = uids[first : first + BODY_CHUNK]
            data = _check(client.uid("FETCH", f"{chunk[0]}:{chunk[-1]}", "BODY.PEEK[]"), "bodies")
            bodies += sum(isinstance(item, tuple) for item in data)
        if bodies != count:
            raise RuntimeError(f"fetched {bodies} of {count} bodies")
        done = time.perf_counter()
    finally:
        _close(client)
    return Reading(count, logged_in - start, selected - logged_in, listed - selected, done - listed)


def idle_latency(
    target: ImapTarget, deliver: Deliver, message: bytes, *, deliveries: int, timeout: float
) -> list[float]:
    """Seconds from the start of each delivery to the EXISTS read in IDLE, one per delivery."""
    client, count, _ = _open(target, timeout)
    base = count
    latencies: list[float] = []
    try:
        for number in range(deliveries):
            tag = f"IDLE{number}".encode()
            client.send(tag + b" IDLE\r\n")
            if not client.readline().startswith(b"+"):
                raise RuntimeError("IDLE was not accepted")
            start = time.perf_counter()
            deliver(message)
            count = _await_exists(client, count, start + timeout)
            latencies.append(time.perf_counter() - start)
            client.send(b"DONE\r\n")
            while not (line := client.readline()).startswith(tag):
                if not line:
                    raise RuntimeError("connection closed in IDLE")
            time.sleep(0.1)  # the servers settle: each sample is one delivery on its own
        if count > base:  # take the delivered messages away again
            _check(client.store(f"{base + 1}:*", "+FLAGS.SILENT", "(\\Deleted)"), "STORE")
            _check(client.expunge(), "EXPUNGE")
    finally:
        _close(client)
    time.sleep(SETTLE)
    return latencies


def _await_exists(client: imaplib.IMAP4, count: int, deadline: float) -> int:
    """Read untagged lines until an EXISTS above `count`; the new count."""
    sock = client.socket()
    before = sock.gettimeout()
    while True:
        sock.settimeout(max(deadline - time.perf_counter(), 0.001))
        try:
            line = client.readline()
        except TimeoutError as exc:
            raise RuntimeError("no EXISTS in IDLE before the timeout") from exc
        if not line:
            raise RuntimeError("connection closed in IDLE")
        found = _EXISTS.fullmatch(line)
        if found is not None and int(found[1]) > count:
            sock.settimeout(before)
            return int(found[1])


@contextlib.contextmanager
def smtp_delivery(host: str, port: int, sender: str, recipient: str) -> Iterator[Deliver]:
    """postoffice's delivery: one SMTP transaction per message on one open session."""
    with smtplib.SMTP(host, port, timeout=30) as smtp:
        smtp.ehlo("client.bench.test")

        def deliver(message: bytes) -> None:
            smtp.sendmail(sender, [recipient], message)  # raises unless accepted

        yield deliver
