"""Mail between servers on the loopback world: MX lookup, port-25 relay, retries and DSNs."""

from __future__ import annotations

import email
import email.policy
import json
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.testing.server import ServerProcess
from postoffice.testing.world import LoopbackWorld

PASSWORDS = {"alice@a.test": "pw-alice-1"}
FAST_QUEUE = "[queue]\nmin_backoff = 1\nmax_backoff = 2\nmax_lifetime = 6\n"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[LoopbackWorld]:
    w = LoopbackWorld(tmp_path, extra_config=FAST_QUEUE)
    w.a.cli("user", "add", "alice@a.test", "--password-stdin", stdin="pw-alice-1\n")
    w.b.cli("user", "add", "bob@b.test", "--password-stdin", stdin="pw-bob-1\n")
    w.start()
    yield w
    w.stop()


def send(server: ServerProcess, sender: str, rcpts: list[str], subject: str) -> str:
    body = f"From: {sender}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@a.test>\r\n\r\nhi\r\n"
    with smtplib.SMTP(server.host, server.submission_port, timeout=10) as client:
        client.ehlo("ua.a.test")
        client.login(sender, PASSWORDS[sender])
        client.mail(sender)
        for rcpt in rcpts:
            client.rcpt(rcpt)
        code, text = client.data(body.encode())
    assert code == 250, text
    return text.decode().rsplit(" ", 1)[-1]


def dsn_of(path: Path) -> email.message.EmailMessage:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    return msg  # type: ignore[return-value]


def test_a_to_b_through_mx_and_port_25(world: LoopbackWorld) -> None:
    qid = send(world.a, "alice@a.test", ["bob@b.test"], "journey")
    (path,) = world.b.wait_for_mail("bob@b.test")
    stored = path.read_bytes()
    assert b"Subject: journey" in stored
    assert b"by mx.b.test (postoffice)" in stored and b"by mx.a.test (postoffice)" in stored
    trace = world.a.cli("trace", qid, "--also", str(world.b.data_dir))
    assert "mx.b.test" in trace and "127.0.0.3" in trace
    assert "250" in trace


def test_remote_5xx_bounces_to_the_sender_with_the_remote_reply(world: LoopbackWorld) -> None:
    send(world.a, "alice@a.test", ["nobody@b.test"], "bounce")
    (path,) = world.a.wait_for_mail("alice@a.test")
    report = dsn_of(path)
    status = report.get_payload()[1]  # type: ignore[index]
    text = status.as_string()
    assert "Action: failed" in text and "Status: 5.1.1" in text
    assert "550" in text and "nobody@b.test" in text
    assert path.read_bytes().count(b"Return-Path: <>") == 1


@pytest.mark.parametrize(
    ("records", "status"),
    [({"c.test": ["MX 0 ."]}, "5.1.10"), ({}, "5.1.2")],
    ids=["null-mx", "nxdomain"],
)
def test_unroutable_domains_bounce(world: LoopbackWorld, records: dict, status: str) -> None:
    world.dns.add(records) if records else None
    send(world.a, "alice@a.test", ["carol@c.test"], "unroutable")
    (path,) = world.a.wait_for_mail("alice@a.test")
    assert f"Status: {status}" in dsn_of(path).as_string()


def test_down_then_up_is_deferred_then_delivered(world: LoopbackWorld) -> None:
    world.b.stop()
    send(world.a, "alice@a.test", ["bob@b.test"], "later")
    time.sleep(1.5)
    listing = json.loads(world.a.cli("queue", "list", "--json"))
    assert listing and listing[0]["state"] == "deferred"
    world.b.start()
    world.a.cli("queue", "flush")
    world.b.wait_for_mail("bob@b.test")


def test_expiry_bounces_and_no_bounce_of_a_bounce(world: LoopbackWorld) -> None:
    world.b.stop()
    send(world.a, "alice@a.test", ["bob@b.test"], "expire")
    # A null-sender message to a dead host must not bounce back to <>: postmaster gets it.
    with smtplib.SMTP(world.a.host, world.a.smtp_port, timeout=10) as client:
        client.sendmail("<>", ["bob@b.test"], b"Subject: dsn-ish\r\n\r\nx\r\n")
    (path,) = world.a.wait_for_mail("alice@a.test", timeout=30)
    assert "Status: 4.4.7" in dsn_of(path).as_string()
    world.a.wait_for_mail("postmaster@localhost", timeout=30)


def test_sigkill_during_relay_delivers_every_acknowledged_message(world: LoopbackWorld) -> None:
    acked: list[str] = []

    def sender() -> None:
        for i in range(40):
            try:
                send(world.a, "alice@a.test", ["bob@b.test"], f"kill{i}")
            except (OSError, smtplib.SMTPException, AssertionError):
                return
            acked.append(f"kill{i}")

    thread = threading.Thread(target=sender)
    thread.start()
    time.sleep(0.4)  # A is receiving and relaying at once when it dies
    world.a.kill()
    thread.join(20)
    world.a.start()
    assert acked
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        subjects = _subjects(world.b.maildir("bob@b.test"))
        if set(acked) <= set(subjects):
            break
        time.sleep(0.2)
    assert set(acked) <= set(subjects)
    # At-least-once across a crash: a message may arrive once more, never more often.
    assert all(subjects.count(s) <= 2 for s in set(subjects))


def _subjects(box: Path) -> list[str]:
    found = []
    for sub in ("new", "cur"):
        for path in (box / sub).glob("*") if (box / sub).is_dir() else []:
            for line in path.read_bytes().split(b"\r\n"):
                if line.startswith(b"Subject: "):
                    found.append(line[9:].decode())
                    break
    return found


def test_queue_commands_against_a_running_server(world: LoopbackWorld) -> None:
    world.b.stop()
    qid = send(world.a, "alice@a.test", ["bob@b.test"], "admin")
    show = world.a.cli("queue", "show", qid)
    assert "bob@b.test" in show
    world.a.cli("queue", "hold", qid)
    assert json.loads(world.a.cli("queue", "list", "--json"))[0]["state"] == "hold"
    world.a.cli("queue", "release", qid)
    world.a.cli("queue", "delete", qid)
    assert json.loads(world.a.cli("queue", "list", "--json")) == []
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "postoffice",
            "queue",
            "show",
            qid,
            "--data-dir",
            str(world.a.data_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1 and qid in missing.stderr
