"""`postoffice demo`: the whole journey of one message, for real, narrated step by step.

It builds the loopback world (a DNS server, server A for a.test on 127.0.0.2, server B for
b.test on 127.0.0.3, each a real `postoffice serve` with its own data dir), lets alice's user
agent submit a message to A, and then tells what happened from the real records: the
submission transcript, A's queue, the MX answer A used, A's SMTP session with B on the relay
port, B's mailbox. Nothing is simulated; every line shown was sent or received.
"""

from __future__ import annotations

import asyncio
import email.utils
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from postoffice.client.submit import submit
from postoffice.journal import Journal
from postoffice.testing.world import HOSTS, LoopbackWorld, zone_records

ALICE = "alice@a.test"
BOB = "bob@b.test"
ALICE_PASSWORD = "demo-alice-pw"  # a throw-away account in a throw-away world
Echo = Callable[[str], None]


def run_demo(*, port25: bool, keep: Path | None, echo: Echo = click.echo) -> None:
    """Run the journey; raise RuntimeError with a one-line reason if a step does not happen."""
    root = keep or Path(tempfile.mkdtemp(prefix="postoffice-demo-"))
    ports = {"port": 25, "submission_port": 587, "submissions_port": 465} if port25 else {}
    world = LoopbackWorld(root, **ports)
    try:
        _journey(world, root, echo, keep is not None)
    finally:
        world.stop()
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
        echo(
            click.style("\nAll servers stopped.", dim=True)
            + (f" Data kept in {root}" if keep else "")
        )


def _journey(world: LoopbackWorld, root: Path, echo: Echo, keep: bool) -> None:
    step = _stepper(echo)
    world.a.cli("user", "add", ALICE, "--password-stdin", stdin=ALICE_PASSWORD + "\n")
    world.b.cli("user", "add", BOB, "--password-stdin", stdin="demo-bob-pw\n")
    world.start()
    echo(click.style("postoffice demo — one message, from alice@a.test to bob@b.test\n", bold=True))
    echo(f"The loopback world (data in {root}):")
    echo(f"  DNS server on {world.dns.address}, serving:")
    for name, records in zone_records().items():
        for record in records:
            echo(f"    {name + '.':<12} {record}")
    for domain, address in HOSTS.items():
        echo(
            f"  server for {domain}: mx.{domain} on {address}, SMTP port {world.port},"
            f" submission port {world.submission_port}"
        )

    message_id = email.utils.make_msgid(domain="a.test")
    message = (
        f"From: Alice <{ALICE}>\r\nTo: Bob <{BOB}>\r\nSubject: Hello from the demo\r\n"
        f"Date: {email.utils.formatdate(localtime=True)}\r\nMessage-ID: {message_id}\r\n\r\n"
        "Hi Bob,\r\nthis message travels the whole journey.\r\n"
    ).encode()

    step("alice writes a message in her user agent")
    for line in message.decode().split("\r\n")[:5]:
        echo(f"    {line}")

    where = f"{world.a.host}:{world.submission_port}"
    step(f"alice's user agent hands it to her server A over SMTP (submission, {where})")
    submitted = asyncio.run(
        submit(
            world.a.host,
            world.submission_port,
            helo="alice-laptop.a.test",
            sender=ALICE,
            recipients=[BOB],
            message=message,
            auth=(ALICE, ALICE_PASSWORD),
        )
    )
    _transcript(submitted.transcript, echo)
    qid = submitted.queue_id

    step("A stores the message in its queue")
    echo(f"    queue id {qid}: {world.a.data_dir / 'queue' / 'messages' / qid}")
    echo("    (written and fsync'ed before A answered 250: nothing acknowledged is lost)")

    records = _wait_for(Journal(world.a.data_dir / "journal"), qid, "delivered")
    step("A's SMTP client looks up the mail server of b.test in DNS (MX)")
    for record in _events(records, "dns"):
        for mx in record.get("mx", []):
            echo(f"    b.test MX {mx['preference']} {mx['name']} → {', '.join(mx['addresses'])}")

    step(f"A connects to port {world.port} of mx.b.test and hands the message over")
    for record in _events(records, "connect"):
        peer = f"{record['host']} [{record['address']}]:{record['port']}"
        echo(f"    connected to {peer} ({record['result']})")
    for record in _events(records, "tls"):
        echo(f"    STARTTLS: {record.get('version')} {record.get('cipher')}")
    for record in _events(records, "transcript"):
        _transcript(record["lines"], echo)

    step("B puts the message into bob's mailbox")
    (path,) = world.b.wait_for_mail(BOB)
    b_records = Journal(world.b.data_dir / "journal").find(message_id)
    for record in _events(b_records, "delivered"):
        echo(f"    queue id {record['qid']} at B: {record.get('detail', 'delivered')}")
    echo(f"    file: {path}")

    step("bob's user agent reads the message (POP3 download arrives with its own issue)")
    for line in path.read_bytes().decode("utf-8", "replace").split("\r\n"):
        echo(f"    {line}")
    if keep:
        command = f"postoffice trace '{message_id}' --data-dir {world.a.data_dir}"
        echo(click.style(f"\nTrace it: {command} --also {world.b.data_dir}", dim=True))


def _stepper(echo: Echo) -> Callable[[str], None]:
    count = 0

    def step(text: str) -> None:
        nonlocal count
        count += 1
        echo(click.style(f"\n{count}. {text}", bold=True))

    return step


def _transcript(lines: list[str], echo: Echo) -> None:
    for line in lines:
        colour = "cyan" if line.startswith("C:") else "green"
        echo("    " + click.style(line, fg=colour))


def _events(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("event") == kind]


def _wait_for(journal: Journal, qid: str, kind: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = journal.find(qid)
        if _events(records, kind):
            return records
        if failed := _events(records, "failed") + _events(records, "deferred"):
            raise RuntimeError(f"delivery did not succeed: {failed[-1].get('detail')}")
        time.sleep(0.05)
    raise RuntimeError(f"no '{kind}' record for {qid} after {timeout:.0f}s")
