"""A private Postfix instance on one loopback address, as a reference peer for tests and benches.

`PostfixInstance` writes its own main.cf and master.cf under a root directory and keeps its
queue, data, Maildirs and log there too, so several instances (and the system's own, if any)
never meet. It is sealed off from the world: smtpd listens only on `address:port`, DNS is
never asked (`smtp_dns_support_level = disabled`), it relays only to the domains of
`transports` (others are refused at RCPT, and anything Postfix itself would send elsewhere
meets the `error` transport), and the log goes to a file under the root (`maillog_file`
through postlogd) rather than to syslog. Local users are virtual(8) Maildir mailboxes owned by
the `postfix` user; every daemon runs unchrooted.

    with PostfixInstance(root, transports={"b.test": "smtp:[127.0.0.3]:2525"},
                         local_users=["carol"]) as peer:
        ...  # SMTP to peer.address:peer.port; peer.wait_for_mail("carol")

Postfix must run as root, and the `postfix` user must be able to reach `root` (every parent
directory searchable by others: pytest's 0700 tmp_path is not, a `tempfile.mkdtemp()` that is
made 0755 is).

Standards: none of its own; Postfix's parameters are documented in postconf(5).
"""

from __future__ import annotations

import contextlib
import os
import pty
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from postoffice.testing.server import wait_for_greeting

SBIN = Path("/usr/sbin")


def postfix_tool(name: str) -> str | None:
    """Path of a Postfix program (postfix, postqueue, smtp-source …): PATH, then /usr/sbin."""
    found = shutil.which(name)
    if found is None and os.access(SBIN / name, os.X_OK):
        found = str(SBIN / name)
    return found


def _tool(name: str) -> str:
    path = postfix_tool(name)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed (Debian package postfix)")
    return path


# Every daemon unchrooted ("n" in the 5th column), so nothing needs copying into the queue.
_MASTER_SERVICES = """\
pickup     unix       n  -  n  60    1  pickup
cleanup    unix       n  -  n  -     0  cleanup
qmgr       unix       n  -  n  300   1  qmgr
rewrite    unix       -  -  n  -     -  trivial-rewrite
bounce     unix       -  -  n  -     0  bounce
defer      unix       -  -  n  -     0  bounce
trace      unix       -  -  n  -     0  bounce
verify     unix       -  -  n  -     1  verify
flush      unix       n  -  n  1000? 0  flush
proxymap   unix       -  -  n  -     -  proxymap
proxywrite unix       -  -  n  -     1  proxymap
smtp       unix       -  -  n  -     -  smtp
relay      unix       -  -  n  -     -  smtp
showq      unix       n  -  n  -     -  showq
error      unix       -  -  n  -     -  error
retry      unix       -  -  n  -     -  error
discard    unix       -  -  n  -     -  discard
virtual    unix       -  n  n  -     -  virtual
anvil      unix       -  -  n  -     1  anvil
scache     unix       -  -  n  -     1  scache
postlog    unix-dgram n  -  n  -     1  postlogd
"""


class PostfixInstance:
    """One private Postfix: config, queue, Maildirs and log under `root`."""

    def __init__(
        self,
        root: Path,
        *,
        address: str = "127.0.0.4",
        port: int = 2525,
        mydomain: str = "p.test",
        transports: dict[str, str] | None = None,
        local_users: list[str] | None = None,
    ) -> None:
        self.root = root.resolve()
        self.address = address
        self.port = port
        self.mydomain = mydomain
        self.hostname = f"mx.{mydomain}"
        self.transports = dict(transports or {})
        self.local_users = list(local_users or [])
        self.config_dir = self.root / "etc"
        self.queue_dir = self.root / "spool"
        self.data_dir = self.root / "data"
        self.mail_dir = self.root / "mail"
        self.log_path = self.root / "maillog"
        self._master_pid: int | None = None
        try:
            owner = pwd.getpwnam("postfix")
        except KeyError:
            message = "no postfix user: is the Debian package postfix installed?"
            raise FileNotFoundError(message) from None
        self._uid, self._gid = owner.pw_uid, owner.pw_gid
        self._check_reachable()

    # --- configuration -------------------------------------------------------------------

    def _check_reachable(self) -> None:
        # virtual(8) writes the Maildirs as the postfix user, by absolute path.
        for directory in [self.root, *self.root.parents]:
            if directory.exists() and not directory.stat().st_mode & stat.S_IXOTH:
                raise ValueError(
                    f"{directory} is not searchable by others, so the postfix user cannot "
                    f"reach {self.root}: use a directory such as tempfile.mkdtemp() made 0755"
                )

    def _write_config(self) -> None:
        """Write main.cf, master.cf and the lookup tables; create the Maildir base."""
        # postfix(1) changes into the queue directory before it creates what is missing there.
        for directory in (self.root, self.config_dir, self.queue_dir):
            directory.mkdir(mode=0o755, parents=True, exist_ok=True)
            directory.chmod(0o755)
        self.mail_dir.mkdir(exist_ok=True)
        os.chown(self.mail_dir, self._uid, self._gid)
        transport = self.config_dir / "transport"
        mailboxes = self.config_dir / "vmailbox"
        refused = "error:5.7.1 this test instance sends nowhere outside its transport map"
        main = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "mail_owner": "postfix",
            "myhostname": self.hostname,
            "mydomain": self.mydomain,
            "myorigin": "$mydomain",
            "mydestination": "",
            # Postfix insists that these addresses sit on an interface, and only 127.0.0.1
            # does on lo; smtpd binds to address:port from master.cf all the same.
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            # Relay only to the transport map's domains, whoever asks: anything else is refused
            # at RCPT, and what Postfix itself would send elsewhere meets the error transport.
            "relay_domains": " ".join(self.transports),
            "smtpd_relay_restrictions": "reject_unauth_destination",
            "relayhost": "",
            "smtp_bind_address": self.address,
            # No DNS, ever: next hops are [address]:port literals from the transport map.
            "smtp_dns_support_level": "disabled",
            "smtpd_peername_lookup": "no",
            "default_transport": refused,
            "relay_transport": refused,
            "transport_maps": f"texthash:{transport}",
            "virtual_mailbox_domains": self.mydomain,
            "virtual_mailbox_base": self.mail_dir,
            "virtual_mailbox_maps": f"texthash:{mailboxes}",
            "virtual_uid_maps": f"static:{self._uid}",
            "virtual_gid_maps": f"static:{self._gid}",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "syslog_name": f"postfix-{self.mydomain}",
            "maillog_file": self.log_path,
            "maillog_file_prefixes": self.root,
            # Tests wait seconds, not minutes, for a retry.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "5s",
        }
        mailbox_paths = {f"{user}@{self.mydomain}": f"{user}/" for user in self.local_users}
        files = {
            transport: _lines(self.transports, " "),
            mailboxes: _lines(mailbox_paths, " "),
            self.config_dir / "main.cf": _lines(main, " = "),
            self.config_dir / "master.cf": f"{self.address}:{self.port} inet n - n - - smtpd\n"
            f"{_MASTER_SERVICES}",
        }
        # Postfix rereads a file changed within the last second (it may be half written),
        # 300 ms at a time, for up to seconds: dated back, the files are read at once.
        written = time.time() - 10
        for path, text in files.items():
            path.write_text(text, "utf-8")
            os.utime(path, (written, written))

    # --- lifecycle -----------------------------------------------------------------------

    def _postfix(self, *args: str, timeout: float = 60.0) -> tuple[int, str]:
        """Run `postfix -c CONFIG ARGS`: its exit status and what it said.

        postfix(1) writes its errors to stderr only when that is a terminal (otherwise to
        syslog, which a sandbox may lack), so it gets a pseudo-terminal to write them on.
        """
        main_fd, term_fd = pty.openpty()
        try:
            try:
                result = subprocess.run(
                    [_tool("postfix"), "-c", str(self.config_dir), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=term_fd,
                    stderr=term_fd,
                    timeout=timeout,
                    check=False,
                )
            finally:
                os.close(term_fd)
            chunks = []
            with contextlib.suppress(OSError):  # EIO: the other side is closed, all is read
                while chunk := os.read(main_fd, 4096):
                    chunks.append(chunk)
        finally:
            os.close(main_fd)
        said = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
        return result.returncode, said

    def start(self, timeout: float = 20.0) -> None:
        """Write the config, start the master daemon and wait until smtpd greets."""
        # Postfix listens with SO_REUSEPORT, so a second listener on a taken port would start
        # and silently share the connections: make sure the port is free first.
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.address, self.port))
            except OSError as exc:
                raise RuntimeError(f"{self.address}:{self.port} is taken: {exc}") from None
        self._write_config()
        status, output = self._postfix("start", timeout=timeout)
        if status != 0:
            raise RuntimeError(f"postfix start failed: {output}{self.log()}")
        self._master_pid = int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        if wait_for_greeting(self.address, self.port, b"220", timeout):
            return
        self.stop()
        raise RuntimeError(f"postfix smtpd did not answer on {self.address}:{self.port}")

    def stop(self, timeout: float = 20.0) -> None:
        """`postfix stop` and wait until its processes are gone (SIGKILL them after timeout)."""
        pid, self._master_pid = self._master_pid, None
        if pid is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):  # then SIGKILL, below
            self._postfix("stop", timeout=timeout)
        deadline = time.monotonic() + timeout
        while _group_alive(pid):
            if time.monotonic() > deadline:
                # The master made itself a process group leader (setsid); its children share it.
                os.killpg(pid, signal.SIGKILL)
                deadline = time.monotonic() + timeout
            time.sleep(0.05)

    def __enter__(self) -> PostfixInstance:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- looking at the results ----------------------------------------------------------

    def maildir(self, user: str) -> Path:
        return self.mail_dir / user

    def wait_for_mail(self, user: str, count: int = 1, timeout: float = 15.0) -> list[Path]:
        """Files in the user's Maildir new/ and cur/, once there are at least `count`."""
        box = self.maildir(user)
        deadline = time.monotonic() + timeout
        files: list[Path] = []
        while time.monotonic() < deadline:
            files = [
                p for sub in ("new", "cur") if (box / sub).is_dir() for p in (box / sub).iterdir()
            ]
            if len(files) >= count:
                return sorted(files)
            time.sleep(0.05)
        raise AssertionError(
            f"postfix {user}@{self.mydomain}: {len(files)} messages after {timeout}s, "
            f"wanted {count}\n{self.log()}"
        )

    def log(self) -> str:
        """The maillog so far ("" before the first line)."""
        try:
            return self.log_path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def queue_empty(self) -> bool:
        """True when no message waits in the queue (`postqueue -j` prints one line each)."""
        result = subprocess.run(
            [_tool("postqueue"), "-c", str(self.config_dir), "-j"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return not result.stdout.strip()


def _lines(entries: Mapping[str, object], separator: str) -> str:
    """main.cf ("key = value") or lookup-table ("key value") text."""
    return "".join(f"{key}{separator}{value}\n" for key, value in entries.items())


def _group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is in process group `pgid`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited while we looked
        # After "(comm)": state, ppid, pgrp (proc(5)).
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False
