"""Shared fixtures: real servers in child processes, outside tools, CI strictness."""

from __future__ import annotations

import os
import shutil
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from postoffice.testing.server import ServerProcess

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def interned(text: str) -> bool:
    """Whether a string equal to `text` is in the interpreter's table of interned strings."""
    probe = "".join(list(text))  # equal text, another object
    return sys.intern(probe) is not probe


def require_tool(name: str) -> str:
    """Path of an outside tool; skip without it on a developer machine, fail under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package; `make deps` installs it)"
        if IN_CI:
            pytest.fail(f"CI=true and {message}")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A certificate authority of the tests' own (trustme)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A server's TLS context with a certificate for mx.tls.test from `tls_ca`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("mx.tls.test").configure_cert(context)
    return context


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A running server with user alice@localhost (password "secret-alice")."""
    proc = ServerProcess(tmp_path / "data")
    proc.cli("user", "add", "alice@localhost", "--password-stdin", stdin="secret-alice\n")
    proc.start()
    yield proc
    proc.stop()
