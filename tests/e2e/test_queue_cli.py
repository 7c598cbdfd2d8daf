"""`postoffice queue …` and `postoffice trace` as an operator meets them, with no server running."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from postoffice.journal import Journal
from postoffice.queue.entry import QueueEntry, QueueState
from postoffice.queue.spool import Spool

MESSAGE = b"Message-ID: <m1@a.test>\r\nSubject: quarterly report\r\n\r\nhello\r\n"
CLIENT = {
    "addr": "192.0.2.7",
    "helo": "laptop.a.test",
    "protocol": "ESMTPSA",
    "tls": "TLSv1.3 TLS_AES_256_GCM_SHA384",
    "auth": "alice@a.test",
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postoffice", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "POSTOFFICE_HOME": ""},
        check=False,
    )


def ok(*args: str) -> str:
    result = run(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def data_dir(path: Path) -> Path:
    """A data dir with a config, as a stopped server leaves it."""
    ok("domain", "list", "--data-dir", str(path))
    return path


def queue_two(data: Path) -> tuple[QueueEntry, QueueEntry]:
    """A deferred message for two recipients (one still pending) and a fresh bounce."""
    spool = Spool(data / "queue")
    now = time.time()
    deferred = spool.store(
        "alice@a.test",
        [("bob@b.test", "bob@b.test"), ("carol@a.test", "info@a.test")],
        MESSAGE,
        client=CLIENT,
        message_id="<m1@a.test>",
        arrival=now - 600,
    )
    deferred.state = QueueState.DEFERRED
    deferred.next_attempt = now + 250
    deferred.attempts = deferred.recipients[0].attempts = 1
    deferred.recipients[0].last_status = "4.4.1"
    deferred.recipients[0].last_detail = "connection refused by mx.b.test [192.0.2.25]"
    spool.save(deferred)
    bounce = spool.store(
        "",
        [("x@c.test", "x@c.test")],
        b"Subject: bounce\r\n\r\n",
        client={},
        message_id="",
        arrival=now,
    )
    return deferred, bounce


def test_list_and_show_read_the_spool(tmp_path: Path) -> None:
    data = data_dir(tmp_path / "data")
    d = ["--data-dir", str(data)]
    assert ok("queue", "list", *d).strip() == "the queue is empty"
    deferred, bounce = queue_two(data)

    table = ok("queue", "list", *d).splitlines()
    assert table[0].split() == [
        "ID",
        "AGE",
        "SIZE",
        "SENDER",
        "RECIPIENTS",
        "STATUS",
        "NEXT",
        "LAST",
        "ERROR",
    ]
    assert table[1].split()[:9] == [
        deferred.qid,
        "10m",
        "61B",
        "alice@a.test",
        "bob@b.test",
        "+1",
        "deferred",
        "in",
        "4m",
    ]
    assert "4.4.1 connection refused by mx.b.test" in table[1]
    qid, age, *rest = table[2].split()
    assert (qid, rest) == (bounce.qid, ["19B", "<>", "x@c.test", "active", "now"])
    assert age in {"0s", "1s", "2s"}  # however long the CLI took to start
    assert table[3] == "2 message(s), 80B, 0 held"

    listed = json.loads(ok("queue", "list", "--json", *d))
    assert [(e["qid"], e["state"]) for e in listed] == [
        (deferred.qid, "deferred"),
        (bounce.qid, "active"),
    ]
    assert listed[0]["recipients"][1] == {
        "address": "carol@a.test",
        "original": "info@a.test",
        "status": "pending",
        "attempts": 0,
        "last_status": "",
        "last_detail": "",
        "remote_reply": None,
    }

    shown = ok("queue", "show", deferred.qid.lower(), *d)
    assert f"Queue ID:     {deferred.qid}" in shown
    assert "State:        deferred (next attempt: in 4m)" in shown
    assert "Client:       addr=192.0.2.7" in shown and "auth=alice@a.test" in shown
    assert "<carol@a.test> (originally <info@a.test>): pending, 0 attempt(s)" in shown
    assert "last result: 4.4.1 connection refused by mx.b.test" in shown
    assert shown.rstrip().endswith(
        "Headers:\n  Message-ID: <m1@a.test>\n  Subject: quarterly report"
    )


def test_hold_release_delete_act_on_the_spool_when_no_server_runs(tmp_path: Path) -> None:
    data = data_dir(tmp_path / "data")
    d = ["--data-dir", str(data)]
    deferred, bounce = queue_two(data)
    spool = Spool(data / "queue")

    assert ok("queue", "hold", deferred.qid, *d).strip() == f"{deferred.qid} held"
    assert spool.load(deferred.qid).state is QueueState.HOLD
    assert ok("queue", "list", *d).splitlines()[-1] == "2 message(s), 80B, 1 held"
    assert ok("queue", "release", deferred.qid, *d).strip() == f"{deferred.qid} released"
    assert spool.load(deferred.qid).state is QueueState.ACTIVE
    assert ok("queue", "delete", bounce.qid, *d).strip() == f"{bounce.qid} deleted"
    assert [e.qid for e in spool.list()] == [deferred.qid]
    assert not (data / "queue" / "messages" / bounce.qid).exists()
    assert ok("queue", "flush", *d).strip() == (
        "no server is running; the queue will be tried at the next start"
    )

    steps = ok("trace", deferred.qid, *d)
    assert "held by an administrator (via spool, no server running)" in steps
    assert "released by an administrator" in steps
    assert "in the queue, active (next attempt: now), pending: bob@b.test, carol@a.test" in steps


@pytest.mark.parametrize("command", ["show", "hold", "release", "delete", "flush"])
def test_an_unknown_queue_id_is_a_one_line_error(tmp_path: Path, command: str) -> None:
    data = data_dir(tmp_path / "data")
    result = run("queue", command, "0SGPFNS80A0NNPFX", "--data-dir", str(data))
    assert result.returncode == 1
    assert result.stderr == (
        "postoffice: error: no message with queue id 0SGPFNS80A0NNPFX in the queue\n"
    )


def record_journey(sender_dir: Path, receiver_dir: Path) -> str:
    """The journals of a message relayed from a.test's server to b.test's, as they would be."""
    sending = Journal(sender_dir / "journal")
    receiving = Journal(receiver_dir / "journal")
    qid, remote_qid = "0SGPFNS80A0NNPFX", "0SGPFNT1ZZ9AB3CD"
    sending.record(
        qid,
        "queued",
        client="192.0.2.7",
        helo="laptop.a.test",
        tls="TLSv1.3 TLS_AES_256_GCM_SHA384",
        auth="alice@a.test",
        protocol="ESMTPSA",
        sender="alice@a.test",
        rcpt=["bob@b.test"],
        size=1234,
        message_id="<m1@a.test>",
    )
    sending.record(
        qid,
        "dns",
        domain="b.test",
        mx=[
            {"name": "mx1.b.test", "preference": 10, "addresses": ["192.0.2.25", "2001:db8::25"]},
            {"name": "mx2.b.test", "preference": 20, "addresses": ["192.0.2.26"]},
        ],
    )
    sending.record(
        qid,
        "connect",
        host="mx1.b.test",
        address="192.0.2.25",
        port=25,
        result="connection refused",
    )
    sending.record(qid, "connect", host="mx2.b.test", address="192.0.2.26", port=25, result="ok")
    peer = {"host": "mx2.b.test", "address": "192.0.2.26", "port": 25}
    sending.record(
        qid, "tls", **peer, version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256", verified=True
    )
    receiving.record(
        remote_qid,
        "queued",
        client="192.0.2.1",
        helo="mx.a.test",
        tls="TLSv1.3 TLS_AES_128_GCM_SHA256",
        protocol="ESMTPS",
        sender="alice@a.test",
        rcpt=["bob@b.test"],
        size=1301,
        message_id="<m1@a.test>",
    )
    sending.record(
        qid,
        "transcript",
        **peer,
        lines=[
            "C: MAIL FROM:<alice@a.test> SIZE=1234",
            "S: 250 2.1.0 Ok",
            "C: RCPT TO:<bob@b.test>",
            "S: 250 2.1.5 Ok",
            "C: DATA",
            "S: 354 End data with <CR><LF>.<CR><LF>",
            f"S: 250 2.0.0 Ok: queued as {remote_qid}",
        ],
    )
    sending.record(
        qid,
        "attempt",
        recipient="bob@b.test",
        outcome="delivered",
        status="2.0.0",
        detail="delivered to mx2.b.test",
    )
    sending.record(
        qid,
        "delivered",
        recipient="bob@b.test",
        status="2.0.0",
        detail="delivered to mx2.b.test",
        remote_reply=f"250 2.0.0 Ok: queued as {remote_qid}",
    )
    receiving.record(
        remote_qid,
        "stored",
        recipient="bob@b.test",
        mailbox=str(receiver_dir / "mail" / "b.test" / "bob"),
    )
    receiving.record(
        remote_qid,
        "delivered",
        recipient="bob@b.test",
        status="2.0.0",
        detail="delivered to maildir",
    )
    sending.close()
    receiving.close()
    return qid


def test_trace_tells_the_journey_across_both_servers(tmp_path: Path) -> None:
    sender, receiver = data_dir(tmp_path / "mx-a"), tmp_path / "mx-b"
    qid = record_journey(sender, receiver)
    steps = ok("trace", qid.lower(), "--data-dir", str(sender), "--also", str(receiver))
    lines = steps.splitlines()
    assert lines[0] == f"Trace of {qid}"
    a, b = f"[mx-a {qid}]", "[mx-b 0SGPFNT1ZZ9AB3CD]"
    numbered = [line for line in lines if line[:4].strip().endswith(".")]
    assert [line[:4].strip() for line in numbered] == [f"{n}." for n in range(1, 14)]
    where = [re.search(r"\[.*?\]", line).group() for line in numbered]  # type: ignore[union-attr]
    assert where == [a] * 6 + [b] * 2 + [a] * 3 + [b] * 2
    text = "\n".join(lines)
    for expected in [
        "  1. ",
        "received from 192.0.2.7 (HELO laptop.a.test) via ESMTPSA, TLS TLSv1.3"
        " TLS_AES_256_GCM_SHA384, authenticated as alice@a.test",
        f"queued as {qid}: 1234 octets from <alice@a.test>\n       to <bob@b.test>",
        "DNS: mail exchangers for b.test\n"
        "       MX  10 mx1.b.test → 192.0.2.25, 2001:db8::25\n"
        "       MX  20 mx2.b.test → 192.0.2.26",
        "could not connect to mx1.b.test [192.0.2.25]:25: connection refused",
        "connected to mx2.b.test [192.0.2.26]:25",
        "TLS with mx2.b.test: TLSv1.3 TLS_AES_128_GCM_SHA256, certificate verified",
        "received from 192.0.2.1 (HELO mx.a.test) via ESMTPS, TLS TLSv1.3",
        "attempt for <bob@b.test>: delivered 2.0.0 delivered to mx2.b.test",
        "SMTP conversation\n       C: MAIL FROM:<alice@a.test> SIZE=1234\n       S: 250 2.1.0 Ok",
        "delivered to <bob@b.test>: 2.0.0 delivered to mx2.b.test\n"
        "       remote reply: 250 2.0.0 Ok: queued as 0SGPFNT1ZZ9AB3CD",
        f"stored for <bob@b.test> in mailbox {receiver}/mail/b.test/bob",
        f"Now:\n  mx-a {qid}: done: delivered <bob@b.test>\n"
        "  mx-b 0SGPFNT1ZZ9AB3CD: done: delivered <bob@b.test>",
    ]:
        assert expected in text
    by_message_id = ok("trace", "<m1@a.test>", "--data-dir", str(sender), "--also", str(receiver))
    assert by_message_id.splitlines()[1:] == lines[1:]

    machine = json.loads(
        ok("trace", qid, "--json", "--data-dir", str(sender), "--also", str(receiver))
    )
    assert [(r["server"], r["event"]) for r in machine["records"]][-3:] == [
        ("mx-a", "delivered"),
        ("mx-b", "stored"),
        ("mx-b", "delivered"),
    ]
    assert [(p["server"], p["state"]) for p in machine["now"]] == [
        ("mx-a", "done"),
        ("mx-b", "done"),
    ]


def test_trace_of_nothing_is_a_one_line_error(tmp_path: Path) -> None:
    data = data_dir(tmp_path / "data")
    result = run("trace", "<nobody@nowhere.test>", "--data-dir", str(data))
    assert result.returncode == 1
    assert result.stderr.startswith("postoffice: error: nothing in the journal about <nobody@")
    assert len(result.stderr.splitlines()) == 1
