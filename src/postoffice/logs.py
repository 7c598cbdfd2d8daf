"""Event logging: one line per event (connect, transaction, queued, delivered …).

Lines are `key=value` text for people or one JSON object per line for
machines (`--log-format json`). Every event names the queue id, client,
sender, recipients, status and delay where they apply. Secrets never reach
this module: callers pass only envelope data and reply texts.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Protocol, TextIO

_LEVELS = {"debug": 10, "info": 20, "warning": 30}


class Recorder(Protocol):
    """Where events about one message also go (the trace journal)."""

    def record(self, qid: str, event: str, /, **fields: Any) -> None: ...


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
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            parts = " ".join(f"{k}={_text(v)}" for k, v in data.items())
            line = f"{stamp}Z {kind} {parts}".rstrip()
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def warning(self, kind: str, **fields: Any) -> None:
        self.event(kind, level="warning", **fields)


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text
