"""SEARCH criteria: a small typed tree of search keys, and the parser that builds it.

The many search keys of RFC 9051 §6.4.4 fold into a few node types so that the session's
matcher stays small: every flag test is a `FlagKey` (SEEN, UNSEEN, KEYWORD, and the
IMAP4rev1 RECENT, NEW and OLD, which are rewritten in terms of \\Recent and \\Seen), every
header test a `HeaderKey` (FROM, TO, CC, BCC and SUBJECT are HEADER with that field name),
every date test a `DateKey`. A parenthesised list and the program itself are an `And` (or
the single key), OR and NOT nest. Strings are decoded with the CHARSET the client named;
one the server does not know is a NO [BADCHARSET] (RFC 9051 §6.4.4), not a BAD. Recursion
(parentheses, NOT and OR operands) counts against the cursor's depth limit and every key
against its item limit, so a hostile program cannot exhaust the stack or memory.

Standards: RFC 9051 §6.4.4, §9 (search-key, search-program, search-return-opts); RFC 3501
§6.4.4 (NEW, OLD, RECENT); RFC 4731 §3.1 (RETURN); RFC 5182 §2 (SAVE, "$"); RFC 7162
§3.1.5 (MODSEQ)
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from postoffice.protocols.imap.codes import badcharset
from postoffice.protocols.imap.lexer import MAX_NUMBER64, Cursor, ParseError
from postoffice.protocols.imap.sequence import SequenceSet

# RFC 9051 §6.4.4: UTF-8 must be supported; US-ASCII is its subset (RFC 3501's default)
CHARSETS = {"UTF-8": "utf-8", "US-ASCII": "ascii"}
# RFC 4731 §3.1, RFC 9051 §6.4.4: ESEARCH result options; RFC 5182 §2: SAVE
RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
_MODSEQ_ENTRY_TYPES = frozenset({"priv", "shared", "all"})  # RFC 7162 §3.1.5


class DateRelation(enum.Enum):
    BEFORE = "BEFORE"
    ON = "ON"
    SINCE = "SINCE"


@dataclass(frozen=True, slots=True)
class All:
    """ALL: every message."""


@dataclass(frozen=True, slots=True)
class FlagKey:
    """Messages with (or, `present` False, without) `flag`, a system flag or keyword."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class HeaderKey:
    """A header field `field` containing `value` (substring, case-insensitive; "" = any)."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class TextKey:
    """BODY (`body_only`) or TEXT (header and body) containing `value`."""

    value: str
    body_only: bool


@dataclass(frozen=True, slots=True)
class DateKey:
    """BEFORE/ON/SINCE the internal date, or (`sent`) SENTBEFORE/SENTON/SENTSINCE."""

    relation: DateRelation
    date: datetime.date
    sent: bool


@dataclass(frozen=True, slots=True)
class SizeKey:
    """LARGER (`larger`) or SMALLER than `size` octets (RFC822.SIZE)."""

    size: int
    larger: bool


@dataclass(frozen=True, slots=True)
class SequenceKey:
    """A sequence set of message numbers, or (`uid`) UID set; may be "$"."""

    sequence: SequenceSet
    uid: bool


@dataclass(frozen=True, slots=True)
class ModSeqKey:
    """MODSEQ: messages with a mod-sequence of at least `modseq` (RFC 7162 §3.1.5)."""

    modseq: int
    entry: str | None = None  # "/flags/\\seen", with its type "priv", "shared" or "all"
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class Not:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Or:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class And:
    keys: tuple[SearchKey, ...]


SearchKey = (
    All
    | FlagKey
    | HeaderKey
    | TextKey
    | DateKey
    | SizeKey
    | SequenceKey
    | ModSeqKey
    | Not
    | Or
    | And
)


@dataclass(frozen=True, slots=True)
class SearchProgram:
    """What SEARCH asked: the criteria, the CHARSET named, and ESEARCH RETURN options.

    `returns` is None for a plain SEARCH (answered with ``* SEARCH``), else the options
    (an empty RETURN () means ALL; RFC 4731 §3.1).
    """

    criteria: SearchKey
    charset: str | None
    returns: frozenset[str] | None


def parse_search(cursor: Cursor) -> SearchProgram:
    """After "SEARCH": [SP RETURN (...)] SP [CHARSET x SP] key *(SP key)."""
    cursor.sp()
    returns = None
    if cursor.accept(b"RETURN "):
        returns = frozenset(
            cursor.options(dict.fromkeys(RETURN_OPTIONS), "RETURN option", empty=True)
        )
        cursor.sp()
    charset = None
    if cursor.accept(b"CHARSET "):
        charset = cursor.text(cursor.astring()).upper()
        if charset not in CHARSETS:  # RFC 9051 §6.4.4: NO [BADCHARSET], not BAD
            raise ParseError("unsupported charset", badcharset(tuple(CHARSETS)))
        cursor.sp()
    codec = CHARSETS[charset or "UTF-8"]
    keys = [_key(cursor, codec)]
    while cursor.accept(b" "):
        keys.append(_key(cursor, codec))
    return SearchProgram(_conjunction(keys), charset, returns)


def result_options(returns: frozenset[str]) -> frozenset[str] | None:
    """The ESEARCH options to answer RETURN (`returns`) with, or None for no ESEARCH.

    RFC 4731 §3.1: an empty RETURN () means ALL; RFC 5182 §2.4 (RFC 9051 §6.4.4): SAVE
    alone suppresses the ESEARCH response.
    """
    if returns == {"SAVE"}:
        return None
    return (returns - {"SAVE"}) or frozenset({"ALL"})


def saved_result(returns: frozenset[str], found: Sequence[int]) -> list[int]:
    """What SEARCH RETURN (SAVE ...) keeps of `found` (RFC 5182 §2.4): only the minimum
    and/or maximum when MIN and/or MAX come without ALL or COUNT, else all of it."""
    if not found or returns & {"ALL", "COUNT"} or not returns & {"MIN", "MAX"}:
        return list(found)
    return sorted({pick(found) for name, pick in (("MIN", min), ("MAX", max)) if name in returns})


def _conjunction(keys: list[SearchKey]) -> SearchKey:
    return keys[0] if len(keys) == 1 else And(tuple(keys))


def _key(cursor: Cursor, codec: str) -> SearchKey:
    cursor.count()
    if cursor.peek() == b"(":
        cursor.open()
        keys = [_key(cursor, codec)]
        while cursor.accept(b" "):
            keys.append(_key(cursor, codec))
        cursor.close()
        return _conjunction(keys)
    if cursor.peek() in (b"*", b"$") or cursor.peek().isdigit():
        return SequenceKey(cursor.sequence_set(), uid=False)
    word = cursor.keyword()
    parse = _KEYS.get(word)
    if parse is None:
        raise ParseError(f"unknown search key {word[:30]}")
    return parse(cursor, codec)


KeyParser = Callable[[Cursor, str], SearchKey]


def _fixed(key: SearchKey) -> KeyParser:
    return lambda cursor, codec: key


def _keyword(present: bool) -> KeyParser:
    def parse(cursor: Cursor, codec: str) -> SearchKey:
        cursor.sp()
        return FlagKey(cursor.atom(), present)  # RFC 9051 §9: flag-keyword is an atom

    return parse


def _header(field: str) -> KeyParser:
    def parse(cursor: Cursor, codec: str) -> SearchKey:
        cursor.sp()
        return HeaderKey(field, cursor.text(cursor.astring(), codec))

    return parse


def _any_header(cursor: Cursor, codec: str) -> SearchKey:
    cursor.sp()
    field = cursor.text(cursor.astring(), codec)  # RFC 9051 §9: header-fld-name = astring
    cursor.sp()
    return HeaderKey(field, cursor.text(cursor.astring(), codec))


def _text(body_only: bool) -> KeyParser:
    def parse(cursor: Cursor, codec: str) -> SearchKey:
        cursor.sp()
        return TextKey(cursor.text(cursor.astring(), codec), body_only)

    return parse


def _date(relation: DateRelation, sent: bool) -> KeyParser:
    def parse(cursor: Cursor, codec: str) -> SearchKey:
        cursor.sp()
        return DateKey(relation, cursor.date(), sent)

    return parse


def _size(larger: bool) -> KeyParser:
    def parse(cursor: Cursor, codec: str) -> SearchKey:
        cursor.sp()
        return SizeKey(cursor.number(maximum=MAX_NUMBER64), larger)  # RFC 9051: number64

    return parse


def _not(cursor: Cursor, codec: str) -> SearchKey:
    cursor.sp()
    cursor.nest()
    key = _key(cursor, codec)
    cursor.unnest()
    return Not(key)


def _or(cursor: Cursor, codec: str) -> SearchKey:
    cursor.sp()
    cursor.nest()
    left = _key(cursor, codec)
    cursor.sp()
    right = _key(cursor, codec)
    cursor.unnest()
    return Or(left, right)


def _uid(cursor: Cursor, codec: str) -> SearchKey:
    cursor.sp()
    return SequenceKey(cursor.sequence_set(), uid=True)


def _modseq(cursor: Cursor, codec: str) -> SearchKey:
    # RFC 7162 §3.1.5: "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer
    cursor.sp()
    entry = entry_type = None
    if cursor.peek() == b'"':
        entry = cursor.text(cursor.string())
        cursor.sp()
        entry_type = cursor.atom().lower()
        if entry_type not in _MODSEQ_ENTRY_TYPES:
            raise ParseError("MODSEQ entry type is priv, shared or all")
        cursor.sp()
    return ModSeqKey(cursor.number(maximum=MAX_NUMBER64), entry, entry_type)


_RECENT = FlagKey("\\Recent")
_KEYS: dict[str, KeyParser] = {
    "ALL": _fixed(All()),
    **{
        name: _fixed(FlagKey(flag, present))
        for flag in ("\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "\\Seen")
        for name, present in ((flag[1:].upper(), True), ("UN" + flag[1:].upper(), False))
    },
    # RFC 3501 §6.4.4: RECENT, NEW (recent and unseen), OLD (not recent)
    "RECENT": _fixed(_RECENT),
    "NEW": _fixed(And((_RECENT, FlagKey("\\Seen", False)))),
    "OLD": _fixed(FlagKey("\\Recent", False)),
    "KEYWORD": _keyword(True),
    "UNKEYWORD": _keyword(False),
    **{name: _header(name.capitalize()) for name in ("BCC", "CC", "FROM", "SUBJECT", "TO")},
    "HEADER": _any_header,
    "BODY": _text(body_only=True),
    "TEXT": _text(body_only=False),
    **{
        prefix + relation.value: _date(relation, sent=bool(prefix))
        for relation in DateRelation
        for prefix in ("", "SENT")
    },
    "LARGER": _size(larger=True),
    "SMALLER": _size(larger=False),
    "NOT": _not,
    "OR": _or,
    "UID": _uid,
    "MODSEQ": _modseq,
}
