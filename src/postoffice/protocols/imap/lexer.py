"""The IMAP command grammar's building blocks, read from one complete command.

The framing layer (framing.py) hands over a whole command: its lines and the literals
between them, exactly as received. `Cursor` walks it with one method per RFC 9051 §9
production the command parsers need (atoms, numbers, quoted strings with their escapes,
literals, astrings, mailbox names, flags, dates, sequence sets, parenthesised lists). The
grammar is context-sensitive (a "[" is an atom character in one place and a section in
another), so there is no separate token stream: each parser asks for what the grammar
expects next. Every failure raises `ParseError`, which the command parser turns into a
tagged BAD (or, with a `code`, a NO); nothing here raises anything else on any input.

Limits are enforced as the command is read: parenthesised lists may nest `depth` deep (the
SEARCH parser counts its own recursion the same way), and a command may hold `items` list
elements and search keys in all, so that no input makes the parser recurse or allocate
without bound. Strings are decoded as UTF-8 (RFC 9051 §4.3 allows it in quoted strings,
and IMAP4rev1 clients send it anyway); mailbox names are UTF-8 in IMAP4rev2 and UTF8=ACCEPT
sessions and modified UTF-7 otherwise (RFC 3501 §5.1.3), "INBOX" in any case is INBOX.

Standards: RFC 9051 §4.1-§4.3, §5.1, §9; RFC 3501 §5.1.3, §9; RFC 7888 §3 (literal+);
RFC 3516 §4.3 (literal8); RFC 6855 §3 (UTF-8 mailbox names)
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from postoffice.protocols.imap import mutf7
from postoffice.protocols.imap.codes import Code
from postoffice.protocols.imap.sequence import SequenceSet

MAX_NUMBER = 2**32 - 1  # RFC 9051 §9: number
MAX_NUMBER64 = 2**63 - 1  # RFC 9051 §9: number64

# RFC 9051 §9: ATOM-CHAR is any CHAR except atom-specials: ( ) { SP CTL % * " \ ]
_ATOM = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\\]]+")
_ASTRING = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\]+")  # ASTRING-CHAR adds "]"
_LIST_CHARS = re.compile(rb"[^\x00-\x20\x7f-\xff(){\"\\]+")  # list-char adds % * ]
_TAG = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\+]+")  # ASTRING-CHAR except "+"
# RFC 9051 §9: quoted = DQUOTE *QUOTED-CHAR DQUOTE; "\" escapes only DQUOTE and "\"
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_QUOTED_PAIR = re.compile(rb'\\(["\\])')
_DIGITS = re.compile(rb"[0-9]{1,20}")
_SEQUENCE = re.compile(rb"[0-9:*,$]+")
# RFC 9051 §4.3, RFC 7888 §3, RFC 3516 §4.3: literal, non-synchronising literal, literal8
_LITERAL = re.compile(rb"(~?)\{([0-9]{1,19})([+-]?)\}\r?\n")
_CRLF = re.compile(rb"\r?\n\Z")
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}
_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
# RFC 9051 §9: date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone
_DATE_TIME = re.compile(
    rb'"( ?[0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) '
    rb'([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# RFC 9051 §2.3.2: the system flags, matched without regard to case
SYSTEM_FLAGS = {
    f.upper(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
}
_T = TypeVar("_T")


def leading_tag(line: bytes) -> str | None:
    """The tag a command line starts with, when a SP follows it."""
    found = _TAG.match(line)
    if found is None or line[found.end() : found.end() + 1] != b" ":
        return None
    return found[0].decode("ascii")


class ParseError(Exception):
    """The command is malformed (a BAD), or, with a `code`, refused with a NO."""

    def __init__(self, message: str, code: Code | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code  # a response code for a NO, such as BADCHARSET (RFC 9051 §6.4.4)


@dataclass(frozen=True, slots=True)
class ParseLimits:
    depth: int
    items: int


class Cursor:
    """A position in one complete command, read production by production."""

    __slots__ = ("_depth", "_items", "data", "limits", "pos", "utf8")

    def __init__(self, data: bytes, *, utf8: bool, limits: ParseLimits) -> None:
        self.data = data
        self.pos = 0
        self.utf8 = utf8  # IMAP4rev2 or UTF8=ACCEPT: mailbox names are UTF-8
        self.limits = limits
        self._depth = 0
        self._items = 0

    # -- structure -----------------------------------------------------------------

    def peek(self) -> bytes:
        return self.data[self.pos : self.pos + 1]

    def end(self) -> None:
        """The line end that closes the command, and nothing after it."""
        if _CRLF.match(self.data, self.pos) is None:
            raise ParseError("unexpected characters at the end of the command")

    def match(self, pattern: re.Pattern[bytes]) -> re.Match[bytes] | None:
        """Consume what `pattern` matches here, if it does."""
        found = pattern.match(self.data, self.pos)
        if found is not None:
            self.pos = found.end()
        return found

    def accept(self, token: bytes) -> bool:
        """Consume `token` (case-insensitively) if it is next."""
        end = self.pos + len(token)
        if self.data[self.pos : end].upper() == token:
            self.pos = end
            return True
        return False

    def expect(self, token: bytes) -> None:
        if not self.accept(token):
            raise ParseError(f"expected {token.decode()!r}")

    def sp(self) -> None:
        self.expect(b" ")  # RFC 9051 §9: exactly one SP between elements

    def open(self) -> None:
        """A "(" that opens a list, counted against the nesting depth."""
        self.expect(b"(")
        self.nest()

    def close(self) -> None:
        self.expect(b")")
        self._depth -= 1

    def nest(self) -> None:
        """One more level of nesting (a list, or a NOT/OR operand)."""
        self._depth += 1
        if self._depth > self.limits.depth:
            raise ParseError("nested too deeply")

    def unnest(self) -> None:
        self._depth -= 1

    def count(self) -> None:
        """One more list element or search key."""
        self._items += 1
        if self._items > self.limits.items:
            raise ParseError("too many parameters")

    def items(self, read: Callable[[], _T], *, empty: bool = False) -> list[_T]:
        """A parenthesised, space-separated list of what `read` reads."""
        self.open()
        found: list[_T] = []
        if not (empty and self.peek() == b")"):
            found.append(read())
            self.count()
            while self.accept(b" "):
                found.append(read())
                self.count()
        self.close()
        return found

    def options(
        self, arguments: Mapping[str, Callable[[], Any] | None], what: str, *, empty: bool = False
    ) -> dict[str, Any]:
        """A parenthesised list of option names, each known one with its argument read by
        `arguments[name]` after a SP (None: no argument); unknown names are a BAD."""

        def read() -> tuple[str, Any]:
            name = self.keyword()
            if name not in arguments:
                raise ParseError(f"unknown {what} {name[:30]}")
            argument = arguments[name]
            if argument is None:
                return name, None
            self.sp()
            return name, argument()

        return dict(self.items(read, empty=empty))

    # -- atoms and numbers -----------------------------------------------------------

    def atom(self) -> str:
        found = self.match(_ATOM)
        if found is None:
            raise ParseError("expected an atom")
        return found[0].decode("ascii")

    def keyword(self) -> str:
        """An atom, upper-cased: commands, options and search keys are case-insensitive."""
        return self.atom().upper()

    def tag(self) -> str:
        found = self.match(_TAG)
        if found is None:
            raise ParseError("expected a tag")
        return found[0].decode("ascii")

    def number(self, *, maximum: int = MAX_NUMBER, minimum: int = 0) -> int:
        found = self.match(_DIGITS)
        if found is None or not minimum <= int(found[0]) <= maximum:
            raise ParseError("expected a number in range")
        return int(found[0])

    def sequence_set(self) -> SequenceSet:
        found = self.match(_SEQUENCE)
        if found is None:
            raise ParseError("expected a sequence set")
        try:
            return SequenceSet.parse(found[0].decode("ascii"))
        except ValueError as error:
            raise ParseError(f"bad sequence set: {error}") from None

    # -- strings -----------------------------------------------------------------------

    def string(self) -> bytes:
        """A quoted string or a literal (RFC 9051 §4.3)."""
        if self.peek() == b'"':
            return self._quoted()
        return self.literal(binary=False)

    def astring(self) -> bytes:
        found = self.match(_ASTRING)
        return found[0] if found is not None else self.string()

    def nstring(self) -> bytes | None:
        if self.accept(b"NIL"):
            return None
        return self.string()

    def literal(self, *, binary: bool) -> bytes:
        """A literal; `binary` also allows literal8, "~{n}", which may hold NUL."""
        found = _LITERAL.match(self.data, self.pos)
        if found is None or found[3] == b"-":
            raise ParseError("expected a string")
        if found[1] and not binary:
            raise ParseError("literal8 is not allowed here")
        start = found.end()
        end = start + int(found[2])
        if end > len(self.data):  # the framing layer guarantees it; belt and braces
            raise ParseError("truncated literal")
        content = self.data[start:end]
        if not found[1] and b"\0" in content:  # RFC 9051 §9: literal is CHAR8, not NUL
            raise ParseError("NUL in a literal")
        self.pos = end
        return content

    def _quoted(self) -> bytes:
        found = self.match(_QUOTED)
        if found is None:
            raise ParseError("bad quoted string (unterminated, CR, LF, NUL or a bad escape)")
        return _QUOTED_PAIR.sub(rb"\1", found[1])

    @staticmethod
    def text(raw: bytes, charset: str = "utf-8") -> str:
        try:
            return raw.decode(charset)
        except UnicodeDecodeError:
            raise ParseError(f"string is not valid {charset}") from None

    # -- mailbox names, flags, dates -------------------------------------------------

    def mailbox(self) -> str:
        """A mailbox name (RFC 9051 §9 mailbox), decoded; INBOX in any case is INBOX."""
        name = self._name(self.astring())
        return "INBOX" if name.upper() == "INBOX" else name

    def list_mailbox(self) -> str:
        """A LIST pattern (RFC 9051 §9 list-mailbox), wildcards kept."""
        found = self.match(_LIST_CHARS)
        return self._name(found[0] if found is not None else self.string())

    def _name(self, raw: bytes) -> str:
        if self.utf8:
            name = self.text(raw)
        elif not raw.isascii():
            raise ParseError("8-bit mailbox name outside UTF-8 mode (use modified UTF-7)")
        else:
            try:
                name = mutf7.decode(raw.decode("ascii"))
            except ValueError as error:
                raise ParseError(f"bad modified UTF-7 mailbox name: {error}") from None
        if _CONTROL.search(name):  # RFC 5198 §2 via RFC 9051 §5.1: no control characters
            raise ParseError("control character in mailbox name")
        return name

    def flag(self) -> str:
        """A flag: a system flag in its canonical case, "\\" atom, or a keyword."""
        if self.accept(b"\\"):
            name = "\\" + self.atom()
            return SYSTEM_FLAGS.get(name.upper(), name)
        return self.atom()

    def flag_list(self) -> tuple[str, ...]:
        return tuple(self.items(self.flag, empty=True))

    def date(self) -> datetime.date:
        """RFC 9051 §9 date: date-text, optionally quoted."""
        quoted = self.accept(b'"')
        found = self.match(_DATE)
        if found is None or (quoted and not self.accept(b'"')):
            raise ParseError("expected a date such as 1-Jan-2024")
        return _calendar(found[1], found[2], found[3])

    def date_time(self) -> datetime.datetime:
        """RFC 9051 §9 date-time, as an aware datetime."""
        found = self.match(_DATE_TIME)
        if found is None:
            raise ParseError('expected a date-time such as "01-Jan-2024 10:00:00 +0000"')
        day = _calendar(found[1].strip(), found[2], found[3])
        hours, minutes, zone_h, zone_m = (int(found[i]) for i in (4, 5, 8, 9))
        if hours > 23 or minutes > 59 or int(found[6]) > 60 or zone_m > 59:
            raise ParseError("time out of range")
        offset = datetime.timedelta(hours=zone_h, minutes=zone_m)
        try:
            zone = datetime.timezone(-offset if found[7] == b"-" else offset)
        except ValueError:  # RFC 9051 §9 allows "+9959"; a real zone is within a day
            raise ParseError("time zone out of range") from None
        seconds = min(int(found[6]), 59)  # a leap second is stored as :59
        return datetime.datetime(day.year, day.month, day.day, hours, minutes, seconds, tzinfo=zone)


def _calendar(day: bytes, month: bytes, year: bytes) -> datetime.date:
    number = _MONTHS.get(month.decode("ascii").upper())
    try:
        if number is None:
            raise ValueError
        return datetime.date(int(year), number, int(day))
    except ValueError:
        raise ParseError("no such date") from None
