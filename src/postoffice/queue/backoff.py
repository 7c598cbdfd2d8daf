"""Retry timing: how long a deferred message waits, and when the queue gives up on it.

Like Postfix's minimal_backoff_time / maximal_backoff_time / maximal_queue_lifetime:
the delay starts at `min_backoff` after the first failed attempt and doubles with
each further attempt, capped at `max_backoff`; a message older than
`max_lifetime` is returned to its sender. Pure arithmetic, no clock of its own.

Standards: RFC 5321 §4.5.4.1 (retry intervals; give up after at least 4-5 days).
"""

from __future__ import annotations

from dataclasses import dataclass

from postoffice.queue.entry import QueueEntry

_MAX_DOUBLINGS = 64  # far past any cap; keeps 2**n finite


@dataclass(frozen=True, slots=True)
class Backoff:
    min_backoff: float = 300.0
    max_backoff: float = 4000.0
    max_lifetime: float = 5 * 86400.0

    def __post_init__(self) -> None:
        if not 0 < self.min_backoff <= self.max_backoff:
            raise ValueError("backoff needs 0 < min_backoff <= max_backoff")
        if self.max_lifetime < 0:
            raise ValueError("max_lifetime must not be negative")

    def delay(self, attempts: int) -> float:
        """Seconds until the next try after `attempts` failed tries (1 gives `min_backoff`)."""
        doublings = min(max(attempts - 1, 0), _MAX_DOUBLINGS)
        return min(self.min_backoff * 2.0**doublings, self.max_backoff)

    def deadline(self, entry: QueueEntry) -> float:
        """When the message expires: its arrival plus `max_lifetime`."""
        return entry.arrival + self.max_lifetime

    def expired(self, entry: QueueEntry, now: float) -> bool:
        return now >= self.deadline(entry)
