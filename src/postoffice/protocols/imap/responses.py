"""IMAP responses: typed values for everything a server sends, and the core's own catalogue.

Status responses come tagged (`Ok`, `No`, `Bad`: the connection writes the tag of the
command they complete) or untagged (`UntaggedOk`, `UntaggedNo`, `Bye`, `Preauth`), each
with an optional response `Code` (codes.py). Untagged data responses (EXISTS,
FETCH, LIST, ESEARCH ...) are one class each and hold structured values that serializer.py
writes with the session's UTF-8 mode, so quoting, literals and mailbox name encoding are
decided in one place. `Continuation` is a "+" line (IDLE, a SASL challenge). Texts and
codes are validated when a response is built (printable US-ASCII, no CR or LF, a known code
name), so a bad response fails at the line that made it, never on the wire.

Standards: RFC 9051 §7 (responses), §9 (resp-text, continue-req); RFC 3501 §7.3.2
(RECENT); RFC 7162 §3.1.5, §3.2.10 (SEARCH MODSEQ, VANISHED); RFC 4731 §3.1 (ESEARCH);
RFC 5258 §3.5, RFC 9051 §7.3.1 (LIST extended data); RFC 2971 §3.2 (ID); RFC 2342 §5
(NAMESPACE); RFC 5161 §3.2 (ENABLED); RFC 7888 §4; RFC 7889 §4; RFC 2177 §3
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postoffice.protocols.imap import serializer
from postoffice.protocols.imap.codes import TOOBIG, Code, positive
from postoffice.protocols.imap.sequence import SequenceSet
from postoffice.protocols.imap.serializer import Atom, Value

_TEXT = re.compile(r"[\x20-\x7e]+")  # RFC 9051 §9 text, kept to printable US-ASCII here


def _text(text: str) -> str:
    if _TEXT.fullmatch(text) is None:
        raise ValueError(f"response text must be printable US-ASCII: {text[:60]!r}")
    if text.startswith("["):
        raise ValueError("response text starting with '[' would read as a response code")
    return text


def _status(prefix: str, status: str, text: str, code: Code | None) -> bytes:
    middle = f"{code.to_wire()} " if code is not None else ""
    return f"{prefix} {status} {middle}{text}\r\n".encode("ascii")


@dataclass(frozen=True, slots=True)
class _Status:
    text: str
    code: Code | None = None

    def __post_init__(self) -> None:
        _text(self.text)


# -- status responses ------------------------------------------------------------------


class Ok(_Status):
    """Tagged OK: the command completed (RFC 9051 §7.1.1)."""

    __slots__ = ()

    def tagged(self, tag: str) -> bytes:
        return _status(tag, "OK", self.text, self.code)


class No(_Status):
    """Tagged NO: the command failed (RFC 9051 §7.1.2)."""

    __slots__ = ()

    def tagged(self, tag: str) -> bytes:
        return _status(tag, "NO", self.text, self.code)


class Bad(_Status):
    """BAD: a protocol error; untagged ("*") when no tag could be read (RFC 9051 §7.1.3)."""

    __slots__ = ()

    def tagged(self, tag: str) -> bytes:
        return _status(tag, "BAD", self.text, self.code)


class UntaggedOk(_Status):
    """``* OK``: information, or the greeting (RFC 9051 §7.1.1)."""

    __slots__ = ()

    def to_bytes(self, utf8: bool) -> bytes:
        return _status("*", "OK", self.text, self.code)


class UntaggedNo(_Status):
    """``* NO``: a warning (RFC 9051 §7.1.2)."""

    __slots__ = ()

    def to_bytes(self, utf8: bool) -> bytes:
        return _status("*", "NO", self.text, self.code)


class Preauth(_Status):
    """``* PREAUTH``: a greeting that starts the session authenticated (RFC 9051 §7.1.4)."""

    __slots__ = ()

    def to_bytes(self, utf8: bool) -> bytes:
        return _status("*", "PREAUTH", self.text, self.code)


class Bye(_Status):
    """``* BYE``: the server closes the connection (RFC 9051 §7.1.5)."""

    __slots__ = ()

    def to_bytes(self, utf8: bool) -> bytes:
        return _status("*", "BYE", self.text, self.code)


Completion = Ok | No | Bad


# -- untagged data -----------------------------------------------------------------------


def _line(*parts: bytes) -> bytes:
    return b"* " + b" ".join(parts) + b"\r\n"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """``* CAPABILITY ...`` (RFC 9051 §7.2.2)."""

    names: tuple[str, ...]

    def to_bytes(self, utf8: bool) -> bytes:
        return _line(b"CAPABILITY", *(Atom(name).text.encode("ascii") for name in self.names))


@dataclass(frozen=True, slots=True)
class Enabled:
    """``* ENABLED ...`` (RFC 5161 §3.2); sending it switches the session's modes."""

    names: tuple[str, ...]

    def to_bytes(self, utf8: bool) -> bytes:
        return _line(b"ENABLED", *(Atom(name).text.encode("ascii") for name in self.names))


@dataclass(frozen=True, slots=True)
class Exists:
    count: int

    def to_bytes(self, utf8: bool) -> bytes:
        return _line(serializer.write(self.count, utf8), b"EXISTS")


@dataclass(frozen=True, slots=True)
class Recent:
    """``* n RECENT``, IMAP4rev1 only (RFC 3501 §7.3.2)."""

    count: int

    def to_bytes(self, utf8: bool) -> bytes:
        return _line(serializer.write(self.count, utf8), b"RECENT")


@dataclass(frozen=True, slots=True)
class Expunge:
    number: int

    def to_bytes(self, utf8: bool) -> bytes:
        return _line(str(positive(self.number)).encode("ascii"), b"EXPUNGE")


@dataclass(frozen=True, slots=True)
class Vanished:
    """``* VANISHED [(EARLIER)] uids`` (RFC 7162 §3.2.10)."""

    uids: SequenceSet
    earlier: bool = False

    def to_bytes(self, utf8: bool) -> bytes:
        earlier = (b"(EARLIER)",) if self.earlier else ()
        return _line(b"VANISHED", *earlier, self.uids.to_wire().encode("ascii"))


@dataclass(frozen=True, slots=True)
class Flags:
    """``* FLAGS (...)``: the flags defined in the mailbox (RFC 9051 §7.3.5)."""

    flags: tuple[str, ...]

    def to_bytes(self, utf8: bool) -> bytes:
        return _line(b"FLAGS", serializer.atoms(self.flags))


@dataclass(frozen=True, slots=True)
class ListEntry:
    """``* LIST (attributes) "delimiter" name [extended data]`` or, `lsub`, ``* LSUB``.

    `child_info` is RFC 5258 §3.5's CHILDINFO ("SUBSCRIBED"); `old_name` is RFC 9051
    §7.3.1's OLDNAME after a RENAME.
    """

    mailbox: str
    delimiter: str | None
    attributes: tuple[str, ...] = ()
    child_info: tuple[str, ...] = ()
    old_name: str | None = None
    lsub: bool = False

    def to_bytes(self, utf8: bool) -> bytes:
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValueError("a hierarchy delimiter is one character")
        parts = [
            b"LSUB" if self.lsub else b"LIST",
            serializer.atoms(self.attributes),
            serializer.write(self.delimiter, utf8),
            serializer.mailbox(self.mailbox, utf8),
        ]
        extended = []
        if self.child_info:
            names = tuple(Atom(name).text for name in self.child_info)
            extended.append(b'"CHILDINFO" ' + serializer.write(names, utf8))
        if self.old_name is not None:
            extended.append(b'"OLDNAME" (' + serializer.mailbox(self.old_name, utf8) + b")")
        if extended:
            parts.append(b"(" + b" ".join(extended) + b")")
        return _line(*parts)


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """``* STATUS name (MESSAGES 3 UIDNEXT 9 ...)`` (RFC 9051 §7.2.4)."""

    mailbox: str
    items: tuple[tuple[str, int], ...]

    def to_bytes(self, utf8: bool) -> bytes:
        pairs = b" ".join(
            Atom(name).text.encode("ascii") + b" " + serializer.write(value, utf8)
            for name, value in self.items
        )
        return _line(b"STATUS", serializer.mailbox(self.mailbox, utf8), b"(" + pairs + b")")


@dataclass(frozen=True, slots=True)
class SearchResult:
    """``* SEARCH n ...`` with RFC 7162 §3.1.5's ``(MODSEQ n)`` when asked for."""

    numbers: tuple[int, ...]
    modseq: int | None = None

    def to_bytes(self, utf8: bool) -> bytes:
        parts = [b"SEARCH", *(str(positive(n)).encode("ascii") for n in self.numbers)]
        if self.modseq is not None:
            parts.append(b"(MODSEQ %d)" % positive(self.modseq))
        return _line(*parts)


@dataclass(frozen=True, slots=True)
class ESearchResult:
    """``* ESEARCH (TAG "t") [UID] MIN n MAX n COUNT n ALL set MODSEQ n`` (RFC 4731 §3.1)."""

    tag: str | None
    uid: bool
    min: int | None = None
    max: int | None = None
    count: int | None = None
    all: SequenceSet | None = None
    modseq: int | None = None

    def to_bytes(self, utf8: bool) -> bytes:
        parts = [b"ESEARCH"]
        if self.tag is not None:
            parts.append(b"(TAG " + serializer.string(self.tag, utf8) + b")")
        if self.uid:
            parts.append(b"UID")
        for name, value in (("MIN", self.min), ("MAX", self.max), ("COUNT", self.count)):
            if value is not None:
                parts.append(b"%s %d" % (name.encode("ascii"), value))
        if self.all is not None:
            parts.append(b"ALL " + self.all.to_wire().encode("ascii"))
        if self.modseq is not None:
            parts.append(b"MODSEQ %d" % positive(self.modseq))
        return _line(*parts)


@dataclass(frozen=True, slots=True)
class FetchResult:
    """``* n FETCH (name value ...)``: `items` pairs an attribute's `response_name` with its
    value (serializer.Value: ENVELOPE and BODYSTRUCTURE as structure.py builds them, body
    sections as bytes, FLAGS as Atoms, MODSEQ as a one-tuple)."""

    number: int
    items: tuple[tuple[str, Value], ...]

    def to_bytes(self, utf8: bool) -> bytes:
        write = serializer.write
        pairs = b" ".join(
            [b"%s %s" % (name.encode("ascii"), write(v, utf8)) for name, v in self.items]
        )
        return b"* %d FETCH (%s)\r\n" % (positive(self.number), pairs)


# FETCH items written straight into a `FetchLines` template: numbers and a one-number list
_TEMPLATE_ITEMS = {"UID": "UID %d", "RFC822.SIZE": "RFC822.SIZE %d", "MODSEQ": "MODSEQ (%d)"}


def _template_items(names: tuple[str, ...], flags: bytes | None = None) -> list[str]:
    fixed = {} if flags is None else {"FLAGS": "FLAGS " + flags.decode("ascii").replace("%", "%%")}
    return [fixed.get(name) or _TEMPLATE_ITEMS.get(name, name + " %s") for name in names]


@dataclass(frozen=True, slots=True)
class FetchLines:
    """Many ``* n FETCH (...)`` lines at once, for items that need no message content: the
    listing of a large mailbox, made with one `%` per message on `template(names)` (about
    a tenth of the cost of a `FetchResult` each). Values go in as `template` says: UID,
    RFC822.SIZE and MODSEQ as ints, others as `serializer.write` gives them."""

    data: bytes

    @staticmethod
    def template(names: tuple[str, ...], flags: bytes | None = None) -> bytes:
        """``* %d FETCH (UID %d FLAGS %s ...)\r\n`` for response names `names`; with
        `flags` (a written flag list), FLAGS is that list instead of a ``%s``."""
        items = " ".join(_template_items(names, flags))
        return b"* %%d FETCH (%s)\r\n" % items.encode("ascii")

    @staticmethod
    def around(names: tuple[str, ...], at: int) -> tuple[bytes, bytes]:
        """The template of `names` cut where item `at`'s value, a literal, goes: the head
        ends with its ``{%d}\r\n`` (the octet count is its last value), the octets follow,
        then the tail (the items after it). Whole bodies go out with no copy but one."""
        items = _template_items(names)
        head = " ".join([*items[:at], names[at] + " {%d}\r\n"])
        tail = "".join(" " + item for item in items[at + 1 :]) + ")\r\n"
        return b"* %%d FETCH (%s" % head.encode("ascii"), tail.encode("ascii")

    def to_bytes(self, utf8: bool) -> bytes:
        return self.data


@dataclass(frozen=True, slots=True)
class IdResult:
    """``* ID ("name" "postoffice" ...)`` or ``* ID NIL`` (RFC 2971 §3.2)."""

    fields: tuple[tuple[str, str | None], ...] | None

    def to_bytes(self, utf8: bool) -> bytes:
        if self.fields is None:
            return _line(b"ID", b"NIL")
        return _line(b"ID", serializer.write(tuple(v for pair in self.fields for v in pair), utf8))


Namespace = tuple[tuple[str, str | None], ...]  # (prefix, delimiter) pairs; empty is NIL


@dataclass(frozen=True, slots=True)
class Namespaces:
    """``* NAMESPACE personal other shared`` (RFC 2342 §5, RFC 9051 §7.2.3)."""

    personal: Namespace
    other: Namespace = ()
    shared: Namespace = ()

    def to_bytes(self, utf8: bool) -> bytes:
        def one(namespace: Namespace) -> bytes:
            if not namespace:
                return b"NIL"
            return (
                b"("
                + b"".join(
                    b"("
                    + serializer.mailbox(prefix, utf8)
                    + b" "
                    + serializer.write(delimiter, utf8)
                    + b")"
                    for prefix, delimiter in namespace
                )
                + b")"
            )

        return _line(b"NAMESPACE", one(self.personal), one(self.other), one(self.shared))


@dataclass(frozen=True, slots=True)
class Continuation:
    """A ``+`` line: IDLE's "+ idling", or a SASL challenge in base64 (RFC 9051 §7.6)."""

    text: str = ""

    def __post_init__(self) -> None:
        if self.text:
            _text(self.text)

    def to_bytes(self, utf8: bool) -> bytes:
        return f"+ {self.text}\r\n".encode("ascii")  # RFC 9051 §9: "+" SP (resp-text / base64)


Untagged = (
    UntaggedOk
    | UntaggedNo
    | Preauth
    | Bye
    | Capabilities
    | Enabled
    | Exists
    | Recent
    | Expunge
    | Vanished
    | Flags
    | ListEntry
    | MailboxStatus
    | SearchResult
    | ESearchResult
    | FetchResult
    | FetchLines
    | IdResult
    | Namespaces
)
Response = Completion | Untagged | Continuation


def syntax(message: str) -> Bad:
    """A BAD for malformed arguments, with the parser's reason."""
    return Bad("Syntax error: " + "".join(c if " " <= c <= "~" else "?" for c in message))


# -- what the core answers on its own ------------------------------------------------------

UNKNOWN_COMMAND = Bad("Unknown command")
WRONG_STATE = Bad("Command not valid in this state")
ALREADY_TLS = Bad("TLS is already active")
LINE_TOO_LONG = Bad("Command line too long", TOOBIG)
COMMAND_TOO_LONG = Bad("Command too long", TOOBIG)
MESSAGE_TOO_BIG = No("Message too big", TOOBIG)  # RFC 7889 §4: APPEND over the limit
# RFC 7888 §4: LITERAL- allows non-synchronising literals of at most 4096 octets
LITERAL_MINUS_TOO_BIG = Bad("Non-synchronizing literal over 4096 octets", TOOBIG)
NOT_A_LITERAL = Bad("{n-} is not a literal: LITERAL- is written {n+}")
BAD_LITERAL_SIZE = Bye("Literal size out of range")  # the stream cannot be followed
EXPECTED_DONE = Bad("Expected DONE")  # RFC 2177 §3
AUTH_LINE_TOO_LONG = Bad("Authentication response too long")
# RFC 7162 §3.2.5, §3.2.6: SELECT (QRESYNC ...) and FETCH (... VANISHED) need ENABLE QRESYNC
QRESYNC_NOT_ENABLED = Bad("ENABLE QRESYNC first")
