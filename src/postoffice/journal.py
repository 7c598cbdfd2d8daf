"""The trace journal: what happened to each message, kept so `postoffice trace` can tell it later.

Each `record` appends one JSON object per line (`{"ts", "qid", "event", …}`)
to `journal/YYYY-MM-DD.jsonl`, one file per UTC day. The current day's file
stays open; a line is written through a buffered handle, never fsynced: the
journal is for reading, the spool is the truth. Outside an event loop each line
is flushed at once; on a loop (the server) lines are flushed once the loop has
run its current round of callbacks, so the records of many messages share one
write (a SIGKILL may lose that round's records; `close` and reads flush first).
A write that fails (disk full) is swallowed and counted in `failures`, so tracing can
never break mail flow; a line cut short by such a failure or a crash is set
apart by a newline when the file is next opened, and readers skip lines that
do not parse. `find` reads every day in order: all records of a queue id, or,
for a Message-ID, of every queue id whose `queued` record carries it; either
way a `bounce` or `delay-warning` record pulls in the queue id of its DSN.
Old days are kept for now (retention and pruning are a later concern).

The events and the fields their writers give (absent or None fields are left out):
  queued       client (address, or the entry's client dict), helo, tls, auth, protocol,
               sender, rcpt (list), size, message_id
  dns          domain, mx (list of {name, preference, addresses}), or status and error
  connect      host, address, port, result ("ok", "reused" or why it failed)
  tls          host, address, port, version, cipher, verified
  transcript   host, address, port, lines (list of "C: …" / "S: …")
  attempt, delivered, deferred, failed, expired
               recipient, outcome, status, detail, remote_reply, mailbox, next_attempt
  stored       recipient, mailbox
  bounce, delay-warning   dsn (queue id of the notification), to
  held, released, deleted, flushed   via (control socket, or the spool directly)

Standards: none (an operator's record; RFC 5321 §4.4 trace headers stay in the message).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from postoffice.clock import Clock, SystemClock
from postoffice.logs import RoundFlush

logger = logging.getLogger(__name__)

Record = dict[str, Any]
_NOTICES = frozenset({"bounce", "delay-warning"})  # events naming the qid of a DSN they caused


def is_message_id(key: str) -> bool:
    """Whether `key` names a Message-ID (`<…>` or containing `@`) rather than a queue id."""
    return key.startswith("<") or "@" in key


def _ends_torn(path: Path) -> bool:
    """Whether `path` ends in a line cut short (by a crash or a failed write)."""
    try:
        with open(path, "rb") as file:
            if file.seek(0, os.SEEK_END) == 0:
                return False
            file.seek(-1, os.SEEK_END)
            return file.read(1) != b"\n"
    except FileNotFoundError:
        return False


def _well_formed(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("qid"), str)
        and isinstance(record.get("ts"), int | float)
    )


@functools.lru_cache(maxsize=1)
def _day(number: int) -> str:
    """The UTC date of day `number` since the epoch: the name of its file."""
    return time.strftime("%Y-%m-%d", time.gmtime(number * 86_400))


def _bare(message_id: str) -> str:
    return message_id.strip().strip("<>").strip()


class Journal:
    """The journal files in `directory`; see the module docstring."""

    def __init__(self, directory: Path, clock: Clock | None = None) -> None:
        self.directory = directory
        self.failures = 0  # records lost to write errors
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._day = ""
        self._failing = False
        self._unflushed = 0  # records written to the handle but not flushed yet
        self._round = RoundFlush(self.flush)

    # -- writing ---------------------------------------------------------------------------

    def record(self, qid: str, event: str, /, **fields: Any) -> None:
        """Append one record; never raises for a write failure (it is counted instead).

        `fields` with value None are left out, as are any named ts, qid or event.
        """
        now = self._clock.time()
        entry: Record = {"ts": round(now, 6), "qid": qid, "event": event}
        entry |= {k: v for k, v in fields.items() if v is not None and k not in entry}
        day = _day(int(now // 86_400))
        with self._lock:
            try:
                line = json.dumps(entry, default=str)
            except (TypeError, ValueError) as exc:  # a caller's odd value
                self._fail(exc, 1)
                return
            try:
                handle = self._handle(day)
                self._unflushed += 1
                handle.write(line.encode() + b"\n")
                if not self._round.request():
                    self._flush()
            except OSError as exc:  # disk full
                self._fail(exc, self._unflushed)

    def flush(self) -> None:
        """Write out the records still in the buffer."""
        with self._lock:
            try:
                self._flush()
            except OSError as exc:
                self._fail(exc, self._unflushed)

    def close(self) -> None:
        with self._lock:
            try:
                self._flush()
            except OSError as exc:
                self._fail(exc, self._unflushed)
            self._close()

    def _flush(self) -> None:
        if self._file is not None and self._unflushed:
            self._file.flush()
            self._failing = False
        self._unflushed = 0

    def _handle(self, day: str) -> BinaryIO:
        """The open file of `day`, opening it (and leaving the previous day) as needed."""
        if self._file is None or day != self._day:
            self._flush()  # the previous day's records, failing here rather than unseen
            self._close()
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{day}.jsonl"
            torn = _ends_torn(path)
            self._file = open(path, "ab")  # noqa: SIM115  # stays open for the day
            self._day = day
            if torn:
                self._file.write(b"\n")  # keep the next record apart from the cut line
        return self._file

    def _fail(self, exc: Exception, lost: int) -> None:
        if not self._failing:  # once per run of failures
            self._failing = True
            logger.warning("journal: cannot write to %s: %r", self.directory, exc)
        self.failures += lost
        if isinstance(exc, OSError):
            self._unflushed = 0
            self._close()  # reopen next time; the buffer may hold part of a line

    def _close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):  # the unflushed rest of a failed line is lost
                file.close()

    # -- reading ---------------------------------------------------------------------------

    def find(self, key: str) -> list[Record]:
        """Records of a queue id or a Message-ID (and of the DSNs they caused), in time order."""
        return self.records(self.related_qids([key]))

    def related_qids(self, keys: Iterable[str]) -> set[str]:
        """Queue ids named by `keys` (queue ids or Message-IDs), plus those of their DSNs."""
        qids: set[str] = set()
        message_ids: set[str] = set()
        for key in keys:
            if is_message_id(key):
                message_ids.add(_bare(key))
            else:
                qids.add(key)
        bounces: dict[str, set[str]] = {}
        for record in self._read():
            if record.get("event") == "queued" and message_ids:
                if _bare(str(record.get("message_id", ""))) in message_ids:
                    qids.add(record["qid"])
            elif record.get("event") in _NOTICES and "dsn" in record:
                bounces.setdefault(record["qid"], set()).add(str(record["dsn"]))
        todo = list(qids)
        while todo:
            for dsn in bounces.get(todo.pop(), set()) - qids:
                qids.add(dsn)
                todo.append(dsn)
        return qids

    def records(self, qids: Collection[str]) -> list[Record]:
        """Every record of `qids`, in time order."""
        found = [record for record in self._read() if record.get("qid") in qids]
        return sorted(found, key=lambda record: record["ts"])

    def _read(self) -> Iterator[Record]:
        """All well-formed records, day by day; damaged lines are skipped."""
        self.flush()
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("????-??-??.jsonl")):
            with open(path, "rb") as lines:
                for line in lines:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if _well_formed(record):
                        yield record
