"""IMAP data values to bytes: strings quoted or as literals, NIL, numbers, atoms, lists.

Responses carry structured values and this module writes them, so the quoting rule lives in
one place. A `str` or `bytes` value is a string: it goes out quoted when a quoted string can
hold it (no CR, LF or NUL, at most `QUOTED_MAX` octets, and 7-bit unless the session is in
UTF-8 mode, RFC 9051 §4.3 / RFC 6855 §3), otherwise as a literal ``{n}CRLF...``; None is NIL;
an `int` is a number; an `Atom` is written as it is (flags, keywords); a `Literal8` is the
``~{n}`` form BINARY content needs (RFC 3516 §4.2); a tuple is a parenthesised list.
Mailbox names are encoded for the session: modified UTF-7 for IMAP4rev1, UTF-8 once
IMAP4rev2 or UTF8=ACCEPT is enabled (RFC 9051 §5.1, RFC 6855 §3).

Standards: RFC 9051 §4.1-§4.5, §5.1, §9 (string, quoted, literal, nil); RFC 3501 §5.1.3;
RFC 3516 §4.2; RFC 6855 §3
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from postoffice.protocols.imap import mutf7

QUOTED_MAX = 1000  # longer strings go as literals so that no response line grows unbounded
# RFC 9051 §9: ATOM-CHAR is printable US-ASCII except ( ) { % * " \ ]; ASTRING-CHAR adds ]
_ATOM_CHARS = re.compile(r"[\x21\x23\x24\x26\x27\x2b-\x5b\x5e-\x7a\x7c-\x7e]+")
_ASTRING_CHARS = re.compile(r"[\x21\x23\x24\x26\x27\x2b-\x5b\x5d-\x7a\x7c-\x7e]+")
_UNQUOTABLE = re.compile(rb"[\x00\r\n]")


@dataclass(frozen=True, slots=True)
class Atom:
    """A token written as it is: a flag, a keyword, a status item name."""

    text: str

    def __post_init__(self) -> None:
        if _ATOM_CHARS.fullmatch(self.text.removeprefix("\\")) is None and self.text != "\\*":
            raise ValueError(f"not an atom or flag: {self.text!r}")


@dataclass(frozen=True, slots=True)
class Literal8:
    """Binary content, written as ``~{n}`` (RFC 3516 §4.2)."""

    data: bytes


Value = None | int | str | bytes | Atom | Literal8 | tuple["Value", ...]


def write(value: Value, utf8: bool) -> bytes:
    """One value in wire form; `utf8` is the session's UTF-8 mode.

    Plain `isinstance` tests, numbers and lists first: a large FETCH writes tens of
    thousands of values, and these are the cheapest tests in the order FETCH needs them.
    """
    if isinstance(value, int):
        if isinstance(value, bool):
            raise TypeError("a bool is not an IMAP value")
        if value < 0:
            raise ValueError("IMAP numbers are unsigned")
        return b"%d" % value
    if isinstance(value, tuple):
        return b"(" + b" ".join([write(item, utf8) for item in value]) + b")"
    if isinstance(value, Atom):
        return value.text.encode("ascii")
    if value is None:
        return b"NIL"
    if isinstance(value, str | bytes):
        return string(value, utf8)
    if isinstance(value, Literal8):
        return b"~{%d}\r\n" % len(value.data) + value.data
    raise TypeError(f"not an IMAP value: {type(value).__name__}")


def string(text: str | bytes, utf8: bool) -> bytes:
    """A quoted string when one can hold `text`, else a literal (RFC 9051 §4.3)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    if _quotable(data, utf8):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def _quotable(data: bytes, utf8: bool) -> bool:
    if len(data) > QUOTED_MAX or _UNQUOTABLE.search(data):
        return False
    if data.isascii():
        return True
    if not utf8:  # RFC 6855 §3: 8-bit text outside UTF-8 mode only in literals
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def astring(text: str) -> str:
    """A printable US-ASCII text as an atom when it may be one, else quoted."""
    if _ASTRING_CHARS.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mailbox(name: str, utf8: bool) -> bytes:
    """A mailbox name encoded for the session (RFC 9051 §5.1, RFC 3501 §5.1.3)."""
    return string(name if utf8 else mutf7.encode(name), utf8)


def atoms(words: Iterable[str]) -> bytes:
    """A parenthesised list of flags or atoms."""
    return b"(" + b" ".join(Atom(word).text.encode("ascii") for word in words) + b")"
