"""Server behaviour a user relies on: loop refusal, SIGHUP reload, JSON logs, HELP."""

from __future__ import annotations

import json
import signal
import smtplib
import time
from pathlib import Path

from postoffice.testing.server import ServerProcess


def test_more_than_50_received_headers_is_a_loop(server: ServerProcess) -> None:
    hops = b"".join(
        b"Received: from hop%d by hop%d; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % (i, i)
        for i in range(50)
    )
    with smtplib.SMTP(server.host, server.smtp_port, timeout=10) as client:
        client.ehlo("c.example")
        client.mail("a@example.org")
        client.rcpt("alice@localhost")
        code, text = client.data(hops + b"Subject: loop\r\n\r\nround and round\r\n")
        assert (code, text[:5]) == (554, b"5.4.6")
        client.rset()
        client.mail("a@example.org")
        client.rcpt("alice@localhost")
        code, _ = client.data(
            hops[: hops.index(b"Received: from hop49")] + b"Subject: ok\r\n\r\nx\r\n"
        )
        assert code == 250


def test_sighup_reloads_limits_for_new_sessions(server: ServerProcess) -> None:
    text = server.config_path.read_text()
    server.config_path.write_text(text.replace("[limits]\n", "[limits]\nrecipients = 2\n"))
    assert server.process is not None
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reloaded" not in server.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    with smtplib.SMTP(server.host, server.smtp_port, timeout=10) as client:
        client.ehlo("c.example")
        client.mail("a@example.org")
        assert client.rcpt("alice@localhost")[0] == 250
        assert client.rcpt("alice@localhost")[0] == 250
        assert client.rcpt("alice@localhost")[0] == 452


def test_json_log_lines_name_the_queue_id(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "d")
    proc.config_path.write_text(proc.config_path.read_text() + '[log]\nformat = "json"\n')
    proc.cli("user", "add", "carol@localhost", "--password-stdin", stdin="pw-carol-1\n")
    proc.start()
    try:
        with smtplib.SMTP(proc.host, proc.smtp_port, timeout=10) as client:
            client.sendmail("a@example.org", ["carol@localhost"], b"Subject: j\r\n\r\nx\r\n")
        proc.wait_for_mail("carol@localhost")
    finally:
        proc.stop()
    events = [
        json.loads(line) for line in proc.log_path.read_text().splitlines() if line.startswith("{")
    ]
    queued = next(e for e in events if e["event"] == "queued")
    delivered = next(e for e in events if e["event"] == "delivered")
    assert queued["qid"] == delivered["qid"]
    assert queued["sender"] == "<a@example.org>" and queued["rcpt"] == ["carol@localhost"]
    assert delivered["status"] == "2.0.0" and "delay" in delivered


def test_help_and_bad_commands_get_clear_replies(server: ServerProcess) -> None:
    with smtplib.SMTP(server.host, server.smtp_port, timeout=10) as client:
        assert client.docmd("HELP")[0] == 214
        assert client.docmd("FOO")[0] == 500
        assert client.docmd("MAIL", "FROM:<a@example.org>")[0] == 503  # before HELO
        assert client.docmd("RCPT", "TO:<alice@localhost>")[0] == 503
        client.ehlo("c.example")
        assert client.docmd("DATA")[0] == 503  # no recipients
        assert client.docmd("NOOP")[0] == 250
