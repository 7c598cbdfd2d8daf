"""Properties of the IMAP core under arbitrary input: no exceptions, only well-formed
answers, the same events and bytes however the input is segmented, and parser round trips."""

from __future__ import annotations

import datetime
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.protocols.imap import Limits, State, events
from postoffice.protocols.imap.commands import parse_command
from postoffice.protocols.imap.lexer import ParseLimits
from postoffice.protocols.imap.search import (
    All,
    And,
    DateKey,
    DateRelation,
    FlagKey,
    HeaderKey,
    Not,
    Or,
    SearchKey,
    SequenceKey,
    SizeKey,
    TextKey,
)
from postoffice.protocols.imap.sequence import SequenceSet
from postoffice.protocols.imap.serializer import string

from .driver import Session

LIMITS = Limits(line=80, command=300, literal=200, depth=6, items=30, auth_line=60)

VOCABULARY = [
    b"a LOGIN alice secret\r\n",
    b"a LOGIN alice wrong\r\n",
    b"a LOGIN {5}\r\nalice {6+}\r\nsecret\r\n",
    b"b SELECT INBOX\r\n",
    b"b SELECT Missing\r\n",
    b'b EXAMINE "Entw&APw-rfe"\r\n',
    b"c FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From)]<0.10>)\r\n",
    b"c UID FETCH 1:* FLAGS (CHANGEDSINCE 5 VANISHED)\r\n",
    b"d SEARCH OR (FROM {3}\r\nbob NOT SEEN) UID 1:*\r\n",
    b"d SEARCH CHARSET KOI8-R ALL\r\n",
    b"e STORE 1 +FLAGS.SILENT (\\Seen)\r\n",
    b"f APPEND INBOX (\\Seen) {10}\r\n0123456789\r\n",
    b"f APPEND INBOX {10+}\r\nx LOGOUT\r\n\r\n",
    b"f APPEND INBOX {250+}\r\n" + b"z" * 250 + b"\r\n",
    b"f APPEND INBOX {250}\r\n",
    b"f APPEND INBOX {4-}\r\nabcd\r\n",
    b"g IDLE\r\n",
    b"DONE\r\n",
    b"h AUTHENTICATE PLAIN\r\n",
    b"h AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    b"*\r\n",
    b"i ENABLE UTF8=ACCEPT\r\n",
    b"j CLOSE\r\n",
    b'k LIST "" *\r\n',
    b"l NOOP\r\n",
    b"m CAPABILITY\r\n",
    b"n UID EXPUNGE 1:3\r\n",
    b"x" * 120 + b"\r\n",
    b"o LOGIN " + b"y" * 100 + b" {3+}\r\nabc\r\n",
    b"p LOGIN {3+}\r\nab",
    b"(((((((((\r\n",
    b"q SEARCH " + b"NOT " * 10 + b"SEEN\r\n",
    b"\x00\xff\r\n",
    b"\r\n",
    b"\n",
    b"r LOGOUT\r\n",
]


def run(segments: list[bytes], *, literal_plus: bool = True) -> Session:
    session = Session(LIMITS, literal_plus=literal_plus)
    for segment in segments:
        if session.conn.closed:
            break
        if segment:  # b"" would be EOF
            session.feed(segment)
    return session


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


_LINE = re.compile(rb"(\* |\+ |[^\x00-\x20\x7f-\xff(){%*\"\\+]+ )")


def well_formed(wire: bytes) -> bool:
    """Every response line starts with "* ", "+ " or a tag (literals aside: none here)."""
    return all(_LINE.match(line) for line in wire.split(b"\r\n")[:-1])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(VOCABULARY), max_size=12),
    st.lists(st.integers(min_value=0), max_size=8),
    st.booleans(),
)
def test_segmentation_does_not_matter(
    commands: list[bytes], cuts: list[int], literal_plus: bool
) -> None:
    data = b"".join(commands)
    whole = run([data], literal_plus=literal_plus)
    pieces = run(split(data, cuts), literal_plus=literal_plus)
    assert pieces.events == whole.events
    assert pieces.wire == whole.wire
    assert pieces.conn.state is whole.conn.state
    assert well_formed(whole.wire)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(VOCABULARY), max_size=12))
def test_byte_at_a_time_is_the_same(commands: list[bytes]) -> None:
    data = b"".join(commands)
    assert run([data[i : i + 1] for i in range(len(data))]).events == run([data]).events


HOSTILE = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"{",
                b"}",
                b"+",
                b"-",
                b"~",
                b"5",
                b"99999999999999999999",
                b"\r\n",
                b"\n",
                b"(",
                b")",
                b'"',
                b"\\",
                b"\x00",
                b"\xff",
                b" ",
                b"a ",
                b"LOGIN",
                b"APPEND",
                b"SEARCH",
                b"FETCH",
                b"IDLE",
                b"DONE",
                b"STARTTLS",
                b"AUTHENTICATE",
                b"NOT",
                b"OR",
                b"BODY[",
                b"]",
                b"<",
                b">",
                b"1:*",
                b"$",
                b"%",
                b"*",
                b"INBOX",
                b"&-",
                b"&AOk",
                b"UID",
                b"SELECT",
                b"x",
            ]
        ),
        st.binary(max_size=8),
    ),
    max_size=60,
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(HOSTILE, st.lists(st.integers(min_value=0), max_size=6), st.booleans())
def test_hostile_input_never_raises(
    tokens: list[bytes], cuts: list[int], literal_plus: bool
) -> None:
    data = b"a LOGIN alice secret\r\n" + b"".join(tokens)
    session = run(split(data, cuts), literal_plus=literal_plus)
    assert session.events == run([data], literal_plus=literal_plus).events
    assert well_formed(session.wire)
    assert session.conn.state in (
        State.NOT_AUTHENTICATED,
        State.AUTHENTICATED,
        State.SELECTED,
        State.IDLE,
        State.AUTHENTICATE,
        State.STARTTLS,
        State.LOGOUT,
    )
    for event in session.events:
        if isinstance(event, events.CommandError):
            assert event.response.text  # every refusal says why


# -- parser round trips ---------------------------------------------------------------------

ASTRING_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
SEQUENCES = st.lists(
    st.tuples(st.integers(1, 2**32 - 1) | st.none(), st.integers(1, 2**32 - 1) | st.none()),
    min_size=1,
    max_size=4,
).map(lambda ranges: SequenceSet(tuple(ranges)))
DATES = st.dates(datetime.date(1900, 1, 1), datetime.date(2200, 12, 31))


def leaf_keys() -> st.SearchStrategy[SearchKey]:
    return st.one_of(
        st.just(All()),
        st.builds(
            FlagKey, st.sampled_from(["\\Seen", "\\Deleted", "\\Answered", "$Junk"]), st.booleans()
        ),
        st.builds(
            HeaderKey,
            st.sampled_from(["From", "To", "Cc", "Bcc", "Subject", "X-Spam"]),
            ASTRING_TEXT,
        ),
        st.builds(TextKey, ASTRING_TEXT, st.booleans()),
        st.builds(DateKey, st.sampled_from(list(DateRelation)), DATES, st.booleans()),
        st.builds(SizeKey, st.integers(0, 2**63 - 1), st.booleans()),
        st.builds(SequenceKey, SEQUENCES, st.booleans()),
    )


KEYS = st.recursive(
    leaf_keys(),
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(Or, inner, inner),
        st.lists(inner, min_size=2, max_size=3).map(lambda keys: And(tuple(keys))),
    ),
    max_leaves=8,
)

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def render(key: SearchKey) -> bytes:
    """The wire form of a search key, as a client would write it."""
    match key:
        case All():
            return b"ALL"
        case FlagKey(flag, present):
            if flag.startswith("\\"):
                return (b"" if present else b"UN") + flag[1:].upper().encode()
            return (b"KEYWORD " if present else b"UNKEYWORD ") + flag.encode()
        case HeaderKey(field, value):
            if field in ("From", "To", "Cc", "Bcc", "Subject"):
                return field.upper().encode() + b" " + string(value, False)
            return b"HEADER " + field.encode() + b" " + string(value, False)
        case TextKey(value, body_only):
            return (b"BODY " if body_only else b"TEXT ") + string(value, False)
        case DateKey(relation, date, sent):
            text = f"{date.day}-{_MONTHS[date.month - 1]}-{date.year:04d}".encode()
            return (b"SENT" if sent else b"") + relation.value.encode() + b" " + text
        case SizeKey(size, larger):
            return (b"LARGER " if larger else b"SMALLER ") + str(size).encode()
        case SequenceKey(sequence, uid):
            return (b"UID " if uid else b"") + sequence.to_wire().encode()
        case Not(inner):
            return b"NOT " + render(inner)
        case Or(left, right):
            return b"OR " + render(left) + b" " + render(right)
        case And(keys):
            return b"(" + b" ".join(render(k) for k in keys) + b")"
    raise AssertionError(key)


def flatten(key: SearchKey) -> SearchKey:
    """What the parser makes of a rendered key: one-element lists are the element."""
    match key:
        case Not(inner):
            return Not(flatten(inner))
        case Or(left, right):
            return Or(flatten(left), flatten(right))
        case And(keys):
            return And(tuple(flatten(k) for k in keys))
    return key


@settings(max_examples=300)
@given(KEYS)
def test_search_keys_round_trip(key: SearchKey) -> None:
    line = b"t SEARCH " + render(key) + b"\r\n"
    event = parse_command(line, utf8=False, limits=ParseLimits(depth=64, items=500))
    assert isinstance(event, events.Search), (line, event)
    assert event.program.criteria == flatten(key)


@given(SEQUENCES)
def test_sequence_sets_round_trip(sequence: SequenceSet) -> None:
    event = parse_command(
        b"t FETCH " + sequence.to_wire().encode() + b" UID\r\n",
        utf8=False,
        limits=ParseLimits(depth=8, items=50),
    )
    assert isinstance(event, events.Fetch) and event.sequence == sequence
