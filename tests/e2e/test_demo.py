"""`postoffice demo` runs the whole journey for real and narrates it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_shows_every_step_and_exits_zero(tmp_path: Path) -> None:
    keep = tmp_path / "world"
    result = subprocess.run(
        [sys.executable, "-m", "postoffice", "demo", "--keep", str(keep)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for n in range(1, 8):
        assert f"\n{n}. " in out
    assert "C: MAIL FROM:<alice@a.test>" in out  # the submission transcript
    assert "b.test MX 10 mx.b.test → 127.0.0.3" in out  # the DNS answer A used
    assert "S: 250 2.0.0 Ok: queued as" in out  # B's answer to A
    assert "this message travels the whole journey." in out  # what bob reads
    assert "All servers stopped." in out
    assert list((keep / "b.test" / "mail" / "b.test" / "bob" / "new").iterdir())
