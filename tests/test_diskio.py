"""diskio.py: the disk pool and how long a thread may keep the GIL from the event loop."""

from __future__ import annotations

import asyncio
import sys
import threading

from postoffice import diskio


def test_disk_work_runs_off_the_event_loop_thread() -> None:
    async def main() -> str:
        return await diskio.run(lambda: threading.current_thread().name)

    assert asyncio.run(main()).startswith("postoffice-disk")


def test_a_server_hands_the_gil_over_sooner_than_python_does() -> None:
    before = sys.getswitchinterval()
    try:
        diskio.shorten_gil_turns()
        assert sys.getswitchinterval() == diskio.SWITCH_INTERVAL < before
    finally:
        sys.setswitchinterval(before)
