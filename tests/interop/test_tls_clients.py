"""Real clients submit over TLS with AUTH: Python's smtplib, swaks and curl, each through
STARTTLS on the submission port and through implicit TLS (RFC 8314).

Every test runs twice: against a certificate from a test CA (trustme) set in `[tls] cert`
and `key`, and against the self-signed certificate the server generates on first start,
which the clients then trust directly (`<data_dir>/tls/cert.pem`). Clients verify the
certificate in both cases; swaks and curl are Debian packages (`make deps`).

Standards: RFC 3207 (STARTTLS), RFC 8314 (implicit TLS), RFC 4954 and RFC 4616 (AUTH
PLAIN), RFC 6409 (submission), RFC 3848 (ESMTPSA).
"""

from __future__ import annotations

import smtplib
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from postoffice.testing.server import ServerProcess
from tests.abuse.helpers import add_user, header_section, make_ca, running, wait_for_message
from tests.conftest import require_tool

pytestmark = pytest.mark.interop

USER, PASSWORD = "alice@localhost", "pw-alice-1"
HOST = "127.0.0.1"  # the certificates name it, as clients check


@dataclass(frozen=True, slots=True)
class TlsServer:
    """A running server and the file a client must trust to verify it."""

    proc: ServerProcess
    ca_file: Path
    mode: str

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def received(self, subject: str) -> bytes:
        """The headers of the delivered message with this subject, once it is there."""
        message = wait_for_message(self.proc, USER, f"Subject: {subject}\r\n".encode())
        headers = header_section(message)
        assert b" with ESMTPSA id " in headers
        return headers


@pytest.fixture(scope="module", params=["trusted-ca", "self-signed"])
def mx(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsServer]:
    root = tmp_path_factory.mktemp(request.param)
    proc = ServerProcess(root / "data", hostname="localhost")
    if request.param == "trusted-ca":
        _, files = make_ca(root / "ca")
        proc.configure("tls", cert=str(files.cert), key=str(files.key))
        ca_file = files.ca_file
    else:
        ca_file = proc.data_dir / "tls" / "cert.pem"  # generated when the server starts
    add_user(proc, USER, PASSWORD)
    with running(proc):
        yield TlsServer(proc, ca_file, request.param)


def email(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = USER, USER, subject
    message.set_content("Sent over TLS.\n")
    return message


# -- Python's smtplib ---------------------------------------------------------------------


def test_smtplib_smtp_ssl(mx: TlsServer) -> None:
    subject = f"smtplib SMTP_SSL {mx.mode}"
    with smtplib.SMTP_SSL(HOST, mx.proc.submissions_port, context=mx.context(), timeout=30) as c:
        c.login(USER, PASSWORD)
        c.send_message(email(subject))
    mx.received(subject)


def test_smtplib_starttls(mx: TlsServer) -> None:
    subject = f"smtplib starttls {mx.mode}"
    with smtplib.SMTP(HOST, mx.proc.submission_port, timeout=30) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        client.starttls(context=mx.context())
        client.ehlo()
        assert "PLAIN" in client.esmtp_features["auth"].split()
        client.login(USER, PASSWORD)
        client.send_message(email(subject))
    mx.received(subject)


def test_smtplib_refuses_a_certificate_it_does_not_trust(mx: TlsServer) -> None:
    """The clients above verify for real: without the CA the handshake fails."""
    system_trust = ssl.create_default_context()  # smtplib's own default verifies nothing
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(HOST, mx.proc.submissions_port, context=system_trust, timeout=30)


# -- swaks ----------------------------------------------------------------------------------


def swaks(mx: TlsServer, port: int, subject: str, *tls: str) -> None:
    result = subprocess.run(
        [
            require_tool("swaks"),
            *("--server", f"{HOST}:{port}", *tls, "--tls-verify", "--tls-ca-path", mx.ca_file),
            *("--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD),
            *("--from", USER, "--to", USER, "--header", f"Subject: {subject}"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "235 2.7.0" in result.stdout and "queued as" in result.stdout


def test_swaks_starttls_auth_plain(mx: TlsServer) -> None:
    subject = f"swaks tls {mx.mode}"
    swaks(mx, mx.proc.submission_port, subject, "--tls")
    mx.received(subject)


def test_swaks_implicit_tls(mx: TlsServer) -> None:
    subject = f"swaks tlsc {mx.mode}"
    swaks(mx, mx.proc.submissions_port, subject, "--tlsc")
    mx.received(subject)


# -- curl -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["smtp://{host}:{submission} --ssl-reqd", "smtps://{host}:{tls}"],
    ids=["starttls", "implicit"],
)
def test_curl(mx: TlsServer, url: str) -> None:
    address = url.format(
        host=HOST, submission=mx.proc.submission_port, tls=mx.proc.submissions_port
    )
    subject = f"curl {address.split(':')[0]} {mx.mode}"
    result = subprocess.run(
        [
            require_tool("curl"),
            *address.split(),
            *("--cacert", mx.ca_file, "--user", f"{USER}:{PASSWORD}"),
            *("--mail-from", USER, "--mail-rcpt", USER, "--upload-file", "-"),
            *("--silent", "--show-error", "--max-time", "30"),
        ],
        input=email(subject).as_bytes(policy=SMTP),  # CRLF lines, as SMTP wants
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    mx.received(subject)
