"""Where `postoffice send` takes the text from: --body, a file, stdin, else $EDITOR."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import click
import pytest

from postoffice.cli.common import CliError
from postoffice.cli.send import _body


class Terminal(io.BytesIO):
    def isatty(self) -> bool:
        return True


class Pipe(io.TextIOWrapper):
    def isatty(self) -> bool:
        return False


def test_body_sources_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", Pipe(io.BytesIO("from stdin ✓\n".encode())))
    (tmp_path / "b.txt").write_text("from a file ✓\n", "utf-8")
    assert _body("given", str(tmp_path / "b.txt")) == "given"
    assert _body(None, str(tmp_path / "b.txt")) == "from a file ✓\n"
    assert _body(None, None) == "from stdin ✓\n"
    with pytest.raises(CliError, match="cannot read"):
        _body(None, str(tmp_path / "missing.txt"))
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(CliError, match="not UTF-8"):
        _body(None, str(tmp_path / "latin1.txt"))


def test_a_terminal_gets_the_editor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr(click, "edit", lambda text, extension: "typed in the editor\n")
    assert _body(None, None) == "typed in the editor\n"
    monkeypatch.setattr(click, "edit", lambda text, extension: None)  # quit without saving
    with pytest.raises(CliError, match="nothing sent"):
        _body(None, None)
