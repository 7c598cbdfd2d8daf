"""The data dir: where each part keeps its files, and opening it safely.

Kept apart from app.py so that directory commands (`postoffice user add`) start
without loading the whole server.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from postoffice.config import Config
from postoffice.storage.directory import SqliteDirectory

DEFAULT_DOMAIN = "localhost"


class StartupError(Exception):
    """The server cannot start; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class Paths:
    """Where each part keeps its data inside the data dir (docs/on-disk-layout.md)."""

    root: Path

    @property
    def directory(self) -> Path:
        return self.root / "directory.sqlite"

    @property
    def queue(self) -> Path:
        return self.root / "queue"

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    @property
    def journal(self) -> Path:
        return self.root / "journal"

    @property
    def control_socket(self) -> Path:
        return self.root / "control.sock"


def open_directory(config: Config) -> SqliteDirectory:
    """Open (creating on first use, with the domain `localhost`) the directory database."""
    path = Paths(config.data_dir).directory
    fresh = not path.exists()
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        directory = SqliteDirectory(path)
    except OSError as exc:
        raise StartupError(
            f"{config.data_dir}: cannot use the data dir: {exc.strerror or exc}"
        ) from None
    if fresh:
        directory.add_domain(DEFAULT_DOMAIN)
    return directory


def check_writable(root: Path) -> None:
    """Fail early, in one line, when the data dir cannot take files."""
    probe = root / f".write-test-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENOSPC:
            reason = "the disk is full"
        raise StartupError(f"{root}: the data dir is not writable: {reason}") from None
