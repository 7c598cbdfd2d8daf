"""Responses and values on the wire: quoting, literals, NIL, mailbox names, every response
type, and round trips through the parser's own readers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.protocols.imap import codes, mutf7, serializer
from postoffice.protocols.imap.lexer import Cursor, ParseLimits
from postoffice.protocols.imap.responses import (
    Bad,
    Bye,
    Capabilities,
    Continuation,
    Enabled,
    ESearchResult,
    Exists,
    Expunge,
    FetchResult,
    Flags,
    IdResult,
    ListEntry,
    MailboxStatus,
    Namespaces,
    No,
    Ok,
    Preauth,
    Recent,
    SearchResult,
    UntaggedNo,
    UntaggedOk,
    Vanished,
    syntax,
)
from postoffice.protocols.imap.sequence import SequenceSet
from postoffice.protocols.imap.serializer import Atom, Literal8

LIMITS = ParseLimits(depth=10, items=100)


def read_back(wire: bytes, utf8: bool = False) -> Cursor:
    return Cursor(wire + b"\r\n", utf8=utf8, limits=LIMITS)


# -- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "utf8", "wire"),
    [
        (None, False, b"NIL"),
        (0, False, b"0"),
        (4294967296, False, b"4294967296"),
        ("plain", False, b'"plain"'),
        ("", False, b'""'),
        ('say "hi" \\o/', False, b'"say \\"hi\\" \\\\o/"'),
        ("two\r\nlines", False, b"{10}\r\ntwo\r\nlines"),
        ("café", False, b"{5}\r\ncaf\xc3\xa9"),  # 8-bit: a literal outside UTF-8 mode ...
        ("café", True, b'"caf\xc3\xa9"'),  # ... and quoted inside it
        (b"caf\xe9", True, b"{4}\r\ncaf\xe9"),  # not UTF-8: a literal even then
        (b"nul\x00", False, b"{4}\r\nnul\x00"),
        ("x" * 1001, False, b"{1001}\r\n" + b"x" * 1001),
        (Atom("\\Seen"), False, b"\\Seen"),
        (Literal8(b"\x00\x01"), False, b"~{2}\r\n\x00\x01"),
        (("a", None, 1, (Atom("\\*"),)), False, b'("a" NIL 1 (\\*))'),
        ((), False, b"()"),
    ],
)
def test_values(value: serializer.Value, utf8: bool, wire: bytes) -> None:
    assert serializer.write(value, utf8) == wire


@pytest.mark.parametrize("bad", [True, -1, 1.5, ["a"], {"a": 1}])
def test_non_values_are_refused(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        serializer.write(bad, False)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "a b", "(x)", "\\", "é", "a]"])
def test_atoms_are_checked(bad: str) -> None:
    with pytest.raises(ValueError):
        Atom(bad)


@given(st.binary(max_size=1200), st.booleans())
def test_any_bytes_round_trip_as_a_string(data: bytes, utf8: bool) -> None:
    """What the serializer writes as a string, the parser reads back unchanged — except NUL,
    which only literal8 may carry (RFC 9051 §9)."""
    wire = serializer.string(data, utf8)
    cursor = read_back(wire)
    if b"\x00" in data:
        assert wire.startswith(b"{")
        return
    assert cursor.string() == data
    cursor.end()


@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=60), st.booleans())
def test_mailbox_names_round_trip(name: str, utf8: bool) -> None:
    wire = serializer.mailbox(name, utf8)
    if not utf8:
        assert wire.isascii() or wire.startswith(b"{")
    cursor = read_back(wire, utf8)
    try:
        parsed = cursor.mailbox()
    except Exception as error:  # control characters are refused on the way in
        assert any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name), error
        return
    assert parsed == ("INBOX" if name.upper() == "INBOX" else name)


def test_mailbox_names_follow_the_mode() -> None:
    assert serializer.mailbox("Entwürfe", False) == b'"Entw&APw-rfe"'
    assert serializer.mailbox("Entwürfe", True) == '"Entwürfe"'.encode()
    assert mutf7.decode("Entw&APw-rfe") == "Entwürfe"


def test_astring() -> None:
    assert serializer.astring("From") == "From"
    assert serializer.astring("a(b") == '"a(b"'
    assert serializer.astring('x"\\') == '"x\\"\\\\"'


# -- status responses ------------------------------------------------------------------------


def test_status_responses() -> None:
    assert Ok("LOGIN completed").tagged("a1") == b"a1 OK LOGIN completed\r\n"
    assert (
        No("no such mailbox", codes.TRYCREATE).tagged("a2")
        == b"a2 NO [TRYCREATE] no such mailbox\r\n"
    )
    assert Bad("what?").tagged("*") == b"* BAD what?\r\n"
    assert (
        UntaggedOk("ready", codes.capability_code(("IMAP4rev2", "AUTH=PLAIN"))).to_bytes(False)
        == b"* OK [CAPABILITY IMAP4rev2 AUTH=PLAIN] ready\r\n"
    )
    assert UntaggedNo("disk almost full", codes.ALERT).to_bytes(False) == (
        b"* NO [ALERT] disk almost full\r\n"
    )
    assert Preauth("welcome").to_bytes(False) == b"* PREAUTH welcome\r\n"
    assert Bye("logging out").to_bytes(False) == b"* BYE logging out\r\n"
    assert Continuation("idling").to_bytes(False) == b"+ idling\r\n"
    assert Continuation().to_bytes(False) == b"+ \r\n"


@pytest.mark.parametrize(
    ("code", "wire"),
    [
        (codes.uidvalidity(3857529045), "[UIDVALIDITY 3857529045]"),
        (codes.uidnext(4392), "[UIDNEXT 4392]"),
        (codes.unseen(12), "[UNSEEN 12]"),
        (codes.highestmodseq(715194045007), "[HIGHESTMODSEQ 715194045007]"),
        (
            codes.permanentflags(("\\Deleted", "\\Seen", "\\*")),
            "[PERMANENTFLAGS (\\Deleted \\Seen \\*)]",
        ),
        (codes.appenduid(38505, SequenceSet.of([3955])), "[APPENDUID 38505 3955]"),
        (
            codes.copyuid(
                38505, SequenceSet.of([304, 319, 320]), SequenceSet.of([3956, 3957, 3958])
            ),
            "[COPYUID 38505 304,319:320 3956:3958]",
        ),
        (codes.modified(SequenceSet.of([7, 9])), "[MODIFIED 7,9]"),
        (codes.badcharset(("UTF-8", "US-ASCII")), "[BADCHARSET (UTF-8 US-ASCII)]"),
        (codes.READ_WRITE, "[READ-WRITE]"),
        (codes.READ_ONLY, "[READ-ONLY]"),
        (codes.CLOSED, "[CLOSED]"),
        (codes.NOMODSEQ, "[NOMODSEQ]"),
        (codes.TOOBIG, "[TOOBIG]"),
        (codes.AUTHENTICATIONFAILED, "[AUTHENTICATIONFAILED]"),
        (codes.UNAVAILABLE, "[UNAVAILABLE]"),
        (codes.LIMIT, "[LIMIT]"),
        (codes.NONEXISTENT, "[NONEXISTENT]"),
        (codes.ALREADYEXISTS, "[ALREADYEXISTS]"),
        (codes.SERVERBUG, "[SERVERBUG]"),
    ],
)
def test_response_codes(code: codes.Code, wire: str) -> None:
    assert code.to_wire() == wire


def test_bad_responses_fail_where_they_are_built() -> None:
    for make in (
        lambda: Ok("two\r\nlines"),
        lambda: Ok(""),
        lambda: Ok("[ALERT] fake"),
        lambda: Ok("café"),
        lambda: codes.Code("FROB"),
        lambda: codes.Code("ALERT", "x]y"),
        lambda: codes.uidvalidity(0),
        lambda: Continuation("a\nb"),
    ):
        with pytest.raises(ValueError):
            make()


def test_syntax_errors_keep_to_printable_text() -> None:
    assert syntax("bad 'é'\n").text == "Syntax error: bad '?'?"


# -- untagged data ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "utf8", "wire"),
    [
        (
            Capabilities(("IMAP4rev2", "IMAP4rev1", "IDLE")),
            False,
            b"* CAPABILITY IMAP4rev2 IMAP4rev1 IDLE",
        ),
        (Enabled(("CONDSTORE",)), False, b"* ENABLED CONDSTORE"),
        (Exists(23), False, b"* 23 EXISTS"),
        (Exists(0), False, b"* 0 EXISTS"),
        (Recent(5), False, b"* 5 RECENT"),
        (Expunge(3), False, b"* 3 EXPUNGE"),
        (Vanished(SequenceSet.of([41, 43, 44, 45])), False, b"* VANISHED 41,43:45"),
        (Vanished(SequenceSet.of([1, 2]), earlier=True), False, b"* VANISHED (EARLIER) 1:2"),
        (Flags(("\\Answered", "\\Seen", "$Junk")), False, b"* FLAGS (\\Answered \\Seen $Junk)"),
        (
            ListEntry("Sent", ".", ("\\HasNoChildren", "\\Sent")),
            False,
            b'* LIST (\\HasNoChildren \\Sent) "." "Sent"',
        ),
        (ListEntry("Entwürfe", "/", ()), False, b'* LIST () "/" "Entw&APw-rfe"'),
        (ListEntry("Entwürfe", "/", ()), True, '* LIST () "/" "Entwürfe"'.encode()),
        (ListEntry("", None, ("\\Noselect",)), False, b'* LIST (\\Noselect) NIL ""'),
        (ListEntry("Old", "/", lsub=True), False, b'* LSUB () "/" "Old"'),
        (
            ListEntry("Foo", "/", (), child_info=("SUBSCRIBED",)),
            False,
            b'* LIST () "/" "Foo" ("CHILDINFO" ("SUBSCRIBED"))',
        ),
        (
            ListEntry("New", "/", (), old_name="Ancien"),
            False,
            b'* LIST () "/" "New" ("OLDNAME" ("Ancien"))',
        ),
        (
            MailboxStatus("INBOX", (("MESSAGES", 17), ("UIDNEXT", 44))),
            False,
            b'* STATUS "INBOX" (MESSAGES 17 UIDNEXT 44)',
        ),
        (SearchResult((2, 84, 882)), False, b"* SEARCH 2 84 882"),
        (SearchResult(()), False, b"* SEARCH"),
        (SearchResult((3,), modseq=917), False, b"* SEARCH 3 (MODSEQ 917)"),
        (
            ESearchResult("x", uid=True, all=SequenceSet.of([1, 2, 3])),
            False,
            b'* ESEARCH (TAG "x") UID ALL 1:3',
        ),
        (
            ESearchResult("a", uid=False, min=2, max=9, count=3, modseq=5),
            False,
            b'* ESEARCH (TAG "a") MIN 2 MAX 9 COUNT 3 MODSEQ 5',
        ),
        (ESearchResult(None, uid=False, count=0), False, b"* ESEARCH COUNT 0"),
        (
            IdResult((("name", "postoffice"), ("version", None))),
            False,
            b'* ID ("name" "postoffice" "version" NIL)',
        ),
        (IdResult(None), False, b"* ID NIL"),
        (Namespaces((("", "/"),)), False, b'* NAMESPACE (("" "/")) NIL NIL'),
        (
            Namespaces((("", "."),), (("Other.", "."),), (("Shared.", "."),)),
            False,
            b'* NAMESPACE (("" ".")) (("Other." ".")) (("Shared." "."))',
        ),
    ],
)
def test_untagged_data(response: object, utf8: bool, wire: bytes) -> None:
    assert response.to_bytes(utf8) == wire + b"\r\n"  # type: ignore[attr-defined]


def test_fetch_result() -> None:
    body = b"Subject: hi\r\n\r\nbody\r\n"
    wire = FetchResult(
        12,
        (
            ("UID", 4827313),
            ("FLAGS", (Atom("\\Seen"), Atom("$Forwarded"))),
            ("INTERNALDATE", "17-Jul-1996 02:44:25 -0700"),
            ("RFC822.SIZE", len(body)),
            ("MODSEQ", (12121231000,)),
            ("BODY[]<0>", body),
            ("BINARY[1]", Literal8(b"\x00")),
            ("BODY[2]", None),
        ),
    ).to_bytes(False)
    assert wire == (
        b"* 12 FETCH (UID 4827313 FLAGS (\\Seen $Forwarded)"
        b' INTERNALDATE "17-Jul-1996 02:44:25 -0700"'
        b" RFC822.SIZE 21 MODSEQ (12121231000) BODY[]<0> {21}\r\nSubject: hi\r\n\r\nbody\r\n"
        b" BINARY[1] ~{1}\r\n\x00 BODY[2] NIL)\r\n"
    )


# -- sequence sets -------------------------------------------------------------------------


@given(st.lists(st.integers(1, 2**32 - 1), min_size=1, max_size=30))
def test_sequence_sets_compress_and_round_trip(numbers: list[int]) -> None:
    made = SequenceSet.of(numbers)
    assert SequenceSet.parse(made.to_wire()) == made
    resolved = made.resolve(max(numbers))
    assert sum(high - low + 1 for low, high in resolved) == len(set(numbers))
    assert all(made.contains(n, max(numbers)) for n in numbers)


def test_sequence_set_resolution() -> None:
    assert SequenceSet.parse("*:4,1,2").resolve(6) == ((1, 2), (4, 6))
    assert SequenceSet.parse("5:*").resolve(3) == ((3, 5),)  # RFC 9051 §9: "*" is 3 here
    assert SequenceSet.parse("*").resolve(0) == ()
    assert SequenceSet.parse("3,1:2").to_wire() == "3,1:2"  # kept as written
    with pytest.raises(ValueError):
        SequenceSet.parse("$").resolve(5)
    for bad in ("", "0", "1:", ":1", "1,,2", "4294967296", "01", "1:2:3", "$,1"):
        with pytest.raises(ValueError):
            SequenceSet.parse(bad)
