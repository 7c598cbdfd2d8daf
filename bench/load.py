"""Load generators: smtp-source for rates, an asyncio SMTP client for latency and scaling.

`smtp_source` runs Postfix's smtp-source (a C program, so the client costs little) and
watches the recipient's Maildir while it runs: it returns when the tool has finished (the
accept time) and when the last message has reached `new/` (the end-to-end time).

`smtp_load` is our own client for what smtp-source cannot tell: it opens `sessions`
connections (untimed), then sends `messages` 4 KiB messages over them, one transaction at a
time per session, and records for each the time from the last byte of DATA (`.` CRLF) to the
`250`. `idle_sessions` opens connections that greet, say EHLO and then wait, for the memory
figure. Every wait is bounded by a timeout; nothing here talks to anything but the address
it is given (always loopback).

Standards: RFC 5321 §3.3 (the mail transaction), §4.2 (multi-line replies), §4.5.2
(dot-stuffing: the generated body has no line starting with ".").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from postoffice.testing.postfix import postfix_tool

MESSAGE_SIZE = 4096
_CONNECT_AT_ONCE = 50  # parallel connects: stays under every listen backlog
_POLL = 0.05  # seconds between two looks at a Maildir while a load runs


class LoadError(RuntimeError):
    """The server refused, stalled or broke a session; the figure has no number this round."""


@dataclass(frozen=True, slots=True)
class SourceRun:
    """One smtp-source run: seconds until it exited, and until all mail was in the Maildir."""

    accepted: float
    delivered: float


@dataclass(slots=True)
class LoadRun:
    """One `smtp_load` run."""

    elapsed: float = 0.0  # first MAIL to last 250, all sessions
    latencies: list[float] = field(default_factory=list)  # end of DATA → 250, seconds
    samples: list[int] = field(default_factory=list)  # server memory (KiB), before and after


def maildir_count(maildir: Path) -> int:
    """Messages in `new/` and `cur/` (0 before the Maildir exists)."""
    total = 0
    for sub in ("new", "cur"):
        with contextlib.suppress(FileNotFoundError):
            total += len(os.listdir(maildir / sub))
    return total


def clear_maildir(maildir: Path) -> None:
    """Empty the Maildir between runs, so that every run starts empty: the files move to a
    directory beside it, deleted with the bench's temporary directory at the end.

    Not deleted now: on ext4 without a journal (this machine's file system) the inode
    allocator skips every inode freed in the last minutes, so each file any server created
    in the next run walked past the thousands just deleted: the run measured the cleanup
    before it (accepted, 20 sessions, in two runs of `make bench` a few minutes apart:
    Postfix 767-964 msg/s deleting, 1,024-1,385 moving; postoffice 920-962 and 1,221-1,648;
    docs/performance.md).
    """
    trash = maildir.parent / f"{maildir.name}.bench-trash"
    trash.mkdir(exist_ok=True)
    for sub in ("new", "cur"):
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(maildir / sub):
                os.rename(maildir / sub / name, trash / f"{sub}-{name}")


def smtp_source(
    host: str,
    port: int,
    *,
    sessions: int,
    messages: int,
    reuse: bool,
    sender: str,
    recipient: str,
    maildir: Path,
    timeout: float,
) -> SourceRun:
    """Run smtp-source against host:port and wait for `messages` more files in `maildir`."""
    tool = postfix_tool("smtp-source")
    if tool is None:
        raise FileNotFoundError("smtp-source is not installed (Debian package postfix)")
    expected = maildir_count(maildir) + messages
    command = [
        tool, "-s", str(sessions), "-m", str(messages), "-l", str(MESSAGE_SIZE),
        "-f", sender, "-t", recipient, "-M", "client.bench.test",
        *(["-d"] if reuse else []), f"{host}:{port}",
    ]  # fmt: skip
    start = time.perf_counter()
    deadline = start + timeout
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    accepted = delivered = None
    try:
        while accepted is None or delivered is None:
            now = time.perf_counter()
            if accepted is None and process.poll() is not None:
                accepted = now - start
                if process.returncode != 0:
                    said = process.stdout.read().decode(errors="replace") if process.stdout else ""
                    raise LoadError(f"smtp-source exited {process.returncode}: {said[-500:]}")
            if delivered is None and maildir_count(maildir) >= expected:
                delivered = now - start
            if now > deadline:
                raise LoadError(
                    f"{host}:{port}: {maildir_count(maildir) - expected + messages} of "
                    f"{messages} messages delivered after {timeout:.0f}s"
                )
            time.sleep(_POLL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout:
            process.stdout.close()
    return SourceRun(accepted=accepted, delivered=max(delivered, accepted))


def message(sender: str, recipient: str, size: int = MESSAGE_SIZE) -> bytes:
    """A plain-text message of about `size` octets after its header, CRLF, no leading dots."""
    header = (
        f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: bench\r\n"
        f"Message-ID: <bench@client.bench.test>\r\n\r\n"
    ).encode()
    line = b"La la la, the quick brown fox jumps over the lazy dog; 0123456789 ABCDEF\r\n"
    body = line * (size // len(line) + 1)
    return header + body[:size].rstrip(b"\r\n") + b"\r\n"


async def _reply(reader: asyncio.StreamReader) -> bytes:
    """One (possibly multi-line) reply; its last line."""
    while True:
        line = await reader.readline()
        if len(line) < 4:
            raise LoadError(f"connection closed or garbled reply: {line!r}")
        if line[3:4] != b"-":
            return line


async def _expect(reader: asyncio.StreamReader, code: bytes) -> None:
    line = await _reply(reader)
    if not line.startswith(code):
        raise LoadError(f"expected {code.decode()}, got {line.decode(errors='replace').strip()}")


Session = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@contextlib.asynccontextmanager
async def _sessions(host: str, port: int, count: int) -> AsyncIterator[list[Session]]:
    """`count` greeted sessions after EHLO; QUIT and closed on the way out."""
    gate = asyncio.Semaphore(_CONNECT_AT_ONCE)
    opened: list[Session] = []

    async def one() -> None:
        async with gate:
            reader, writer = await asyncio.open_connection(host, port)
            opened.append((reader, writer))
            await _expect(reader, b"220")
            writer.write(b"EHLO client.bench.test\r\n")
            await _expect(reader, b"250")

    try:
        await asyncio.gather(*(one() for _ in range(count)))
        yield opened
    finally:
        for _reader, writer in opened:
            with contextlib.suppress(OSError):
                writer.write(b"QUIT\r\n")
            writer.close()
        for _reader, writer in opened:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@dataclass(slots=True)
class _Work:
    """What every session of one `smtp_load` run shares: the commands and a message budget."""

    mail: bytes
    rcpt: bytes
    payload: bytes  # the message, dot-terminated
    left: int
    run: LoadRun


async def _send(session: Session, work: _Work) -> None:
    reader, writer = session
    clock = time.perf_counter
    while work.left > 0:
        work.left -= 1
        writer.write(work.mail)
        await _expect(reader, b"250")
        writer.write(work.rcpt)
        await _expect(reader, b"250")
        writer.write(b"DATA\r\n")
        await _expect(reader, b"354")
        writer.write(work.payload)
        started = clock()
        await _expect(reader, b"250")
        work.run.latencies.append(clock() - started)


async def _load(
    host: str,
    port: int,
    *,
    sessions: int,
    messages: int,
    sender: str,
    recipient: str,
    sample: Callable[[], int] | None,
) -> LoadRun:
    run = LoadRun()
    work = _Work(
        mail=f"MAIL FROM:<{sender}>\r\n".encode(),
        rcpt=f"RCPT TO:<{recipient}>\r\n".encode(),
        payload=message(sender, recipient) + b".\r\n",
        left=messages,
        run=run,
    )
    async with _sessions(host, port, sessions) as opened:
        if sample is not None:
            run.samples.append(await asyncio.to_thread(sample))
        start = time.perf_counter()
        await asyncio.gather(*(_send(session, work) for session in opened))
        run.elapsed = time.perf_counter() - start
        if sample is not None:
            run.samples.append(await asyncio.to_thread(sample))
    return run


def smtp_load(
    host: str,
    port: int,
    *,
    sessions: int,
    messages: int,
    sender: str,
    recipient: str,
    timeout: float,
    sample: Callable[[], int] | None = None,
) -> LoadRun:
    """Send `messages` over `sessions` concurrent sessions; latencies, elapsed, memory samples.

    `sample`, if given, is called (in a thread) once all sessions are open and once after the
    last message, with every session still open, and returns the server's memory in KiB.
    It is not called while the clock runs: reading /proc for a thousand Postfix processes
    would slow the client down.
    """

    async def bounded() -> LoadRun:
        async with asyncio.timeout(timeout):
            return await _load(
                host,
                port,
                sessions=sessions,
                messages=messages,
                sender=sender,
                recipient=recipient,
                sample=sample,
            )

    try:
        return asyncio.run(bounded())
    except TimeoutError:
        raise LoadError(f"{host}:{port}: not done after {timeout:.0f}s") from None
    except OSError as exc:
        raise LoadError(f"{host}:{port}: {exc}") from exc


def idle_sessions(
    host: str,
    port: int,
    *,
    sessions: int,
    settle: float,
    measure: Callable[[], int],
    timeout: float,
) -> int:
    """Open `sessions` sessions (greeting and EHLO), wait `settle` seconds, `measure()`."""

    async def hold() -> int:
        async with asyncio.timeout(timeout), _sessions(host, port, sessions):
            await asyncio.sleep(settle)
            return await asyncio.to_thread(measure)

    try:
        return asyncio.run(hold())
    except TimeoutError:
        message = f"{host}:{port}: {sessions} sessions not open after {timeout:.0f}s"
        raise LoadError(message) from None
    except OSError as exc:
        raise LoadError(f"{host}:{port}: {exc}") from exc
