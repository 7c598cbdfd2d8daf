"""The command line as a user meets it: set-up, directory commands, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run(
    *args: str, stdin: str | None = None, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postoffice", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_directory_commands_round_trip(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path / "data")]
    assert run("domain", "add", "A.Test", *d).returncode == 0
    assert run("domain", "list", *d).stdout.split() == ["a.test", "localhost"]
    added = run("user", "add", "Alice@a.test", "--password-stdin", *d, stdin="s3cret-pw\n")
    assert added.returncode == 0, added.stderr
    assert run("user", "list", *d).stdout.split() == ["alice@a.test"]
    assert (
        run("user", "passwd", "alice@a.test", "--password-stdin", *d, stdin="n3w-pw\n").returncode
        == 0
    )
    assert run("alias", "add", "info@a.test", "alice@a.test", "x@remote.test", *d).returncode == 0
    assert "info@a.test" in run("alias", "list", *d).stdout
    assert run("alias", "del", "info@a.test", *d).returncode == 0
    assert run("user", "del", "alice@a.test", *d).returncode == 0
    assert run("user", "list", *d).stdout == ""
    db = (tmp_path / "data" / "directory.sqlite").read_bytes()
    assert b"s3cret-pw" not in db and b"n3w-pw" not in db


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path / "data")]
    result = run("user", "add", "bob@nowhere.test", "--password-stdin", *d, stdin="pw-12345\n")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("postoffice: error:") and "nowhere.test" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_data_dir_defaults_to_postoffice_home_then_cwd(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run("domain", "list", env={"POSTOFFICE_HOME": str(home)}).returncode == 0
    assert (home / "postoffice.toml").is_file()
    assert run("domain", "list", cwd=tmp_path, env={"POSTOFFICE_HOME": ""}).returncode == 0
    assert (tmp_path / "postoffice-data" / "postoffice.toml").is_file()


def test_check_config_names_the_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run("check-config", "--data-dir", str(data)).returncode == 1  # nothing there yet
    run("domain", "list", "--data-dir", str(data))
    assert run("check-config", "--data-dir", str(data)).returncode == 0
    conf = data / "postoffice.toml"
    conf.write_text(conf.read_text().replace("message_size = 26214400", 'message_size = "big"'))
    result = run("check-config", "--data-dir", str(data))
    assert result.returncode == 1
    assert "[limits] message_size" in result.stderr and str(conf) in result.stderr
    conf.write_text(conf.read_text().replace('message_size = "big"', "mesage_size = 1"))
    result = run("check-config", "--data-dir", str(data))
    assert "unknown key [limits] mesage_size" in result.stderr
    result = run("serve", "--data-dir", str(data))
    assert result.returncode == 1 and "mesage_size" in result.stderr


def test_unusable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run("serve", "--data-dir", str(blocker / "data"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert str(blocker / "data") in result.stderr


def test_password_is_never_taken_from_argv(tmp_path: Path) -> None:
    result = run("user", "add", "a@localhost", "--password", "x", "--data-dir", str(tmp_path))
    assert result.returncode != 0
