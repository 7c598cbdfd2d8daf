"""The protocol cores stay sans-I/O: no sockets, asyncio, ssl, clocks or files inside."""

from __future__ import annotations

import ast
from pathlib import Path

import postoffice.protocols

FORBIDDEN = {"asyncio", "socket", "ssl", "time", "os", "pathlib", "io", "selectors", "threading"}


def test_protocols_import_no_io_modules() -> None:
    root = Path(postoffice.protocols.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
