"""Directory answers reused until the directory changes: RCPT checks, routing, expansion.

Each of them runs for every message on the event loop and asks SQLite about the same few
addresses and domains, up to thousands of times a second; a flood of RCPTs (or of
guesses) would be a flood of queries. So an answer is reused while the directory's
`version` (the database files' size, time stamp and inode; two `stat` calls, ~4 µs
against ~13 µs for a resolution) is unchanged: a user, alias or domain changed with the
CLI is seen by the next lookup, where a cache for a fixed time let a removed user's
mail in, or sent an alias's mail to its old targets, for seconds after the change.
`CACHE_TTL` bounds an answer's life besides, for a change the time stamps cannot tell
(one made within the same clock tick as the lookup before it). A cache that reaches
`CACHE_SIZE` keys is emptied (many distinct keys: a guessing client), which keeps it
small without bookkeeping per key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

CACHE_TTL = 5.0  # seconds an answer is reused at most
CACHE_SIZE = 10_000  # keys; the cache is emptied when full

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LookupCache(Generic[K, V]):
    """`get(key, compute)`: the answer `compute(key)` gave, if the directory is unchanged
    since and it is younger than `ttl` seconds."""

    def __init__(
        self,
        version: Callable[[], Hashable],
        *,
        ttl: float = CACHE_TTL,
        size: int = CACHE_SIZE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._version = version
        self._seen: Hashable = None
        self._ttl = ttl
        self._size = size
        self._monotonic = monotonic
        self._items: dict[K, tuple[float, V]] = {}  # key -> (expiry, answer)

    def get(self, key: K, compute: Callable[[K], V]) -> V:
        version = self._version()
        if version != self._seen:
            self._items.clear()
            self._seen = version
        now = self._monotonic()
        cached = self._items.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        if len(self._items) >= self._size:
            self._items.clear()
        answer = compute(key)
        self._items[key] = (now + self._ttl, answer)
        return answer
