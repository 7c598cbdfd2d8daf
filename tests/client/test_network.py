"""Name lookups through POSTOFFICE_NAMESERVERS, TLS contexts and one-line error texts."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest

from postoffice.client.network import (
    ClientError,
    Endpoint,
    Security,
    address_of,
    describe,
    tls_context,
)
from postoffice.testing.dns import DnsServer


def test_our_nameservers_resolve_names_and_addresses_pass_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with DnsServer({"mx.a.test": ["A 127.0.0.2"]}) as dns:
        monkeypatch.setenv("POSTOFFICE_NAMESERVERS", dns.address)
        assert asyncio.run(address_of("mx.a.test")) == "127.0.0.2"
        assert asyncio.run(address_of("127.0.0.9")) == "127.0.0.9"
        with pytest.raises(ClientError, match=r"cannot find nowhere\.test"):
            asyncio.run(address_of("nowhere.test"))
        assert ("nowhere.test", "A") in {(q.name, q.rtype) for q in dns.queries}


def test_tls_contexts_check_names_unless_insecure(tmp_path: Path) -> None:
    strict = tls_context()
    assert strict.check_hostname and strict.verify_mode is ssl.CERT_REQUIRED
    assert strict.minimum_version is ssl.TLSVersion.TLSv1_2
    loose = tls_context(insecure=True)
    assert not loose.check_hostname and loose.verify_mode is ssl.CERT_NONE
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ClientError, match="cannot use CA file"):
        tls_context(tmp_path / "bad.pem")


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (TimeoutError(), "no answer (timed out)"),
        (socket.gaierror(-2, "Unknown name"), "cannot find the host (Unknown name)"),
        (ConnectionResetError("gone"), "connection closed by the server"),
        (OSError(28, "No space left on device"), "No space left on device"),
    ],
)
def test_errors_read_as_one_line(error: BaseException, text: str) -> None:
    line = describe(error, Endpoint("mx.a.test", 465, Security.TLS))
    assert line == f"mx.a.test:465 (TLS): {text}"
