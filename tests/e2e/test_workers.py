"""`workers = N`: several processes accept SMTP on the same ports, one delivers."""

from __future__ import annotations

import contextlib
import imaplib
import os
import signal
import smtplib
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from postoffice.queue.spool import Spool
from postoffice.testing.server import ServerProcess

USER = "wanda@localhost"


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_until(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@contextmanager
def workers_server(
    tmp_path: Path, workers: int = 2, *, at_reception: bool = True
) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", extra_config=f"workers = {workers}\n")
    server.configure("queue", local_at_reception=at_reception)
    server.cli("user", "add", USER, "--password-stdin", stdin="pw-wanda-123\n")
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


def send(server: ServerProcess, subject: str) -> str:
    with smtplib.SMTP(server.host, server.smtp_port, timeout=20) as client:
        return send_on(client, subject)


def send_on(client: smtplib.SMTP, subject: str) -> str:
    client.ehlo("client.example")
    client.mail("someone@example.org")
    client.rcpt(USER)
    code, reply = client.data(f"Subject: {subject}\r\n\r\nbody\r\n".encode())
    assert code == 250, reply
    return reply.decode()


def test_no_serving_process_loads_cryptography(tmp_path: Path) -> None:
    """It is needed only to make the self-signed certificate (tls_selfsigned.py, a process
    of its own); loaded in each server process it cost ~2 MiB apiece."""
    with workers_server(tmp_path, workers=3) as server:
        assert server.process is not None
        with smtplib.SMTP(server.host, server.smtp_port, timeout=20) as client:
            client.starttls()  # the certificate is in use
            assert client.noop()[0] == 250
        pids = [server.process.pid, *children(server.process.pid)]
        assert len(pids) == 3
        for pid in pids:
            maps = Path(f"/proc/{pid}/maps").read_text()
            assert "ssl" in maps  # what this looks for is there to be seen
            assert "cryptography" not in maps, pid


def test_receivers_share_the_ports_and_every_message_is_delivered_once(
    tmp_path: Path,
) -> None:
    with workers_server(tmp_path, workers=3) as server:
        assert server.process is not None
        receivers = children(server.process.pid)
        assert len(receivers) == 2
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: send(server, f"w{i}"), range(40)))
        files = server.wait_for_mail(USER, 40)
        subjects = sorted(
            line for f in files for line in f.read_text().splitlines() if line.startswith("Subject")
        )
        assert subjects == sorted(f"Subject: w{i}" for i in range(40))
        # Delivered and removed (messages/ may still hold names reserved for stores)
        wait_until(lambda: not Spool(server.data_dir / "queue").list())
        assert server.stop() == 0
        wait_until(lambda: not any(alive(pid) for pid in receivers))


def test_a_message_a_receiver_queues_is_delivered_by_the_main_process(
    tmp_path: Path,
) -> None:
    with workers_server(tmp_path, at_reception=False) as server:
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)  # only the receiver can answer now
        try:
            reply = send(server, "via the receiver")
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        [delivered] = server.wait_for_mail(USER)
        assert "Subject: via the receiver" in delivered.read_text()
        assert reply.split()[-1] in delivered.name  # the queue id the receiver gave


def send_to_a_receiver(server: ServerProcess, subject: str) -> str:
    """`send` while the main process, which listens too, is stopped: a session the kernel
    gives it is never greeted, so try again from another port (1 in 2 each time)."""
    for _ in range(30):
        try:
            client = smtplib.SMTP(server.host, server.smtp_port, timeout=1)
        except (TimeoutError, smtplib.SMTPServerDisconnected):
            continue  # given to the stopped main process
        with client:
            assert client.sock is not None
            client.sock.settimeout(20)
            return send_on(client, subject)
    raise AssertionError("no receiver answered")


def test_a_receiver_delivers_local_mail_itself_before_its_250(tmp_path: Path) -> None:
    with workers_server(tmp_path) as server:
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)  # the main process cannot deliver
        try:
            qid = send_to_a_receiver(server, "straight in").split()[-1]
            [delivered] = (server.maildir(USER) / "new").iterdir()  # at the 250, no waiting
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert qid in delivered.name
        text = delivered.read_text()
        assert text.startswith(f"Return-Path: <someone@example.org>\nDelivered-To: {USER}\n")
        assert f"id {qid}" in text and "Subject: straight in" in text
        assert not (server.data_dir / "queue" / "messages" / qid).exists()  # never spooled
        trace = server.cli("trace", qid)
        assert "delivered to" in trace and USER in trace, trace


def test_idle_in_the_main_process_hears_of_a_receivers_delivery(tmp_path: Path) -> None:
    """Without word from the receiver, IDLE would notice only at its 30 s re-check."""
    with workers_server(tmp_path) as server:
        client = imaplib.IMAP4(server.host, server.imap_port)
        client.login(USER, "pw-wanda-123")
        client.select("INBOX")
        client.send(b"i1 IDLE\r\n")
        assert client.readline().startswith(b"+")
        client.socket().settimeout(10)
        send(server, "wake up")
        assert client.readline() == b"* 1 EXISTS\r\n"
        client.send(b"DONE\r\n")
        assert client.readline().startswith(b"i1 OK")
        client.logout()


def test_sighup_reaches_the_receivers(tmp_path: Path) -> None:
    # Without delivery at reception the main process does not listen: sessions reach a
    # receiver while it is stopped.
    with workers_server(tmp_path, at_reception=False) as server:
        assert server.process is not None
        text = server.config_path.read_text()
        server.config_path.write_text(text.replace("[limits]\n", "[limits]\nrecipients = 1\n"))
        server.process.send_signal(signal.SIGHUP)
        wait_until(lambda: server.log_path.read_text().count("reloaded") == 2)
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            with smtplib.SMTP(server.host, server.smtp_port, timeout=20) as client:
                client.ehlo("client.example")
                client.mail("someone@example.org")
                assert client.rcpt(USER)[0] == 250
                assert client.rcpt(USER)[0] == 452
        finally:
            os.kill(server.process.pid, signal.SIGCONT)


def test_receivers_never_outlive_a_killed_main_process_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    with workers_server(tmp_path, at_reception=False) as server:
        assert server.process is not None
        receivers = children(server.process.pid)
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            send(server, "acknowledged before the crash")  # queued, not yet delivered
        finally:
            server.kill()
        wait_until(lambda: not any(alive(pid) for pid in receivers))
        server.start()  # the ports are free again; recovery delivers what was queued
        [delivered] = server.wait_for_mail(USER)
        assert "acknowledged before the crash" in delivered.read_text()


def test_a_port_in_use_is_one_line_naming_it(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", extra_config="workers = 2\n")
    with socket.socket() as taken:
        taken.bind((server.host, server.smtp_port))
        taken.listen()
        with pytest.raises(RuntimeError) as failed:
            server.start(timeout=20)
    assert "cannot listen for SMTP" in str(failed.value)
    assert "Traceback" not in str(failed.value)


def _sessions_by_process(pids: list[int], port: int) -> dict[int, int]:
    """Established server-side connections on `port`, counted per process."""
    owner = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    owner[target[8:-1]] = pid
    counts = dict.fromkeys(pids, 0)
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, state, inode = int(fields[1].split(":")[1], 16), fields[3], fields[9]
        if local_port == port and state == "01" and inode in owner:  # 01: ESTABLISHED
            counts[owner[inode]] += 1
    return counts


def _burst(server: ServerProcess) -> tuple[int, dict[int, int]]:
    """40 sessions opened at once: the main process's pid and the sessions per process."""
    assert server.process is not None
    main = server.process.pid
    clients = [socket.create_connection((server.host, server.smtp_port)) for _ in range(40)]
    try:
        for client in clients:
            assert client.recv(1024).startswith(b"220")
        return main, _sessions_by_process([main, *children(main)], server.smtp_port)
    finally:
        for client in clients:
            client.close()


def test_a_burst_of_sessions_is_spread_over_every_process(tmp_path: Path) -> None:
    """With delivery at reception the main process has little delivery work and takes its
    share (with one shared socket, the first process to wake took most)."""
    with workers_server(tmp_path, workers=3) as server:
        _, counts = _burst(server)
    assert sum(counts.values()) == 40
    assert len(counts) == 3 and min(counts.values()) >= 3, counts  # a hash: ~1 in 17,000


def test_without_delivery_at_reception_the_delivering_main_process_takes_no_sessions(
    tmp_path: Path,
) -> None:
    with workers_server(tmp_path, workers=3, at_reception=False) as server:
        main, counts = _burst(server)
    assert counts.pop(main) == 0
    assert sum(counts.values()) == 40
    assert min(counts.values()) >= 8, counts  # a hash: either below 8 of 40, ~1 in 24,000


@pytest.mark.parametrize("at_reception", [True, False])
def test_when_a_receiver_ends_the_main_process_answers_smtp(
    tmp_path: Path, at_reception: bool
) -> None:
    with workers_server(tmp_path, workers=2, at_reception=at_reception) as server:
        assert server.process is not None
        [receiver] = children(server.process.pid)
        os.kill(receiver, signal.SIGKILL)
        # The main process listened from the start (at reception), or takes over now.
        event = "smtp_shared" if at_reception else "smtp_taken_over"
        wait_until(lambda: server.log_path.read_text().count(event) == 3)
        wait_until(lambda: "receiver_exited" in server.log_path.read_text())
        send(server, "after the receiver")
        [delivered] = server.wait_for_mail(USER)
        assert "Subject: after the receiver" in delivered.read_text()
        assert server.stop() == 0


def test_a_port_another_server_shares_out_is_in_use(tmp_path: Path) -> None:
    """Sockets with SO_REUSEPORT (another server's workers) would let ours join them and
    take part of their connections: the start fails as for any port in use."""
    server = ServerProcess(tmp_path / "data", extra_config="workers = 2\n")
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind((server.host, server.smtp_port))
        taken.listen()
        with pytest.raises(RuntimeError) as failed:
            server.start(timeout=20)
    assert "cannot listen for SMTP" in str(failed.value)
