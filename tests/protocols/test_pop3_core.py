"""The POP3 server core, bytes in and events out: every command, every rule, every error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from postoffice.protocols import sasl
from postoffice.protocols.pop3 import (
    NEED_DATA,
    PAUSED,
    Continue,
    Err,
    Limits,
    Ok,
    OkLines,
    Reply,
    ServerConnection,
    State,
    capabilities,
    events,
    replies,
)

MESSAGE = b"Subject: hi\r\n\r\n.dot line\r\nbody\r\n"
LISTING = OkLines("2 messages", ("1 120", "2 200"))
CAPA = capabilities(tls_active=False, user_allowed=True, sasl=("PLAIN",), implementation="po")

Answer = Reply | Callable[[events.Event], Reply] | None  # None: stream MESSAGE


def listing(event: events.Event) -> Reply:
    """LIST, UIDL, AUTH: the whole listing without an argument; one line or a challenge with."""
    match event:
        case events.List(msg=None) | events.Uidl(msg=None) | events.Auth(mechanism=None):
            return LISTING
        case events.List(msg=msg) | events.Uidl(msg=msg):
            return Ok(f"{msg} 120")
    return Continue("")


ACCEPT: dict[type, Answer] = {
    events.User: Ok("send PASS"),
    events.Pass: Ok("maildrop locked"),
    events.Auth: listing,
    events.AuthData: Ok("authenticated"),
    events.Capa: CAPA,
    events.Stls: Ok("begin TLS"),
    events.Stat: Ok("2 320"),
    events.List: listing,
    events.Uidl: listing,
    events.Retr: None,
    events.Top: None,
    events.Dele: Ok("deleted"),
    events.Noop: Ok(),
    events.Rset: Ok(),
    events.Quit: Ok("bye"),
}


class Session:
    """Drives a ServerConnection the way servers/pop3 does, answering from a table."""

    def __init__(
        self, limits: Limits | None = None, *, tls: bool = False, **answers: Answer
    ) -> None:
        self.conn = ServerConnection(limits, tls=tls)
        self.answers = {**ACCEPT, **{getattr(events, k): v for k, v in answers.items()}}
        self.events: list[events.Event] = []
        self.wire = self.conn.send(Ok("postoffice POP3 ready"))

    def feed(self, data: bytes) -> list[events.Event]:
        """Feed bytes (b"" is EOF), answer every event; return the new events."""
        start, mark = len(self.events), len(self.wire)
        self.conn.receive_data(data)
        while (event := self.conn.next_event()) not in (NEED_DATA, PAUSED):
            assert not isinstance(event, events.Signal)
            self.events.append(event)
            if isinstance(event, events.ConnectionClosed):
                break
            answer = event.reply if isinstance(event, events.CommandError) else None
            if answer is None:
                answer = self.answers[type(event)]
            if answer is None:
                self.wire += self.conn.send_multiline_start(Ok("message follows"))
                encoder = self.conn.message_encoder()
                self.wire += encoder.feed(MESSAGE) + encoder.finish()
            else:
                reply = answer if isinstance(answer, Reply) else answer(event)
                self.wire += self.conn.send(reply)
        self.last = self.wire[mark:]
        return self.events[start:]


def login(**answers: Answer) -> Session:
    session = Session(**answers)
    session.feed(b"USER a@b.test\r\nPASS secret\r\n")
    assert session.conn.state is State.TRANSACTION
    return session


def one(session: Session, line: bytes) -> events.Event:
    (event,) = session.feed(line)
    return event


def error(session: Session, line: bytes) -> Err:
    event = one(session, line)
    assert isinstance(event, events.CommandError), event
    return event.reply


# --- greeting and replies ----------------------------------------------------------------------


def test_greeting_and_first_state() -> None:
    session = Session()
    assert session.wire == b"+OK postoffice POP3 ready\r\n"
    assert session.conn.state is State.AUTHORIZATION and not session.conn.closed
    assert session.conn.next_event() is NEED_DATA
    with pytest.raises(RuntimeError, match="no event awaits"):
        session.conn.send(Ok("a second greeting"))


def test_an_err_with_nothing_to_answer_ends_the_session() -> None:
    conn = ServerConnection()
    assert conn.send(Err("too busy", "SYS/TEMP")) == b"-ERR [SYS/TEMP] too busy\r\n"
    assert conn.closed and conn.next_event() is PAUSED
    with pytest.raises(RuntimeError, match="closed"):
        conn.send(Err("again"))


@pytest.mark.parametrize(
    ("reply", "wire"),
    [
        (Ok(), b"+OK\r\n"),
        (Ok("2 320"), b"+OK 2 320\r\n"),
        (Ok("grüße"), "+OK grüße\r\n".encode()),
        (Err("no such message"), b"-ERR no such message\r\n"),
        (Err("mailbox locked", "IN-USE"), b"-ERR [IN-USE] mailbox locked\r\n"),
        (Err("", "AUTH"), b"-ERR [AUTH]\r\n"),
        (Err("wait", "LOGIN-DELAY"), b"-ERR [LOGIN-DELAY] wait\r\n"),
        (Err("disk", "SYS/PERM"), b"-ERR [SYS/PERM] disk\r\n"),
        (Continue(""), b"+ \r\n"),
        (Continue("VXNlcm5hbWU6"), b"+ VXNlcm5hbWU6\r\n"),
        (OkLines("none", ()), b"+OK none\r\n.\r\n"),
        (OkLines("x", (".", "..a", "", "b.")), b"+OK x\r\n..\r\n...a\r\n\r\nb.\r\n.\r\n"),
    ],
)
def test_reply_wire_forms(reply: Reply, wire: bytes) -> None:
    assert reply.to_bytes() == wire


@pytest.mark.parametrize(
    "make",
    [
        lambda: Ok("a\r\nb"),
        lambda: Ok("a\nb"),
        lambda: Err("a\rb"),
        lambda: Err("x", "NO-SUCH-CODE"),
        lambda: Err("x", "in-use"),
        lambda: OkLines("a\n", ()),
        lambda: OkLines("a", ("ok", "b\r\n.\r\n")),
        lambda: Continue("not base64!"),
        lambda: Continue("abc\r\n"),
        lambda: Ok("x" * 508),  # "+OK " + 508 + CRLF = 514 octets > 512 (RFC 2449 §4)
        lambda: Err("é" * 254),
    ],
)
def test_bad_replies_fail_where_they_are_made(make: Callable[[], Reply]) -> None:
    with pytest.raises(ValueError):
        make()


def test_status_line_limit_is_exact() -> None:
    assert len(Ok("x" * 506).to_bytes()) == 512
    with pytest.raises(ValueError):
        Ok("x" * 507)


def test_capabilities_before_tls() -> None:
    assert CAPA.to_bytes() == (
        b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\nRESP-CODES\r\n"
        b"AUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nIMPLEMENTATION po\r\n.\r\n"
    )


def test_capabilities_variants() -> None:
    tls = capabilities(
        tls_active=True,
        user_allowed=False,
        sasl=(),
        implementation="postoffice 1.0",
        login_delay=900,
        expire="NEVER",
    )
    assert tls.lines == (
        "TOP",
        "UIDL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "IMPLEMENTATION postoffice 1.0",
        "LOGIN-DELAY 900",
        "EXPIRE NEVER",
    )
    per_user = capabilities(
        tls_active=True,
        user_allowed=True,
        sasl=("SCRAM-SHA-256", "PLAIN"),
        implementation="po",
        expire="30 USER",
    )
    assert "SASL SCRAM-SHA-256 PLAIN" in per_user.lines and "EXPIRE 30 USER" in per_user.lines


@pytest.mark.parametrize("kwargs", [{"expire": "soon"}, {"expire": "-1"}, {"login_delay": -1}])
def test_capabilities_refuse_bad_policies(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        capabilities(tls_active=False, user_allowed=True, sasl=(), implementation="po", **kwargs)


# --- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"STAT\r\n", events.Stat()),
        (b"stat\r\n", events.Stat()),
        (b"STAT  \r\n", events.Stat()),
        (b"STAT\n", events.Stat()),  # a bare LF ends a line too
        (b"LIST\r\n", events.List(None)),
        (b"LIST 2\r\n", events.List(2)),
        (b"list  007\r\n", events.List(7)),
        (b"RETR 1\r\n", events.Retr(1)),
        (b"DELE 2147483647\r\n", events.Dele(2**31 - 1)),
        (b"NOOP\r\n", events.Noop()),
        (b"RSET\r\n", events.Rset()),
        (b"TOP 1 0\r\n", events.Top(1, 0)),
        (b"TOP 3 10\r\n", events.Top(3, 10)),
        (b"UIDL\r\n", events.Uidl(None)),
        (b"UIDL 5\r\n", events.Uidl(5)),
        (b"CAPA\r\n", events.Capa()),
    ],
)
def test_transaction_commands(line: bytes, event: events.Event) -> None:
    assert one(login(), line) == event


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"XYZZY\r\n", replies.UNKNOWN_COMMAND),
        (b"LAST\r\n", replies.UNKNOWN_COMMAND),  # RFC 1725 dropped it
        (b"\r\n", replies.UNKNOWN_COMMAND),
        ("STÄT\r\n".encode(), replies.UNKNOWN_COMMAND),
        (b"STAT\xff\r\n", replies.NOT_UTF8),
        (b"STAT\x00\r\n", replies.SYNTAX_ERROR),
        (b"STAT\rLIST\r\n", replies.SYNTAX_ERROR),
        (b"STAT\tx\r\n", replies.SYNTAX_ERROR),
        (b"STAT 1\r\n", replies.syntax("STAT")),
        (b"NOOP x\r\n", replies.syntax("NOOP")),
        (b"RSET x\r\n", replies.syntax("RSET")),
        (b"QUIT now\r\n", replies.syntax("QUIT")),
        (b"CAPA x\r\n", replies.syntax("CAPA")),
        (b"RETR\r\n", replies.syntax("RETR msg")),
        (b"RETR 1 2\r\n", replies.syntax("RETR msg")),
        (b"RETR 0\r\n", replies.BAD_MESSAGE_NUMBER),
        (b"RETR -1\r\n", replies.BAD_MESSAGE_NUMBER),
        (b"RETR +1\r\n", replies.BAD_MESSAGE_NUMBER),
        (b"RETR one\r\n", replies.BAD_MESSAGE_NUMBER),
        (b"RETR 1.5\r\n", replies.BAD_MESSAGE_NUMBER),
        ("RETR ٣\r\n".encode(), replies.BAD_MESSAGE_NUMBER),  # a non-ASCII digit
        (b"RETR 2147483648\r\n", replies.BAD_MESSAGE_NUMBER),
        (b"RETR 99999999999999999999\r\n", replies.BAD_MESSAGE_NUMBER),
        (b"DELE\r\n", replies.syntax("DELE msg")),
        (b"DELE x\r\n", replies.BAD_MESSAGE_NUMBER),
        (b"LIST 0\r\n", replies.BAD_MESSAGE_NUMBER),
        (b"LIST 1 2\r\n", replies.syntax("LIST [msg]")),
        (b"UIDL x\r\n", replies.BAD_MESSAGE_NUMBER),
        (b"UIDL 1 2\r\n", replies.syntax("UIDL [msg]")),
        (b"TOP\r\n", replies.syntax("TOP msg n")),
        (b"TOP 1\r\n", replies.syntax("TOP msg n")),
        (b"TOP 1 2 3\r\n", replies.syntax("TOP msg n")),
        (b"TOP 0 1\r\n", replies.BAD_MESSAGE_NUMBER),
        (b"TOP 1 -1\r\n", replies.BAD_LINE_COUNT),
        (b"TOP 1 x\r\n", replies.BAD_LINE_COUNT),
        (b"TOP 1 2147483648\r\n", replies.BAD_LINE_COUNT),
        (b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n", replies.NO_APOP),
    ],
)
def test_bad_commands(line: bytes, reply: Err) -> None:
    session = login()
    assert error(session, line) == reply
    assert session.conn.state is State.TRANSACTION
    assert session.last == reply.to_bytes()


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"USER a@b.test\r\n", events.User("a@b.test")),
        (b"user  a@b.test \r\n", events.User("a@b.test")),
        (b"AUTH\r\n", events.Auth(None, None)),
        (b"AUTH PLAIN\r\n", events.Auth("PLAIN", None)),
        (b"auth scram-sha-256\r\n", events.Auth("SCRAM-SHA-256", None)),
        (b"AUTH PLAIN =\r\n", events.Auth("PLAIN", "=")),
        (b"AUTH PLAIN AGEAYg==\r\n", events.Auth("PLAIN", "AGEAYg==")),
        (b"CAPA\r\n", events.Capa()),
        (b"STLS\r\n", events.Stls()),
        (b"QUIT\r\n", events.Quit()),
    ],
)
def test_authorization_commands(line: bytes, event: events.Event) -> None:
    assert one(Session(), line) == event


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"USER\r\n", replies.syntax("USER name")),
        (b"USER a b\r\n", replies.syntax("USER name")),
        (b"AUTH PL@IN\r\n", replies.syntax("AUTH mechanism [initial-response]")),
        (b"AUTH PLAIN a b\r\n", replies.syntax("AUTH mechanism [initial-response]")),
        (b"AUTH PLAIN a===\r\n", replies.syntax("AUTH mechanism [initial-response]")),
        (b"AUTH " + b"X" * 21 + b"\r\n", replies.syntax("AUTH mechanism [initial-response]")),
        (b"STLS x\r\n", replies.syntax("STLS")),
        (b"PASS secret\r\n", replies.PASS_WITHOUT_USER),
    ],
)
def test_bad_authorization_commands(line: bytes, reply: Err) -> None:
    session = Session()
    assert error(session, line) == reply
    assert session.conn.state is State.AUTHORIZATION


def test_pass_keeps_spaces_in_the_password() -> None:
    session = Session()
    session.feed(b"USER a@b.test\r\n")
    assert one(session, b"PASS  two words \r\n") == events.Pass(" two words ")
    session = Session()
    session.feed(b"USER a@b.test\r\n")
    assert error(session, b"PASS\r\n") == replies.syntax("PASS password")
    assert session.conn.state is State.USER  # a syntax error keeps the USER


# --- states ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"NOOP", b"RSET", b"TOP 1 1", b"UIDL"],
)
def test_transaction_commands_need_authentication(line: bytes) -> None:
    session = Session()
    assert error(session, line + b"\r\n") == replies.WRONG_STATE  # RFC 1939 §5; NOOP too
    assert session.conn.state is State.AUTHORIZATION


@pytest.mark.parametrize("line", [b"USER x\r\n", b"PASS y\r\n", b"AUTH PLAIN\r\n", b"STLS\r\n"])
def test_authorization_commands_are_refused_after_login(line: bytes) -> None:
    session = login()
    assert error(session, line) == replies.WRONG_STATE
    assert session.conn.state is State.TRANSACTION


def test_user_then_pass() -> None:
    session = Session()
    assert session.feed(b"USER a@b.test\r\n") == [events.User("a@b.test")]
    assert session.conn.state is State.USER
    assert session.feed(b"PASS secret\r\n") == [events.Pass("secret")]
    assert session.conn.state is State.TRANSACTION
    assert session.last == b"+OK maildrop locked\r\n"


def test_refused_pass_needs_user_again() -> None:
    session = Session(Pass=Err("invalid credentials", "AUTH"))
    session.feed(b"USER a@b.test\r\nPASS wrong\r\n")
    assert session.conn.state is State.AUTHORIZATION
    assert session.last.endswith(b"\r\n-ERR [AUTH] invalid credentials\r\n")
    assert error(session, b"PASS again\r\n") == replies.PASS_WITHOUT_USER


def test_refused_user_allows_no_pass() -> None:
    session = Session(User=Err("no"))
    session.feed(b"USER a@b.test\r\n")
    assert session.conn.state is State.AUTHORIZATION
    assert error(session, b"PASS secret\r\n") == replies.PASS_WITHOUT_USER


def test_user_may_be_sent_again_and_capa_and_quit_work_between() -> None:
    session = Session()
    session.feed(b"USER a@b.test\r\nCAPA\r\nUSER c@d.test\r\n")
    assert session.conn.state is State.USER
    assert error(session, b"STAT\r\n") == replies.WRONG_STATE
    assert session.conn.state is State.USER
    assert error(session, b"STLS\r\n") == replies.WRONG_STATE
    session.feed(b"QUIT\r\n")
    assert session.conn.closed


def test_capa_in_every_command_state() -> None:
    session = Session()
    session.feed(b"CAPA\r\n")
    assert session.last == CAPA.to_bytes()
    session = login()
    session.feed(b"CAPA\r\n")
    assert session.last == CAPA.to_bytes() and session.conn.state is State.TRANSACTION


def test_quit_in_authorization_closes_without_update() -> None:
    session = Session()
    conn = session.conn
    conn.receive_data(b"QUIT\r\n")
    assert conn.next_event() == events.Quit()
    assert conn.state is State.AUTHORIZATION  # no UPDATE state (RFC 1939 §4)
    assert conn.send(Ok("bye")) == b"+OK bye\r\n"
    assert conn.closed and conn.next_event() is PAUSED


@pytest.mark.parametrize("answer", [Ok("bye"), Err("some deleted messages not removed")])
def test_quit_in_transaction_enters_update_then_closes(answer: Reply) -> None:
    conn = login().conn
    conn.receive_data(b"QUIT\r\nSTAT\r\n")
    assert conn.next_event() == events.Quit()
    assert conn.state is State.UPDATE  # RFC 1939 §6: the server removes messages now
    assert conn.next_event() is PAUSED
    conn.send(answer)
    assert conn.closed and conn.next_event() is PAUSED  # nothing is read after QUIT


def test_transaction_commands_keep_the_state() -> None:
    session = login()
    found = session.feed(b"STAT\r\nDELE 1\r\nRSET\r\nNOOP\r\nLIST 1\r\nUIDL 1\r\n")
    assert len(found) == 6 and session.conn.state is State.TRANSACTION


def test_refused_transaction_commands_keep_the_state() -> None:
    session = login(Retr=Err("no such message"), Dele=Err("message 9 already deleted"))
    session.feed(b"RETR 9\r\nDELE 9\r\n")
    assert session.conn.state is State.TRANSACTION
    assert session.last == b"-ERR no such message\r\n-ERR message 9 already deleted\r\n"


# --- pipelining --------------------------------------------------------------------------------


def test_pipelined_commands_come_one_at_a_time_in_order() -> None:
    conn = ServerConnection()
    conn.send(Ok("ready"))
    conn.receive_data(b"USER a@b.test\r\nPASS secret\r\nSTAT\r\nLIST\r\nQUIT\r\n")
    assert conn.next_event() == events.User("a@b.test")
    assert conn.next_event() is PAUSED
    assert conn.next_event() is PAUSED
    conn.send(Ok())
    assert conn.next_event() == events.Pass("secret")
    conn.send(Ok())
    assert conn.next_event() == events.Stat()
    conn.send(Ok("0 0"))
    assert conn.next_event() == events.List(None)
    conn.send(OkLines("0 messages", ()))
    assert conn.next_event() == events.Quit()


def test_pipelined_commands_see_the_state_their_predecessors_made() -> None:
    session = Session(Pass=Err("invalid"))
    found = session.feed(b"USER a@b.test\r\nPASS bad\r\nSTAT\r\n")
    assert found[2] == events.CommandError(replies.WRONG_STATE)


# --- streamed answers --------------------------------------------------------------------------


def test_retr_streams_the_message_byte_stuffed() -> None:
    session = login()
    session.feed(b"RETR 1\r\n")
    assert session.last == b"+OK message follows\r\nSubject: hi\r\n\r\n..dot line\r\nbody\r\n.\r\n"


def test_stream_normalises_line_ends_and_ends_the_last_line() -> None:
    conn = login().conn
    conn.receive_data(b"TOP 1 0\r\nNOOP\r\n")
    assert conn.next_event() == events.Top(1, 0)
    assert conn.send_multiline_start(Ok()) == b"+OK\r\n"
    encoder = conn.message_encoder()
    wire = encoder.feed(b"A: b\n\n.")
    assert conn.next_event() is PAUSED  # still answering TOP
    with pytest.raises(RuntimeError, match="streamed"):
        conn.send(Ok())
    wire += encoder.feed(b"\r") + encoder.finish()
    assert wire == b"A: b\r\n\r\n..\r\n.\r\n"
    assert conn.next_event() == events.Noop()
    with pytest.raises(RuntimeError):
        encoder.finish()
    with pytest.raises(RuntimeError):
        encoder.feed(b"late")


def test_a_message_in_memory_is_answered_in_one_block() -> None:
    conn = login().conn
    conn.receive_data(b"RETR 1\r\nNOOP\r\n")
    assert conn.next_event() == events.Retr(1)
    wire = conn.send_message(Ok("9 octets"), b"A: b\r\n\r\n.x")
    assert wire == b"+OK 9 octets\r\nA: b\r\n\r\n..x\r\n.\r\n"
    assert conn.next_event() == events.Noop()  # RETR is answered
    with pytest.raises(ValueError, match="Noop takes a single"):
        conn.send_message(Ok(), b"x")


def test_retr_may_be_refused_with_send() -> None:
    conn = login().conn
    conn.receive_data(b"RETR 7\r\n")
    conn.next_event()
    assert conn.send(Err("no such message")) == b"-ERR no such message\r\n"
    assert conn.next_event() is NEED_DATA


def test_answer_shapes_are_checked() -> None:
    conn = login().conn
    conn.receive_data(b"RETR 1\r\n")
    conn.next_event()
    with pytest.raises(ValueError, match="send_multiline_start"):
        conn.send(Ok("2 octets"))
    with pytest.raises(ValueError):
        conn.send(OkLines("x", ()))
    with pytest.raises(RuntimeError, match="send_multiline_start"):
        conn.message_encoder()
    conn.send_multiline_start(Ok())
    conn.message_encoder()
    with pytest.raises(RuntimeError, match="once"):
        conn.message_encoder()
    with pytest.raises(RuntimeError):
        conn.send_multiline_start(Ok())


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"LIST\r\n", Ok("2 messages")),  # a scan listing is multi-line
        (b"UIDL\r\n", Ok()),
        (b"CAPA\r\n", Ok()),
        (b"LIST 1\r\n", OkLines("1 120", ())),  # one scan line is not
        (b"STAT\r\n", OkLines("1 2", ())),
        (b"STAT\r\n", Continue("")),  # challenges belong to AUTH
        (b"XYZZY\r\n", Ok()),  # a CommandError takes -ERR only
    ],
)
def test_wrong_answer_shapes_raise(line: bytes, reply: Reply) -> None:
    conn = login().conn
    conn.receive_data(line)
    conn.next_event()
    with pytest.raises(ValueError):
        conn.send(reply)
    assert conn.state is State.TRANSACTION


def test_stream_start_refused_for_other_commands() -> None:
    conn = login().conn
    conn.receive_data(b"STAT\r\n")
    conn.next_event()
    with pytest.raises(ValueError):
        conn.send_multiline_start(Ok())
    with pytest.raises(ValueError):
        conn.send_multiline_start(Err("no"))  # type: ignore[arg-type]


# --- STLS --------------------------------------------------------------------------------------


def test_stls_discards_plaintext_sent_after_it() -> None:
    conn = ServerConnection()
    conn.send(Ok("ready"))
    conn.receive_data(b"STLS\r\nUSER injected\r\n")
    assert conn.next_event() == events.Stls()
    assert conn.send(Ok("begin TLS")) == b"+OK begin TLS\r\n"
    assert conn.state is State.STLS and conn.next_event() is PAUSED
    assert conn.start_tls() == len(b"USER injected\r\n")  # CVE-2011-0411
    assert conn.state is State.AUTHORIZATION and conn.tls  # RFC 2595 §4
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"STLS\r\n")
    assert conn.next_event() == events.CommandError(replies.ALREADY_TLS)


def test_stls_is_refused_on_implicit_tls_and_can_be_refused_by_the_server() -> None:
    session = Session(tls=True)
    assert error(session, b"STLS\r\n") == replies.ALREADY_TLS
    session = Session(Stls=Err("TLS not available"))
    session.feed(b"STLS\r\n")
    assert session.conn.state is State.AUTHORIZATION and not session.conn.tls
    with pytest.raises(RuntimeError, match="STLS"):
        session.conn.start_tls()


# --- AUTH --------------------------------------------------------------------------------------


def test_auth_without_mechanism_lists_them_and_stays() -> None:
    session = Session()
    assert session.feed(b"AUTH\r\n") == [events.Auth(None, None)]
    assert session.last == LISTING.to_bytes() and session.conn.state is State.AUTHORIZATION


def test_auth_without_mechanism_needs_a_list() -> None:
    conn = ServerConnection()
    conn.receive_data(b"AUTH\r\n")
    conn.next_event()
    with pytest.raises(ValueError):
        conn.send(Ok())
    with pytest.raises(ValueError):
        conn.send(Continue(""))


def test_auth_exchange_reaches_transaction() -> None:
    session = Session()
    assert session.feed(b"AUTH LOGIN\r\n") == [events.Auth("LOGIN", None)]
    assert session.last == b"+ \r\n" and session.conn.state is State.AUTH
    session.answers[events.AuthData] = Continue("UGFzc3dvcmQ6")
    assert session.feed(b"dXNlcg==\r\n") == [events.AuthData("dXNlcg==")]
    assert session.conn.state is State.AUTH
    session.answers[events.AuthData] = Ok("welcome")
    # in the exchange a line is a response, even one that looks like a command
    assert session.feed(b"QUIT\r\n") == [events.AuthData("QUIT")]
    assert session.conn.state is State.TRANSACTION


def test_auth_with_initial_response_may_succeed_at_once() -> None:
    session = Session(Auth=Ok("welcome"))
    session.feed(b"AUTH PLAIN AGEAYg==\r\n")
    assert session.conn.state is State.TRANSACTION


@pytest.mark.parametrize("answer", [Err("cancelled"), Err("bad", "AUTH"), Err("x", "SYS/TEMP")])
def test_failed_exchange_returns_to_authorization(answer: Err) -> None:
    session = Session(AuthData=answer)
    session.feed(b"AUTH PLAIN\r\n*\r\n")
    assert session.events[-1] == events.AuthData("*")
    assert session.conn.state is State.AUTHORIZATION


def test_overlong_or_broken_auth_lines_end_the_exchange() -> None:
    session = Session(AuthData=Continue(""))
    session.feed(b"AUTH PLAIN\r\n")
    assert session.feed(b"A" * 12286 + b"\r\n") == [events.AuthData("A" * 12286)]
    assert session.conn.state is State.AUTH
    assert session.feed(b"A" * 12287 + b"\r\nSTAT\r\n") == [
        events.CommandError(replies.AUTH_LINE_TOO_LONG),
        events.CommandError(replies.WRONG_STATE),  # the exchange is over: a command again
    ]
    assert session.conn.state is State.AUTHORIZATION
    session.feed(b"AUTH PLAIN\r\n")
    assert error(session, b"\xff\r\n") == replies.NOT_UTF8
    assert session.conn.state is State.AUTHORIZATION


def test_auth_line_may_exceed_the_command_line_limit() -> None:
    response = "A" * 400 + "=="
    assert one(Session(), f"AUTH PLAIN {response}\r\n".encode()) == events.Auth("PLAIN", response)


class Directory:
    def check_password(self, username: str, password: str) -> str | None:
        return "a@b.test" if (username, password) == ("a@b.test", "pw") else None

    def scram_credentials(self, username: str) -> tuple[str, sasl.ScramCredentials] | None:
        return None

    def scram_decoy(self, username: str) -> sasl.ScramCredentials:
        return sasl.ScramCredentials.decoy(b"k", username, sasl.MIN_ITERATIONS)


def answer_sasl(step: sasl.Step) -> Reply:
    """How servers/pop3 turns a SASL step into a reply (RFC 5034 §4, RFC 3206 §5)."""
    if isinstance(step, sasl.Challenge):
        return Continue(sasl.encode_b64(step.data))
    if isinstance(step, sasl.Success):
        return Ok("logged in")
    return Err("authentication failed", "AUTH")


@pytest.mark.parametrize(
    ("lines", "state"),
    [
        ([b"AUTH PLAIN\r\n", b"AGFAYi50ZXN0AHB3\r\n"], State.TRANSACTION),
        ([b"AUTH PLAIN AGFAYi50ZXN0AHB3\r\n"], State.TRANSACTION),
        ([b"AUTH LOGIN\r\n", b"YUBiLnRlc3Q=\r\n", b"cHc=\r\n"], State.TRANSACTION),
        ([b"AUTH LOGIN\r\n", b"YUBiLnRlc3Q=\r\n", b"*\r\n"], State.AUTHORIZATION),
        ([b"AUTH PLAIN\r\n", b"not base64\r\n"], State.AUTHORIZATION),
        ([b"AUTH PLAIN AGFAYi50ZXN0AHd4\r\n"], State.AUTHORIZATION),
    ],
)
def test_sasl_exchange_drives_the_core(lines: list[bytes], state: State) -> None:
    conn = ServerConnection()
    conn.send(Ok("ready"))
    conn.receive_data(b"".join(lines))
    exchange: sasl.ServerExchange | None = None
    while (event := conn.next_event()) is not NEED_DATA:
        if isinstance(event, events.Auth):
            assert event.mechanism is not None
            exchange = sasl.new_exchange(event.mechanism, Directory())
            assert exchange is not None
            conn.send(answer_sasl(exchange.start(event.initial_response)))
        else:
            assert isinstance(event, events.AuthData) and exchange is not None
            conn.send(answer_sasl(exchange.respond(event.line)))
    assert conn.state is state


# --- framing, limits and EOF -------------------------------------------------------------------


def test_command_line_limit_counts_crlf() -> None:
    session = Session()
    assert error(session, b"USER " + b"a" * 249 + b"\r\n") == replies.LINE_TOO_LONG
    assert one(session, b"USER " + b"a" * 248 + b"\r\n") == events.User("a" * 248)  # 255
    session = login()
    assert error(session, b"X" * 20000 + b"\r\n") == replies.LINE_TOO_LONG
    assert one(session, b"STAT\r\n") == events.Stat()  # framing recovers after the long line


def test_small_limits() -> None:
    session = Session(Limits(line=16, auth_line=32))
    assert error(session, b"USER abcdefghij\r\n") == replies.LINE_TOO_LONG  # 17 octets
    assert one(session, b"USER abcdefghi\r\n") == events.User("abcdefghi")
    session = Session(Limits(line=16, auth_line=32))
    assert error(session, b"AUTH PLAIN " + b"A" * 20 + b"==\r\n") == replies.LINE_TOO_LONG
    response = "A" * 17 + "=="  # 32 octets with "AUTH PLAIN " and CRLF
    assert one(session, f"AUTH PLAIN {response}\r\n".encode()) == events.Auth("PLAIN", response)


def test_eof_closes_and_drops_a_partial_line() -> None:
    session = login()
    assert session.feed(b"STA") == []
    assert session.feed(b"") == [events.ConnectionClosed()]
    assert session.conn.closed
    with pytest.raises(RuntimeError, match="after EOF"):
        session.conn.receive_data(b"x")


def test_eof_waits_for_pending_answers_and_complete_lines() -> None:
    conn = login().conn
    conn.receive_data(b"STAT\r\nNOOP\r\n")
    conn.receive_data(b"")
    assert conn.next_event() == events.Stat()
    assert conn.next_event() is PAUSED
    conn.send(Ok("0 0"))
    assert conn.next_event() == events.Noop()
    conn.send(Ok())
    assert conn.next_event() == events.ConnectionClosed()
    assert conn.closed and conn.next_event() is PAUSED


def test_bytes_after_close_are_ignored() -> None:
    session = Session()
    session.feed(b"QUIT\r\n")
    session.conn.receive_data(b"STAT\r\n")
    assert session.conn.next_event() is PAUSED


def test_send_needs_a_pending_event() -> None:
    conn = login().conn
    with pytest.raises(RuntimeError, match="no event"):
        conn.send(Ok())
    with pytest.raises(RuntimeError, match="no RETR"):
        conn.send_multiline_start(Ok())
