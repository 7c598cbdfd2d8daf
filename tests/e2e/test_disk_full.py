"""A full disk while receiving: 452 4.3.1, nothing half-written acknowledged or delivered."""

from __future__ import annotations

import os
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.testing.server import ServerProcess
from tests.conftest import IN_CI


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI=true: the disk-full test needs root to mount a small tmpfs")
        pytest.skip("needs root to mount a small tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=False
    )
    if done.returncode != 0:
        if IN_CI:
            pytest.fail("CI=true: cannot mount a tmpfs for the disk-full test")
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_disk_full_answers_452_and_keeps_every_acknowledged_message(small_disk: Path) -> None:
    proc = ServerProcess(small_disk / "data")
    proc.cli("user", "add", "alice@localhost", "--password-stdin", stdin="pw-alice\n")
    proc.start()
    acked, refused = [], []
    body = b"Subject: fill\r\n\r\n" + (b"y" * 998 + b"\r\n") * 200  # ~200 KB
    try:
        with smtplib.SMTP(proc.host, proc.smtp_port, timeout=10) as client:
            for i in range(40):
                msg = f"Message-ID: <fill{i}@t>\r\n".encode() + body
                try:
                    client.sendmail("s@example.org", ["alice@localhost"], msg)
                    acked.append(i)
                except smtplib.SMTPDataError as exc:
                    refused.append((exc.smtp_code, exc.smtp_error[:5]))
                    break
        assert refused and refused[0] == (452, b"4.3.1")
        assert acked
    finally:
        proc.stop()
    box = proc.maildir("alice@localhost")
    spool = proc.data_dir / "queue"
    stored = [p for sub in ("new", "cur") for p in (box / sub).glob("*")] if box.exists() else []
    queued = list((spool / "messages").glob("*")) if (spool / "messages").exists() else []
    # Every acknowledged message is either delivered whole or still queued whole.
    assert len(stored) + len(queued) >= len(acked)
    for path in stored:
        assert path.read_bytes().endswith(b"y" * 998 + b"\r\n")
    assert not list((spool / "tmp").glob("*")) if (spool / "tmp").exists() else True
