"""Run a real postoffice server in a child process, for tests and the demo.

`ServerProcess` writes a config with free loopback ports into a data dir,
starts `python -m postoffice serve`, waits until the SMTP port answers, and
stops it with SIGTERM (or SIGKILL, for crash tests). It also runs CLI commands
against the same data dir.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, below the kernel's ephemeral range.

    A port the kernel hands out (bind to 0) can be taken again by any outgoing connection
    before the server binds it; one below the range is only ever taken by a listener.
    Ports given out here are not given out again by this process.
    """
    low, _ = _ephemeral_range()
    for _ in range(1000):
        port = random.randrange(10000, low)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port on {host} below {low}")


_given: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _toml(value: object) -> str:
    """A TOML value for a bool, number, string or list of them (JSON spells them alike)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(value)


def wait_for_greeting(host: str, port: int, prefix: bytes, timeout: float) -> bool:
    """Whether a server on host:port greets with `prefix` before `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1) as sock:
                if sock.recv(512).startswith(prefix):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


class ServerProcess:
    """One server: its data dir, ports and process."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        extra_config: str = "",
        hostname: str = "mx.test",
        smtp_port: int | None = None,
        submission_port: int | None = None,
        submissions_port: int | None = None,
        pop3_port: int | None = None,
        pop3s_port: int | None = None,
        imap_port: int | None = None,
        imaps_port: int | None = None,
    ):
        self.data_dir = data_dir
        self.host = host
        self.hostname = hostname
        self.smtp_port = smtp_port or free_port(host)
        self.submission_port = submission_port or free_port(host)
        self.submissions_port = submissions_port or free_port(host)  # implicit TLS
        self.pop3_port = pop3_port or free_port(host)
        self.pop3s_port = pop3s_port or free_port(host)  # implicit TLS
        self.imap_port = imap_port or free_port(host)
        self.imaps_port = imaps_port or free_port(host)  # implicit TLS
        self.extra_config = extra_config
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = data_dir / "postoffice.toml"
        self.write_config()

    def write_config(self) -> None:
        # Never ask the machine's resolver: without a test DNS server, lookups fail fast.
        dns = "" if "[dns]" in self.extra_config else '[dns]\nnameservers = ["127.0.0.1:9"]\n'
        self.config_path.write_text(
            f'hostname = "{self.hostname}"\n'
            f'data_dir = "."\n'
            f"{self.extra_config}\n{dns}"
            f'[smtp]\nlisten = ["{self.host}:{self.smtp_port}"]\n'
            f'[submission]\nlisten = ["{self.host}:{self.submission_port}"]\n'
            f'listen_tls = ["{self.host}:{self.submissions_port}"]\n'
            f'[pop3]\nlisten = ["{self.host}:{self.pop3_port}"]\n'
            f'listen_tls = ["{self.host}:{self.pop3s_port}"]\n'
            f'[imap]\nlisten = ["{self.host}:{self.imap_port}"]\n'
            f'listen_tls = ["{self.host}:{self.imaps_port}"]\n'
            f"[limits]\nshutdown_grace = 5\n",
            "utf-8",
        )

    def configure(self, section: str, **values: object) -> None:
        """Set keys of one config `section` (e.g. "limits", "auth"); call before `start()`.

        Values are bools, numbers, strings or lists of strings; keys already there change.
        """
        config = tomllib.loads(self.config_path.read_text("utf-8"))
        table = config.setdefault(section, {})
        table.update(values)
        lines = [
            f"{key} = {_toml(value)}"
            for key, value in config.items()
            if not isinstance(value, dict)
        ]
        for name, keys in config.items():
            if isinstance(keys, dict):
                lines += [f"[{name}]", *(f"{key} = {_toml(value)}" for key, value in keys.items())]
        self.config_path.write_text("\n".join(lines) + "\n", "utf-8")

    def cli(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        """Run `postoffice ARGS --data-dir …`; return stdout."""
        result = subprocess.run(
            [sys.executable, "-m", "postoffice", *args, "--data-dir", str(self.data_dir)],
            input=stdin.encode() if stdin is not None else None,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"postoffice {' '.join(args)} failed: {result.stderr.decode()}")
        return result.stdout.decode()

    def start(self, timeout: float = 60.0) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "postoffice", "serve", "--data-dir", str(self.data_dir)],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited at start: {self.log_path.read_text()}")
            try:
                # Listeners bind one after the other: wait until the last ones answer too.
                for port in (self.smtp_port, self.pop3_port, self.imap_port):
                    with socket.create_connection((self.host, port), timeout=1) as sock:
                        sock.recv(512)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()}")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.process = None

    def kill(self) -> None:
        """SIGKILL: the crash in crash tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def maildir(self, address: str) -> Path:
        local, _, domain = address.lower().partition("@")
        return self.data_dir / "mail" / domain / local

    def wait_for_mail(self, address: str, count: int = 1, timeout: float = 15.0) -> list[Path]:
        """Files in the user's Maildir new/ and cur/, once there are at least `count`."""
        box = self.maildir(address)
        deadline = time.monotonic() + timeout
        files: list[Path] = []
        while time.monotonic() < deadline:
            files = [
                p for sub in ("new", "cur") if (box / sub).is_dir() for p in (box / sub).iterdir()
            ]
            if len(files) >= count:
                return sorted(files)
            time.sleep(0.05)
        raise AssertionError(f"{address}: {len(files)} messages after {timeout}s, wanted {count}")


def with_user(
    data_dir: Path,
    address: str,
    password: str,
    *,
    hostname: str = "mx.test",
    **sections: dict[str, object],
) -> ServerProcess:
    """A server (not started) with one user whose failed logins are answered without long
    delays, as protocol tests want; `sections` sets more config, e.g. imap={...}."""
    proc = ServerProcess(data_dir, hostname=hostname)
    proc.configure("auth", base_delay=0.01)
    for section, values in sections.items():
        proc.configure(section, **values)
    proc.cli("user", "add", address, "--password-stdin", stdin=f"{password}\n")
    return proc
