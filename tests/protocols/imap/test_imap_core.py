"""The IMAP server core, bytes in and events out: states, literals and their limits,
STARTTLS, IDLE, AUTHENTICATE, LOGOUT, modes, and the API's guard rails."""

from __future__ import annotations

import pytest

from postoffice.protocols import sasl
from postoffice.protocols.imap import (
    NEED_DATA,
    PAUSED,
    Bad,
    Bye,
    Continuation,
    Limits,
    No,
    Ok,
    Preauth,
    SequenceSet,
    ServerConnection,
    State,
    UntaggedOk,
    codes,
    events,
    responses,
)

from .driver import Answer, Session, default_answer

LOGIN = b"a0 LOGIN alice secret\r\n"


def logged_in(limits: Limits | None = None, **options: object) -> Session:
    session = Session(limits, **options)  # type: ignore[arg-type]
    session.feed(LOGIN)
    assert session.conn.state is State.AUTHENTICATED
    session.output()
    session.events.clear()
    return session


def selected(limits: Limits | None = None, **options: object) -> Session:
    session = logged_in(limits, **options)
    session.feed(b"s SELECT INBOX\r\n")
    assert session.conn.state is State.SELECTED
    session.output()
    session.events.clear()
    return session


# -- greeting and states -----------------------------------------------------------------


def test_greeting_comes_first() -> None:
    conn = ServerConnection()
    with pytest.raises(RuntimeError):
        conn.send(Ok("too soon"))
    assert conn.send(UntaggedOk("ready")) == b"* OK ready\r\n"
    with pytest.raises(RuntimeError):
        conn.send(Preauth("twice"))


def test_preauth_greeting_starts_authenticated() -> None:
    conn = ServerConnection()
    assert conn.send(Preauth("welcome back")) == b"* PREAUTH welcome back\r\n"
    assert conn.state is State.AUTHENTICATED


def test_bye_greeting_ends_the_session() -> None:
    conn = ServerConnection()
    conn.send(Bye("too busy"))
    assert conn.closed
    assert conn.next_event() is PAUSED


def test_login_moves_to_authenticated_and_failure_stays() -> None:
    session = Session()
    assert session.output() == b"* OK postoffice ready\r\n"
    session.feed(b"a LOGIN alice wrong\r\n")
    assert session.conn.state is State.NOT_AUTHENTICATED
    session.feed(LOGIN)
    assert session.conn.state is State.AUTHENTICATED
    assert session.output() == b"a NO authentication failed\r\na0 OK done\r\n"


@pytest.mark.parametrize(
    ("state", "line"),
    [
        ("new", b"x SELECT INBOX\r\n"),
        ("new", b"x FETCH 1 FLAGS\r\n"),
        ("new", b"x APPEND INBOX {1+}\r\nx\r\n"),
        ("new", b"x IDLE\r\n"),
        ("authenticated", b"x LOGIN a b\r\n"),
        ("authenticated", b"x STARTTLS\r\n"),
        ("authenticated", b"x FETCH 1 FLAGS\r\n"),
        ("authenticated", b"x CLOSE\r\n"),
        ("authenticated", b"x UID EXPUNGE 1\r\n"),
        ("selected", b"x ENABLE CONDSTORE\r\n"),  # RFC 5161 §3.1: before SELECT only
        ("selected", b"x AUTHENTICATE PLAIN\r\n"),
    ],
)
def test_commands_in_the_wrong_state_are_bad(state: str, line: bytes) -> None:
    session = {"new": Session, "authenticated": logged_in, "selected": selected}[state]()
    before = session.conn.state
    session.output()
    (event,) = session.feed(line)
    assert event == events.CommandError("x", responses.WRONG_STATE)
    assert session.output() == b"x BAD Command not valid in this state\r\n"
    assert session.conn.state is before


@pytest.mark.parametrize("line", [b"x CAPABILITY\r\n", b"x NOOP\r\n", b'x ID ("a" "b")\r\n'])
@pytest.mark.parametrize("make", [Session, logged_in, selected])
def test_some_commands_are_valid_in_every_state(line: bytes, make: type[Session]) -> None:
    session = make()
    (event,) = session.feed(line)
    assert not isinstance(event, events.CommandError)


def test_select_close_unselect_and_a_failed_select() -> None:
    session = logged_in()
    session.feed(b"a EXAMINE Sent\r\n")
    assert session.conn.state is State.SELECTED
    session.feed(b"b CLOSE\r\n")
    assert session.conn.state is State.AUTHENTICATED
    session.feed(b"c SELECT INBOX\r\nd UNSELECT\r\n")
    assert session.conn.state is State.AUTHENTICATED
    session.feed(b"e SELECT INBOX\r\nf SELECT Missing\r\n")  # RFC 9051 §6.3.2
    assert session.conn.state is State.AUTHENTICATED
    session.feed(b"g SELECT INBOX\r\nh SELECT INBOX\r\n")
    assert session.conn.state is State.SELECTED


def test_pipelined_commands_wait_for_their_turn() -> None:
    conn = ServerConnection()
    conn.send(UntaggedOk("ready"))
    conn.receive_data(LOGIN + b"b SELECT INBOX\r\nc FETCH 1 UID\r\n")
    assert conn.next_event() == events.Login("a0", "alice", "secret")
    assert conn.next_event() is PAUSED
    conn.send(Ok("LOGIN completed"))
    assert isinstance(conn.next_event(), events.Select)  # parsed only now, as AUTHENTICATED
    conn.send(responses.Exists(3))
    conn.send(Ok("SELECT completed", codes.READ_WRITE))
    assert isinstance(conn.next_event(), events.Fetch)
    assert conn.send(responses.FetchResult(1, (("UID", 7),))) == b"* 1 FETCH (UID 7)\r\n"
    assert conn.send(Ok("FETCH completed")) == b"c OK FETCH completed\r\n"
    assert conn.next_event() is NEED_DATA


def test_untagged_bad_without_a_tag() -> None:
    session = Session()
    session.output()
    session.feed(b"\r\n")
    assert session.output() == b"* BAD Syntax error: a command starts with a tag and a space\r\n"


def test_eof_closes() -> None:
    session = logged_in()
    session.feed(b"a NOO")
    assert session.feed(b"") == [events.ConnectionClosed()]
    assert session.conn.closed


def test_logout_takes_bye_then_ok() -> None:
    session = selected()
    session.feed(b"z LOGOUT\r\n")
    assert session.output() == b"* BYE logging out\r\nz OK LOGOUT completed\r\n"
    assert session.conn.closed and session.conn.state is State.LOGOUT
    conn = ServerConnection()
    conn.send(UntaggedOk("ready"))
    conn.receive_data(b"z LOGOUT\r\n")
    conn.next_event()
    with pytest.raises(RuntimeError):
        conn.send(Ok("no BYE yet"))


def test_api_misuse_raises() -> None:
    conn = ServerConnection()
    conn.send(UntaggedOk("ready"))
    with pytest.raises(RuntimeError):
        conn.send(Ok("nothing pending"))
    conn.receive_data(b"a NOOP\r\n")
    conn.next_event()
    with pytest.raises(RuntimeError):
        conn.send(responses.Enabled(("CONDSTORE",)))
    with pytest.raises(ValueError):
        conn.send(Continuation("NOOP takes no continuation"))
    with pytest.raises(RuntimeError):
        conn.start_tls()


def test_untagged_data_may_go_out_between_commands() -> None:
    session = selected()
    assert session.conn.send(responses.Exists(4)) == b"* 4 EXISTS\r\n"


# -- literals -------------------------------------------------------------------------------


def test_synchronising_literal_gets_a_continuation() -> None:
    session = Session()
    session.output()
    assert session.feed(b"a LOGIN {5}\r\n") == []
    assert session.output() == b"+ Ready for literal data\r\n"
    assert session.feed(b"alice {6}\r\n") == []
    assert session.output() == b"+ Ready for literal data\r\n"
    assert session.feed(b"secret\r\n") == [events.Login("a", "alice", "secret")]


def test_literal_content_is_never_read_as_commands() -> None:
    session = logged_in()
    message = b"x LOGOUT\r\ny DELETE INBOX\r\n"
    (event,) = session.feed(b"a APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\n")
    assert event == events.Append("a", "INBOX", (events.AppendMessage((), None, message),))


def test_oversized_synchronising_append_is_refused_before_the_continuation() -> None:
    session = logged_in(Limits(literal=100))
    (event,) = session.feed(b"a APPEND INBOX (\\Seen) {101}\r\n")
    assert event == events.CommandError("a", responses.MESSAGE_TOO_BIG)
    wire = session.output()
    assert wire == b"a NO [TOOBIG] Message too big\r\n"
    assert b"+" not in wire
    # the client does not send the literal; its next line is a new command
    assert session.feed(b"b NOOP\r\n") == [events.Noop("b")]
    session.output()
    # within the limit, the same command proceeds
    session.feed(b"c APPEND INBOX {100}\r\n")
    assert session.output() == b"+ Ready for literal data\r\n"


def test_oversized_non_synchronising_literal_is_read_and_dropped() -> None:
    session = logged_in(Limits(literal=100))
    junk = b"x LOGOUT\r\n" * 20  # 200 octets that look like commands
    (event,) = session.feed(b"a APPEND INBOX {200+}\r\n" + junk + b"\r\nb NOOP\r\n")[:1]
    assert event == events.CommandError("a", responses.MESSAGE_TOO_BIG)
    assert session.events[1:] == [events.Noop("b")]
    assert session.output() == b"a NO [TOOBIG] Message too big\r\nb OK done\r\n"


def test_dropping_continues_through_the_rest_of_the_command() -> None:
    session = logged_in(Limits(command=64, literal=10))
    session.feed(b"a LOGIN {100+}\r\n" + b"L" * 100 + b" {3+}\r\nABC {200}\r\n")
    # the synchronising literal after the dropped ones ends the command at once
    assert session.events[-1] == events.CommandError("a", responses.COMMAND_TOO_LONG)
    assert b"+" not in session.output()
    assert session.feed(b"b NOOP\r\n") == [events.Noop("b")]


def test_literals_outside_append_are_bound_by_the_command_limit() -> None:
    session = Session(Limits(command=100))
    (event,) = session.feed(b"a LOGIN {101}\r\n")
    assert event == events.CommandError("a", responses.COMMAND_TOO_LONG)
    assert session.output().endswith(b"a BAD [TOOBIG] Command too long\r\n")


def test_append_before_login_is_bound_by_the_command_limit() -> None:
    """No unauthenticated client may make us hold a message (RFC 7889 applies after login)."""
    session = Session(Limits(command=100, literal=10_000))
    session.feed(b"a APPEND INBOX {5000}\r\n")
    assert session.events == [events.CommandError("a", responses.COMMAND_TOO_LONG)]
    assert b"+" not in session.output()


def test_literal_minus_limits_non_synchronising_literals_to_4096() -> None:
    session = logged_in(literal_plus=False)
    message = b"m" * 4096
    (event,) = session.feed(b"a APPEND INBOX {4096+}\r\n" + message + b"\r\n")
    assert isinstance(event, events.Append) and event.messages[0].message == message
    session.output()
    session.feed(b"b APPEND INBOX {4097+}\r\n" + message + b"m\r\nc NOOP\r\n")
    assert session.events[-2:] == [
        events.CommandError("b", responses.LITERAL_MINUS_TOO_BIG),
        events.Noop("c"),
    ]
    assert session.output().startswith(b"b BAD [TOOBIG]")
    # a synchronising literal of any size within the limit is still fine
    session.feed(b"d APPEND INBOX {5000}\r\n")
    assert session.output() == b"+ Ready for literal data\r\n"


def test_n_minus_is_not_a_literal_but_its_octets_are_dropped() -> None:
    session = logged_in()
    session.feed(b"a LOGIN {8-}\r\nb LOGOUT\r\nc NOOP\r\n")
    assert session.events[-2:] == [
        events.CommandError("a", responses.NOT_A_LITERAL),
        events.Noop("c"),
    ]


def test_overlong_line_is_bad_with_its_tag() -> None:
    session = Session(Limits(line=100))
    session.output()
    session.feed(b"a7 LOGIN " + b"x" * 200 + b"\r\nb NOOP\r\n")
    assert session.events == [events.CommandError("a7", responses.LINE_TOO_LONG), events.Noop("b")]


def test_overlong_line_ending_in_a_non_synchronising_literal() -> None:
    session = Session(Limits(line=100))
    session.feed(b"a LOGIN " + b"x" * 200 + b" {10+}\r\nb LOGOUT\r\n\r\nc NOOP\r\n")
    assert session.events == [events.CommandError("a", responses.LINE_TOO_LONG), events.Noop("c")]


def test_overlong_line_ending_in_a_synchronising_literal_gets_no_continuation() -> None:
    session = Session(Limits(line=100))
    session.feed(b"a LOGIN " + b"x" * 200 + b" {10}\r\nb NOOP\r\n")
    assert session.events == [events.CommandError("a", responses.LINE_TOO_LONG), events.Noop("b")]
    assert b"+ Ready" not in session.output()


def test_overlong_line_fed_a_byte_at_a_time() -> None:
    session = Session(Limits(line=50))
    for byte in b"a LOGIN " + b"y" * 500 + b" {3+}\r\nzzz\r\nb NOOP\r\n":
        session.feed(bytes([byte]))
    assert session.events == [events.CommandError("a", responses.LINE_TOO_LONG), events.Noop("b")]


@pytest.mark.parametrize("digits", [b"9" * 20, b"99999999999999999999999999999999999999999"])
def test_a_literal_size_beyond_number64_ends_the_session(digits: bytes) -> None:
    session = logged_in(Limits(line=40))
    session.feed(b"a APPEND INBOX {" + digits + b"+}\r\nwhatever\r\n")
    assert session.events[-1] == events.CommandError("a", responses.BAD_LITERAL_SIZE)
    assert session.output() == b"* BYE Literal size out of range\r\n"
    assert session.conn.closed


def test_synchronising_literal_beyond_number64_is_just_too_big() -> None:
    session = logged_in()
    session.feed(b"a APPEND INBOX {" + b"9" * 25 + b"}\r\nb NOOP\r\n")
    assert session.events == [events.CommandError("a", responses.MESSAGE_TOO_BIG), events.Noop("b")]


def test_nul_in_a_literal_is_bad_but_literal8_carries_it() -> None:
    session = logged_in()
    (bad,) = session.feed(b"a APPEND INBOX {3+}\r\na\x00b\r\n")
    assert isinstance(bad, events.CommandError) and isinstance(bad.response, Bad)
    (good,) = session.feed(b"b APPEND INBOX ~{3+}\r\na\x00b\r\n")
    message = events.AppendMessage((), None, b"a\x00b", binary=True)
    assert good == events.Append("b", "INBOX", (message,))


# -- STARTTLS ---------------------------------------------------------------------------------


def test_starttls_discards_what_was_sent_before_the_handshake() -> None:
    session = Session()
    session.feed(b"a STARTTLS\r\nb LOGIN mallory evil\r\n")  # the injection of CVE-2011-0411
    assert session.events == [events.StartTls("a")]
    assert session.conn.state is State.STARTTLS
    assert session.conn.next_event() is PAUSED
    assert session.conn.start_tls() == len(b"b LOGIN mallory evil\r\n")
    assert session.conn.tls and session.conn.state is State.NOT_AUTHENTICATED
    assert session.feed(b"c CAPABILITY\r\n") == [events.Capability("c")]


def test_starttls_with_a_pending_literal_is_discarded_too() -> None:
    session = Session()
    session.feed(b"a STARTTLS\r\nb LOGIN {5+}\r\nab")
    session.conn.start_tls()
    assert session.feed(b"c NOOP\r\n") == [events.Noop("c")]


def test_starttls_is_refused_once_tls_is_on() -> None:
    session = Session(tls=True)
    (event,) = session.feed(b"a STARTTLS\r\n")
    assert event == events.CommandError("a", responses.ALREADY_TLS)


def test_refused_starttls_keeps_the_plaintext_session() -> None:
    session = Session(
        answer=lambda e: [No("not now")] if isinstance(e, events.StartTls) else default_answer(e)
    )
    session.feed(b"a STARTTLS\r\nb NOOP\r\n")
    assert session.events == [events.StartTls("a"), events.Noop("b")]
    assert not session.conn.tls


# -- IDLE -------------------------------------------------------------------------------------


def test_idle_until_done() -> None:
    session = selected()
    assert session.feed(b"i IDLE\r\n") == [events.Idle("i")]
    assert session.output() == b"+ idling\r\n"
    assert session.conn.state is State.IDLE
    assert session.conn.next_event() is NEED_DATA
    assert session.conn.send(responses.Exists(5)) == b"* 5 EXISTS\r\n"
    with pytest.raises(RuntimeError):
        session.conn.send(Ok("not before DONE"))
    assert session.feed(b"DONE\r\n") == [events.Done("i")]
    assert session.output() == b"i OK done\r\n"
    assert session.conn.state is State.SELECTED


def test_idle_in_authenticated_returns_there() -> None:
    session = logged_in()
    session.feed(b"i IDLE\r\ndone\r\n")
    assert session.conn.state is State.AUTHENTICATED


def test_anything_but_done_ends_idle_with_bad() -> None:
    session = selected()
    session.feed(b"i IDLE\r\nj NOOP\r\nk NOOP\r\n")
    assert session.events[-3:] == [
        events.Idle("i"),
        events.CommandError("i", responses.EXPECTED_DONE),
        events.Noop("k"),
    ]
    assert session.conn.state is State.SELECTED


def test_refused_idle_needs_no_done() -> None:
    session = selected(
        answer=lambda e: [No("no")] if isinstance(e, events.Idle) else default_answer(e)
    )
    session.feed(b"i IDLE\r\nj NOOP\r\n")
    assert session.events[-1] == events.Noop("j")


def test_overlong_line_in_idle() -> None:
    session = selected(Limits(line=30))
    session.feed(b"i IDLE\r\n" + b"D" * 50 + b"\r\nj NOOP\r\n")
    assert session.events[-2:] == [
        events.CommandError("i", responses.LINE_TOO_LONG),
        events.Noop("j"),
    ]


# -- AUTHENTICATE -----------------------------------------------------------------------------


class Directory:
    def check_password(self, username: str, password: str) -> str | None:
        return "alice" if (username, password) == ("alice", "secret") else None

    def scram_credentials(self, username: str) -> tuple[str, sasl.ScramCredentials] | None:
        return None

    def scram_decoy(self, username: str) -> sasl.ScramCredentials:
        return sasl.ScramCredentials.decoy(b"k", username, sasl.MIN_ITERATIONS)


def sasl_answer() -> Answer:
    """How servers/imap turns SASL steps into responses (RFC 9051 §6.2.2)."""
    exchange: list[sasl.ServerExchange] = []

    def respond(step: sasl.Step) -> list[responses.Response]:
        if isinstance(step, sasl.Challenge):
            return [Continuation(sasl.encode_b64(step.data))]
        if isinstance(step, sasl.Success):
            return [Ok("AUTHENTICATE completed")]
        if step.kind is sasl.FailureKind.REJECTED:
            return [No("authentication failed", codes.AUTHENTICATIONFAILED)]
        return [Bad("authentication cancelled")]

    def answer(event: events.Event) -> list[responses.Response]:
        if isinstance(event, events.Authenticate):
            new = sasl.new_exchange(event.mechanism, Directory())
            assert new is not None
            exchange[:] = [new]
            return respond(new.start(event.initial_response))
        if isinstance(event, events.AuthenticateData):
            return respond(exchange[0].respond(event.line))
        return default_answer(event)

    return answer


PLAIN = sasl.encode_b64(sasl.client_plain("alice", "secret")).encode()


@pytest.mark.parametrize(
    ("wire", "state", "reply"),
    [
        (b"a AUTHENTICATE PLAIN " + PLAIN + b"\r\n", State.AUTHENTICATED, b"a OK"),  # SASL-IR
        (b"a AUTHENTICATE PLAIN\r\n" + PLAIN + b"\r\n", State.AUTHENTICATED, b"a OK"),
        (b"a AUTHENTICATE LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n", State.AUTHENTICATED, b"a OK"),
        (b"a AUTHENTICATE PLAIN =\r\n", State.NOT_AUTHENTICATED, b"a NO [AUTHENTICATIONFAILED]"),
        (b"a AUTHENTICATE PLAIN\r\n*\r\n", State.NOT_AUTHENTICATED, b"a BAD"),
        (b"a AUTHENTICATE PLAIN\r\nnot base64!\r\n", State.NOT_AUTHENTICATED, b"a BAD"),
        (b"a AUTHENTICATE PLAIN\r\n\xff\r\n", State.NOT_AUTHENTICATED, b"a BAD"),
    ],
)
def test_authenticate_through_a_sasl_exchange(wire: bytes, state: State, reply: bytes) -> None:
    session = Session(answer=sasl_answer())
    session.feed(wire)
    assert session.conn.state is state
    assert session.output().splitlines()[-1].startswith(reply)


def test_authenticate_challenges_are_continuations() -> None:
    session = Session(answer=sasl_answer())
    session.feed(b"a AUTHENTICATE LOGIN\r\n")
    assert session.conn.state is State.AUTHENTICATE
    assert session.output().endswith(b"+ " + sasl.encode_b64(b"Username:").encode() + b"\r\n")
    session.feed(b"YWxpY2U=\r\nc2VjcmV0\r\nb NOOP\r\n")
    assert session.events[-2:] == [events.AuthenticateData("a", "c2VjcmV0"), events.Noop("b")]


def test_overlong_sasl_line_ends_the_exchange() -> None:
    session = Session(Limits(auth_line=30), answer=sasl_answer())
    session.feed(b"a AUTHENTICATE PLAIN\r\n" + b"A" * 100 + b"\r\nb NOOP\r\n")
    assert session.events[-2:] == [
        events.CommandError("a", responses.AUTH_LINE_TOO_LONG),
        events.Noop("b"),
    ]
    assert session.conn.state is State.NOT_AUTHENTICATED


# -- modes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("capability", [b"UTF8=ACCEPT", b"IMAP4rev2"])
def test_enabling_utf8_switches_how_names_are_read_and_written(capability: bytes) -> None:
    session = logged_in()
    session.feed(b'a SELECT "Entw&APw-rfe"\r\nb CLOSE\r\n')
    assert session.events[-2] == events.Select("a", "Entwürfe")
    assert (
        session.conn.send(responses.ListEntry("Entwürfe", "/"))
        == b'* LIST () "/" "Entw&APw-rfe"\r\n'
    )
    session.feed(b"c ENABLE " + capability + b"\r\n")
    assert session.conn.utf8
    session.feed('d SELECT "Entwürfe"\r\n'.encode())
    assert session.events[-1] == events.Select("d", "Entwürfe")
    assert (
        session.conn.send(responses.ListEntry("Entwürfe", "/"))
        == '* LIST () "/" "Entwürfe"\r\n'.encode()
    )


def test_enable_of_other_capabilities_keeps_the_mode() -> None:
    session = logged_in()
    session.feed(b"c ENABLE CONDSTORE\r\n")
    assert session.conn.enabled == {"CONDSTORE"}
    assert not session.conn.utf8


@pytest.mark.parametrize(
    "line",
    [
        b"h SEARCH " + b"(" * 200 + b"ALL" + b")" * 200 + b"\r\n",  # deep nesting
        b"h SEARCH (ALL\r\n",  # unbalanced
        b"h SEARCH ALL)\r\n",
        b"h FETCH 1:0:2 FLAGS\r\n",  # bad sequence sets
        b"h FETCH 99999999999 FLAGS\r\n",
        b"h FETCH , FLAGS\r\n",
        b"h LOGIN a\x00 b\r\n",  # NUL
        b"h LOGIN \xe9t\xe9 b\r\n",  # 8-bit in an atom
        b'h SELECT "\xff"\r\n',
        b"h STORE 1 +FLAGS (" + b"\\Seen " * 2000 + b")\r\n",  # too many items
        b"h APPEND INBOX {18446744073709551616}\r\n",  # a synchronising literal past number64
    ],
)
def test_hostile_lines_get_a_tagged_bad_or_no_and_the_session_goes_on(line: bytes) -> None:
    session = selected()
    session.feed(line + b"z NOOP\r\n")
    refusal, noop = session.events
    assert isinstance(refusal, events.CommandError) and refusal.tag == "h"
    assert isinstance(refusal.response, Bad | No)
    assert noop == events.Noop("z")
    assert session.conn.state is State.SELECTED


# -- QRESYNC (RFC 7162 §3.2) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"q SELECT INBOX (QRESYNC (1 2))\r\n",
        b"q EXAMINE INBOX (QRESYNC (1 2 1:5))\r\n",
    ],
)
def test_qresync_parameter_without_enable_is_bad(line: bytes) -> None:
    session = logged_in()
    session.feed(line)
    (refusal,) = session.events
    assert isinstance(refusal, events.CommandError)
    assert session.output() == b"q BAD ENABLE QRESYNC first\r\n"
    assert session.conn.state is State.AUTHENTICATED


def test_vanished_fetch_modifier_without_enable_is_bad() -> None:
    session = selected()
    session.feed(b"f UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5 VANISHED)\r\n")
    assert session.output() == b"f BAD ENABLE QRESYNC first\r\n"
    assert session.conn.state is State.SELECTED


def test_enable_qresync_implies_condstore_and_admits_its_commands() -> None:
    session = logged_in()
    session.feed(b"e ENABLE QRESYNC\r\n")
    assert session.output() == b"* ENABLED QRESYNC\r\ne OK ENABLE completed\r\n"
    assert session.conn.enabled == {"QRESYNC", "CONDSTORE"}
    session.feed(b"s SELECT INBOX (QRESYNC (7 20 1:9))\r\n")
    assert session.events[-1] == events.Select(
        "s", "INBOX", qresync=events.Qresync(7, 20, SequenceSet.parse("1:9"))
    )
    assert session.conn.state is State.SELECTED
    session.feed(b"f UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5 VANISHED)\r\n")
    fetch = session.events[-1]
    assert isinstance(fetch, events.Fetch) and fetch.request.vanished


def test_expunge_responses_are_refused_once_qresync_is_enabled() -> None:
    """RFC 7162 §3.2.10: VANISHED replaces EXPUNGE; sending one is our bug."""
    session = logged_in()
    session.feed(b"e ENABLE QRESYNC\r\ns SELECT INBOX\r\n")
    vanished = responses.Vanished(SequenceSet.parse("3:4"))
    assert session.conn.send(vanished) == b"* VANISHED 3:4\r\n"
    with pytest.raises(RuntimeError):
        session.conn.send(responses.Expunge(1))
