"""The IMAP command parser: every command's syntax, SEARCH and FETCH in depth, and refusals."""

from __future__ import annotations

import datetime

import pytest

from postoffice.protocols.imap import codes, events
from postoffice.protocols.imap.commands import parse_command, parse_done
from postoffice.protocols.imap.events import AppendMessage, CommandError, StoreMode
from postoffice.protocols.imap.fetch import MACROS, FetchAttribute, Section
from postoffice.protocols.imap.lexer import ParseLimits
from postoffice.protocols.imap.responses import UNKNOWN_COMMAND, Bad, No
from postoffice.protocols.imap.search import (
    All,
    And,
    DateKey,
    DateRelation,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    Not,
    Or,
    SequenceKey,
    SizeKey,
    TextKey,
)
from postoffice.protocols.imap.sequence import SequenceSet

LIMITS = ParseLimits(depth=10, items=50)


def parse(line: bytes, *, utf8: bool = False) -> events.Event:
    return parse_command(line + b"\r\n", utf8=utf8, limits=LIMITS)


def refused(line: bytes, *, utf8: bool = False) -> Bad | No:
    event = parse(line, utf8=utf8)
    assert isinstance(event, CommandError), event
    assert isinstance(event.response, Bad | No)
    return event.response


def seq(text: str) -> SequenceSet:
    return SequenceSet.parse(text)


# -- simple commands -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"a CAPABILITY", events.Capability("a")),
        (b"a noop", events.Noop("a")),
        (b"a LOGOUT", events.Logout("a")),
        (b"a STARTTLS", events.StartTls("a")),
        (b"a NAMESPACE", events.Namespace("a")),
        (b"a IDLE", events.Idle("a")),
        (b"a CHECK", events.Check("a")),
        (b"a CLOSE", events.Close("a")),
        (b"a UNSELECT", events.Unselect("a")),
        (b"a EXPUNGE", events.Expunge("a")),
        (b"A]1 NOOP", events.Noop("A]1")),  # "]" is allowed in a tag
    ],
)
def test_commands_without_arguments(line: bytes, event: events.Event) -> None:
    assert parse(line) == event


def test_arguments_where_none_belong_are_bad() -> None:
    assert isinstance(parse(b"a NOOP now"), CommandError)


def test_bare_lf_ends_a_line_too() -> None:
    assert parse_command(b"a NOOP\n", utf8=False, limits=LIMITS) == events.Noop("a")


@pytest.mark.parametrize(
    "line",
    [b"", b" NOOP", b"+a NOOP", b"a+b NOOP", b"* NOOP", b'"a" NOOP', b"a", b"a{1 NOOP"],
)
def test_without_a_tag_the_bad_is_untagged(line: bytes) -> None:
    event = parse(line)
    assert isinstance(event, CommandError)
    assert event.tag is None and isinstance(event.response, Bad)


def test_unknown_command() -> None:
    assert parse(b"a FROB") == CommandError("a", UNKNOWN_COMMAND)
    assert parse(b"a UID NOOP") == CommandError("a", UNKNOWN_COMMAND)


# -- strings, logins, mailboxes ----------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "user", "password"),
    [
        (b"a LOGIN alice secret", "alice", "secret"),
        (b'a LOGIN "alice@example.org" "p a\\"s\\\\s"', "alice@example.org", 'p a"s\\s'),
        (b"a LOGIN {5}\r\nalice {4+}\r\nab c", "alice", "ab c"),
        (b'a LOGIN "" ""', "", ""),
        ('a LOGIN "jöe" "pässword"'.encode(), "jöe", "pässword"),  # UTF-8 in quoted strings
    ],
)
def test_login(line: bytes, user: str, password: str) -> None:
    assert parse(line) == events.Login("a", user, password)


@pytest.mark.parametrize(
    "line",
    [
        b"a LOGIN alice",
        b"a LOGIN  alice secret",  # two spaces
        b'a LOGIN "alice secret',  # unterminated
        b'a LOGIN "al\\ice" x',  # "\" escapes only '"' and "\"
        b"a LOGIN al\xc3\xa9 x",  # 8-bit in an atom
        b"a LOGIN al%ce x",  # a wildcard in an atom
        b"a LOGIN {3}\r\na\x00b x",  # NUL in a literal
        b'a LOGIN "\xff" x',  # not UTF-8
    ],
)
def test_bad_logins(line: bytes) -> None:
    assert isinstance(refused(line), Bad)


def test_authenticate() -> None:
    assert parse(b"a AUTHENTICATE plain") == events.Authenticate("a", "PLAIN", None)
    assert parse(b"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==") == events.Authenticate(
        "a", "PLAIN", "AGFsaWNlAHNlY3JldA=="
    )
    assert parse(b"a AUTHENTICATE PLAIN =") == events.Authenticate("a", "PLAIN", "=")
    assert isinstance(parse(b"a AUTHENTICATE PLAIN ab!"), CommandError)


@pytest.mark.parametrize(
    ("raw", "utf8", "name"),
    [
        (b"inbox", False, "INBOX"),
        (b'"InBoX"', False, "INBOX"),
        (b"INBOX.Sent", False, "INBOX.Sent"),
        (b"Entw&APw-rfe", False, "Entwürfe"),  # IMAP4rev1: modified UTF-7
        ('"Entwürfe"'.encode(), True, "Entwürfe"),  # IMAP4rev2 / UTF8=ACCEPT: UTF-8
        (b"Entw&APw-rfe", True, "Entw&APw-rfe"),  # ... where "&" is just "&"
        (b"{5}\r\nA (b)", False, "A (b)"),
    ],
)
def test_mailbox_names(raw: bytes, utf8: bool, name: str) -> None:
    assert parse(b"a SELECT " + raw, utf8=utf8) == events.Select("a", name)


@pytest.mark.parametrize(
    ("raw", "utf8"),
    [
        ('"Entwürfe"'.encode(), False),  # 8-bit outside UTF-8 mode
        (b"Entw&APw", False),  # broken modified UTF-7
        (b"{3}\r\na\rb", True),  # a control character
        (b"a%", False),  # a wildcard outside LIST
    ],
)
def test_bad_mailbox_names(raw: bytes, utf8: bool) -> None:
    assert isinstance(refused(b"a SELECT " + raw, utf8=utf8), Bad)


def test_mailbox_commands() -> None:
    assert parse(b"a DELETE foo") == events.Delete("a", "foo")
    assert parse(b"a RENAME foo bar") == events.Rename("a", "foo", "bar")
    assert parse(b"a SUBSCRIBE foo") == events.Subscribe("a", "foo")
    assert parse(b"a UNSUBSCRIBE foo") == events.Unsubscribe("a", "foo")
    assert parse(b"a CREATE foo") == events.Create("a", "foo")
    assert parse(b"a CREATE Spam (USE (\\junk \\Archive))") == events.Create(
        "a", "Spam", ("\\Junk", "\\Archive")
    )
    assert isinstance(parse(b"a CREATE foo (USE (junk))"), CommandError)
    assert parse(b'a STATUS "Sent" (MESSAGES uidnext SIZE)') == events.Status(
        "a", "Sent", ("MESSAGES", "UIDNEXT", "SIZE")
    )
    assert isinstance(parse(b"a STATUS Sent (FROBS)"), CommandError)
    assert isinstance(parse(b"a STATUS Sent ()"), CommandError)


def test_select_parameters() -> None:
    assert parse(b"a EXAMINE Sent (CONDSTORE)") == events.Examine("a", "Sent", condstore=True)
    event = parse(b"a SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))")
    assert event == events.Select(
        "a", "INBOX", qresync=events.Qresync(67890007, 90060115194045000, seq("41:211,214:541"))
    )
    event = parse(b"a SELECT INBOX (QRESYNC (1 2 (1:3 10:12)))")
    assert event == events.Select(
        "a", "INBOX", qresync=events.Qresync(1, 2, None, seq("1:3"), seq("10:12"))
    )
    assert isinstance(parse(b"a SELECT INBOX (FROB)"), CommandError)
    assert isinstance(parse(b"a SELECT INBOX (QRESYNC (0 2))"), CommandError)


def test_list() -> None:
    assert parse(b'a LIST "" *') == events.List("a", "", ("*",))
    assert parse(b"a LIST ~/ %/&AOk-") == events.List("a", "~/", ("%/é",))
    assert parse(
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" "Sent/%") '
        b"RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN))"
    ) == events.List(
        "a",
        "",
        ("INBOX", "Sent/%"),
        frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}),
        frozenset({"CHILDREN", "SPECIAL-USE", "STATUS"}),
        ("MESSAGES", "UNSEEN"),
    )
    assert parse(b'a LIST () "" % RETURN ()') == events.List("a", "", ("%",))
    assert parse(b'a LSUB "" *') == events.Lsub("a", "", "*")


@pytest.mark.parametrize(
    "line",
    [
        b'a LIST (RECURSIVEMATCH) "" *',  # RFC 5258 §3.1: not alone
        b'a LIST (FROB) "" *',
        b'a LIST "" * RETURN (FROB)',
        b'a LIST "" * RETURN (STATUS ())',
        b'a LIST "" ()',
        b'a LIST ""',
    ],
)
def test_bad_list(line: bytes) -> None:
    assert isinstance(refused(line), Bad)


def append(tag: str, mailbox: str, *messages: AppendMessage) -> events.Append:
    return events.Append(tag, mailbox, messages)


def test_append() -> None:
    event = parse(b'a APPEND Sent (\\Seen $Label) "07-Feb-1994 21:52:25 -0800" {5}\r\nhello')
    pst = datetime.timezone(-datetime.timedelta(hours=8))
    date = datetime.datetime(1994, 2, 7, 21, 52, 25, tzinfo=pst)
    assert event == append("a", "Sent", AppendMessage(("\\Seen", "$Label"), date, b"hello"))
    assert parse(b"a APPEND Sent {0}\r\n") == append("a", "Sent", AppendMessage((), None, b""))
    assert parse(b'a APPEND Sent () " 7-Feb-1994 01:02:03 +0000" {1+}\r\nx') == append(
        "a",
        "Sent",
        AppendMessage((), datetime.datetime(1994, 2, 7, 1, 2, 3, tzinfo=datetime.UTC), b"x"),
    )
    # RFC 3516 §4.4: literal8 may hold NUL
    assert parse(b"a APPEND Sent ~{3}\r\na\x00b") == append(
        "a", "Sent", AppendMessage((), None, b"a\x00b", binary=True)
    )


def test_multiappend() -> None:
    """RFC 3502 §6: several messages, each with its own flags and date-time."""
    event = parse(
        b'a APPEND Sent (\\Seen) {1}\r\nx " 7-Feb-1994 01:02:03 +0000" {1+}\r\ny ~{2}\r\nz\x00'
    )
    assert event == append(
        "a",
        "Sent",
        AppendMessage(("\\Seen",), None, b"x"),
        AppendMessage((), datetime.datetime(1994, 2, 7, 1, 2, 3, tzinfo=datetime.UTC), b"y"),
        AppendMessage((), None, b"z\x00", binary=True),
    )


@pytest.mark.parametrize(
    "line",
    [
        b'a APPEND Sent "hello"',  # the message must be a literal
        b'a APPEND Sent "31-Feb-2024 10:00:00 +0000" {1}\r\nx',  # no such day
        b'a APPEND Sent "01-Jan-2024 25:00:00 +0000" {1}\r\nx',
        b'a APPEND Sent "01-Foo-2024 10:00:00 +0000" {1}\r\nx',
        b'a APPEND Sent "01-Jan-2024 10:00:00 +9999" {1}\r\nx',
        b"a APPEND Sent (\\Seen {1}\r\nx",
        b"a APPEND Sent",  # no message
        b"a APPEND Sent {1}\r\nx ",  # a space and no second message
        b"a APPEND Sent {1}\r\nx(\\Seen) {1}\r\ny",  # no space between messages
    ],
)
def test_bad_append(line: bytes) -> None:
    assert isinstance(refused(line), Bad)


def test_enable_and_id() -> None:
    assert parse(b"a ENABLE imap4rev2 CONDSTORE") == events.Enable("a", ("IMAP4REV2", "CONDSTORE"))
    assert isinstance(parse(b"a ENABLE"), CommandError)
    assert parse(b"a ID NIL") == events.Id("a", None)
    assert parse(b'a ID ("name" "mutt" "version" NIL)') == events.Id(
        "a", (("name", "mutt"), ("version", None))
    )
    assert parse(b"a ID ()") == events.Id("a", ())
    assert isinstance(parse(b'a ID ("name")'), CommandError)
    assert isinstance(parse(b'a ID ("' + b"x" * 31 + b'" NIL)'), CommandError)


# -- messages: FETCH, STORE, COPY, MOVE, EXPUNGE ---------------------------------------


def fetch(text: bytes, *, uid: bool = False) -> events.Fetch:
    event = parse((b"a UID FETCH " if uid else b"a FETCH ") + text)
    assert isinstance(event, events.Fetch), event
    return event


def test_fetch_macros_and_simple_attributes() -> None:
    assert fetch(b"1:* ALL").request.attributes == MACROS["ALL"]
    assert fetch(b"1 fast").request.attributes == MACROS["FAST"]
    assert [a.name for a in fetch(b"1 FULL").request.attributes] == [
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "ENVELOPE",
        "BODY",
    ]
    names = "ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT BODY"
    names += " BODYSTRUCTURE UID MODSEQ"
    event = fetch(b"2,4:7,* (" + names.encode() + b")")
    assert event.sequence == SequenceSet(((2, 2), (4, 7), (None, None)))
    assert [a.name for a in event.request.attributes] == names.split()
    assert isinstance(parse(b"a FETCH 1 (ALL)"), CommandError)  # macros stand alone


@pytest.mark.parametrize(
    ("text", "attribute", "response_name"),
    [
        (b"BODY[]", FetchAttribute("BODY", Section()), "BODY[]"),
        (b"BODY.PEEK[]<0.100>", FetchAttribute("BODY", Section(), (0, 100), True), "BODY[]<0>"),
        (b"body[1.2.3]", FetchAttribute("BODY", Section((1, 2, 3))), "BODY[1.2.3]"),
        (b"BODY[1.MIME]", FetchAttribute("BODY", Section((1,), "MIME")), "BODY[1.MIME]"),
        (b"BODY[TEXT]", FetchAttribute("BODY", Section((), "TEXT")), "BODY[TEXT]"),
        (b"BODY[2.HEADER]", FetchAttribute("BODY", Section((2,), "HEADER")), "BODY[2.HEADER]"),
        (
            b'BODY.PEEK[HEADER.FIELDS (From "To" {2}\r\nCc)]',
            FetchAttribute("BODY", Section((), "HEADER.FIELDS", ("From", "To", "Cc")), peek=True),
            "BODY[HEADER.FIELDS (From To Cc)]",
        ),
        (
            b"BODY[1.HEADER.FIELDS.NOT (X-Spam)]<10.20>",
            FetchAttribute("BODY", Section((1,), "HEADER.FIELDS.NOT", ("X-Spam",)), (10, 20)),
            "BODY[1.HEADER.FIELDS.NOT (X-Spam)]<10>",
        ),
        (b"BINARY[1]", FetchAttribute("BINARY", Section((1,))), "BINARY[1]"),
        (b"BINARY.PEEK[]", FetchAttribute("BINARY", Section(), peek=True), "BINARY[]"),
        (b"BINARY.SIZE[2]", FetchAttribute("BINARY.SIZE", Section((2,))), "BINARY.SIZE[2]"),
    ],
)
def test_fetch_sections(text: bytes, attribute: FetchAttribute, response_name: str) -> None:
    assert fetch(b"1 " + text).request.attributes == (attribute,)
    assert attribute.response_name == response_name


def test_sets_seen() -> None:
    seen = {
        a.name + str(a.peek)
        for a in fetch(b"1 (BODY[] BINARY[1] RFC822 RFC822.TEXT)").request.attributes
        if a.sets_seen
    }
    assert seen == {"BODYFalse", "BINARYFalse", "RFC822False", "RFC822.TEXTFalse"}
    peeked = fetch(b"1 (BODY.PEEK[] BINARY.PEEK[1] RFC822.HEADER BODY FLAGS)").request
    assert not any(a.sets_seen for a in peeked.attributes)


@pytest.mark.parametrize(
    "text",
    [
        b"1 (FLAGS",
        b"1 FLAGS)",
        b"1 (FLAGS  UID)",
        b"1 BODY[MIME]",  # MIME needs a part
        b"1 BODY[0]",  # parts count from 1
        b"1 BODY[1.]",
        b"1 BODY[HEADER.FIELDS ()]",
        b"1 BODY[HEADER.FIELDS (Fr:om)]",
        b"1 BODY[]<5.0>",  # an empty partial
        b"1 BINARY[TEXT]",
        b"1 BINARY.SIZE[1]<0.5>",
        b"1 (FROB)",
        b"0 FLAGS",  # message numbers count from 1
        b"1:4294967296 FLAGS",
        b"1,,2 FLAGS",
        b"1: FLAGS",
        b"$,1 FLAGS",
        b"1 FLAGS (CHANGEDSINCE 0)",
        b"1 FLAGS (VANISHED)",
    ],
)
def test_bad_fetch(text: bytes) -> None:
    assert isinstance(refused(b"a FETCH " + text), Bad)


def test_fetch_modifiers() -> None:
    assert fetch(b"1:* FLAGS (CHANGEDSINCE 12345)").request.changed_since == 12345
    request = fetch(b"1:* FLAGS (CHANGEDSINCE 9 VANISHED)", uid=True).request
    assert (request.changed_since, request.vanished) == (9, True)
    assert isinstance(parse(b"a FETCH 1:* FLAGS (CHANGEDSINCE 9 VANISHED)"), CommandError)


def test_store() -> None:
    assert parse(b"a STORE 2:4 +FLAGS (\\Deleted)") == events.Store(
        "a", False, seq("2:4"), StoreMode.ADD, ("\\Deleted",)
    )
    assert parse(b"a UID STORE 1 -flags.silent \\seen $Junk") == events.Store(
        "a", True, seq("1"), StoreMode.REMOVE, ("\\Seen", "$Junk"), silent=True
    )
    assert parse(b"a STORE $ (UNCHANGEDSINCE 0) FLAGS ()") == events.Store(
        "a", False, SequenceSet((), saved=True), StoreMode.REPLACE, (), unchanged_since=0
    )
    for bad in (b"a STORE 1 FLAGS", b"a STORE 1 *FLAGS (x)", b"a STORE 1 FLAGS (\\)"):
        assert isinstance(parse(bad), CommandError)


def test_copy_move_expunge() -> None:
    assert parse(b"a COPY 1:3 Archive") == events.Copy("a", False, seq("1:3"), "Archive")
    assert parse(b"a UID MOVE 4,9 Trash") == events.Move("a", True, seq("4,9"), "Trash")
    assert parse(b"a UID EXPUNGE 3:5") == events.Expunge("a", seq("3:5"))
    assert isinstance(parse(b"a UID EXPUNGE"), CommandError)


# -- SEARCH ------------------------------------------------------------------------------


def search(text: bytes) -> events.Search:
    event = parse(b"a SEARCH " + text)
    assert isinstance(event, events.Search), event
    return event


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (b"ALL", All()),
        (b"seen", FlagKey("\\Seen")),
        (b"UNDELETED", FlagKey("\\Deleted", False)),
        (b"KEYWORD $Junk", FlagKey("$Junk")),
        (b"UNKEYWORD $Junk", FlagKey("$Junk", False)),
        (b"NEW", And((FlagKey("\\Recent"), FlagKey("\\Seen", False)))),
        (b"OLD", FlagKey("\\Recent", False)),
        (b'FROM "Smith"', HeaderKey("From", "Smith")),
        (b"SUBJECT {4}\r\nhi t", HeaderKey("Subject", "hi t")),
        (b'HEADER X-Spam ""', HeaderKey("X-Spam", "")),
        (b"BODY ping", TextKey("ping", body_only=True)),
        (b"TEXT ping", TextKey("ping", body_only=False)),
        (b"SINCE 1-Feb-1994", DateKey(DateRelation.SINCE, datetime.date(1994, 2, 1), False)),
        (b'SENTON "01-Feb-1994"', DateKey(DateRelation.ON, datetime.date(1994, 2, 1), True)),
        (b"LARGER 1000", SizeKey(1000, larger=True)),
        (b"SMALLER 9223372036854775807", SizeKey(2**63 - 1, larger=False)),
        (b"2,4:*", SequenceKey(seq("2,4:*"), uid=False)),
        (b"$", SequenceKey(SequenceSet((), saved=True), uid=False)),
        (b"UID 1:100", SequenceKey(seq("1:100"), uid=True)),
        (b"MODSEQ 620162338", ModSeqKey(620162338)),
        (b'MODSEQ "/flags/\\\\draft" all 1', ModSeqKey(1, "/flags/\\draft", "all")),
        (b"NOT SEEN", Not(FlagKey("\\Seen"))),
        (b"(SEEN)", FlagKey("\\Seen")),
    ],
)
def test_search_keys(text: bytes, key: object) -> None:
    assert search(text).program.criteria == key


def test_search_nested_or_not_and_lists() -> None:
    program = search(b"OR (FROM a NOT SEEN) OR NOT (TO b) UID 5:* DELETED").program
    assert program.criteria == And(
        (
            Or(
                And((HeaderKey("From", "a"), Not(FlagKey("\\Seen")))),
                Or(Not(HeaderKey("To", "b")), SequenceKey(seq("5:*"), uid=True)),
            ),
            FlagKey("\\Deleted"),
        )
    )
    assert program.charset is None and program.returns is None


def test_search_charset_and_return() -> None:
    program = search(b'RETURN (MIN COUNT save) CHARSET utf-8 SUBJECT "caf\xc3\xa9"').program
    assert program.returns == frozenset({"MIN", "COUNT", "SAVE"})
    assert program.charset == "UTF-8"
    assert program.criteria == HeaderKey("Subject", "café")
    assert search(b"RETURN () ALL").program.returns == frozenset()
    event = parse(b"a UID SEARCH CHARSET US-ASCII ALL")
    assert isinstance(event, events.Search) and event.uid


def test_unknown_charset_is_no_badcharset() -> None:
    response = refused(b"a SEARCH CHARSET KOI8-R ALL")
    assert isinstance(response, No)
    assert response.code == codes.badcharset(("UTF-8", "US-ASCII"))


def test_search_text_must_match_its_charset() -> None:
    assert isinstance(refused(b'a SEARCH CHARSET US-ASCII SUBJECT "caf\xc3\xa9"'), Bad)


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"FROB",
        b"OR SEEN",
        b"NOT",
        b"(SEEN",
        b"SEEN)",
        b"()",
        b"SINCE 32-Jan-2024",
        b"SINCE 1-Jan-24",
        b"LARGER -1",
        b"LARGER 9223372036854775808",
        b"UID",
        b"KEYWORD \\Seen",
        b'MODSEQ "/flags/x" mine 5',
        b"RETURN (FROB) ALL",
        b"SEEN  DELETED",
    ],
)
def test_bad_search(text: bytes) -> None:
    assert isinstance(refused(b"a SEARCH " + text), Bad)


def test_nesting_is_bounded() -> None:
    deep = b"(" * 20 + b"SEEN" + b")" * 20
    assert refused(b"a SEARCH " + deep) == Bad("Syntax error: nested too deeply")
    nots = b"NOT " * 20 + b"SEEN"
    assert refused(b"a SEARCH " + nots) == Bad("Syntax error: nested too deeply")
    ors = b"OR SEEN " * 20 + b"SEEN SEEN"
    assert isinstance(refused(b"a SEARCH " + ors), Bad)
    assert isinstance(search(b"NOT " * 8 + b"SEEN").program.criteria, Not)


def test_item_count_is_bounded() -> None:
    assert refused(b"a SEARCH " + b"SEEN " * 60 + b"SEEN") == Bad(
        "Syntax error: too many parameters"
    )
    flags = b" ".join(b"$k%d" % i for i in range(60))
    assert isinstance(refused(b"a STORE 1 +FLAGS (" + flags + b")"), Bad)


def test_done() -> None:
    assert parse_done(b"DONE\r\n", "a") == events.Done("a")
    assert parse_done(b"done\n", "a") == events.Done("a")
    assert isinstance(parse_done(b"a NOOP\r\n", "a"), CommandError)
