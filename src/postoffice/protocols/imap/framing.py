"""IMAP command framing: whole commands out of a byte stream, literals and limits included.

An IMAP command is one line, or several when it carries literals: a line ending in
``{n}`` (synchronising), ``{n+}`` (non-synchronising, RFC 7888) or ``~{n}`` (literal8,
RFC 3516) is followed by exactly n octets and then the rest of the command. `CommandReader`
assembles a whole command as the octets it received, which commands.py then parses; the
literal octets are never scanned for line ends, so nothing inside a literal can be taken
for a command.

Limits are applied before anything is stored, so memory stays bounded and the stream stays
in step with the client:

- A synchronising literal over its limit is refused at once, before the "+" the client
  waits for: the client then does not send it (RFC 9051 §7.5), and the next line is a new
  command. APPEND's message may reach `Limits.literal` (refused NO [TOOBIG], RFC 7889 §4);
  any other command, literals included, stays within `Limits.command` (BAD [TOOBIG]).
- A non-synchronising literal comes whether we like it or not: when it is over its limit
  (or over 4096 octets without LITERAL+, RFC 7888 §4), its octets are read and dropped,
  then the rest of the command (further non-synchronising literals included), and only
  then is the command refused. "{n-}" is not a literal form (LITERAL- is written "{n+}"),
  but a client that wrote it will send the octets, so it is dropped the same way.
- A line longer than `Limits.line` is dropped as it arrives; only its first octets (for the
  tag) and its last ones (for a literal announcement at its end) are kept, so an overlong
  line that ends in a non-synchronising literal is followed correctly too.
- A non-synchronising literal whose size is not even a number64 cannot be followed: that
  alone ends the session with BYE.

Lines outside commands (SASL responses, IDLE's DONE) come from `next_line`.

Standards: RFC 9051 §2.2, §4.3, §7.5; RFC 7888 §3-§4; RFC 3516 §4.3; RFC 7889 §4;
RFC 7162 §4 (command line lengths)
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Literal

from postoffice.protocols._buffer import TOO_LONG, Framing
from postoffice.protocols.imap.events import CommandError
from postoffice.protocols.imap.lexer import MAX_NUMBER64, leading_tag
from postoffice.protocols.imap.responses import (
    BAD_LITERAL_SIZE,
    COMMAND_TOO_LONG,
    LINE_TOO_LONG,
    LITERAL_MINUS_TOO_BIG,
    MESSAGE_TOO_BIG,
    NOT_A_LITERAL,
    Bad,
    Bye,
    No,
)

CONTINUE = b"+ Ready for literal data\r\n"  # RFC 9051 §7.5: the command continuation request
LITERAL_MINUS = 4096  # RFC 7888 §4
_MARKER = re.compile(rb"(~?)\{([0-9]+)([+-]?)\}\r?\n\Z")
# an overlong line's kept tail that is all digits before "}": a size longer than any number
_CUT_MARKER = re.compile(rb"[0-9]+([+-]?)\}\r?\n\Z")
_TAIL = 32  # enough of an overlong line's end to hold "~{<19 digits>+}\r\n"
_HEAD = 64  # enough of a command's start to hold its tag and name
_APPEND = re.compile(rb"[^ ]+ APPEND ", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Limits:
    line: int = 65536  # one line of a command, CRLF included (RFC 7162 §4: at least 8192)
    command: int = 131072  # a whole command, lines and literals, APPEND's message aside
    literal: int = 52_428_800  # APPEND's message (announce it as APPENDLIMIT, RFC 7889)
    depth: int = 100  # nested lists and NOT/OR operands
    items: int = 1000  # list elements and search keys in one command
    auth_line: int = 12288  # a SASL response line (RFC 4954 §4's figure; IMAP sets none)


class _Mode(enum.Enum):
    LINE = "reading a line"
    LITERAL = "reading literal octets"
    OVERLONG = "dropping the rest of an overlong command line"
    DROP_LINE = "dropping the rest of an overlong plain line"


class CommandReader:
    """Received octets in, whole commands (or refusals) out; "+" requests in `outbox`."""

    def __init__(self, limits: Limits, *, literal_plus: bool) -> None:
        self.limits = limits
        self.literal_plus = literal_plus  # False: only LITERAL- (RFC 7888 §4)
        self.outbox = bytearray()  # continuation requests for the connection to send
        self._append_allowed = False
        self._buf = bytearray()
        self._scanned = 0  # no LF in _buf[:_scanned]
        self._mode = _Mode.LINE
        self._reset()

    def _reset(self) -> None:
        """Forget the command in progress."""
        self._command = bytearray()
        self._head = b""
        self._refusal: Bad | No | Bye | None = None  # the command is refused: drop to its end
        self._remaining = 0  # literal octets still to come
        self._tail = b""

    def feed(self, data: bytes) -> None:
        self._buf += data

    def clear(self) -> int:
        """Forget every buffered octet and the command in progress; return the count."""
        count = len(self._buf)
        self._buf.clear()
        self._scanned = 0
        self._mode = _Mode.LINE
        self._reset()
        return count

    def next_line(self, limit: int) -> bytes | Literal[Framing.TOO_LONG] | None:
        """A plain line with its line end (not a command), TOO_LONG once, or None."""
        if self._mode is _Mode.DROP_LINE and not self._drop_through_lf():
            return None
        end = self._buf.find(b"\n", self._scanned, limit)
        if end >= 0:
            return self._take_line(end)
        if len(self._buf) < limit:
            self._scanned = len(self._buf)
            return None
        self._mode = _Mode.DROP_LINE
        return TOO_LONG

    def next_command(self, *, append: bool) -> bytes | CommandError | None:
        """A whole command, the refusal of one, or None when more octets are needed.

        `append` False keeps APPEND within `Limits.command` like any other command (before
        authentication, no client may make us hold a message).
        """
        self._append_allowed = append
        while True:
            if self._mode is _Mode.DROP_LINE and not self._drop_through_lf():
                return None
            if self._mode is _Mode.LITERAL:
                if not self._read_literal():
                    return None
                continue
            if self._mode is _Mode.OVERLONG:
                tail = self._overlong_tail()
                if tail is None:
                    return None
                outcome = self._line_end(tail, truncated=True)
            else:
                line = self._command_line()
                if line is None:
                    if self._mode is _Mode.OVERLONG:
                        continue
                    return None
                outcome = self._line_end(line)
            if outcome is not None:  # None: a literal follows
                return outcome

    def _command_line(self) -> bytes | None:
        """The next line of the command, or None (more octets needed, or it is overlong)."""
        end = self._buf.find(b"\n", self._scanned, self.limits.line)
        if end < 0:
            if len(self._buf) < self.limits.line:
                self._scanned = len(self._buf)
                return None
            # RFC 7162 §4: too long; keep the head for the tag, the tail for a literal
            if not self._head:
                self._head = bytes(self._buf[:_HEAD])
            self._refusal = self._refusal or LINE_TOO_LONG
            self._tail = bytes(self._buf[max(0, self.limits.line - _TAIL) : self.limits.line])
            del self._buf[: self.limits.line]
            self._scanned = 0
            self._mode = _Mode.OVERLONG
            return None
        line = self._take_line(end)
        if not self._head:
            self._head = line[:_HEAD]
        if self._refusal is None:
            self._command += line
            if len(self._command) > self._budget():
                self._refusal = COMMAND_TOO_LONG
        return line

    def _overlong_tail(self) -> bytes | None:
        """Drop an overlong line up to its LF; then its last octets, else None."""
        self._scanned = 0
        end = self._buf.find(b"\n")
        if end < 0:
            self._tail = (self._tail + self._buf)[-_TAIL:]
            self._buf.clear()
            return None
        self._tail = (self._tail + self._buf[: end + 1])[-_TAIL:]
        del self._buf[: end + 1]
        self._mode = _Mode.LINE
        return self._tail

    def _line_end(self, line: bytes, *, truncated: bool = False) -> bytes | CommandError | None:
        """After a line (or an overlong line's `truncated` tail): the command ends, or a
        literal follows."""
        marker = _MARKER.search(line)
        if marker is None:
            if truncated and (cut := _CUT_MARKER.match(line)) is not None:
                marker_kind, digits = cut[1], b"9" * 20  # a size too long to be a number
            else:
                return self._finish()
        else:
            marker_kind, digits = marker[3], marker[2]
        size = int(digits) if len(digits) <= 19 else MAX_NUMBER64 + 1
        synchronising = not marker_kind
        if size > MAX_NUMBER64 and not synchronising:
            return self._finish(BAD_LITERAL_SIZE)  # there is no telling where it ends
        if self._refusal is None:
            self._refusal = self._refuse_literal(size, marker_kind)
        if synchronising:
            if self._refusal is not None:  # RFC 9051 §7.5: before the "+", so it never comes
                return self._finish()
            self.outbox += CONTINUE
        self._mode = _Mode.LITERAL
        self._remaining = size
        return None

    def _refuse_literal(self, size: int, kind: bytes) -> Bad | No | None:
        if kind == b"-":
            return NOT_A_LITERAL
        append = self._append()
        cap = self.limits.literal if append else self.limits.command
        if size > cap or len(self._command) + size > self._budget():
            return MESSAGE_TOO_BIG if append else COMMAND_TOO_LONG
        if kind == b"+" and not self.literal_plus and size > LITERAL_MINUS:
            return LITERAL_MINUS_TOO_BIG
        return None

    def _read_literal(self) -> bool:
        """Move literal octets into the command (or drop them); True once all are read."""
        count = min(self._remaining, len(self._buf))
        if self._refusal is None:
            self._command += self._buf[:count]
        del self._buf[:count]
        self._scanned = 0
        self._remaining -= count
        if self._remaining:
            return False
        self._mode = _Mode.LINE
        return True

    def _finish(self, refusal: Bad | No | Bye | None = None) -> bytes | CommandError:
        refusal = refusal or self._refusal
        command = bytes(self._command)
        tag = leading_tag(self._head)
        self._reset()
        if refusal is not None:
            return CommandError(tag, refusal)
        return command

    def _budget(self) -> int:
        if self._append():
            return self.limits.command + self.limits.literal
        return self.limits.command

    def _append(self) -> bool:
        return self._append_allowed and _APPEND.match(self._head) is not None

    def _take_line(self, end: int) -> bytes:
        line = bytes(self._buf[: end + 1])
        del self._buf[: end + 1]
        self._scanned = 0
        return line

    def _drop_through_lf(self) -> bool:
        """Drop the rest of an overlong plain line; True once its LF is gone."""
        self._scanned = 0
        end = self._buf.find(b"\n")
        if end < 0:
            self._buf.clear()
            return False
        del self._buf[: end + 1]
        self._mode = _Mode.LINE
        return True
