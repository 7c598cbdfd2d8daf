"""Properties of the POP3 core under arbitrary input: no exceptions, well-formed answers,
state invariants, and the same events and bytes however the input is segmented."""

from __future__ import annotations

import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.protocols.pop3 import (
    NEED_DATA,
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
)

LIMITS = Limits(line=40, auth_line=64)
GOOD = "Z29vZA=="  # the SASL response this test's "directory" accepts
MESSAGES = {1: b"A: b\n\n.\r\nx\r", 2: b".\r\n..\r\n"}

VOCABULARY = [
    b"USER a@b.test\r\n",
    b"PASS good\r\n",
    b"PASS bad\r\n",
    b"AUTH\r\n",
    b"AUTH PLAIN\r\n",
    f"AUTH PLAIN {GOOD}\r\n".encode(),
    b"AUTH PLAIN =\r\n",
    f"{GOOD}\r\n".encode(),
    b"\r\n",
    b"*\r\n",
    b"CAPA\r\n",
    b"STLS\r\n",
    b"STAT\r\n",
    b"LIST\r\n",
    b"LIST 1\r\n",
    b"LIST 0\r\n",
    b"RETR 1\r\n",
    b"RETR 2\r\n",
    b"RETR 9\r\n",
    b"TOP 2 1\r\n",
    b"DELE 1\r\n",
    b"NOOP\r\n",
    b"RSET\r\n",
    b"UIDL\r\n",
    b"UIDL 2\r\n",
    b"QUIT\r\n",
    b"APOP a b\r\n",
    b"X" * 50 + b"\r\n",
    b"A" * 70 + b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b"\xff",
    b" ",
    b"1",
    b".",
    b"USER",
]

# most sessions log in first, so that TRANSACTION is explored as much as AUTHORIZATION
LOGIN = st.sampled_from([b"", b"USER a@b.test\r\nPASS good\r\n", f"AUTH PLAIN {GOOD}\r\n".encode()])
COMMANDS = st.tuples(LOGIN, st.lists(st.sampled_from(VOCABULARY), max_size=25)).map(
    lambda t: t[0] + b"".join(t[1])
)

_STATUS = re.compile(rb"(?:\+OK|-ERR)(?: [^\r\n]*)?")
_CHALLENGE = re.compile(rb"\+ [A-Za-z0-9+/]*={0,2}\r\n")


def reply_for(conn: ServerConnection, event: events.Event) -> Reply | None:
    """The answer of a small fixed maildrop of two messages; None: stream the message."""
    match event:
        case events.CommandError(reply=reply):
            return reply
        case events.Pass(password=password):
            return Ok("locked") if password == "good" else Err("invalid", "AUTH")
        case events.Auth(mechanism=None):
            return OkLines("mechanisms", ("PLAIN",))
        case events.Auth(initial_response=None) | events.AuthData(line=""):
            return Continue("")
        case events.Auth(initial_response=response) | events.AuthData(line=response):
            return Ok("authenticated") if response == GOOD else Err("failed", "AUTH")
        case events.Capa():
            return capabilities(
                tls_active=conn.tls, user_allowed=True, sasl=("PLAIN",), implementation="po"
            )
        case events.List(msg=None) | events.Uidl(msg=None):
            return OkLines("2 messages", ("1 10", "2 8"))
        case (
            events.List(msg=msg) | events.Uidl(msg=msg) | events.Retr(msg=msg) | events.Top(msg=msg)
        ) if msg not in MESSAGES:
            return Err("no such message")
        case events.Retr() | events.Top():
            return None
        case _:
            return Ok("2 18" if isinstance(event, events.Stat) else "")


def multiline(event: events.Event) -> bool:
    """RFC 1939 §3, §5, §7; RFC 2449 §5: which +OK answers are multi-line."""
    match event:
        case events.Capa() | events.List(msg=None) | events.Uidl(msg=None):
            return True
        case events.Auth(mechanism=None) | events.Retr() | events.Top():
            return True
    return False


def check_answer(event: events.Event, wire: bytes) -> None:
    """One answer is one well-formed line, or a status line and a terminated block."""
    if _CHALLENGE.fullmatch(wire):
        return
    assert wire.endswith(b"\r\n")
    lines = wire.split(b"\r\n")[:-1]
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert _STATUS.fullmatch(lines[0]), lines[0]
    if lines[0].startswith(b"+OK") and multiline(event):
        assert lines[-1] == b"." and b"." not in lines[1:-1]
    else:
        assert len(lines) == 1


class Driver:
    """Answers every event like a server would, checking each answer and the state."""

    def __init__(self, *, tls_on_stls: bool) -> None:
        self.conn = ServerConnection(LIMITS)
        self.tls_on_stls = tls_on_stls
        self.found: list[events.Event] = []
        self.wire = self.conn.send(Ok("ready"))
        self.authenticated = False

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data)
        while True:
            before = self.conn.state
            event = self.conn.next_event()
            if isinstance(event, events.Signal):
                assert event is NEED_DATA or self.conn.closed or self.conn.state is State.STLS
                return
            self.found.append(event)
            if isinstance(event, events.ConnectionClosed):
                assert self.conn.closed
                return
            if isinstance(event, events.Stls):
                assert not self.conn.tls  # RFC 2595 §4: once per session
            if isinstance(event, events.Quit) and before is State.TRANSACTION:
                assert self.conn.state is State.UPDATE  # RFC 1939 §6
            else:
                assert self.conn.state is before
            self.answer(event, before)

    def answer(self, event: events.Event, before: State) -> None:
        reply = reply_for(self.conn, event)
        if isinstance(event, events.Stls) and not self.tls_on_stls:
            reply = Err("not now")  # start_tls() drops bytes, which depends on segmentation
        if reply is None:
            wire = self.conn.send_multiline_start(Ok("follows"))
            encoder = self.conn.message_encoder()
            assert isinstance(event, events.Retr | events.Top)
            body = MESSAGES[event.msg]
            wire += encoder.feed(body[:3]) + encoder.feed(body[3:]) + encoder.finish()
        else:
            wire = self.conn.send(reply)
        check_answer(event, wire)
        self.wire += wire
        self.check_state(event, reply, before)
        if isinstance(event, events.Stls) and self.conn.state is State.STLS:
            self.conn.start_tls()

    def check_state(self, event: events.Event, reply: Reply | None, before: State) -> None:
        state = self.conn.state
        logs_in = isinstance(event, events.Pass | events.AuthData) or (
            isinstance(event, events.Auth) and event.mechanism is not None
        )
        self.authenticated |= logs_in and isinstance(reply, Ok)
        # TRANSACTION is reached only by an accepted login and left only by QUIT
        if self.authenticated:
            assert state in (State.TRANSACTION, State.CLOSED)
        else:
            assert state is not State.TRANSACTION
        if isinstance(event, events.Quit):
            assert state is State.CLOSED
        if isinstance(event, events.CommandError):  # only a SASL exchange is ended by one
            assert state is (State.AUTHORIZATION if before is State.AUTH else before)


def run(pieces: list[bytes], *, tls_on_stls: bool = False) -> Driver:
    driver = Driver(tls_on_stls=tls_on_stls)
    for piece in filter(None, pieces):  # b"" would be EOF
        if driver.conn.closed:
            break
        driver.feed(piece)
    if not driver.conn.closed:
        driver.feed(b"")
        assert driver.conn.closed
    return driver


@settings(max_examples=300, deadline=None)
@given(LOGIN, st.lists(st.sampled_from(VOCABULARY) | st.binary(max_size=12), max_size=30))
def test_any_input_gives_well_formed_answers_and_valid_states(
    login: bytes, pieces: list[bytes]
) -> None:
    run([login, *pieces], tls_on_stls=True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    run([data], tls_on_stls=True)


@settings(max_examples=300, deadline=None)
@given(COMMANDS, st.lists(st.integers(0, 2000), max_size=8))
def test_segmentation_does_not_matter(data: bytes, cuts: list[int]) -> None:
    whole = run([data])
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    split = run([data[a:b] for a, b in itertools.pairwise(bounds)])
    assert split.found == whole.found
    assert split.wire == whole.wire


@settings(max_examples=100, deadline=None)
@given(COMMANDS)
def test_one_byte_at_a_time_is_the_same_as_all_at_once(data: bytes) -> None:
    whole = run([data])
    trickle = run([data[i : i + 1] for i in range(len(data))])
    assert (trickle.found, trickle.wire) == (whole.found, whole.wire)
