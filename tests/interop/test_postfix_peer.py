"""Postfix as the other mail server: mail crosses between it and postoffice on loopback.

postoffice listens on 127.0.0.3 and serves b.test (user bob); each private Postfix instance
(`postoffice.testing.postfix`) listens on 127.0.0.4 or 127.0.0.5 and sends only where its
transport map says. Postfix's own load generator, smtp-source, also runs against postoffice:
the benchmark uses it.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from postoffice.testing.dns import DnsServer
from postoffice.testing.postfix import PostfixInstance, postfix_tool
from postoffice.testing.server import ServerProcess, free_port
from tests.conftest import IN_CI

pytestmark = pytest.mark.interop

POSTOFFICE_HOST = "127.0.0.3"
POSTFIX_HOST = "127.0.0.4"
MESSAGE = (
    b"From: Carol <carol@p.test>\r\n"
    b"To: Bob <bob@b.test>\r\n"
    b"Subject: across the border\r\n"
    b"\r\n"
    b"Hello from the other side.\r\n"
)
REPLY = (
    b"From: Bob <bob@b.test>\r\n"
    b"To: Carol <carol@p.test>\r\n"
    b"Subject: and back\r\n"
    b"\r\n"
    b"Hello from postoffice.\r\n"
)


def require_postfix(tool: str = "postfix") -> str:
    """Path of a Postfix program; skip without it (or when not root), fail under CI=true."""
    path = postfix_tool(tool)
    if path is None:
        reason = f"{tool} is not installed (Debian package postfix; `make deps` installs it)"
    elif os.geteuid() != 0:
        reason = "a private Postfix instance must be started as root"
    else:
        return path
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


PostfixFactory = Callable[..., PostfixInstance]
PostofficeFactory = Callable[..., ServerProcess]


@pytest.fixture
def make_postfix() -> Iterator[PostfixFactory]:
    """Start private Postfix instances; stop them and remove their roots afterwards."""
    require_postfix()
    started: list[tuple[PostfixInstance, Path]] = []

    def make(
        address: str = POSTFIX_HOST,
        *,
        mydomain: str = "p.test",
        transports: dict[str, str] | None = None,
        local_users: list[str] | None = None,
    ) -> PostfixInstance:
        # A root the postfix user can reach: pytest's tmp_path sits under a 0700 directory.
        root = Path(tempfile.mkdtemp(prefix="postoffice-postfix-"))
        root.chmod(0o755)
        instance = PostfixInstance(
            root,
            address=address,
            port=free_port(address),
            mydomain=mydomain,
            transports=transports,
            local_users=local_users,
        )
        started.append((instance, root))
        instance.start()
        return instance

    try:
        yield make
    finally:
        for instance, root in started:
            try:
                instance.stop()
            finally:
                shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_postoffice(tmp_path: Path) -> Iterator[PostofficeFactory]:
    """Start a postoffice server on 127.0.0.3 with bob@b.test; stop it afterwards."""
    servers: list[ServerProcess] = []

    def make(extra_config: str = "") -> ServerProcess:
        proc = ServerProcess(tmp_path / "data", host=POSTOFFICE_HOST, extra_config=extra_config)
        proc.cli("domain", "add", "b.test")
        proc.cli("user", "add", "bob@b.test", "--password-stdin", stdin="pw-bob-1\n")
        servers.append(proc)
        proc.start()
        return proc

    try:
        yield make
    finally:
        for proc in servers:
            proc.stop()


def test_postfix_relays_into_postoffice(
    make_postfix: PostfixFactory, make_postoffice: PostofficeFactory
) -> None:
    proc = make_postoffice()
    peer = make_postfix(transports={"b.test": f"smtp:[{POSTOFFICE_HOST}]:{proc.smtp_port}"})
    with smtplib.SMTP(peer.address, peer.port, timeout=10) as client:
        refused = client.sendmail("carol@p.test", ["bob@b.test"], MESSAGE)
    assert refused == {}
    (path,) = proc.wait_for_mail("bob@b.test")
    data = path.read_bytes()
    assert b"Subject: across the border" in data
    assert b"Hello from the other side." in data
    assert b"by mx.p.test (Postfix)" in data  # Postfix's own Received: header came along
    assert "status=sent" in peer.log()


def test_postoffice_delivers_to_postfix(
    make_postfix: PostfixFactory, make_postoffice: PostofficeFactory
) -> None:
    peer = make_postfix(local_users=["carol"])
    zones = {"p.test": ["MX 10 mx.p.test."], "mx.p.test": [f"A {POSTFIX_HOST}"]}
    with DnsServer(zones) as dns:
        proc = make_postoffice(
            f'[dns]\nnameservers = ["{dns.address}"]\n[relay]\nport = {peer.port}\n'
        )
        with smtplib.SMTP(proc.host, proc.smtp_port, timeout=10) as client:
            refused = client.sendmail("bob@b.test", ["carol@p.test"], REPLY)
        assert refused == {}
        (path,) = peer.wait_for_mail("carol", timeout=10)
    data = path.read_bytes()
    assert b"Hello from postoffice." in data
    assert b"by mx.test (postoffice)" in data  # postoffice's Received: header came along
    assert peer.queue_empty()


def test_smtp_source_loads_postoffice(make_postoffice: PostofficeFactory) -> None:
    smtp_source = require_postfix("smtp-source")
    proc = make_postoffice()
    # -s 2: two sessions at once; -m 20: twenty messages in all.
    command = [smtp_source, "-s", "2", "-m", "20", "-f", "a@example.org", "-t", "bob@b.test"]
    result = subprocess.run(
        [*command, f"{proc.host}:{proc.smtp_port}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(proc.wait_for_mail("bob@b.test", count=20)) == 20


def test_two_postfix_instances_side_by_side(make_postfix: PostfixFactory) -> None:
    inner = make_postfix("127.0.0.5", mydomain="q.test", local_users=["dave"])
    outer = make_postfix(transports={"q.test": f"smtp:[{inner.address}]:{inner.port}"})
    with smtplib.SMTP(outer.address, outer.port, timeout=10) as client:
        client.sendmail("carol@p.test", ["dave@q.test"], MESSAGE)
    (path,) = inner.wait_for_mail("dave")
    assert b"by mx.p.test (Postfix)" in path.read_bytes()
    # Neither in its transport map nor its own: refused at RCPT, never looked up in DNS.
    with (
        smtplib.SMTP(outer.address, outer.port, timeout=10) as client,
        pytest.raises(smtplib.SMTPRecipientsRefused),
    ):
        client.sendmail("carol@p.test", ["someone@example.com"], MESSAGE)
