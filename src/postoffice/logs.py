"""Event logging: one line per event (connect, transaction, queued, delivered …).

Lines are `key=value` text for people or one JSON object per line for
machines (`--log-format json`). Every event names the queue id, client,
sender, recipients, status and delay where they apply. Secrets never reach
this module: callers pass only envelope data and reply texts.

Lines logged on an event loop below warning level (connections, transactions,
queued, delivered …) are written together once the loop has finished its current
round of callbacks (`RoundFlush`), sparing a write per line: with a new connection per
message that was four writes a message, each one a release of the GIL the disk threads
compete for (a SIGKILL may lose that round's lines). A warning, or a line logged off
the loop, writes them first and itself at once, so the order is kept.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

_LEVELS = {"debug": 10, "info": 20, "warning": 30}


class Recorder(Protocol):
    """Where events about one message also go (the trace journal)."""

    def record(self, qid: str, event: str, /, **fields: Any) -> None: ...


class RoundFlush:
    """Calls `flush` once the running event loop has finished its current round.

    Writers call `request` after buffering: True means a flush is on its way (asked
    for earlier in this round, or now); False means no loop runs in this thread,
    so the caller must flush itself.
    """

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._loop: asyncio.AbstractEventLoop | None = None  # where a flush is waiting

    def request(self) -> bool:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if self._loop is not loop:  # (a loop that stopped before flushing is replaced)
            self._loop = loop
            loop.call_soon(self._run)
        return True

    def _run(self) -> None:
        self._loop = None
        self._flush()


class EventLog:
    """Writes events to a stream (stderr by default) in text or JSON.

    Events that name a queue id are also handed to `journal`, so that
    `postoffice trace` finds them later in the data dir.
    """

    def __init__(self, fmt: str = "text", level: str = "info", stream: TextIO | None = None):
        self.format = fmt
        self.level = _LEVELS[level]
        self.stream = stream if stream is not None else sys.stderr
        self.journal: Recorder | None = None
        self._lock = threading.Lock()
        self._lines: list[str] = []  # not written yet (see the module docstring)
        self._round = RoundFlush(self.flush)

    def configure(self, fmt: str, level: str) -> None:
        """Change format and level in place (SIGHUP reload)."""
        self.format = fmt
        self.level = _LEVELS[level]

    def event(self, kind: str, *, level: str = "info", **fields: Any) -> None:
        """Log one event; `fields` with value None are left out."""
        data = {k: v for k, v in fields.items() if v is not None}
        qid = data.get("qid")
        if self.journal is not None and isinstance(qid, str):
            self.journal.record(qid, kind, **{k: v for k, v in data.items() if k != "qid"})
        if _LEVELS[level] < self.level:
            return
        now = time.time()
        if self.format == "json":
            line = json.dumps({"ts": round(now, 3), "event": kind, **data}, default=str)
        else:
            parts = " ".join(f"{k}={_text(v)}" for k, v in data.items())
            line = f"{_stamp(int(now))}Z {kind} {parts}".rstrip()
        with self._lock:
            self._lines.append(line + "\n")
            if _LEVELS[level] < _LEVELS["warning"] and self._round.request():
                return
            self._write()

    def flush(self) -> None:
        """Write the lines still held back."""
        with self._lock:
            self._write()

    def _write(self) -> None:
        if self._lines:
            lines, self._lines = self._lines, []
            self.stream.write("".join(lines))
            self.stream.flush()

    def warning(self, kind: str, **fields: Any) -> None:
        self.event(kind, level="warning", **fields)


@functools.lru_cache(maxsize=1)
def _stamp(second: int) -> str:
    """The UTC time of a line, made once per second rather than once per line."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


_BARE = re.compile(r'[^\s"=]+')  # what needs no quotes (`\s` is str.isspace's set)


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    text = str(value)
    if _BARE.fullmatch(text) is None:
        return json.dumps(text, ensure_ascii=False)
    return text
