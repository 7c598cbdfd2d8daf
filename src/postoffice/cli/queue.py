"""`postoffice queue list|show|flush|hold|release|delete`: look at and steer the mail queue.

Looking (list, show) reads the spool on disk, so it works whether or not a
server runs. Acting goes through the control socket of a running server, so
its scheduler knows at once; with none running, hold/release/delete change
the spool directly (`queue/admin.py`) and flush has nothing to do, as the
next start tries everything. Queue ids are accepted in any letter case.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import click

from postoffice.cli.common import CliError, config_options, load_config, user_errors
from postoffice.control import ControlError, ControlUnavailable, request
from postoffice.datadir import Paths
from postoffice.journal import Journal
from postoffice.queue.admin import OFFLINE, unknown
from postoffice.queue.entry import QueueEntry, QueueState
from postoffice.queue.spool import Spool, UnknownQid

_errors = user_errors(ControlError, OSError)
_LAST_ERROR_WIDTH = 60
_DONE = {"hold": "held", "release": "released", "delete": "deleted"}


def _paths(config_path: Path | None, data_dir: Path | None) -> Paths:
    return Paths(load_config(config_path, data_dir).data_dir)


def _load(spool: Spool, qid: str) -> QueueEntry:
    try:
        return spool.load(qid)
    except UnknownQid:
        raise CliError(unknown(qid)) from None


@click.group()
def queue() -> None:
    """The mail queue: messages waiting for delivery."""


@queue.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for machines.")
@config_options
@_errors
def queue_list(as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """List queued messages, oldest first."""
    entries = Spool(_paths(config_path, data_dir).queue).list()
    if as_json:
        click.echo(json.dumps([entry_json(entry) for entry in entries], indent=2))
        return
    if not entries:
        click.echo("the queue is empty")
        return
    now = time.time()
    header = ("ID", "AGE", "SIZE", "SENDER", "RECIPIENTS", "STATUS", "NEXT", "LAST ERROR")
    click.echo(_table([header, *(_row(entry, now) for entry in entries)]))
    held = sum(entry.state is QueueState.HOLD for entry in entries)
    click.echo(f"{len(entries)} message(s), {_size(sum(e.size for e in entries))}, {held} held")


@queue.command("show")
@click.argument("qid")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for machines.")
@config_options
@_errors
def queue_show(qid: str, as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Show one message: envelope, state of each recipient, headers."""
    spool = Spool(_paths(config_path, data_dir).queue)
    qid = qid.upper()
    entry = _load(spool, qid)
    try:
        with spool.open_message(qid) as message:
            headers = _headers(message.read(256 * 1024))
    except UnknownQid:  # delivered and removed since the state file was read
        raise CliError(unknown(qid)) from None
    if as_json:
        click.echo(json.dumps(entry_json(entry) | {"headers": headers}, indent=2))
        return
    for line in _describe(entry, time.time()):
        click.echo(line)
    click.echo("\nHeaders:")
    for line in headers.splitlines():
        click.echo(f"  {line}")


@queue.command("flush")
@click.argument("qid", required=False)
@config_options
@_errors
def queue_flush(qid: str | None, config_path: Path | None, data_dir: Path | None) -> None:
    """Try deferred messages (all, or QID) now."""
    paths = _paths(config_path, data_dir)
    qid = qid.upper() if qid else None
    try:
        result = request(paths.control_socket, "flush", qid=qid)
    except ControlUnavailable:
        if qid is not None:
            _load(Spool(paths.queue), qid)
        click.echo("no server is running; the queue will be tried at the next start")
        return
    click.echo(f"{result.get('flushed', 0)} message(s) flushed")


def _act(command: str, qid: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Hold, release or delete through the running server, or on the spool if none runs."""
    paths = _paths(config_path, data_dir)
    qid = qid.upper()
    try:
        request(paths.control_socket, command, qid=qid)
    except ControlUnavailable:
        with contextlib.closing(Journal(paths.journal)) as journal:
            try:
                OFFLINE[command](Spool(paths.queue), journal, qid)
            except UnknownQid:
                raise CliError(unknown(qid)) from None
    click.echo(f"{qid} {_DONE[command]}")


@queue.command("hold")
@click.argument("qid")
@config_options
@_errors
def queue_hold(qid: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Keep a message from delivery until released."""
    _act("hold", qid, config_path, data_dir)


@queue.command("release")
@click.argument("qid")
@config_options
@_errors
def queue_release(qid: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Release a held message: it is tried at once."""
    _act("release", qid, config_path, data_dir)


@queue.command("delete")
@click.argument("qid")
@config_options
@_errors
def queue_delete(qid: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Delete a message from the queue, without a bounce."""
    _act("delete", qid, config_path, data_dir)


# -- rendering ---------------------------------------------------------------------------------


def entry_json(entry: QueueEntry) -> dict[str, Any]:
    """An entry as plain JSON values, its state included."""
    return {
        "qid": entry.qid,
        "state": entry.state.value,
        "arrival": entry.arrival,
        "size": entry.size,
        "sender": entry.sender,
        "message_id": entry.message_id,
        "client": entry.client,
        "attempts": entry.attempts,
        "last_attempt": entry.last_attempt or None,
        "next_attempt": entry.next_attempt if entry.state is QueueState.DEFERRED else None,
        "recipients": [
            {
                "address": r.address,
                "original": r.original,
                "status": r.status.value,
                "attempts": r.attempts,
                "last_status": r.last_status,
                "last_detail": r.last_detail,
                "remote_reply": r.remote_reply,
            }
            for r in entry.recipients
        ],
    }


def next_attempt(entry: QueueEntry, now: float) -> str:
    """When the scheduler tries `entry` next, relative to `now` ("in 4m", "now", "held")."""
    if entry.state is QueueState.HOLD:
        return "held"
    if entry.state is QueueState.DEFERRED and entry.next_attempt > now:
        return f"in {span(entry.next_attempt - now)}"
    return "now"


def span(seconds: float) -> str:
    """A duration in its largest whole unit: 45s, 4m, 3h, 2d."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def stamp(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(when))


def _size(octets: int) -> str:
    for unit, size in (("M", 1 << 20), ("K", 1 << 10)):
        if octets >= size:
            return f"{octets / size:.1f}{unit}"
    return f"{octets}B"


def _last_error(entry: QueueEntry) -> str:
    for recipient in entry.pending:
        if recipient.last_status:
            text = f"{recipient.last_status} {recipient.last_detail}".strip()
            if len(text) > _LAST_ERROR_WIDTH:
                return text[: _LAST_ERROR_WIDTH - 1] + "…"
            return text
    return ""


def _row(entry: QueueEntry, now: float) -> tuple[str, ...]:
    pending = [r.address for r in entry.pending]
    recipients = " ".join(pending[:1] + ([f"+{len(pending) - 1}"] if len(pending) > 1 else []))
    return (
        entry.qid,
        span(now - entry.arrival),
        _size(entry.size),
        entry.sender or "<>",
        recipients,
        entry.state.value,
        next_attempt(entry, now),
        _last_error(entry),
    )


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _describe(entry: QueueEntry, now: float) -> list[str]:
    client = " ".join(f"{k}={v}" for k, v in entry.client.items() if v)
    lines = [
        f"Queue ID:     {entry.qid}",
        f"State:        {entry.state.value} (next attempt: {next_attempt(entry, now)})",
        f"Arrived:      {stamp(entry.arrival)} ({span(now - entry.arrival)} ago)",
        f"Size:         {entry.size} octets",
        f"Sender:       <{entry.sender}>",
        f"Message-ID:   {entry.message_id or '(none)'}",
        f"Client:       {client or '(local)'}",
        f"Attempts:     {entry.attempts}"
        + (f", last at {stamp(entry.last_attempt)}" if entry.last_attempt else ""),
        "",
        "Recipients:",
    ]
    for r in entry.recipients:
        original = f" (originally <{r.original}>)" if r.original != r.address else ""
        lines.append(f"  <{r.address}>{original}: {r.status.value}, {r.attempts} attempt(s)")
        if r.last_status or r.last_detail:
            lines.append(f"    last result: {r.last_status} {r.last_detail}".rstrip())
        if r.remote_reply:
            lines.append(f"    remote reply: {r.remote_reply}")
    return lines


def _headers(data: bytes) -> str:
    """The header section of a message, as text."""
    end = data.find(b"\r\n\r\n")
    block = data if end < 0 else data[:end]
    return block.decode("utf-8", "replace").replace("\r\n", "\n")
