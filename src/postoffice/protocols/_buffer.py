"""Receive buffer for line-oriented protocols: bounded lines, raw reads, nothing unbounded.

Bytes go into one `bytearray`. A line is found with a C-level search for LF that never
looks past the caller's length limit, and a search that found nothing remembers where it
stopped, so feeding a line one byte at a time stays linear. A line with no LF within the
limit is reported once as `TOO_LONG`; the rest of it, up to and including the next LF, is
dropped as it arrives and never stored, so memory is bounded by the limit plus one read.
Lines are returned with their terminator: whether it is CRLF or a bare LF is the
protocol's judgement. Raw reads (`read`, `take`, `unread`) serve length-counted or
dot-terminated bodies, which their own readers parse.

Standards: RFC 5321 §2.3.8, §4.5.3.1.4 (line framing and limits, shared with POP3/IMAP)
"""

from __future__ import annotations

import enum
from typing import Literal


class Framing(enum.Enum):
    """Outcomes of `LineBuffer.next_line` that are not a line."""

    TOO_LONG = "too long"


TOO_LONG = Framing.TOO_LONG


class LineBuffer:
    """Bytes received and not yet consumed."""

    __slots__ = ("_buf", "_discarding", "_scanned")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scanned = 0  # no LF in _buf[:_scanned]
        self._discarding = False  # inside an overlong line: drop through the next LF

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        """Append received bytes (the tail of an overlong line is dropped on arrival)."""
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return
            self._discarding = False
            data = data[end + 1 :]
        self._buf += data

    def next_line(self, max_length: int) -> bytes | Literal[Framing.TOO_LONG] | None:
        """The next line with its LF, `TOO_LONG` once per overlong line, or None (need more).

        `max_length` counts the terminator: a line of exactly `max_length` octets is fine.
        """
        end = self._buf.find(b"\n", self._scanned, max_length)
        if end >= 0:
            line = bytes(self._buf[: end + 1])
            del self._buf[: end + 1]
            self._scanned = 0
            return line
        if len(self._buf) < max_length:
            self._scanned = len(self._buf)
            return None
        end = self._buf.find(b"\n", max_length)
        if end < 0:
            self._buf.clear()
            self._discarding = True
        else:
            del self._buf[: end + 1]
        self._scanned = 0
        return TOO_LONG

    def read(self, size: int) -> bytes:
        """Up to `size` raw octets (fewer when fewer are buffered)."""
        data = bytes(self._buf[:size])
        del self._buf[:size]
        self._scanned = 0
        return data

    def take(self) -> bytes:
        """Every buffered octet, raw."""
        return self.read(len(self._buf))

    def unread(self, data: bytes) -> None:
        """Put back octets a body reader took but did not use, ahead of anything buffered."""
        self._buf[:0] = data
        self._scanned = 0

    def clear(self) -> int:
        """Forget everything buffered, including an overlong line in progress; return the count."""
        count = len(self._buf)
        self._buf.clear()
        self._scanned = 0
        self._discarding = False
        return count
