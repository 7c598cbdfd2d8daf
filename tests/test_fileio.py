"""fileio.sync_dir: threads syncing one directory share fsyncs; nothing is kept after."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from postoffice import fileio


def test_threads_syncing_one_directory_share_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync, calls = os.fsync, []

    def slow_fsync(fd: int) -> None:
        calls.append(fd)
        time.sleep(0.05)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    start = threading.Barrier(8)

    def sync() -> None:
        start.wait()
        fileio.sync_dir(tmp_path)

    threads = [threading.Thread(target=sync) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 <= len(calls) <= 3  # the first, then one for all who came while it ran


def test_no_state_is_kept_for_directories_synced_before(tmp_path: Path) -> None:
    for number in range(100):
        directory = tmp_path / str(number)
        directory.mkdir()
        fileio.sync_dir(directory)
    assert not any(key.startswith(str(tmp_path)) for key in list(fileio._groups))
