"""A real server for the client tests: its certificate names localhost and 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.client.accounts import Account
from postoffice.client.network import Endpoint, Security
from postoffice.testing.server import ServerProcess, with_user

PASSWORD = "pw-alice"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server with alice@localhost, whose failed logins are answered without long delays."""
    proc = with_user(tmp_path / "server", "alice@localhost", PASSWORD, hostname="localhost")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def account(server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Account:
    """alice's account on `server`, reading over POP3, with its IMAP server known too."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "ua"))
    monkeypatch.delenv("POSTOFFICE_NAMESERVERS", raising=False)
    return Account(
        address="alice@localhost",
        login="alice@localhost",
        submission=Endpoint("127.0.0.1", server.submissions_port, Security.TLS),
        pop3=Endpoint("127.0.0.1", server.pop3s_port, Security.TLS),
        ca=server.data_dir / "tls" / "cert.pem",
        imap=Endpoint("127.0.0.1", server.imaps_port, Security.TLS),
    )
