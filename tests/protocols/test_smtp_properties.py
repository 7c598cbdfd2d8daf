"""Properties of the SMTP core under arbitrary input: no exceptions, well-formed replies,
state invariants, and the same events and replies however the bytes are segmented."""

from __future__ import annotations

import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.mail.address import Address, parse_path
from postoffice.protocols._buffer import LineBuffer
from postoffice.protocols.smtp import (
    NEED_DATA,
    PAUSED,
    Limits,
    Reply,
    ServerConnection,
    events,
    replies,
)
from postoffice.protocols.smtp.data import DataReader
from postoffice.protocols.smtp.states import TRANSITIONS, State

LIMITS = Limits(command_line=64, text_line=40, message_size=200, recipients=2)

VOCABULARY = [
    b"EHLO c.test\r\n",
    b"HELO c.test\r\n",
    b"MAIL FROM:<a@b.test>\r\n",
    b"MAIL FROM:<> BODY=BINARYMIME\r\n",
    b"MAIL FROM:<a@b.test> SIZE=99999\r\n",
    "MAIL FROM:<jö@b.test> SMTPUTF8\r\n".encode(),
    b"RCPT TO:<c@d.test>\r\n",
    b"RCPT TO:<Postmaster>\r\n",
    b"RCPT TO:<>\r\n",
    b"DATA\r\n",
    b"BDAT 5\r\n",
    b"BDAT 3 LAST\r\n",
    b"BDAT 0 LAST\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"VRFY x\r\n",
    b"EXPN y\r\n",
    b"HELP\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH LOGIN dXNlcg==\r\n",
    b"*\r\n",
    b"line of text\r\n",
    b".\r\n",
    b"\r\n.\r\n",
    b"..\r\n",
    b"\n.\n",
    b"\r.\r",
    b"\x00",
    b"\r",
    b"\n",
    b"x" * 80 + b"\r\n",
    b"NOOP " + b"x" * 700 + b"\r\n",
]
STEPS = [  # whole steps, drawn as often as single words, so that sessions reach deep states
    b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n",
    b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT 4\r\n\r\n.\r\n",
    b"RCPT TO:<c@d.test>\r\nDATA\r\nSubject: x\r\n\r\n..body\r\n",
    b"DATA\r\nbody\r\n.\r\n",
    b"BDAT 2 LAST\r\n\r\n",
    b"AUTH LOGIN\r\ndXNlcg==\r\n",
]

PREAMBLES = [
    b"",
    b"EHLO c.test\r\n",
    b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n",
]
sessions = st.builds(
    lambda preamble, parts: preamble + b"".join(parts),
    st.sampled_from(PREAMBLES),
    st.lists(
        st.one_of(st.sampled_from(VOCABULARY), st.sampled_from(STEPS), st.binary(max_size=8)),
        max_size=30,
    ),
)
choices = st.lists(st.sampled_from([0, 0, 0, 1, 2]), max_size=40)  # mostly accept
REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -])[^\r\n]*\r\n")


def answer(event: events.Event, choice: int, tls: bool) -> Reply:
    """The session's answer: 0 accepts, 1 refuses, 2 takes the other branch where there is one."""
    if isinstance(event, events.CommandError):
        return event.reply
    if isinstance(event, events.Quit):
        return Reply(221, "2.0.0", "Bye")
    if isinstance(event, events.StartTls):
        return Reply(220, "2.0.0", "Go") if tls and choice == 0 else Reply(454, "4.7.0", "No TLS")
    if isinstance(event, events.AuthData) and choice == 2:
        return Reply(334, None, "")
    if isinstance(event, events.Noop) and choice == 2:
        return Reply(421, "4.3.2", "Shutting down")
    positive = {
        events.Helo: Reply(250, None, ("mx.test", "PIPELINING")),
        events.Data: Reply(354, None, "Go ahead"),
        events.Auth: Reply(334, None, ""),
        events.AuthData: Reply(235, "2.7.0", "Authenticated"),
        events.Vrfy: Reply(252, "2.5.0", "Maybe"),
        events.Help: Reply(214, "2.0.0", "Help"),
    }
    if choice == 1:
        return Reply(550, "5.7.1", "Refused")
    return positive.get(type(event), Reply(250, "2.0.0", "Ok"))


def check_event(conn: ServerConnection, event: events.Event) -> None:
    if isinstance(event, events.CommandError):
        assert event.reply.code >= 400
    elif isinstance(event, events.ConnectionClosed):
        assert conn.closed
    else:
        assert (conn.state, type(event)) in TRANSITIONS  # only events valid in this state
    if isinstance(event, events.EndOfData) and conn.state is State.DATA:
        data = event.data
        pairs = data.count(b"\r\n")
        assert data.count(b"\r") == data.count(b"\n") == pairs  # never a bare CR or LF
        assert b"\x00" not in data
        assert data == b"" or data.endswith(b"\r\n")
        assert all(len(line) + 2 <= LIMITS.text_line for line in data.split(b"\r\n"))
    if isinstance(event, events.EndOfData):
        assert len(event.data) <= LIMITS.message_size


def check_wire(wire: bytes) -> None:
    lines = REPLY_LINE.findall(wire)
    assert REPLY_LINE.sub(b"", wire) == b""  # nothing but reply lines
    assert len({code for code, _ in lines}) == 1  # one code per reply
    assert [sep for _, sep in lines] == [b"-"] * (len(lines) - 1) + [b" "]


def drive(segments: list[bytes], picks: list[int], *, tls: bool) -> tuple[list[object], bytes]:
    """Run a session over `segments` then EOF; return its events and everything it sent."""
    conn = ServerConnection(limits=LIMITS)
    wire = conn.send(Reply(220, None, "mx.test ESMTP"))
    found: list[object] = []
    pick = iter(picks)
    recipients = 0
    for segment in [*segments, b""]:
        conn.receive_data(segment)
        while (event := conn.next_event()) not in (NEED_DATA, PAUSED):
            assert not isinstance(event, events.Signal)
            check_event(conn, event)
            found.append(event)
            if isinstance(event, events.ConnectionClosed):
                break
            reply = answer(event, next(pick, 0), tls)
            sent = conn.send(reply)
            check_wire(sent)
            wire += sent
            if conn.state is State.STARTTLS:
                found.append(("start_tls", conn.start_tls()))
            if isinstance(event, events.MailFrom) and reply.code == 250:
                recipients = 0
            recipients += isinstance(event, events.RcptTo) and reply.code == 250
            assert recipients <= LIMITS.recipients
            assert conn.closed == (conn.state is State.CLOSED)
        if conn.closed:
            break
    assert conn.closed
    return found, wire


@settings(max_examples=300, deadline=None)
@given(sessions, choices)
def test_sessions_never_raise(data: bytes, picks: list[int]) -> None:
    drive([data], picks, tls=True)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400), choices)
def test_random_bytes_never_raise(data: bytes, picks: list[int]) -> None:
    drive([data], picks, tls=True)


@settings(max_examples=200, deadline=None)
@given(sessions, choices, st.lists(st.integers(0, 2000), max_size=12))
def test_segmentation_does_not_matter(data: bytes, picks: list[int], cuts: list[int]) -> None:
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    segments = [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    assert drive(segments, picks, tls=False) == drive([data], picks, tls=False)


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=31))
def test_any_printable_local_part_round_trips(local: str) -> None:
    # 31 characters stay within 64 octets even when every one is escaped and quoted
    address = Address(local, "x.test")
    assert parse_path(f"<{address}>", utf8=False) == address


def reference_data(stream: bytes, text_line: int, size: int) -> tuple[bytes | Reply, bytes] | None:
    """DATA the slow, obvious way: whole lines, one at a time."""
    stream = b"\r\n" + stream  # the DATA command's own CRLF
    end = stream.find(b"\r\n.\r\n")
    if end < 0:
        return None
    lines = stream[2 : end + 2].split(b"\r\n")[:-1]
    if any(b"\r" in x or b"\n" in x or b"\x00" in x or len(x) + 2 > text_line for x in lines):
        return replies.BAD_DATA, stream[end + 5 :]
    message = b"".join((x[1:] if x.startswith(b".") else x) + b"\r\n" for x in lines)
    return (message if len(message) <= size else replies.MESSAGE_TOO_BIG), stream[end + 5 :]


data_pieces = st.sampled_from(
    [b"\r", b"\n", b"\r\n", b".", b"\x00", b"x", b"y" * 7, b"\r\n.", b"\r\n.\r\n"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(data_pieces, max_size=40), st.lists(st.integers(0, 400), max_size=8))
def test_data_reader_matches_the_line_by_line_model(pieces: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(pieces)
    bounds = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]
    reader, buffer = DataReader(text_line=12, message_size=40), LineBuffer()
    done = False
    for a, b in itertools.pairwise(bounds):
        buffer.feed(stream[a:b])
        done = reader.feed(buffer)
        if done:
            break
    expected = reference_data(stream, text_line=12, size=40)
    if expected is None:
        assert not done
    else:
        assert done
        verdict, rest = expected
        assert reader.result() == verdict
        assert buffer.take() + stream[b:] == rest  # the bytes after the marker stay
