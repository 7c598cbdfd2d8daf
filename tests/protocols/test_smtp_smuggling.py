"""SMTP smuggling: no end-of-data spelling but <CRLF>.<CRLF> ends a message, ever.

Each published sequence is placed inside a message and followed by a smuggled transaction
and then the real end marker. The outcome must be exactly one refusal for the whole message:
no second MAIL FROM, no EndOfData, and the session in step afterwards.
"""

from __future__ import annotations

import pytest

from postoffice.protocols.smtp import NEED_DATA, PAUSED, Reply, ServerConnection, State, events

SEQUENCES = [
    b"\n.\n",
    b"\r.\r",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r\n",
    b"\r\n.\r",
    b"\n.\r",
    b"\r.\n",
    b"\r\n\x00.\r\n",
    b"\r\n.\x00\r\n",
    b"\n\x00.\n",
    b"\r\x00\n.\r\n",
]

SMUGGLED = (
    b"MAIL FROM:<admin@bank.test>\r\nRCPT TO:<victim@target.test>\r\nDATA\r\n"
    b"From: admin@bank.test\r\nSubject: smuggled\r\n\r\nsend money"
)
BEFORE = b"EHLO attacker.test\r\nMAIL FROM:<a@attacker.test>\r\nRCPT TO:<b@target.test>\r\nDATA\r\n"
MESSAGE = b"From: a@attacker.test\r\nSubject: hello\r\n\r\nhello"
AFTER = b"\r\n.\r\nQUIT\r\n"


def answer(event: events.Event) -> Reply:
    if isinstance(event, events.CommandError):
        return event.reply
    if isinstance(event, events.Data):
        return Reply(354, None, "End data with <CR><LF>.<CR><LF>")
    if isinstance(event, events.Quit):
        return Reply(221, "2.0.0", "Bye")
    return Reply(250, None if isinstance(event, events.Helo) else "2.0.0", "Ok")


def run(segments: list[bytes]) -> tuple[list[events.Event], ServerConnection]:
    conn = ServerConnection()
    conn.send(Reply(220, None, "mx.target.test ESMTP"))
    found: list[events.Event] = []
    for segment in segments:
        conn.receive_data(segment)
        while (event := conn.next_event()) not in (NEED_DATA, PAUSED):
            assert not isinstance(event, events.Signal)
            found.append(event)
            conn.send(answer(event))
    return found, conn


def assert_one_refusal(found: list[events.Event], conn: ServerConnection) -> None:
    data_at = found.index(events.Data())
    after = found[data_at + 1 :]
    assert len(after) == 2, after
    refusal, quit_ = after
    assert isinstance(refusal, events.CommandError)
    assert refusal.reply.code == 554
    assert quit_ == events.Quit()
    assert sum(isinstance(e, events.MailFrom) for e in found) == 1
    assert not any(isinstance(e, events.EndOfData) for e in found)
    assert conn.closed


@pytest.mark.parametrize("sequence", SEQUENCES, ids=repr)
def test_sequence_never_ends_the_message(sequence: bytes) -> None:
    stream = BEFORE + MESSAGE + sequence + SMUGGLED + AFTER
    assert_one_refusal(*run([stream]))


@pytest.mark.parametrize("sequence", SEQUENCES, ids=repr)
def test_sequence_byte_by_byte(sequence: bytes) -> None:
    stream = BEFORE + MESSAGE + sequence + SMUGGLED + AFTER
    assert_one_refusal(*run([stream[i : i + 1] for i in range(len(stream))]))


@pytest.mark.parametrize("sequence", SEQUENCES, ids=repr)
def test_sequence_split_around_the_marker(sequence: bytes) -> None:
    head = BEFORE + MESSAGE
    for cut in range(len(sequence) + 1):
        found, conn = run([head + sequence[:cut], sequence[cut:] + SMUGGLED, AFTER])
        assert_one_refusal(found, conn)


@pytest.mark.parametrize(
    "sequence", [b".\n", b".\r", b".\r\r\n", b"\x00.\r\n", b".\x00\r\n"], ids=repr
)
def test_sequence_at_the_start_of_data(sequence: bytes) -> None:
    # the DATA line's own CRLF opens the end marker (so ".\r\n" first is a real, empty message)
    assert_one_refusal(*run([BEFORE + sequence + SMUGGLED + AFTER]))


def test_the_real_marker_ends_the_message_once() -> None:
    found, _ = run([BEFORE + MESSAGE + AFTER])
    assert found[-2:] == [events.EndOfData(MESSAGE + b"\r\n"), events.Quit()]


def test_refused_message_leaves_the_session_in_step() -> None:
    stream = BEFORE + MESSAGE + b"\n.\n" + SMUGGLED + b"\r\n.\r\nMAIL FROM:<a@attacker.test>\r\n"
    found, conn = run([stream])
    assert isinstance(found[-2], events.CommandError)
    assert isinstance(found[-1], events.MailFrom)  # read after the real end, as a command
    assert conn.state is State.MAIL


def test_bdat_content_is_not_scanned_for_markers() -> None:
    chunk = b"a\r\n.\r\nMAIL FROM:<x@y.test>\r\n\n.\n"
    stream = (
        b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n"
        + f"BDAT {len(chunk)} LAST\r\n".encode()
        + chunk
        + b"QUIT\r\n"
    )
    found, _ = run([stream])
    assert found[-2:] == [events.EndOfData(chunk), events.Quit()]
