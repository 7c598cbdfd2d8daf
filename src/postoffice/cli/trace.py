"""`postoffice trace <queue id | Message-ID>`: a message's whole journey, from the journals.

The journal of the data dir, and of every `--also` data dir (another
server's, e.g. the receiving side), is searched for the key; the Message-IDs
of what is found are searched for in turn until nothing new turns up, so a
queue id on the sending side finds the receiving side's records too, and a
bounce finds its DSN. All records are merged in time order and told as
numbered steps, one renderer per event kind (a dict, like every dispatch
here); when the story spans several queue ids each step names its own, after
its server's name when more than one journal is read. The end says where each
message is now: still in its spool (state, next attempt, pending recipients),
or done, deleted or gone, with the last outcome per recipient.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from postoffice.cli.common import CliError, config_options, load_config, user_errors
from postoffice.cli.queue import entry_json, next_attempt, stamp
from postoffice.datadir import Paths
from postoffice.journal import Journal, Record, is_message_id
from postoffice.queue.spool import Spool, UnknownQid

Step = tuple[str, list[str]]  # a summary line and the detail lines under it
_OUTCOMES = ("delivered", "deferred", "failed", "expired")


@click.command()
@click.argument("key")
@click.option(
    "--also",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Another server's data dir whose journal to read too (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="The records and whereabouts as JSON.")
@config_options
@user_errors(OSError)
def trace(
    key: str,
    also: tuple[Path, ...],
    as_json: bool,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Tell the journey of a message, by queue id or Message-ID."""
    key = key.strip() if is_message_id(key) else key.strip().upper()
    roots = list(dict.fromkeys([load_config(config_path, data_dir).data_dir, *also]))
    labels = _labels(roots)
    found = _gather([(labels[root], Paths(root)) for root in roots], key)
    if not found:
        raise CliError(f"nothing in the journal about {key} ({', '.join(map(str, roots))})")
    records = sorted(
        (record | {"server": label} for label, _, record in found), key=lambda r: r["ts"]
    )
    places = _whereabouts(found, time.time())
    if as_json:
        click.echo(json.dumps({"key": key, "records": records, "now": places}, indent=2))
        return
    click.echo(f"Trace of {key}")
    _print_steps(records, show_server=len(roots) > 1, show_where=len(places) > 1)
    click.echo("\nNow:")
    for place in places:
        click.echo(f"  {_where(place, len(roots) > 1)}: {_place_text(place)}")


def _labels(roots: list[Path]) -> dict[Path, str]:
    """Short names for the data dirs: their last component, or the whole path if ambiguous."""
    names = [root.resolve().name or str(root) for root in roots]
    if len(set(names)) == len(names):
        return dict(zip(roots, names, strict=True))
    return {root: str(root) for root in roots}


def _gather(sources: list[tuple[str, Paths]], key: str) -> list[tuple[str, Paths, Record]]:
    """The records about `key` in every journal, following Message-IDs until none is new."""
    journals = [(label, paths, Journal(paths.journal)) for label, paths in sources]
    keys = {key}
    while True:
        found = [
            (label, paths, record)
            for label, paths, journal in journals
            for record in journal.records(journal.related_qids(keys))
        ]
        message_ids = {
            str(record["message_id"])
            for _, _, record in found
            if record.get("event") == "queued" and record.get("message_id")
        }
        if message_ids <= keys:
            return found
        keys |= message_ids


# -- where each message is now -------------------------------------------------------------------


def _whereabouts(found: list[tuple[str, Paths, Record]], now: float) -> list[dict[str, Any]]:
    """Per server and queue id: in the spool (with its entry), done, deleted or gone."""
    places: dict[tuple[str, str], dict[str, Any]] = {}
    for label, paths, record in found:
        place = places.get((label, record["qid"]))
        if place is None:
            place = places[label, record["qid"]] = _place(label, paths, record["qid"], now)
        if record.get("event") in _OUTCOMES and record.get("recipient"):
            place["outcomes"][str(record["recipient"])] = record["event"]
        elif record.get("event") == "deleted":
            place["deleted"] = True
    for place in places.values():
        if "entry" in place:
            continue
        outcomes = place["outcomes"].values()
        if place.pop("deleted", False):
            place["state"] = "deleted"
        elif outcomes and all(event != "deferred" for event in outcomes):
            place["state"] = "done"
        else:
            place["state"] = "gone"  # not in the spool, and the journal does not say why
    return list(places.values())


def _place(label: str, paths: Paths, qid: str, now: float) -> dict[str, Any]:
    place: dict[str, Any] = {"server": label, "qid": qid, "outcomes": {}}
    if not paths.queue.is_dir():
        return place
    try:
        entry = Spool(paths.queue).load(qid)
    except UnknownQid:
        return place
    place["state"] = entry.state.value
    place["next"] = next_attempt(entry, now)
    place["entry"] = entry_json(entry)
    return place


def _where(item: dict[str, Any], show_server: bool) -> str:
    """The label of a record or place: its queue id, after its server if several are read."""
    return f"{item['server']} {item['qid']}" if show_server else str(item["qid"])


def _place_text(place: dict[str, Any]) -> str:
    if "entry" in place:
        pending = [r["address"] for r in place["entry"]["recipients"] if r["status"] == "pending"]
        return (
            f"in the queue, {place['state']} (next attempt: {place['next']}),"
            f" pending: {', '.join(pending) or '-'}"
        )
    outcomes = "; ".join(f"{event} <{rcpt}>" for rcpt, event in place["outcomes"].items())
    text = {
        "deleted": "deleted from the queue by an administrator",
        "done": "done",
        "gone": "no longer in the queue",
    }[place["state"]]
    return f"{text}: {outcomes}" if outcomes else text


# -- the steps -----------------------------------------------------------------------------------


def _print_steps(records: list[Record], show_server: bool, show_where: bool) -> None:
    day = ""
    for number, (record, (summary, details)) in enumerate(
        ((r, step) for r in records for step in _render(r)), start=1
    ):
        when = time.gmtime(record["ts"])
        shown = time.strftime("%H:%M:%S", when)
        if time.strftime("%Y-%m-%d", when) != day:
            day = time.strftime("%Y-%m-%d", when)
            shown = f"{day} {shown}Z"
        where = f"[{_where(record, show_server)}]  " if show_where else ""
        click.echo(f"{number:>3}. {shown:<20}  {where}{summary}")
        for line in details:
            click.echo(f"       {line}")


def _render(record: Record) -> list[Step]:
    renderer = _RENDERERS.get(str(record.get("event")))
    if renderer is None:
        extra = {k: v for k, v in record.items() if k not in {"ts", "qid", "event", "server"}}
        return [(str(record.get("event")), [f"{k}: {v}" for k, v in extra.items()])]
    return renderer(record)


def _queued(r: Record) -> list[Step]:
    client = r.get("client")
    origin: dict[str, Any] = dict(client) if isinstance(client, dict) else {"addr": client}
    origin |= {k: r[k] for k in ("helo", "tls", "auth", "protocol") if r.get(k)}
    if not origin.get("addr"):
        received = "created here"
    else:
        received = f"received from {origin['addr']}"
        if origin.get("helo"):
            received += f" (HELO {origin['helo']})"
        if origin.get("protocol"):
            received += f" via {origin['protocol']}"
        received += f", TLS {origin['tls']}" if origin.get("tls") else ", without TLS"
        if origin.get("auth"):
            received += f", authenticated as {origin['auth']}"
    rcpts = r.get("rcpt") or []
    recipients = ", ".join(f"<{a}>" for a in rcpts) if isinstance(rcpts, list) else str(rcpts)
    queued = f"queued as {r['qid']}: {r.get('size', '?')} octets from <{r.get('sender', '')}>"
    details = [f"to {recipients}"] if recipients else []
    if r.get("message_id"):
        details.append(f"Message-ID: {r['message_id']}")
    return [(received, []), (queued, details)]


def _dns(r: Record) -> list[Step]:
    domain = r.get("domain", "?")
    if r.get("error"):
        return [(f"DNS lookup for {domain} failed: {r['error']}", [])]
    lines = []
    for mx in r.get("mx") or []:
        addresses = ", ".join(mx.get("addresses") or []) or "no address"
        name = mx.get("name") or mx.get("host") or "?"
        lines.append(f"MX {mx.get('preference', '?'):>3} {name} → {addresses}")
    if not lines:
        return [(f"DNS: no MX for {domain}; its own address is used", [])]
    return [(f"DNS: mail exchangers for {domain}", lines)]


def _connect(r: Record) -> list[Step]:
    target = f"{r.get('host', '?')} [{r.get('address', '?')}]:{r.get('port', 25)}"
    result = r.get("result", "ok")
    if result == "ok":
        return [(f"connected to {target}", [])]
    if result == "reused":
        return [(f"reusing the connection to {target}", [])]
    return [(f"could not connect to {target}: {result}", [])]


def _tls(r: Record) -> list[Step]:
    peer = f" with {r['host']}" if r.get("host") else ""
    suite = " ".join(str(r[k]) for k in ("version", "cipher") if r.get(k)) or "?"
    verified = "certificate verified" if r.get("verified") else "certificate not verified"
    return [(f"TLS{peer}: {suite}, {verified}", [])]


def _transcript(r: Record) -> list[Step]:
    return [("SMTP conversation", [str(line) for line in r.get("lines") or []])]


def _outcome(verb: str) -> Callable[[Record], list[Step]]:
    def render(r: Record) -> list[Step]:
        outcome = f"{r['outcome']} " if r.get("outcome") else ""
        summary = f"{verb} <{r.get('recipient', '?')}>: {outcome}{r.get('status', '')}"
        summary += f" {r.get('detail', '')}"
        details = []
        if r.get("remote_reply"):
            details.append(f"remote reply: {r['remote_reply']}")
        if r.get("mailbox"):
            details.append(f"mailbox: {r['mailbox']}")
        if isinstance(r.get("next_attempt"), int | float):
            details.append(f"next attempt at {stamp(r['next_attempt'])}")
        return [(summary.rstrip(), details)]

    return render


def _stored(r: Record) -> list[Step]:
    return [(f"stored for <{r.get('recipient', '?')}> in mailbox {r.get('mailbox', '?')}", [])]


def _notice(kind: str) -> Callable[[Record], list[Step]]:
    def render(r: Record) -> list[Step]:
        to = f" to <{r['to']}>" if r.get("to") else ""
        return [(f"{kind}{to}: delivery status notification queued as {r.get('dsn', '?')}", [])]

    return render


def _admin(verb: str) -> Callable[[Record], list[Step]]:
    def render(r: Record) -> list[Step]:
        via = f" (via {r['via']})" if r.get("via") else ""
        return [(f"{verb} by an administrator{via}", [])]

    return render


_RENDERERS: dict[str, Callable[[Record], list[Step]]] = {
    "queued": _queued,
    "dns": _dns,
    "connect": _connect,
    "tls": _tls,
    "transcript": _transcript,
    "attempt": _outcome("attempt for"),
    "delivered": _outcome("delivered to"),
    "deferred": _outcome("deferred"),
    "failed": _outcome("failed"),
    "expired": _outcome("gave up on"),
    "stored": _stored,
    "bounce": _notice("bounce"),
    "delay-warning": _notice("delay warning"),
    "held": _admin("held"),
    "released": _admin("released"),
    "deleted": _admin("deleted"),
    "flushed": _admin("flushed"),
}
