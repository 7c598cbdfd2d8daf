"""The user agent end to end: `postoffice account|send|fetch|inbox|read|save` on the loopback world.

alice@a.test and bob@b.test each have their own config and data directories; their servers
are found through SRV records served by the test DNS server (POSTOFFICE_NAMESERVERS), and
their certificates are trusted with `--ca`, checked by name.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from postoffice.storage.maildir import MaildirMailbox
from postoffice.testing.world import LoopbackWorld
from tests.e2e.test_disk_full import small_disk  # noqa: F401 (a fixture)

PASSWORDS = {"alice@a.test": "pw-alice-1", "bob@b.test": "pw-bob-1", "carol@b.test": "pw-carol"}


class Agent:
    """One person's user agent: their own XDG directories, the test DNS server."""

    def __init__(self, root: Path, world: LoopbackWorld) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(root / "config"),
            "XDG_DATA_HOME": str(root / "data"),
            "POSTOFFICE_NAMESERVERS": world.dns.address,
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "EDITOR": "false",
        }

    def run(self, *args: str, stdin: str | bytes = b"") -> subprocess.CompletedProcess[str]:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        done = subprocess.run(
            [sys.executable, "-m", "postoffice", *args],
            input=data,
            capture_output=True,
            env=self.env,
            timeout=90,
            check=False,
        )
        return subprocess.CompletedProcess(
            done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
        )

    def ok(self, *args: str, stdin: str | bytes = b"") -> str:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        return done.stdout

    def fails(self, *args: str, stdin: str | bytes = b"") -> str:
        """The one-line error of a command that must fail cleanly."""
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        errors = [line for line in done.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1, done.stderr
        return errors[0]

    def files(self, address: str, folder: str = "") -> list[Path]:
        """The messages in the account's local INBOX, or in `folder` (".Sent", ".Drafts")."""
        box = Path(self.env["XDG_DATA_HOME"]) / "postoffice" / address / folder
        return sorted(
            p for sub in ("new", "cur") if (box / sub).is_dir() for p in (box / sub).iterdir()
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[LoopbackWorld]:
    w = LoopbackWorld(tmp_path / "world")
    for address, password in PASSWORDS.items():
        server = w.servers[address.partition("@")[2]]
        server.cli("user", "add", address, "--password-stdin", stdin=f"{password}\n")
    for domain, server in w.servers.items():
        w.dns.add(
            {
                f"_submissions._tcp.{domain}": [f"SRV 0 1 {server.submissions_port} mx.{domain}."],
                f"_submission._tcp.{domain}": [f"SRV 10 1 {server.submission_port} mx.{domain}."],
                f"_pop3s._tcp.{domain}": [f"SRV 0 1 {server.pop3s_port} mx.{domain}."],
                f"_pop3._tcp.{domain}": [f"SRV 10 1 {server.pop3_port} mx.{domain}."],
            }
        )
    w.start()
    yield w
    w.stop()


def ca(world: LoopbackWorld, domain: str) -> str:
    return str(world.servers[domain].data_dir / "tls" / "cert.pem")


def add_account(agent: Agent, world: LoopbackWorld, address: str, *extra: str) -> str:
    domain = address.partition("@")[2]
    return agent.ok(
        "account", "add", address, "--password-stdin", "--ca", ca(world, domain), *extra,
        stdin=PASSWORDS[address] + "\n",
    )  # fmt: skip


@pytest.fixture
def alice(tmp_path: Path, world: LoopbackWorld) -> Agent:
    agent = Agent(tmp_path / "alice", world)
    add_account(agent, world, "alice@a.test", "--name", "Alïce Lindqvist")
    return agent


@pytest.fixture
def bob(tmp_path: Path, world: LoopbackWorld) -> Agent:
    agent = Agent(tmp_path / "bob", world)
    add_account(agent, world, "bob@b.test")
    return agent


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def test_account_add_discovers_servers_through_srv(world: LoopbackWorld, alice: Agent) -> None:
    config = alice.root / "config" / "postoffice" / "accounts.toml"
    assert config.stat().st_mode & 0o777 == 0o600
    account = tomllib.loads(config.read_text())["accounts"]["alice@a.test"]
    assert account["submission"] == {
        "host": "mx.a.test", "port": world.a.submissions_port, "security": "tls"
    }  # fmt: skip
    assert account["pop3"] == {"host": "mx.a.test", "port": world.a.pop3s_port, "security": "tls"}
    assert account["password"] == PASSWORDS["alice@a.test"]  # no keyring in tests
    queried = {(q.name, q.rtype) for q in world.dns.queries}
    assert ("_submissions._tcp.a.test", "SRV") in queried
    assert ("_pop3s._tcp.a.test", "SRV") in queried
    listing = alice.ok("account", "list")
    assert "alice@a.test  (default)" in listing and "mx.a.test" in listing


def test_account_add_warns_when_the_password_is_kept_in_the_file(
    tmp_path: Path, world: LoopbackWorld
) -> None:
    agent = Agent(tmp_path / "carol", world)
    done = agent.run(
        "account", "add", "carol@b.test", "--password-stdin", "--ca", ca(world, "b.test"),
        stdin="pw-carol\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "warning: no system keyring" in done.stderr
    assert "account carol@b.test removed" in agent.ok("account", "del", "carol@b.test")
    assert "no account yet" in agent.fails("inbox")


def test_send_fetch_and_read_the_message_back_equal(
    world: LoopbackWorld, alice: Agent, bob: Agent, tmp_path: Path
) -> None:
    report = tmp_path / "Résumé 2024 — ☃.pdf"
    report.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 40)
    notes = tmp_path / "notes.txt"
    notes.write_text("plain notes\n", "utf-8")
    subject = "Grüße aus Åre — 日本語の件名 that is long enough to be folded over lines"
    body = "Hallo Bob,\n\nçà et là: ünïcödé text.\n.a line starting with a dot\n"
    out = alice.ok(
        "send", "--to", "Bøb Ørsted <bob@b.test>", "--bcc", "carol@b.test",
        "--subject", subject, "--attach", str(report), "--attach", str(notes),
        stdin=body,
    )  # fmt: skip
    assert "queued as" in out and out.strip().rsplit(" ", 1)[-1]

    (path,) = world.b.wait_for_mail("bob@b.test")
    stored = path.read_bytes()
    delivered = parse(stored)
    assert delivered["Subject"] == subject
    assert delivered["From"].addresses[0].display_name == "Alïce Lindqvist"
    assert delivered["To"].addresses[0].display_name == "Bøb Ørsted"
    assert delivered["Message-ID"] and delivered["Date"]
    assert delivered.get_body(("plain",)).get_content().replace("\r\n", "\n") == body
    files = {part.get_filename(): part for part in delivered.iter_attachments()}
    assert files[report.name].get_content() == report.read_bytes()
    assert files[report.name].get_content_type() == "application/pdf"
    assert files["notes.txt"].get_content_type() == "text/plain"
    (carol_copy,) = world.b.wait_for_mail("carol@b.test")
    for raw in (stored, carol_copy.read_bytes()):
        headers = parse(raw).items()  # the server's trace fields may name the recipient
        assert not [v for k, v in headers if "carol" in v and k not in ("Delivered-To", "Received")]
        assert parse(raw)["Bcc"] is None
    (sent,) = alice.files("alice@a.test", ".Sent")
    kept = parse(sent.read_bytes())
    assert kept["Bcc"] == "carol@b.test"
    written = [(k, v) for k, v in kept.items() if k != "Bcc"]
    names = {k for k, _ in written}  # servers add trace and signature fields of their own
    assert [(k, v) for k, v in delivered.items() if k in names] == written
    assert kept.get_payload()[1].get_content() == files[report.name].get_content()

    assert "1 new" in bob.ok("fetch")
    fetched = bob.files("bob@b.test")
    assert len(fetched) == 1 and fetched[0].read_bytes() == stored
    listing = bob.ok("inbox", "--unread")
    assert " 1 N " in listing and "Alïce Lindqvist" in listing and "Grüße" in listing
    shown = bob.ok("read", "1")
    assert "Subject: Grüße aus Åre" in shown and "ünïcödé" in shown
    assert report.name in shown and "notes.txt" in shown
    assert "no unread messages" in bob.ok("inbox", "--unread")
    saved = tmp_path / "saved"
    saved.mkdir()
    bob.ok("save", "1", "--dir", str(saved))
    assert (saved / report.name).read_bytes() == report.read_bytes()


def test_fetch_with_and_without_keep(world: LoopbackWorld, bob: Agent) -> None:
    server_box = world.b.maildir("bob@b.test")
    store = MaildirMailbox(server_box, "mx.b.test")
    for i in range(3):
        store.deliver(f"Subject: m{i}\r\nMessage-ID: <m{i}@t>\r\n\r\nbody {i}\r\n".encode())
    assert "3 new, 0 deleted on the server, 3 left" in bob.ok("fetch", "--keep")
    assert "0 new, 0 deleted" in bob.ok("fetch", "bob@b.test", "--keep")
    assert len(world.b.wait_for_mail("bob@b.test", 3)) == 3
    store.deliver(b"Subject: m3\r\nMessage-ID: <m3@t>\r\n\r\nbody 3\r\n")
    assert "1 new, 4 deleted on the server" in bob.ok("fetch")
    assert not list((server_box / "new").iterdir()) and not list((server_box / "cur").iterdir())
    ids = sorted(parse(p.read_bytes())["Message-ID"] for p in bob.files("bob@b.test"))
    assert ids == [f"<m{i}@t>" for i in range(4)]


def test_interrupted_fetch_resumes_without_loss_or_duplicates(
    world: LoopbackWorld, bob: Agent
) -> None:
    store = MaildirMailbox(world.b.maildir("bob@b.test"), "mx.b.test")
    total = 150
    for i in range(total):
        store.deliver(f"Message-ID: <n{i}@t>\r\n\r\n".encode() + b"x" * 20_000 + b"\r\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "postoffice", "fetch"],
        env=bob.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while len(bob.files("bob@b.test")) < 10 and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    bob.ok("fetch")
    ids = [parse(p.read_bytes())["Message-ID"] for p in bob.files("bob@b.test")]
    assert sorted(ids) == sorted(f"<n{i}@t>" for i in range(total))
    assert store.messages() == []


def test_hostile_attachment_names_are_saved_inside_the_directory(
    world: LoopbackWorld, bob: Agent, tmp_path: Path
) -> None:
    hostile = ["../../escaped.txt", "/etc/passwd", "..", ".hidden", "a\\..\\b.txt", "x\x1b[2Jy"]
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "m@b.test", "bob@b.test", "hostile"
    message.set_content("see attachments")
    for name in hostile:
        message.add_attachment(name.encode(), maintype="application", subtype="octet-stream",
                               filename=name)  # fmt: skip
    MaildirMailbox(world.b.maildir("bob@b.test"), "mx.b.test").deliver(message.as_bytes())
    bob.ok("fetch")
    shown = bob.ok("read", "1")
    assert "\x1b" not in shown
    target = tmp_path / "inbox-files" / "sub"
    target.mkdir(parents=True)
    bob.ok("save", "1", "--dir", str(target))
    saved = sorted(p.name for p in target.iterdir())
    assert len(saved) == len(hostile)
    assert not (tmp_path / "inbox-files" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()
    assert all(
        not name.startswith(".") and "/" not in name and "\x1b" not in name for name in saved
    )
    assert {(target / name).read_bytes() for name in saved} == {n.encode() for n in hostile}


def test_bad_input_is_one_line_and_changes_nothing(
    world: LoopbackWorld, alice: Agent, tmp_path: Path
) -> None:
    other = Agent(tmp_path / "mallory", world)
    ca_a = ca(world, "a.test")
    error = other.fails(
        "account", "add", "alice@a.test", "--password-stdin", "--ca", ca_a, stdin="wrong\n"
    )
    assert "login refused" in error and "535" in error
    port = world.a.submissions_port
    error = other.fails(
        "account", "add", "alice@a.test", "--password-stdin", "--ca", ca_a,
        "--smtp", "127.0.0.2:9", "--pop3", "127.0.0.2:9", stdin="pw-alice-1\n",
    )  # fmt: skip
    assert "connection refused" in error
    world.dns.add({"wrong.a.test": ["A 127.0.0.3"]})  # b's server, whose certificate says mx.b.test
    error = other.fails(
        "account", "add", "alice@a.test", "--password-stdin", "--ca", ca(world, "b.test"),
        "--smtp", f"wrong.a.test:{port}", "--smtp-security", "tls", stdin="pw-alice-1\n",
    )  # fmt: skip
    assert "certificate" in error and "wrong.a.test" in error
    assert not (other.root / "config" / "postoffice" / "accounts.toml").exists()

    error = alice.fails("send", "--to", "nobody@a.test", "--subject", "lost?", "--body", "hi")
    assert "550" in error and "nobody@a.test" in error and "Drafts" in error
    assert len(alice.files("alice@a.test", ".Drafts")) == 1
    assert alice.files("alice@a.test", ".Sent") == []
    assert "bob@" in alice.fails("send", "--to", "bob@", "--body", "x")
    assert "no message 7" in alice.fails("read", "7")


@pytest.mark.slow
def test_full_disk_while_fetching_loses_nothing(
    world: LoopbackWorld,
    small_disk: Path,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    bob = Agent(tmp_path / "bob", world)
    bob.env["XDG_DATA_HOME"] = str(small_disk)  # 3 MB
    add_account(bob, world, "bob@b.test")
    store = MaildirMailbox(world.b.maildir("bob@b.test"), "mx.b.test")
    total = 40
    for i in range(total):
        store.deliver(f"Message-ID: <f{i}@t>\r\n\r\n".encode() + b"y" * 100_000 + b"\r\n")
    error = bob.fails("fetch")
    assert "No space left on device" in error and "left on the server" in error
    local = len(bob.files("bob@b.test"))
    assert 0 < local < total and len(store.messages()) == total - local
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    bob.ok("fetch")
    ids = [parse(p.read_bytes())["Message-ID"] for p in bob.files("bob@b.test")]
    assert sorted(ids) == sorted(f"<f{i}@t>" for i in range(total))
    assert store.messages() == []


@pytest.mark.slow
def test_full_disk_stops_a_message_before_it_is_sent(
    world: LoopbackWorld,
    small_disk: Path,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    alice = Agent(tmp_path / "alice", world)
    alice.env["XDG_DATA_HOME"] = str(small_disk)
    add_account(alice, world, "alice@a.test")
    filler = small_disk / "filler"
    with filler.open("wb") as file, contextlib.suppress(OSError):
        while True:
            file.write(b"z" * 65536)
            file.flush()
    error = alice.fails("send", "--to", "alice@a.test", "--subject", "first", "--body", "1")
    assert "No space left on device" in error and "nothing was sent" in error
    filler.unlink()
    alice.ok("send", "--to", "alice@a.test", "--subject", "second", "--body", "2")
    (path,) = world.a.wait_for_mail("alice@a.test")
    assert parse(path.read_bytes())["Subject"] == "second"
