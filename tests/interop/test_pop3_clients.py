"""Real POP3 clients against a running server: curl, fetchmail and getmail6 (Debian packages).

Each client reads, and most delete, what the store's own delivery put in alice's maildrop
(one server for the module, the maildrop emptied before each test),
over plaintext (loopback), STLS and implicit TLS. Certificates are checked for real: the
server's self-signed certificate names mx.test, so clients connect to 127.0.0.1 while
verifying that name (curl `--resolve`, fetchmail `sslcommonname`, getmail
`ssl_cert_hostname`). fetchmail and getmail run with HOME in the test's directory and their
configuration in 0600 files there; they deliver through an MDA command, one file a message.

Standards: RFC 1939, RFC 2449, RFC 2595, RFC 5034, RFC 8314
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.testing.server import ServerProcess
from tests.conftest import require_tool
from tests.e2e.test_pop3 import (
    INDEX_NAME,
    PASSWORD,
    USER,
    emptied,
    files,
    message,
    new_server,
    put,
)

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = new_server(tmp_path_factory.mktemp("pop3-clients"))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def server(shared: ServerProcess) -> ServerProcess:
    """One server for the module, alice's maildrop empty for each test."""
    return emptied(shared)


def run(*args: str, home: Path) -> subprocess.CompletedProcess[bytes]:
    """Run a client with HOME in the test's directory; output as bytes (CRLF intact)."""
    return subprocess.run(
        args,
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "HOME": str(home), "LC_ALL": "C"},
    )


def cert(server: ServerProcess) -> str:
    return str(server.data_dir / "tls" / "cert.pem")


# -- curl ---------------------------------------------------------------------------------


def curl(server: ServerProcess, url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    tool = require_tool("curl")
    return run(
        tool,
        "-sS",
        "--max-time",
        "30",
        "-u",
        f"{USER}:{PASSWORD}",
        *args,
        url,
        home=server.data_dir,
    )


def test_curl_lists_retrieves_and_deletes(server: ServerProcess) -> None:
    keys = put(server, message(1), message(2, b".dot line\r\n..\r\n"), message(3))
    stored = files(server)
    base = f"pop3://127.0.0.1:{server.pop3_port}/"

    listing = curl(server, base)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines() == [
        b"%d %d" % (n, len(stored[k])) for n, k in enumerate(keys, 1)
    ]

    retr = curl(server, base + "2")
    assert retr.returncode == 0, retr.stderr
    assert retr.stdout == stored[keys[1]]  # unstuffed, CRLF, byte for byte

    uidl = curl(server, base, "-X", "UIDL")
    assert uidl.stdout.splitlines() == [b"%d %s" % (n, k.encode()) for n, k in enumerate(keys, 1)]

    top = curl(server, base, "-X", "TOP 3 0")
    assert top.stdout == stored[keys[2]].partition(b"\r\n\r\n")[0] + b"\r\n\r\n"

    dele = curl(server, base + "1", "-X", "DELE", "-I")  # curl sends "DELE 1", no body
    assert dele.returncode == 0, dele.stderr
    assert set(files(server)) == set(keys[1:])  # curl QUITs: the UPDATE state ran
    after = curl(server, base)
    assert [line.split()[0] for line in after.stdout.splitlines()] == [b"1", b"2"]

    missing = curl(server, base + "9")
    assert missing.returncode != 0  # -ERR for a message that is not there


def test_curl_pop3s_and_stls_check_the_certificate(server: ServerProcess) -> None:
    (key,) = put(server, message(1))
    tls_port, plain_port = server.pop3s_port, server.pop3_port
    resolve = ["--cacert", cert(server), "--resolve", f"mx.test:{tls_port}:127.0.0.1"]

    implicit = curl(server, f"pop3s://mx.test:{tls_port}/1", *resolve)
    assert implicit.returncode == 0, implicit.stderr
    assert implicit.stdout == files(server)[key]

    stls = curl(
        server,
        f"pop3://mx.test:{plain_port}/",
        "--ssl-reqd",  # STLS, or fail
        "--cacert",
        cert(server),
        "--resolve",
        f"mx.test:{plain_port}:127.0.0.1",
        "-v",
    )
    assert stls.returncode == 0, stls.stderr
    assert b"> STLS" in stls.stderr
    assert stls.stdout.splitlines() == [b"1 %d" % len(files(server)[key])]

    wrong_name = curl(
        server,
        f"pop3s://other.test:{tls_port}/",
        "--cacert",
        cert(server),
        "--resolve",
        f"other.test:{tls_port}:127.0.0.1",
    )
    assert wrong_name.returncode == 60, wrong_name.stderr  # peer certificate not accepted


# -- fetchmail ------------------------------------------------------------------------------


def fetchmail(server: ServerProcess, home: Path, port: int, options: str) -> str:
    """Run fetchmail once against `port` with `options`; its verbose log.

    Messages go to `home/inbox/`, one file each; the exit status is 0 when mail came,
    1 when there was none (fetchmail(1) EXIT CODES); anything else fails the test.
    """
    tool = require_tool("fetchmail")
    inbox = home / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    rc = home / "fetchmailrc"
    rc.write_text(
        f"poll mx.test via 127.0.0.1 port {port} proto POP3 uidl\n"
        f'  user "{USER}" there with password "{PASSWORD}"\n'
        f'  options {options} mda "cat > $(mktemp {inbox}/msg.XXXXXX)"\n',
        "utf-8",
    )
    rc.chmod(0o600)
    result = run(
        tool,
        "--fetchmailrc",
        str(rc),
        "--idfile",
        str(home / "fetchids"),
        "--pidfile",
        str(home / "fetchmail.pid"),
        "--nodetach",
        "--nosyslog",
        "-v",
        home=home,
    )
    log = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode in (0, 1), log
    return log


def fetched(home: Path) -> list[bytes]:
    """The bodies of the messages fetchmail delivered, without its Received: line."""
    return sorted(
        path.read_bytes().replace(b"\r\n", b"\n").partition(b"From: ")[2]
        for path in (home / "inbox").iterdir()
    )


def verified(server: ServerProcess) -> str:
    return f'sslcertck sslcertfile "{cert(server)}" sslcommonname "mx.test"'


def test_fetchmail_over_pop3s_downloads_and_deletes(server: ServerProcess, tmp_path: Path) -> None:
    sent = [message(1), message(2, b".leading dot\r\n"), message(3)]
    put(server, *sent)
    log = fetchmail(server, tmp_path, server.pop3s_port, f"ssl {verified(server)}")
    assert "3 messages for alice@localhost" in log
    assert fetched(tmp_path) == sorted(m.replace(b"\r\n", b"\n")[len(b"From: ") :] for m in sent)
    assert files(server) == {}  # fetchmail deleted them (no "keep")


def test_fetchmail_stls_keep_and_uidl_fetch_only_new_mail(
    server: ServerProcess, tmp_path: Path
) -> None:
    put(server, message(1), message(2))
    options = f'sslproto "tls1.2+" {verified(server)} keep'  # TLS mandatory: STLS
    first = fetchmail(server, tmp_path, server.pop3_port, options)
    assert "POP3> STLS" in first and "upgrade to TLS succeeded" in first
    assert len(fetched(tmp_path)) == 2
    again = fetchmail(server, tmp_path, server.pop3_port, options)
    assert "reading message" not in again  # the UIDLs are the same: nothing is new
    for path in server.maildir(USER).glob(INDEX_NAME + "*"):
        path.unlink()  # re-indexing keeps the UIDLs too
    put(server, message(3))
    third = fetchmail(server, tmp_path, server.pop3_port, options)
    assert third.count("reading message") == 1  # (with "keep" it reads by TOP n 99999999)
    assert fetched(tmp_path)[-1].endswith(b"body of 3\n")
    assert len(files(server)) == 3  # "keep": nothing deleted


def test_fetchmail_plaintext_login_on_loopback(server: ServerProcess, tmp_path: Path) -> None:
    """Loopback may log in without TLS (`[pop3] allow_plaintext_loopback`, the default)."""
    put(server, message(1))
    log = fetchmail(server, tmp_path, server.pop3_port, "sslproto ''")
    assert "POP3> STLS" not in log and "POP3> PASS" in log
    assert len(fetched(tmp_path)) == 1
    assert files(server) == {}


# -- getmail6 -------------------------------------------------------------------------------


def test_getmail_over_pop3s_downloads_and_deletes(server: ServerProcess, tmp_path: Path) -> None:
    tool = require_tool("getmail")
    put(server, message(1), message(2, b"..two dots\r\n"))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    rc = tmp_path / "getmailrc"
    rc.write_text(
        "[retriever]\n"
        "type = SimplePOP3SSLRetriever\n"
        "server = 127.0.0.1\n"
        f"port = {server.pop3s_port}\n"
        f"username = {USER}\n"
        f"password = {PASSWORD}\n"
        f"ca_certs = {cert(server)}\n"
        "ssl_cert_hostname = mx.test\n"
        "[destination]\n"
        "type = MDA_external\n"
        "path = /bin/sh\n"
        f'arguments = ("-c", "cat > $(mktemp {inbox}/msg.XXXXXX)")\n'
        "allow_root_commands = true\n"  # getmail refuses to run commands as root otherwise
        "[options]\n"
        "read_all = true\n"
        "delete = true\n",
        "utf-8",
    )
    rc.chmod(0o600)
    result = run(tool, "--rcfile", str(rc), "--getmaildir", str(tmp_path), home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"2 messages" in result.stdout
    bodies = sorted(p.read_bytes().replace(b"\r\n", b"\n") for p in inbox.iterdir())
    assert bodies[0].endswith(b"Subject: message 1\n\nbody of 1\n")
    assert bodies[1].endswith(b"Subject: message 2\n\nbody of 2\n..two dots\n")
    assert files(server) == {}
