"""The SMTP server core, bytes in and events out: every command, every error path."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest

from postoffice.mail.address import Address
from postoffice.protocols.smtp import (
    NEED_DATA,
    PAUSED,
    Limits,
    Reply,
    ServerConnection,
    State,
    events,
    replies,
)
from postoffice.protocols.smtp.data import Body

Answer = Reply | Callable[[events.Event], Reply]

ACCEPT: dict[type, Answer] = {
    events.Helo: Reply(250, None, ("mx.test", "PIPELINING", "CHUNKING", "SMTPUTF8")),
    events.MailFrom: Reply(250, "2.1.0", "Sender ok"),
    events.RcptTo: Reply(250, "2.1.5", "Recipient ok"),
    events.Data: Reply(354, None, "End data with <CR><LF>.<CR><LF>"),
    events.BdatChunk: Reply(250, "2.0.0", "Chunk received"),
    events.EndOfData: Reply(250, "2.0.0", "Queued as Q1"),
    events.Rset: Reply(250, "2.0.0", "Ok"),
    events.Noop: Reply(250, "2.0.0", "Ok"),
    events.Quit: Reply(221, "2.0.0", "Bye"),
    events.Vrfy: Reply(252, "2.5.0", "Cannot VRFY user"),
    events.Expn: Reply(502, "5.5.1", "EXPN not available"),
    events.Help: Reply(214, "2.0.0", "See RFC 5321"),
    events.StartTls: Reply(220, "2.0.0", "Ready to start TLS"),
    events.Auth: Reply(334, None, ""),
    events.AuthData: Reply(235, "2.7.0", "Authentication successful"),
}


class Session:
    """Drives a ServerConnection the way servers/smtp does, answering from a table."""

    def __init__(self, limits: Limits | None = None, **answers: Answer) -> None:
        self.conn = ServerConnection(limits=limits)
        self.answers = {**ACCEPT, **{getattr(events, k): v for k, v in answers.items()}}
        self.events: list[events.Event] = []
        self.wire = self.conn.send(Reply(220, None, "mx.test ESMTP postoffice"))

    def feed(self, data: bytes) -> list[events.Event]:
        """Feed bytes (b"" is EOF), answer every event; return the new events."""
        start = len(self.events)
        self.conn.receive_data(data)
        while (event := self.conn.next_event()) not in (NEED_DATA, PAUSED):
            assert not isinstance(event, events.Signal)
            self.events.append(event)
            if isinstance(event, events.ConnectionClosed):
                break
            if isinstance(event, events.CommandError):
                reply = event.reply
            else:
                answer = self.answers[type(event)]
                reply = answer if isinstance(answer, Reply) else answer(event)
            self.wire += self.conn.send(reply)
        return self.events[start:]

    def replies(self) -> list[str]:
        """The final line of every reply sent after the greeting."""
        lines = self.wire.decode().split("\r\n")[1:-1]
        return [line for line in lines if line[3] == " "]


def errors(found: list[events.Event]) -> list[Reply]:
    return [e.reply for e in found if isinstance(e, events.CommandError)]


def ehlo(limits: Limits | None = None, **answers: Answer) -> Session:
    session = Session(limits, **answers)
    session.feed(b"EHLO client.test\r\n")
    return session


def in_rcpt(limits: Limits | None = None, mail: bytes = b"", **answers: Answer) -> Session:
    session = ehlo(limits, **answers)
    session.feed(b"MAIL FROM:<a@b.test>" + mail + b"\r\nRCPT TO:<c@d.test>\r\n")
    assert session.conn.state is State.RCPT
    return session


SESSION = (
    b"EHLO client.test\r\nMAIL FROM:<a@b.test> SIZE=20\r\nRCPT TO:<c@d.test>\r\n"
    b"RCPT TO:<bad>\r\nDATA\r\nSubject: hi\r\n\r\n..dotted\r\nbody\r\n.\r\n"
    b"MAIL FROM:<> BODY=BINARYMIME\r\nRCPT TO:<Postmaster>\r\nBDAT 5\r\n\r\n.\r\nBDAT 3 LAST\r\n"
    b"abcNOOP\r\nAUTH PLAIN\r\ndGVzdA==\r\nVRFY x\r\nFOO\r\nQUIT\r\n"
)


# --- greeting, EHLO and enhanced status codes -------------------------------------------------


def test_ehlo_reply_and_greeting_carry_no_enhanced_codes() -> None:
    session = ehlo()
    assert session.wire == (
        b"220 mx.test ESMTP postoffice\r\n250-mx.test\r\n250-PIPELINING\r\n"
        b"250-CHUNKING\r\n250 SMTPUTF8\r\n"
    )
    assert session.conn.extended
    session.feed(b"NOOP\r\nQUIT\r\n")
    assert session.replies()[-2:] == ["250 2.0.0 Ok", "221 2.0.0 Bye"]


def test_helo_session_has_no_enhanced_codes() -> None:
    session = Session(Helo=Reply(250, None, "mx.test"))
    session.feed(b"HELO client.test\r\nMAIL FROM:<a@b.test>\r\nFOO\r\n")
    assert session.replies() == ["250 mx.test", "250 Sender ok", "500 Command unrecognized"]
    assert not session.conn.extended


def test_helo_after_ehlo_drops_enhanced_codes() -> None:
    session = ehlo(Helo=Reply(250, None, "mx.test"))
    session.feed(b"HELO again.test\r\nNOOP\r\n")
    assert session.replies()[-1] == "250 Ok"


def test_multiline_reply_has_status_on_every_line() -> None:
    reply = Reply(250, "2.0.0", ("first", "second"))
    assert reply.to_bytes(enhanced=True) == b"250-2.0.0 first\r\n250 2.0.0 second\r\n"
    assert reply.to_bytes(enhanced=False) == b"250-first\r\n250 second\r\n"


# --- a whole session, pipelined, and split into bytes ----------------------------------------


def test_whole_session_pipelined() -> None:
    session = Session()
    found = session.feed(SESSION)
    assert found == [
        events.Helo("client.test", extended=True),
        events.MailFrom(Address("a", "b.test"), 20, None, False, {}),
        events.RcptTo(Address("c", "d.test"), {}),
        events.CommandError(replies.BAD_RECIPIENT),
        events.Data(),
        events.EndOfData(b"Subject: hi\r\n\r\n.dotted\r\nbody\r\n"),
        events.MailFrom(None, None, "BINARYMIME", False, {}),
        events.RcptTo(Address("postmaster", ""), {}),
        events.BdatChunk(5),
        events.EndOfData(b"\r\n.\r\nabc"),
        events.Noop(),
        events.Auth("PLAIN", None),
        events.AuthData("dGVzdA=="),
        events.Vrfy("x"),
        events.CommandError(replies.UNKNOWN_COMMAND),
        events.Quit(),
    ]
    assert session.conn.closed


def test_byte_by_byte_gives_the_same_events_and_replies() -> None:
    whole, split = Session(), Session()
    whole.feed(SESSION)
    for i in range(len(SESSION)):
        split.feed(SESSION[i : i + 1])
    assert split.events == whole.events
    assert split.wire == whole.wire


def test_pipelined_commands_wait_for_each_reply() -> None:
    conn = ServerConnection()
    conn.send(Reply(220, None, "hi"))
    conn.receive_data(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n")
    assert isinstance(conn.next_event(), events.Helo)
    assert conn.next_event() is PAUSED
    assert conn.next_event() is PAUSED
    conn.send(Reply(250, None, "mx"))
    assert isinstance(conn.next_event(), events.MailFrom)
    conn.send(Reply(250, "2.1.0", "ok"))
    assert isinstance(conn.next_event(), events.RcptTo)
    conn.send(Reply(250, "2.1.5", "ok"))
    assert conn.next_event() == events.Data()
    conn.send(Reply(354, None, "go"))
    assert conn.state is State.DATA
    assert conn.next_event() is NEED_DATA


# --- commands one by one ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"NOOP\r\n", events.Noop()),
        (b"noop anything at all\r\n", events.Noop()),
        (b"RSET\r\n", events.Rset()),
        (b"HELP\r\n", events.Help("")),
        (b"HELP mail\r\n", events.Help("mail")),
        (b"VRFY postmaster\r\n", events.Vrfy("postmaster")),
        (b"EXPN staff list\r\n", events.Expn("staff list")),
        (b"QUIT\r\n", events.Quit()),
        (b"STARTTLS\r\n", events.StartTls()),
        (b"AUTH plain\r\n", events.Auth("PLAIN", None)),
        (b"AUTH PLAIN AGEAYg==\r\n", events.Auth("PLAIN", "AGEAYg==")),
        (b"AUTH EXTERNAL =\r\n", events.Auth("EXTERNAL", "=")),
        (b"EHLO [192.0.2.1]\r\n", events.Helo("[192.0.2.1]", extended=True)),
        (b"helo  client.test  \r\n", events.Helo("client.test", extended=False)),
        (
            b"mail from:<A@B.test>\r\n",
            events.MailFrom(Address("A", "b.test"), None, None, False, {}),
        ),
        (
            b"MAIL FROM: <a@b.test>\r\n",
            events.MailFrom(Address("a", "b.test"), None, None, False, {}),
        ),
        (b"MAIL FROM:<>\r\n", events.MailFrom(None, None, None, False, {})),
    ],
)
def test_command_events(line: bytes, event: events.Event) -> None:
    assert ehlo().feed(line) == [event]


def test_mail_parameters() -> None:
    line = (
        "MAIL FROM:<jörg@bücher.test> SIZE=1000 body=8bitmime SMTPUTF8 "
        "AUTH=<> RET=hdrs ENVID=QQ314159\r\n"
    )
    [event] = ehlo().feed(line.encode())
    assert event == events.MailFrom(
        sender=Address("jörg", "bücher.test"),
        size=1000,
        body="8BITMIME",
        smtputf8=True,
        params={"AUTH": "<>", "RET": "hdrs", "ENVID": "QQ314159"},
    )


@pytest.mark.parametrize(
    ("line", "code", "status"),
    [
        (b"MAIL FROM:<a@b.test> SIZE=abc", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.test> SIZE", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.test> SIZE=123456789012345678901", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.test> SIZE=1001", 552, "5.3.4"),
        (b"MAIL FROM:<a@b.test> BODY=9BIT", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.test> SMTPUTF8=yes", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.test> RET=ALL", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.test> AUTH", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.test> X-FOO=1", 555, "5.5.4"),
        (b"MAIL FROM:<a@b.test> SIZE=1 size=2", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.test> -BAD", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.test> SIZE==1", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.test>SIZE=1", 501, "5.5.4"),
        (b"MAIL FROM:a@b.test", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.test", 501, "5.5.4"),
        (b"MAIL FROM:", 501, "5.5.4"),
        (b"MAIL TO:<a@b.test>", 501, "5.5.4"),
        (b"MAIL", 501, "5.5.4"),
        (b"MAIL FROM:<a@@b.test>", 501, "5.1.7"),
        (b"MAIL FROM:<@b.test>", 501, "5.1.7"),
        ("MAIL FROM:<jörg@b.test>".encode(), 553, "5.6.7"),
    ],
)
def test_mail_errors(line: bytes, code: int, status: str) -> None:
    session = ehlo(Limits(message_size=1000))
    [error] = errors(session.feed(line + b"\r\n"))
    assert (error.code, error.status) == (code, status)
    assert session.conn.state is State.GREETED


def test_parameters_need_ehlo() -> None:
    session = Session()
    session.feed(b"HELO client.test\r\n")
    [error] = errors(session.feed(b"MAIL FROM:<a@b.test> SIZE=10\r\n"))
    assert (error.code, error.status) == (555, "5.5.4")


def test_rcpt_parameters() -> None:
    session = in_rcpt()
    found = session.feed(b"RCPT TO:<e@f.test> NOTIFY=SUCCESS,delay ORCPT=rfc822;e@f.test\r\n")
    assert found == [
        events.RcptTo(
            Address("e", "f.test"), {"NOTIFY": "SUCCESS,delay", "ORCPT": "rfc822;e@f.test"}
        )
    ]
    found = session.feed(b"RCPT TO:<@relay.test:g@H.test> NOTIFY=NEVER\r\n")
    assert found == [events.RcptTo(Address("g", "h.test"), {"NOTIFY": "NEVER"})]


@pytest.mark.parametrize(
    ("line", "code", "status"),
    [
        (b"RCPT TO:<>", 501, "5.1.3"),
        (b"RCPT TO:<e@f..test>", 501, "5.1.3"),
        (b"RCPT TO:e@f.test", 501, "5.5.4"),
        (b"RCPT FROM:<e@f.test>", 501, "5.5.4"),
        (b"RCPT TO:<e@f.test> NOTIFY=SOMETIMES", 501, "5.5.4"),
        (b"RCPT TO:<e@f.test> NOTIFY=NEVER,SUCCESS", 501, "5.5.4"),
        (b"RCPT TO:<e@f.test> ORCPT=e@f.test", 501, "5.5.4"),
        (b"RCPT TO:<e@f.test> SIZE=10", 555, "5.5.4"),
        ("RCPT TO:<jörg@f.test>".encode(), 553, "5.6.7"),
    ],
)
def test_rcpt_errors(line: bytes, code: int, status: str) -> None:
    session = in_rcpt()
    [error] = errors(session.feed(line + b"\r\n"))
    assert (error.code, error.status) == (code, status)
    assert session.conn.state is State.RCPT


def test_utf8_recipient_in_smtputf8_transaction() -> None:
    session = in_rcpt(mail=b" SMTPUTF8")
    found = session.feed("RCPT TO:<jörg@bücher.test>\r\n".encode())
    assert found == [events.RcptTo(Address("jörg", "bücher.test"), {})]


def test_postmaster_with_domain_is_an_ordinary_address() -> None:
    session = in_rcpt()
    found = session.feed(b"RCPT TO:<PostMaster@D.test>\r\n")
    assert found == [events.RcptTo(Address("PostMaster", "d.test"), {})]


# --- malformed lines and line lengths ----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code", "status"),
    [
        (b"FOO\r\n", 500, "5.5.1"),
        (b"\r\n", 500, "5.5.1"),
        (b"MAILFROM:<a@b.test>\r\n", 500, "5.5.1"),
        ("QU\u0131T\r\n".encode(), 500, "5.5.1"),  # dotless i: no Unicode folding into a verb
        (b"NOOP\n", 500, "5.5.2"),
        (b"NO\rOP\r\n", 500, "5.5.2"),
        (b"NOOP\x00\r\n", 500, "5.5.2"),
        (b"NOOP\tx\r\n", 500, "5.5.2"),
        (b"HELP \xff\xfe\r\n", 500, "5.5.2"),
        (b"DATA now\r\n", 501, "5.5.4"),
        (b"RSET x\r\n", 501, "5.5.4"),
        (b"QUIT now\r\n", 501, "5.5.4"),
        (b"STARTTLS x\r\n", 501, "5.5.4"),
        (b"EHLO\r\n", 501, "5.5.4"),
        (b"HELO a b\r\n", 501, "5.5.4"),
        (b"VRFY\r\n", 501, "5.5.4"),
        (b"EXPN  \r\n", 501, "5.5.4"),
        (b"BDAT\r\n", 501, "5.5.4"),
        (b"BDAT -1\r\n", 501, "5.5.4"),
        (b"BDAT 10 FIRST\r\n", 501, "5.5.4"),
        (b"AUTH\r\n", 501, "5.5.4"),
        (b"AUTH PLAIN a b\r\n", 501, "5.5.4"),
        (b"AUTH PLAIN ***\r\n", 501, "5.5.4"),
    ],
)
def test_malformed_lines(data: bytes, code: int, status: str) -> None:
    session = ehlo()
    [error] = errors(session.feed(data))
    assert (error.code, error.status) == (code, status)
    assert session.feed(b"NOOP\r\n") == [events.Noop()]  # and the session goes on


@pytest.mark.parametrize("chunk", [1, 7, 100_000])
def test_overlong_line_is_one_error_and_discarded(chunk: int) -> None:
    session = ehlo()
    data = b"NOOP " + b"MAIL FROM:<x@y.test> \r" * 300 + b"\r\nNOOP\r\n"
    found: list[events.Event] = []
    for i in range(0, len(data), chunk):
        found += session.feed(data[i : i + chunk])
        assert len(session.conn._buffer) <= 512 + 500 + chunk  # never buffered without bound
    assert found == [events.CommandError(replies.LINE_TOO_LONG), events.Noop()]


def test_mail_and_rcpt_may_be_longer_by_the_parameter_allowance() -> None:
    session = ehlo()
    mail = b"MAIL FROM:<a@b.test> AUTH=" + b"x" * (1012 - 28) + b"\r\n"
    assert len(mail) == 1012
    [event] = session.feed(mail)
    assert isinstance(event, events.MailFrom)
    noop = b"NOOP " + b"x" * (513 - 7) + b"\r\n"
    assert errors(session.feed(noop)) == [replies.LINE_TOO_LONG]
    assert errors(session.feed(b"NOOP " + b"x" * (512 - 7) + b"\r\n")) == []
    assert errors(session.feed(mail[:-2] + b"x\r\n")) == [replies.LINE_TOO_LONG]


# --- sequence -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "line"),
    [
        (b"", b"MAIL FROM:<a@b.test>"),
        (b"", b"STARTTLS"),
        (b"", b"AUTH PLAIN"),
        (b"EHLO c.test\r\n", b"RCPT TO:<c@d.test>"),
        (b"EHLO c.test\r\n", b"DATA"),
        (b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n", b"DATA"),
        (b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n", b"MAIL FROM:<a@b.test>"),
        (b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n", b"STARTTLS"),
        (b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n", b"AUTH PLAIN"),
        (b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRSET\r\n", b"RCPT TO:<c@d.test>"),
        (b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nEHLO c.test\r\n", b"RCPT TO:<c@d.test>"),
        (b"EHLO c.test\r\nMAIL FROM:<a@b.test> BODY=BINARYMIME\r\nRCPT TO:<c@d.test>\r\n", b"DATA"),
    ],
)
def test_bad_sequence(setup: bytes, line: bytes) -> None:
    session = Session()
    if setup:
        session.feed(setup)
    state = session.conn.state
    assert errors(session.feed(line + b"\r\n")) == [replies.BAD_SEQUENCE]
    assert session.conn.state is state


def test_commands_valid_before_helo() -> None:
    session = Session()
    found = session.feed(b"NOOP\r\nRSET\r\nHELP\r\nVRFY a\r\nEXPN b\r\n")
    assert errors(found) == []
    assert session.conn.state is State.CONNECTED


def test_refused_recipient_does_not_count() -> None:
    session = ehlo(RcptTo=Reply(550, "5.1.1", "No such user"))
    session.feed(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n")
    assert session.conn.state is State.MAIL
    assert errors(session.feed(b"DATA\r\n")) == [replies.BAD_SEQUENCE]


def test_refused_helo_keeps_the_state() -> None:
    session = in_rcpt()
    session.answers[events.Helo] = Reply(550, "5.7.1", "Go away")
    session.feed(b"EHLO x\r\n")
    assert session.conn.state is State.RCPT


def test_recipient_limit() -> None:
    session = in_rcpt(Limits(recipients=2))
    found = session.feed(b"RCPT TO:<e@f.test>\r\nRCPT TO:<g@h.test>\r\nDATA\r\n")
    assert errors(found) == [replies.TOO_MANY_RECIPIENTS]
    assert session.conn.state is State.DATA


def test_transaction_ends_after_data_and_rset() -> None:
    session = in_rcpt()
    session.feed(b"DATA\r\nbody\r\n.\r\n")
    assert session.conn.state is State.GREETED
    session.feed(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nRSET\r\n")
    assert session.conn.state is State.GREETED


# --- DATA ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b".\r\n", b""),
        (b"\r\n.\r\n", b"\r\n"),
        (b"a\r\n.\r\n", b"a\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"...x\r\n.y\r\n.\r\n", b"..x\r\ny\r\n"),
        (b"a\r\n..\r\n\r\n.\r\n", b"a\r\n.\r\n\r\n"),
        (b"caf\xc3\xa9 8bit\r\n.\r\n", b"caf\xc3\xa9 8bit\r\n"),
    ],
)
def test_data_dot_unstuffing(body: bytes, message: bytes) -> None:
    session = in_rcpt()
    found = session.feed(b"DATA\r\n" + body)
    assert found[-1] == events.EndOfData(message)


def test_data_then_pipelined_commands() -> None:
    session = in_rcpt()
    found = session.feed(b"DATA\r\nhello\r\n.\r\nNOOP\r\nQUIT\r\n")
    assert found[1:] == [events.EndOfData(b"hello\r\n"), events.Noop(), events.Quit()]


def test_data_line_length_limit() -> None:
    session = in_rcpt()
    line = b"x" * 998 + b"\r\n"
    assert session.feed(b"DATA\r\n" + line + b".\r\n")[-1] == events.EndOfData(line)
    session.feed(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n")
    found = session.feed(b"DATA\r\n." + line + b".\r\n")  # 1001 octets as sent
    assert errors(found) == [replies.BAD_DATA]
    assert session.conn.state is State.GREETED


def test_data_unfinished_overlong_line_is_refused_while_reading() -> None:
    session = in_rcpt()
    session.feed(b"DATA\r\n")
    for _ in range(100):
        assert session.feed(b"y" * 1000) == []
        assert len(session.conn._reader._tail) <= 4  # type: ignore[union-attr]
    assert errors(session.feed(b"\r\n.\r\n")) == [replies.BAD_DATA]


def test_data_with_nul_is_refused() -> None:
    session = in_rcpt()
    found = session.feed(b"DATA\r\nab\x00c\r\n.\r\n")
    assert errors(found) == [replies.BAD_DATA]


def test_message_size_limit() -> None:
    session = in_rcpt(Limits(message_size=10))
    assert session.feed(b"DATA\r\n12345678\r\n.\r\n")[-1] == events.EndOfData(b"12345678\r\n")
    session.feed(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n")
    found = session.feed(b"DATA\r\n123456789\r\n.\r\nNOOP\r\n")
    assert errors(found) == [replies.MESSAGE_TOO_BIG]
    assert found[-1] == events.Noop()


def test_oversized_message_memory_stays_bounded() -> None:
    session = in_rcpt(Limits(message_size=100_000))
    session.feed(b"DATA\r\n")
    line = b"x" * 78 + b"\r\n"
    chunk = line * 800  # 64 000 octets
    tracemalloc.start()
    try:
        for _ in range(125):  # 8 MB
            assert session.feed(chunk) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    [error] = errors(session.feed(b".\r\n"))
    assert error.code == 552


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_data_defect_outranks_size_however_split(chunk: int) -> None:
    for body, verdict in [
        (b"x" * 30 + b"\r\n" * 5 + b"bare\nLF\r\n.\r\n", replies.BAD_DATA),
        (b"bare\nLF\r\n" + b"x" * 30 + b"\r\n.\r\n", replies.BAD_DATA),
        (b"x" * 30 + b"\r\n" * 5 + b".\r\n", replies.MESSAGE_TOO_BIG),
    ]:
        session = in_rcpt(Limits(message_size=20))
        session.feed(b"DATA\r\n")
        for i in range(0, len(body), chunk):
            session.feed(body[i : i + chunk])
        assert errors(session.events) == [verdict]


def test_body_drops_octets_past_the_limit() -> None:
    body = Body(5)
    body.add(b"abc")
    body.add(b"de")
    assert (body.getvalue(), body.too_big) == (b"abcde", False)
    body.add(b"f")
    assert (body.getvalue(), body.too_big, body.size) == (b"", True, 6)


def test_eof_inside_data() -> None:
    session = in_rcpt()
    found = session.feed(b"DATA\r\nunfinished\r\n")
    assert found == [events.Data()]
    assert session.feed(b"") == [events.ConnectionClosed()]
    assert session.conn.closed


# --- BDAT ------------------------------------------------------------------------------------


def test_bdat_chunks() -> None:
    session = in_rcpt()
    found = session.feed(b"BDAT 4\r\nabc\nBDAT 7\r\n\r\n.\r\n\x00\xffBDAT 0 last\r\nNOOP\r\n")
    assert found == [
        events.BdatChunk(4),
        events.BdatChunk(7),
        events.EndOfData(b"abc\n\r\n.\r\n\x00\xff"),
        events.Noop(),
    ]
    assert session.replies()[-4:-1] == [
        "250 2.0.0 Chunk received",
        "250 2.0.0 Chunk received",
        "250 2.0.0 Queued as Q1",
    ]


def test_bdat_last_only() -> None:
    session = in_rcpt(mail=b" BODY=BINARYMIME")
    assert session.feed(b"BDAT 3 LAST\r\nx\ry") == [events.EndOfData(b"x\ry")]
    assert session.conn.state is State.GREETED


def test_bdat_without_transaction_is_consumed_then_refused() -> None:
    session = ehlo()
    found = session.feed(b"BDAT 12\r\nQUIT\r\nQUIT\r\nNOOP\r\n")
    assert found == [events.CommandError(replies.BAD_SEQUENCE), events.Noop()]
    session = ehlo()
    session.feed(b"MAIL FROM:<a@b.test>\r\n")  # a MAIL without recipients is not enough
    assert errors(session.feed(b"BDAT 1 LAST\r\nx")) == [replies.BAD_SEQUENCE]
    assert session.conn.state is State.MAIL


def test_bdat_too_big_fails_the_transaction() -> None:
    session = in_rcpt(Limits(message_size=5))
    found = session.feed(b"BDAT 3\r\nabcBDAT 3\r\ndefBDAT 1 LAST\r\ngNOOP\r\n")
    assert found == [
        events.BdatChunk(3),
        events.CommandError(replies.MESSAGE_TOO_BIG),
        events.CommandError(replies.BAD_SEQUENCE),
        events.Noop(),
    ]
    assert session.conn.state is State.GREETED


def test_refused_bdat_chunk_fails_the_transaction() -> None:
    session = in_rcpt(BdatChunk=Reply(452, "4.3.1", "Out of space"))
    found = session.feed(b"BDAT 1\r\naBDAT 1 LAST\r\nb")
    assert found[0] == events.BdatChunk(1)
    assert errors(found) == [replies.BAD_SEQUENCE]
    assert session.conn.state is State.GREETED


def test_commands_between_chunks() -> None:
    session = in_rcpt()
    session.feed(b"BDAT 1\r\na")
    bad = replies.BAD_SEQUENCE
    assert errors(session.feed(b"DATA\r\nRCPT TO:<x@y.test>\r\nMAIL FROM:<>\r\n")) == [bad] * 3
    assert errors(session.feed(b"NOOP\r\n")) == []
    assert session.conn.state is State.BDAT
    session.feed(b"RSET\r\n")
    assert session.conn.state is State.GREETED


def test_bdat_eof_inside_chunk() -> None:
    session = in_rcpt()
    assert session.feed(b"BDAT 10\r\nabc") == []
    assert session.feed(b"") == [events.ConnectionClosed()]


# --- STARTTLS --------------------------------------------------------------------------------


def test_start_tls_discards_plaintext_injection() -> None:
    session = ehlo()
    injected = b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\n"
    assert session.feed(b"STARTTLS\r\n" + injected) == [events.StartTls()]
    assert session.conn.state is State.STARTTLS
    assert session.conn.next_event() is PAUSED  # nothing is parsed before the handshake
    assert session.conn.start_tls() == len(injected)
    assert session.conn.state is State.CONNECTED
    assert not session.conn.extended
    assert errors(session.feed(b"MAIL FROM:<a@b.test>\r\n")) == [replies.BAD_SEQUENCE]
    session.feed(b"EHLO client.test\r\n")
    assert session.conn.state is State.GREETED


def test_refused_starttls_keeps_going_in_plaintext() -> None:
    session = ehlo(StartTls=Reply(454, "4.7.0", "TLS not available"))
    found = session.feed(b"STARTTLS\r\nNOOP\r\n")
    assert found == [events.StartTls(), events.Noop()]
    with pytest.raises(RuntimeError):
        session.conn.start_tls()


# --- AUTH ------------------------------------------------------------------------------------


def test_auth_exchange() -> None:
    steps = iter([Reply(334, None, "UGFzc3dvcmQ6"), Reply(235, "2.7.0", "Authenticated")])
    session = ehlo(Auth=Reply(334, None, "VXNlcm5hbWU6"), AuthData=lambda e: next(steps))
    found = session.feed(b"AUTH LOGIN\r\ndXNlcg==\r\nMAIL FROM:<a@b.test>\r\nNOOP\r\n")
    assert found == [
        events.Auth("LOGIN", None),
        events.AuthData("dXNlcg=="),
        events.AuthData("MAIL FROM:<a@b.test>"),  # SASL data, never a command
        events.Noop(),
    ]
    assert session.replies()[-4:] == [
        "334 VXNlcm5hbWU6",
        "334 UGFzc3dvcmQ6",
        "235 2.7.0 Authenticated",
        "250 2.0.0 Ok",
    ]


def test_auth_cancel() -> None:
    session = ehlo(AuthData=Reply(501, "5.7.0", "Cancelled"))
    assert session.feed(b"AUTH PLAIN\r\n*\r\n") == [
        events.Auth("PLAIN", None),
        events.AuthData("*"),
    ]
    assert session.conn.state is State.GREETED


def test_auth_line_limit() -> None:
    session = ehlo()
    session.feed(b"AUTH PLAIN\r\n")
    longest = b"A" * 12286 + b"\r\n"
    assert session.feed(longest) == [events.AuthData("A" * 12286)]
    session.feed(b"AUTH PLAIN\r\n")
    found = session.feed(b"A" + longest + b"NOOP\r\n")
    assert found == [
        events.CommandError(replies.AUTH_LINE_TOO_LONG),
        events.Noop(),
    ]


def test_bad_auth_line_ends_the_exchange() -> None:
    session = ehlo()
    session.feed(b"AUTH PLAIN\r\n")
    assert errors(session.feed(b"abc\n")) == [replies.NOT_CRLF]
    assert session.conn.state is State.GREETED


# --- the server's side of the contract -----------------------------------------------------------


def test_send_without_pending_event() -> None:
    conn = ServerConnection()
    conn.send(Reply(220, None, "hello"))
    with pytest.raises(RuntimeError):
        conn.send(Reply(220, None, "hello again"))
    with pytest.raises(RuntimeError):
        conn.send(Reply(250, "2.0.0", "Ok"))
    assert conn.send(Reply(421, "4.3.2", "Shutting down")) == b"421 Shutting down\r\n"
    assert conn.closed
    assert conn.next_event() is PAUSED


def test_554_greeting() -> None:
    conn = ServerConnection()
    assert conn.send(Reply(554, None, "No service")) == b"554 No service\r\n"


def test_421_answer_closes() -> None:
    session = ehlo(Noop=Reply(421, "4.4.2", "Timeout"))
    session.feed(b"NOOP\r\nNOOP\r\n")
    assert session.conn.closed
    assert session.replies()[-1] == "421 4.4.2 Timeout"
    assert len(session.events) == 2  # the second NOOP is never read


def test_reply_class_must_fit_the_event() -> None:
    session = in_rcpt()
    session.conn.receive_data(b"DATA\r\n")
    assert session.conn.next_event() == events.Data()
    with pytest.raises(ValueError, match="250"):
        session.conn.send(Reply(250, "2.0.0", "Ok"))
    assert session.conn.next_event() is PAUSED  # still waiting for a valid answer
    session.conn.send(Reply(354, None, "go"))
    assert session.conn.state is State.DATA


@pytest.mark.parametrize(
    ("code", "status", "text"),
    [
        (250, None, "a\r\nb"),
        (250, None, ("a", "b\n")),
        (250, None, "a\rb"),
        (250, None, ()),
        (199, None, "x"),
        (600, None, "x"),
        (250, "5.0.0", "x"),
        (550, "5.0", "x"),
        (354, "3.0.0", "x"),
    ],
)
def test_invalid_replies(code: int, status: str | None, text: str | tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        Reply(code, status, text)


def test_eof_and_after() -> None:
    session = ehlo()
    assert session.feed(b"NOOP\r\nNOO") == [events.Noop()]
    assert session.feed(b"") == [events.ConnectionClosed()]
    assert session.conn.closed
    with pytest.raises(RuntimeError):
        session.conn.receive_data(b"more")


def test_data_after_quit_is_ignored() -> None:
    session = ehlo()
    session.feed(b"QUIT\r\n")
    assert session.feed(b"NOOP\r\n") == []
    assert session.conn.closed
