"""The systems under test, each private, on its own loopback address, data in one temp dir.

`Systems` starts them all once for the whole run and stops them at the end:

| name                 | what                                  | where        |
| -------------------- | ------------------------------------- | ------------ |
| postoffice           | `python -m postoffice serve`          | 127.0.0.20   |
| postfix              | Postfix, virtual(8) Maildir delivery  | 127.0.0.21   |
| aiosmtpd             | `bench.aiosmtpd_sink`                 | 127.0.0.22   |
| dovecot              | Dovecot POP3 and IMAP                 | 127.0.0.23   |
| postoffice relay A→B | `LoopbackWorld` (DNS MX, STARTTLS)    | 127.0.0.2/.3 |
| postfix relay A→B    | two Postfix, transport map, STARTTLS  | 127.0.0.24/.25 |

Every system keeps its durability: postoffice and Postfix fsync their queues and
Maildirs, the sink fsyncs its Maildir, Dovecot runs with its default fsync policy. Limits
that would throttle one load generator on one address are lifted (postoffice's per-IP
limits for 127.0.0.0/8, Postfix's process limit for the 1,000-session figures). Relay uses
opportunistic STARTTLS on both sides, because postoffice always offers it: Postfix gets a
certificate, `smtp_tls_security_level = may` and TLS connection reuse (through tlsproxy),
so both pairs do the same work.

Standards: none of their own.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.dovecot import DovecotInstance
from bench.procs import process_group, with_descendants
from postoffice.testing.postfix import PostfixInstance
from postoffice.testing.server import ServerProcess, free_port
from postoffice.testing.world import LoopbackWorld

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password"
SENDER = "sender@client.bench.test"
POP3_USERS = ("popsmall", "poplarge")
IMAP_USER = "imapbench"  # the IMAP figures' mailbox: a copy of poplarge's

# Enough processes and connections for 1,000 sessions at once, plus the usual daemons.
_SESSIONS_MAX = 1200
WORKERS = (os.cpu_count() or 1) + 1  # postoffice's `workers`: one more than the cores, as advised
_POSTOFFICE_LIMITS = {
    "exempt_networks": ["127.0.0.0/8"],
    "max_connections": _SESSIONS_MAX,
    "max_connections_per_ip": _SESSIONS_MAX,
}
# TLS needs tlsmgr (entropy, without it TLS is switched off); connection reuse needs tlsproxy.
_TLS_SERVICES = (
    "tlsmgr     unix       -  -  n  1000? 1  tlsmgr\n"
    "tlsproxy   unix       -  -  n  -     0  tlsproxy\n"
)


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """Where a load generator sends mail, and where that mail ends up."""

    name: str
    host: str
    port: int
    recipient: str
    maildir: Path  # the recipient's Maildir
    pids: Callable[[], list[int]]  # the server's processes, now
    # Called before a memory figure: lets go of what earlier loads left idle (Postfix's
    # smtpd processes linger for max_idle = 100 s; postoffice has nothing of the kind).
    shed_idle: Callable[[], None] = lambda: None


class BenchPostfix(PostfixInstance):
    """A `PostfixInstance` with extra main.cf parameters and master.cf services."""

    def __init__(
        self,
        root: Path,
        *,
        main_extra: dict[str, str] | None = None,
        master_extra: str = "",
        **options: object,
    ) -> None:
        super().__init__(root, **options)  # type: ignore[arg-type]
        self.main_extra = {"default_process_limit": str(_SESSIONS_MAX), **(main_extra or {})}
        self.master_extra = master_extra

    def _write_config(self) -> None:
        super()._write_config()
        written = time.time() - 10  # as the base class does: old files are read at once
        for name, text in (
            ("main.cf", "".join(f"{key} = {value}\n" for key, value in self.main_extra.items())),
            ("master.cf", self.master_extra),
        ):
            path = self.config_dir / name
            with path.open("a", encoding="utf-8") as file:
                file.write(text)
            os.utime(path, (written, written))

    def shed_idle(self, timeout: float = 20.0) -> None:
        """`postfix reload` and wait until the idle smtpd processes of earlier loads are gone."""
        status, output = self._postfix("reload")
        if status != 0:
            raise RuntimeError(f"postfix reload failed: {output}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and "smtpd" in map(_command, self.pids()):
            time.sleep(0.1)

    def pids(self) -> list[int]:
        """The master's process group: every Postfix daemon of this instance."""
        pid_file = self.queue_dir / "pid" / "master.pid"
        try:
            master = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return process_group(master)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class SinkProcess:
    """The aiosmtpd Maildir sink in a child process."""

    def __init__(self, root: Path, host: str) -> None:
        self.host = host
        self.port = free_port(host)
        self.maildir = root / "Maildir"
        self.log_path = root / "sink.log"
        root.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.aiosmtpd_sink",
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                    "--maildir",
                    str(self.maildir),
                ],
                cwd=REPO,
                stdout=log,
                stderr=log,
            )
        _wait_for_greeting(self.host, self.port, timeout, self.process, self.log_path)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)
            self.process = None

    def pids(self) -> list[int]:
        return [] if self.process is None else with_descendants(self.process.pid)


def _wait_for_greeting(
    host: str, port: int, timeout: float, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{host}:{port} exited at start: {log.read_text()}")
        try:
            with socket.create_connection((host, port), timeout=1) as sock:
                if sock.recv(512).startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing greets on {host}:{port}: {log.read_text()}")


def _postoffice_pids(server: ServerProcess) -> Callable[[], list[int]]:
    def pids() -> list[int]:
        return [] if server.process is None else with_descendants(server.process.pid)

    return pids


def _tune(server: ServerProcess) -> None:
    """Per-IP limits lifted for the load generator; `workers` as the docs advise (`WORKERS`)."""
    server.configure("limits", **_POSTOFFICE_LIMITS)
    text = server.config_path.read_text("utf-8")  # top-level keys go before any table
    server.config_path.write_text(f"workers = {WORKERS}\n{text}", "utf-8")


def _add_user(server: ServerProcess, address: str) -> None:
    server.cli("user", "add", address, "--password-stdin", stdin=f"{PASSWORD}\n")


def _self_signed(directory: Path, hostname: str) -> tuple[Path, Path]:
    """A P-256 certificate and key for `hostname` (the kind postoffice makes for itself)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "7",
            "-subj",
            f"/CN={hostname}",
            "-addext",
            f"subjectAltName=DNS:{hostname}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return cert, key


class Systems:
    """Every system of the benchmark, started in `start()`, stopped in `stop()`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._stack = contextlib.ExitStack()
        self.targets: dict[str, SmtpTarget] = {}
        self.relays: dict[str, SmtpTarget] = {}
        self.postoffice: ServerProcess
        self.postfix: BenchPostfix
        self.dovecot: DovecotInstance

    def start(self) -> None:
        try:
            self._start_single()
            self._start_relays()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._stack.close()

    def _start_single(self) -> None:
        po = ServerProcess(self.root / "postoffice", host="127.0.0.20", hostname="mx.po.test")
        _tune(po)
        po.cli("domain", "add", "po.test")
        for user in ("bench", *POP3_USERS, IMAP_USER):
            _add_user(po, f"{user}@po.test")
        po.start()
        self._stack.callback(po.stop)
        self.postoffice = po
        self.targets["postoffice"] = SmtpTarget(
            "postoffice",
            po.host,
            po.smtp_port,
            "bench@po.test",
            po.maildir("bench@po.test"),
            _postoffice_pids(po),
        )

        pf = BenchPostfix(
            self.root / "postfix",
            address="127.0.0.21",
            port=free_port("127.0.0.21"),
            mydomain="pf.test",
            local_users=["bench"],
        )
        pf.start()
        self._stack.callback(pf.stop)
        self.postfix = pf
        self.targets["postfix"] = SmtpTarget(
            "postfix",
            pf.address,
            pf.port,
            "bench@pf.test",
            pf.maildir("bench"),
            pf.pids,
            pf.shed_idle,
        )

        sink = SinkProcess(self.root / "aiosmtpd", "127.0.0.22")
        sink.start()
        self._stack.callback(sink.stop)
        self.targets["aiosmtpd"] = SmtpTarget(
            "aiosmtpd", sink.host, sink.port, "bench@sink.test", sink.maildir, sink.pids
        )

        dovecot = DovecotInstance(
            self.root / "dovecot",
            address="127.0.0.23",
            port=free_port("127.0.0.23"),
            imap_port=free_port("127.0.0.23"),
            users=dict.fromkeys((*POP3_USERS, IMAP_USER), PASSWORD),
        )
        dovecot.start()
        self._stack.callback(dovecot.stop)
        self.dovecot = dovecot

    def _start_relays(self) -> None:
        world = LoopbackWorld(self.root / "postoffice-relay")
        for server in world.servers.values():
            _tune(server)
        _add_user(world.b, "bench@b.test")
        self._stack.callback(world.stop)
        world.start()
        self.relays["postoffice"] = SmtpTarget(
            "postoffice",
            world.a.host,
            world.a.smtp_port,
            "bench@b.test",
            world.b.maildir("bench@b.test"),
            lambda: _postoffice_pids(world.a)() + _postoffice_pids(world.b)(),
        )

        b_root = self.root / "postfix-relay-b"
        b_root.mkdir(mode=0o755, parents=True)
        cert, key = _self_signed(b_root, "mx.b.test")
        b = BenchPostfix(
            b_root,
            address="127.0.0.25",
            port=free_port("127.0.0.25"),
            mydomain="b.test",
            local_users=["bench"],
            main_extra={
                "smtpd_tls_security_level": "may",
                "smtpd_tls_cert_file": str(cert),
                "smtpd_tls_key_file": str(key),
            },
            master_extra=_TLS_SERVICES,
        )
        a = BenchPostfix(
            self.root / "postfix-relay-a",
            address="127.0.0.24",
            port=free_port("127.0.0.24"),
            mydomain="a.test",
            transports={"b.test": f"smtp:[{b.address}]:{b.port}"},
            main_extra={"smtp_tls_security_level": "may", "smtp_tls_connection_reuse": "yes"},
            master_extra=_TLS_SERVICES,
        )
        for instance in (b, a):
            instance.start()
            self._stack.callback(instance.stop)
        self.relays["postfix"] = SmtpTarget(
            "postfix",
            a.address,
            a.port,
            "bench@b.test",
            b.maildir("bench"),
            lambda: a.pids() + b.pids(),
        )


@contextlib.contextmanager
def running(root: Path) -> Iterator[Systems]:
    """All systems, started under `root`, stopped on the way out."""
    systems = Systems(root)
    systems.start()
    try:
        yield systems
    finally:
        systems.stop()
