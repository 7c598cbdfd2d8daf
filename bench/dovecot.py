"""A private Dovecot POP3 and IMAP server on one loopback address, the peer of the POP3 and
IMAP benchmarks.

`DovecotInstance` writes its own dovecot.conf under a root directory and keeps its runtime
directory, state, log, password file and Maildirs there, so the system's Dovecot (if any) and
its configuration are never touched. POP3 and IMAP are served, in plaintext (`ssl = no`,
`disable_plaintext_auth = no`): the benchmark compares mail handling, not TLS. Users come from
a passwd-file holding each password as postoffice stores it, an argon2id hash made by
argon2-cffi with its defaults (m = 64 MiB, t = 3, p = 4; Dovecot's ARGON2ID scheme verifies it
as it is), so that a login costs both servers the same verification; their mail is
`maildir:<root>/mail/<user>`, owned by the unprivileged `nobody` user that Dovecot's mail
processes run as. Everything else is Dovecot's default (fsync policy, index files, one login
process per connection, IDLE woken by inotify with `mailbox_idle_check_interval` = 30 s as
the fallback). `deliver` runs dovecot-lda, the
delivery agent Dovecot ships, the way an MTA's mailbox_command would.

    with DovecotInstance(root, address="127.0.0.23", port=2110, imap_port=2143,
                         users={"bob": "pw"}) as pop:
        shutil.copytree(maildrop, pop.maildir("bob"), dirs_exist_ok=True); pop.own_mail()

Dovecot starts as root, so, as with Postfix, `root` must be reachable by others (a
`tempfile.mkdtemp()` made 0755).

Standards: none of its own; the settings are those of Dovecot 2.3 (doveconf -a).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from argon2 import PasswordHasher

from bench.procs import alive, with_descendants
from postoffice.testing.server import wait_for_greeting

MAIL_USER = "nobody"
LDA = "/usr/lib/dovecot/dovecot-lda"  # in dovecot-core


def dovecot_binary() -> str | None:
    """Path of the dovecot master binary (PATH, then /usr/sbin); None when not installed."""
    found = shutil.which("dovecot")
    if found is None and os.access("/usr/sbin/dovecot", os.X_OK):
        found = "/usr/sbin/dovecot"
    return found


def dovecot_version() -> str:
    binary = dovecot_binary()
    if binary is None:
        return "not installed"
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip()


class DovecotInstance:
    """One private Dovecot serving POP3 on `address:port` and IMAP on `address:imap_port`,
    everything under `root`."""

    def __init__(
        self, root: Path, *, address: str, port: int, imap_port: int, users: dict[str, str]
    ) -> None:
        self.root = root.resolve()
        self.address = address
        self.port = port
        self.imap_port = imap_port
        self.users = dict(users)
        self.config_path = self.root / "dovecot.conf"
        self.log_path = self.root / "dovecot.log"
        self.mail_dir = self.root / "mail"
        self._master_pid: int | None = None
        mail_user = pwd.getpwnam(MAIL_USER)
        self._uid, self._gid = mail_user.pw_uid, mail_user.pw_gid

    def _write_config(self) -> None:
        for name in ("run", "state", "home"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.mail_dir.mkdir(exist_ok=True)
        os.chown(self.mail_dir, self._uid, self._gid)
        passwd = self.root / "passwd"
        hasher = PasswordHasher()  # postoffice's directory hashes with the same defaults
        passwd.write_text(
            "".join(f"{user}:{{ARGON2ID}}{hasher.hash(pw)}\n" for user, pw in self.users.items())
        )
        passwd.chmod(0o600)
        # Read by the auth process, which runs as default_internal_user.
        internal = pwd.getpwnam("dovecot")
        os.chown(passwd, internal.pw_uid, internal.pw_gid)
        self.config_path.write_text(
            f"""\
# Written by bench/dovecot.py: a private POP3 and IMAP server for the benchmark.
protocols = pop3 imap
listen = {self.address}
base_dir = {self.root}/run
state_dir = {self.root}/state
instance_name = postoffice-bench
log_path = {self.log_path}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{self.mail_dir}/%u
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = static
  args = uid={self._uid} gid={self._gid} home={self.root}/home/%u
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {self.address}
    port = {self.port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = {self.address}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""",
            "utf-8",
        )

    def maildir(self, user: str) -> Path:
        return self.mail_dir / user

    def own_mail(self) -> None:
        """Give every file under the Maildirs to the mail user (after copying mail in as root)."""
        for directory, _subdirs, files in os.walk(self.mail_dir):
            os.chown(directory, self._uid, self._gid)
            for name in files:
                os.chown(os.path.join(directory, name), self._uid, self._gid)

    def deliver(self, user: str, message: bytes, timeout: float = 30.0) -> None:
        """Deliver `message` to `user`'s INBOX with dovecot-lda (as the mail user, fsynced)."""
        result = subprocess.run(
            [LDA, "-c", str(self.config_path), "-d", user],
            input=message,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"dovecot-lda exited {result.returncode}: {result.stderr!r}")

    def start(self, timeout: float = 20.0) -> None:
        """Write the config, start the master and wait until POP3 and IMAP greet."""
        binary = dovecot_binary()
        if binary is None:
            raise FileNotFoundError("dovecot is not installed (Debian package dovecot-pop3d)")
        self._write_config()
        # The daemon keeps its stderr open: a pipe would never see EOF, so a file it is.
        errors_path = self.root / "dovecot.stderr"
        with errors_path.open("wb") as errors:
            result = subprocess.run(
                [binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=errors,
                stderr=errors,
                timeout=timeout,
                check=False,
            )
        if result.returncode != 0:
            said = errors_path.read_text("utf-8", errors="replace")
            raise RuntimeError(f"dovecot failed to start: {said}{self.log()}")
        self._master_pid = _master_pid(self.root / "run" / "master.pid", timeout)
        if wait_for_greeting(self.address, self.port, b"+OK", timeout) and wait_for_greeting(
            self.address, self.imap_port, b"* OK", timeout
        ):
            return
        self.stop()
        raise RuntimeError(f"dovecot did not answer on {self.address}:{self.port}\n{self.log()}")

    def pids(self) -> list[int]:
        """The master and every process it started."""
        return [] if self._master_pid is None else with_descendants(self._master_pid)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the master (it ends its children) and wait; SIGKILL what is left."""
        pid, self._master_pid = self._master_pid, None
        if pid is None:
            return
        processes = with_descendants(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while living := [p for p in processes if alive(p)]:
            if time.monotonic() > deadline:
                for leftover in living:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(leftover, signal.SIGKILL)
                deadline = time.monotonic() + timeout
            time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> DovecotInstance:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _master_pid(path: Path, timeout: float) -> int:
    """The master's pid from its pid file, which the daemon writes after the command that
    started it may already have returned."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            return int(path.read_text().split()[0])
        if time.monotonic() > deadline:
            raise RuntimeError(f"dovecot wrote no pid file ({path}) within {timeout:.0f} s")
        time.sleep(0.02)
