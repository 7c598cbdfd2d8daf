"""The SMTP client core: reply parsing and its bounds, commands, EHLO, and the DATA encoder."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.protocols.smtp import NEED_DATA, Limits, Reply, ServerConnection, events
from postoffice.protocols.smtp import client as smtp
from postoffice.protocols.smtp.client import (
    REPLY_LINE,
    REPLY_LINES,
    Capabilities,
    DataEncoder,
    ProtocolError,
    ReplyParser,
)


def parse(*pieces: bytes) -> list[Reply]:
    parser = ReplyParser()
    replies = []
    for piece in pieces:
        parser.feed(piece)
        while (reply := parser.next_reply()) is not None:
            replies.append(reply)
    return replies


# --- replies --------------------------------------------------------------------------------


def test_single_line_reply_with_enhanced_status() -> None:
    assert parse(b"250 2.1.0 Sender ok\r\n") == [Reply(250, "2.1.0", ("Sender ok",))]


def test_multi_line_reply_fed_byte_by_byte() -> None:
    wire = b"250-mx.b.test Hello\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"
    replies = parse(*(wire[i : i + 1] for i in range(len(wire))))
    assert replies == [Reply(250, None, ("mx.b.test Hello", "PIPELINING", "SIZE 1000"))]


def test_status_is_taken_off_every_line_and_kept_once() -> None:
    (reply,) = parse(b"550-5.1.1 <x@b.test>: user unknown\r\n550 5.1.1 see the docs\r\n")
    assert reply == Reply(550, "5.1.1", ("<x@b.test>: user unknown", "see the docs"))
    assert smtp.describe(reply) == "550 5.1.1 <x@b.test>: user unknown see the docs"


def test_several_replies_in_one_read_and_bare_codes() -> None:
    replies = parse(b"250 2.1.0 Ok\r\n250\r\n354 go ahead\n")
    assert [(r.code, r.status, r.lines) for r in replies] == [
        (250, "2.1.0", ("Ok",)),
        (250, None, ("",)),
        (354, None, ("go ahead",)),
    ]


def test_status_of_the_wrong_class_stays_text() -> None:
    (reply,) = parse(b"550 4.1.1 odd\r\n")
    assert reply == Reply(550, None, ("4.1.1 odd",))
    assert smtp.describe(reply) == "550 4.1.1 odd"


@pytest.mark.parametrize(
    "wire",
    [
        b"hello\r\n",
        b"2500 too many digits\r\n",
        b"099 not a reply code\r\n",
        b"650 no such class\r\n",
        b"250x no separator\r\n",
        b"250 a bare\rCR\r\n",
        b"250-first\r\n251 changed code\r\n",
        b"250-first\r\n550 changed class\r\n",
    ],
)
def test_malformed_replies_are_protocol_errors(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse(wire)


def test_endless_multi_line_reply_stops_at_the_line_bound() -> None:
    parser = ReplyParser()
    with pytest.raises(ProtocolError, match=f"more than {REPLY_LINES} lines"):
        for _ in range(10_000):
            parser.feed(b"250-more\r\n")
            assert parser.next_reply() is None
    assert REPLY_LINES < 10_000


def test_endless_reply_of_long_lines_stops_at_the_octet_bound() -> None:
    parser = ReplyParser()
    parser.feed(b"250-" + b"x" * 500 + b"\r\n")
    with pytest.raises(ProtocolError, match="more than 32768 octets"):
        for _ in range(REPLY_LINES - 2):
            assert parser.next_reply() is None
            parser.feed(b"250-" + b"x" * 500 + b"\r\n")


def test_overlong_line_is_refused_without_buffering_it() -> None:
    parser = ReplyParser()
    parser.feed(b"250 " + b"x" * (REPLY_LINE - 6) + b"\r\n")  # exactly the limit: fine
    assert parser.next_reply() is not None
    parser.feed(b"250 " + b"y" * 1000)
    with pytest.raises(ProtocolError, match="longer than 512"):
        parser.next_reply()


def test_close_inside_or_before_a_reply() -> None:
    parser = ReplyParser()
    parser.feed(b"221 bye\r\n250-half")
    parser.feed(b"")
    assert parser.next_reply() == Reply(221, None, ("bye",))
    with pytest.raises(ProtocolError, match="closed"):
        parser.next_reply()
    empty = ReplyParser()
    empty.feed(b"")
    with pytest.raises(ProtocolError, match="before a reply"):
        empty.next_reply()


def test_discard_drops_what_came_after_the_starttls_reply() -> None:
    parser = ReplyParser()
    parser.feed(b"220 2.0.0 Ready to start TLS\r\n250 injected\r\n")
    assert parser.next_reply() == Reply(220, "2.0.0", ("Ready to start TLS",))
    assert parser.discard() == len(b"250 injected\r\n")
    assert parser.next_reply() is None


def test_transcript_lines() -> None:
    assert smtp.transcript(Reply(250, "2.0.0", ("a", "b"))) == ["250-2.0.0 a", "250 2.0.0 b"]


# --- EHLO and commands -------------------------------------------------------------------------


def ehlo_reply(*lines: str) -> Reply:
    return Reply(250, None, ("mx.b.test Hello", *lines))


def test_capabilities_from_ehlo() -> None:
    caps = Capabilities.from_ehlo(
        ehlo_reply("pipelining", "SIZE 35882577", "8BITMIME", "AUTH=LOGIN", "STARTTLS")
    )
    assert "PIPELINING" in caps and "STARTTLS" in caps and "CHUNKING" not in caps
    assert caps.size == 35882577
    assert caps.auth == {"LOGIN"}
    assert Capabilities.from_ehlo(ehlo_reply("SIZE", "AUTH PLAIN login")).size is None
    assert Capabilities.from_ehlo(ehlo_reply("SIZE 0", "AUTH PLAIN login")).auth == {
        "PLAIN",
        "LOGIN",
    }
    assert Capabilities.from_ehlo(ehlo_reply("SIZE 0")).size is None  # RFC 1870: no limit


def test_mail_from_uses_only_offered_parameters() -> None:
    full = Capabilities.from_ehlo(ehlo_reply("SIZE 1000", "8BITMIME", "SMTPUTF8"))
    assert (
        smtp.mail_from("a@a.test", full, size=12, eight_bit=True, smtputf8=True)
        == b"MAIL FROM:<a@a.test> SIZE=12 BODY=8BITMIME SMTPUTF8\r\n"
    )
    assert smtp.mail_from("", Capabilities(), size=12, eight_bit=True, smtputf8=False) == (
        b"MAIL FROM:<>\r\n"
    )
    assert smtp.mail_from("a@a.test", full, size=3, eight_bit=False, smtputf8=False) == (
        b"MAIL FROM:<a@a.test> SIZE=3\r\n"
    )


def test_commands_refuse_line_breaks() -> None:
    assert smtp.rcpt_to("jö@b.test") == "RCPT TO:<jö@b.test>\r\n".encode()
    assert smtp.ehlo("a.test") == b"EHLO a.test\r\n"
    for bad in ("x@b.test>\r\nRSET", "x@b.test\n", "x\0@b.test"):
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            smtp.rcpt_to(bad)


def test_auth_commands_mask_secrets() -> None:
    ((line, shown),) = smtp.auth_commands("PLAIN", "user", "pw")
    assert line == b"AUTH PLAIN AHVzZXIAcHc=\r\n" and shown == "AUTH PLAIN <secret>"
    login = smtp.auth_commands("LOGIN", "user", "pw")
    assert [line for line, _ in login] == [b"AUTH LOGIN\r\n", b"dXNlcg==\r\n", b"cHc=\r\n"]
    assert [shown for _, shown in login] == ["AUTH LOGIN", "<secret>", "<secret>"]
    with pytest.raises(ValueError, match="unsupported"):
        smtp.auth_commands("CRAM-MD5", "user", "pw")


# --- the data encoder --------------------------------------------------------------------------


def encode(*chunks: bytes) -> bytes:
    encoder = DataEncoder()
    return b"".join(encoder.feed(chunk) for chunk in chunks) + encoder.finish()


@pytest.mark.parametrize(
    ("body", "wire"),
    [
        (b"", b".\r\n"),
        (b"a", b"a\r\n.\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b".", b"..\r\n.\r\n"),
        (b"..x\r\n", b"...x\r\n.\r\n"),
        (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"a\rb\r", b"a\r\nb\r\n.\r\n"),
        (b"\r\r\n\n", b"\r\n\r\n\r\n.\r\n"),
        (b"x\r\n.\r\ny\r\n", b"x\r\n..\r\ny\r\n.\r\n"),
        (b"x\r\n.\r\n", b"x\r\n..\r\n.\r\n"),
        (b"not .a line start\r\n", b"not .a line start\r\n.\r\n"),
    ],
)
def test_encoder_examples(body: bytes, wire: bytes) -> None:
    assert encode(body) == wire


@pytest.mark.parametrize(
    ("chunks", "wire"),
    [
        ((b"a\r", b"\nb"), b"a\r\nb\r\n.\r\n"),  # CRLF split across chunks: one line end
        ((b"a\r", b"b"), b"a\r\nb\r\n.\r\n"),  # a bare CR at a chunk's end
        ((b"a\r\n", b".b"), b"a\r\n..b\r\n.\r\n"),  # a dot opening the next chunk
        ((b"a\r", b".b"), b"a\r\n..b\r\n.\r\n"),
        ((b"a\n", b"."), b"a\r\n..\r\n.\r\n"),
        ((b"a.", b"b"), b"a.b\r\n.\r\n"),
        ((b"", b".", b"", b"\r", b"", b"\n"), b"..\r\n.\r\n"),
        ((b"x\r",), b"x\r\n.\r\n"),
    ],
)
def test_encoder_chunk_boundaries(chunks: tuple[bytes, ...], wire: bytes) -> None:
    assert encode(*chunks) == wire


def test_every_split_of_a_tricky_body_encodes_alike() -> None:
    body = b".a\r\n.\r\n\r.\n\r\r\n..\rb\n."
    whole = encode(body)
    for i, j in itertools.combinations(range(len(body) + 1), 2):
        assert encode(body[:i], body[i:j], body[j:]) == whole


def normalised(body: bytes) -> bytes:
    """What the receiver must see: CRLF line ends only, the last line ended."""
    text = re.sub(rb"\r\n|\r|\n", b"\r\n", body)
    return text if not text or text.endswith(b"\r\n") else text + b"\r\n"


def received(wire: bytes) -> list[events.Event]:
    """Run the server core over one transaction carrying `wire` as its DATA, then EOF."""
    conn = ServerConnection(Limits(text_line=1_000_000, message_size=10_000_000))
    conn.send(Reply(220, None, "mx.test ESMTP"))
    conn.receive_data(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n")
    conn.receive_data(wire)
    conn.receive_data(b"")
    answers = {
        events.Helo: Reply(250, None, "mx.test"),
        events.MailFrom: Reply(250, "2.1.0", "Ok"),
        events.RcptTo: Reply(250, "2.1.5", "Ok"),
        events.Data: Reply(354, None, "go ahead"),
        events.EndOfData: Reply(250, "2.0.0", "queued"),
    }
    found: list[events.Event] = []
    while (event := conn.next_event()) is not NEED_DATA:
        assert not isinstance(event, events.Signal)
        if isinstance(event, events.ConnectionClosed):
            break
        found.append(event)
        conn.send(answers[type(event)])  # a KeyError here is a CommandError: the test fails
    return found


PIECES = [b"\r", b"\n", b"\r\n", b".", b"..", b"a", b" ", b"\xc3\xa9", b"\r\n.\r\n", b"\n.\n"]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join),
    st.lists(st.integers(0, 400), max_size=6),
)
def test_server_core_reads_exactly_the_normalised_message(body: bytes, cuts: list[int]) -> None:
    bounds = [0, *sorted(c % (len(body) + 1) for c in cuts), len(body)]
    wire = encode(*(body[a:b] for a, b in itertools.pairwise(bounds)))
    found = received(wire)
    data_events = [e for e in found if isinstance(e, events.EndOfData)]
    assert data_events == [events.EndOfData(normalised(body))]
    assert found[-1] == data_events[0]  # nothing after the message: no smuggled commands
