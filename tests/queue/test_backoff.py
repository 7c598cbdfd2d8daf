"""Retry delays double from the minimum up to the cap; entries expire after their lifetime."""

from __future__ import annotations

import pytest

from postoffice.queue.backoff import Backoff
from postoffice.queue.entry import QueueEntry


def test_delay_doubles_from_min_and_is_capped() -> None:
    backoff = Backoff(min_backoff=300, max_backoff=4000)
    assert [backoff.delay(n) for n in range(1, 7)] == [300, 600, 1200, 2400, 4000, 4000]


def test_delay_for_no_attempts_is_min_and_huge_counts_stay_capped() -> None:
    backoff = Backoff()
    assert backoff.delay(0) == 300
    assert backoff.delay(10_000) == 4000


def test_expired_after_max_lifetime() -> None:
    backoff = Backoff(max_lifetime=86400)
    entry = QueueEntry(qid="Q", sender="", recipients=[], arrival=1000.0, size=0)
    assert backoff.deadline(entry) == 87400.0
    assert not backoff.expired(entry, 87399.0)
    assert backoff.expired(entry, 87400.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"min_backoff": 0}, {"min_backoff": 500, "max_backoff": 400}, {"max_lifetime": -1}],
)
def test_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
