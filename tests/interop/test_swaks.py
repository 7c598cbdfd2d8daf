"""swaks (Debian's Swiss Army Knife for SMTP) against a running server."""

from __future__ import annotations

import subprocess

from postoffice.testing.server import ServerProcess
from tests.conftest import require_tool


def _swaks(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    swaks = require_tool("swaks")
    return subprocess.run(
        [swaks, "--server", f"{server.host}:{server.smtp_port}", "--helo", "swaks.example", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_swaks_delivers_into_maildir(server: ServerProcess) -> None:
    result = _swaks(
        server,
        "--from",
        "bob@example.org",
        "--to",
        "alice@localhost",
        "--header",
        "Subject: via swaks",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "queued as" in result.stdout
    (path,) = server.wait_for_mail("alice@localhost")
    assert path.parent.name == "new"
    assert b"Subject: via swaks" in path.read_bytes()


def test_swaks_pipelining(server: ServerProcess) -> None:
    result = _swaks(server, "--pipeline", "--from", "bob@example.org", "--to", "alice@localhost")
    assert result.returncode == 0, result.stdout + result.stderr
    server.wait_for_mail("alice@localhost")


def test_swaks_unknown_user_is_refused(server: ServerProcess) -> None:
    result = _swaks(server, "--from", "bob@example.org", "--to", "nobody@localhost")
    assert result.returncode != 0
    assert "550 5.1.1" in result.stdout
