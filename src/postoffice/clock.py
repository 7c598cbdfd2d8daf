"""Clocks: the one place that reads the time, so tests can move it.

Everything that waits or schedules takes a `Clock`; production code uses
`SystemClock`, tests use `postoffice.testing.clock.FakeClock`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time for records, monotonic-free sleeping for schedules."""

    def time(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`; a fake clock returns when time is advanced past it."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
