"""IMAP sequence sets: message numbers or UIDs as ranges, "*" for the largest, "$" for saved.

A `SequenceSet` keeps the ranges as the client wrote them (order, overlaps, "*" as None), so
that the session decides what they mean against the mailbox it has: `resolve(largest)`
replaces "*", orders each range and merges them (RFC 9051 §9: "*:4" is "4:*", and a range
past the end still reaches the largest number), `contains` tests one number. The server
builds sets for its answers (COPYUID, APPENDUID, ESEARCH ALL, VANISHED, MODIFIED) with `of`,
which compresses runs, and `to_wire` writes the canonical text. `$` is RFC 5182's saved
search result; it stands alone, and the session substitutes what SEARCH ... SAVE kept.

Standards: RFC 9051 §9 (sequence-set, seq-range, nz-number), RFC 5182 §2 ("$")
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_NUMBER = 2**32 - 1  # RFC 9051 §9: nz-number is a non-zero 32-bit unsigned number
_NUMBER = re.compile(r"[1-9][0-9]{0,9}|\*")

Bound = int | None  # None is "*", the largest number in use


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """Ranges as written ((n, n) for a single number); `saved` is "$" (RFC 5182)."""

    ranges: tuple[tuple[Bound, Bound], ...]
    saved: bool = False

    def __post_init__(self) -> None:
        if self.saved == bool(self.ranges):
            raise ValueError("a sequence set is either ranges or $")
        for bound in (b for pair in self.ranges for b in pair):
            if bound is not None and not 1 <= bound <= MAX_NUMBER:
                raise ValueError(f"sequence number out of range: {bound}")

    @classmethod
    def parse(cls, text: str) -> SequenceSet:
        """The set `text` spells; ValueError when it is malformed."""
        if text == "$":
            return cls((), saved=True)
        ranges = []
        for piece in text.split(","):
            first, colon, last = piece.partition(":")
            low = _bound(first)
            ranges.append((low, _bound(last) if colon else low))
        return cls(tuple(ranges))

    @classmethod
    def of(cls, numbers: Iterable[int]) -> SequenceSet:
        """The shortest set holding exactly `numbers` (which must not be empty)."""
        ranges: list[tuple[int, int]] = []
        for number in sorted(set(numbers)):
            if ranges and ranges[-1][1] == number - 1:
                ranges[-1] = (ranges[-1][0], number)
            else:
                ranges.append((number, number))
        return cls(tuple(ranges))

    def resolve(self, largest: int) -> tuple[tuple[int, int], ...]:
        """Ordered, merged, non-overlapping (low, high) ranges with "*" as `largest`.

        An empty mailbox (largest 0) resolves to nothing: "*" names no message there.
        """
        if self.saved:
            raise ValueError("$ must be replaced by the saved result first")
        if largest < 1:
            return ()
        spans = sorted(
            (min(a, b), max(a, b))
            for a, b in (
                (largest if x is None else x, largest if y is None else y) for x, y in self.ranges
            )
        )
        merged: list[tuple[int, int]] = []
        for low, high in spans:
            if merged and low <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
            else:
                merged.append((low, high))
        return tuple(merged)

    def contains(self, number: int, largest: int) -> bool:
        return any(low <= number <= high for low, high in self.resolve(largest))

    def to_wire(self) -> str:
        if self.saved:
            return "$"
        return ",".join(_text(a) if a == b else f"{_text(a)}:{_text(b)}" for a, b in self.ranges)


def _bound(text: str) -> Bound:
    if _NUMBER.fullmatch(text) is None:
        raise ValueError(f"not a sequence number: {text[:20]!r}")
    if text == "*":
        return None
    number = int(text)
    if number > MAX_NUMBER:
        raise ValueError(f"sequence number out of range: {text}")
    return number


def _text(bound: Bound) -> str:
    return "*" if bound is None else str(bound)
