"""The SMTP server protocol engine: bytes in, events out, replies out as bytes (sans-I/O).

Modelled on h11: the server feeds received bytes with `receive_data`, pulls one event at a
time with `next_event`, and answers it with `send(reply)`. Until that reply is sent the
connection is PAUSED, so pipelined commands (RFC 2920) are handled strictly in order, each
against the state its predecessors' replies produced; the reply code, looked up in the
transition table of states.py, is what moves the state. Commands are framed and parsed by
commands.py, message bodies read by data.py; this module only routes between them, keeps
the transaction (accepted MAIL, recipient count, BDAT body) and applies the limits. Faults
in the peer's input become `CommandError` events; faults in our own use of the API
(replying with nothing pending, CR/LF in reply text, a reply code that cannot answer the
event) raise, because they are bugs here, not there.

Standards: RFC 5321 §3.3, §3.8, §4.1.4, §4.5.3.1; RFC 2034 §3; RFC 2920; RFC 3030 §2;
RFC 3207 §4.2; RFC 4954 §4
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from postoffice.protocols._buffer import TOO_LONG, LineBuffer
from postoffice.protocols.smtp.commands import (
    AUTH_LINE,
    PARAMETER_ALLOWANCE,
    Bdat,
    Context,
    parse_auth_data,
    parse_command,
)
from postoffice.protocols.smtp.data import Body, ChunkReader, DataReader
from postoffice.protocols.smtp.events import (
    NEED_DATA,
    PAUSED,
    AuthData,
    BdatChunk,
    CommandError,
    ConnectionClosed,
    Data,
    EndOfData,
    Event,
    Helo,
    MailFrom,
    RcptTo,
    Signal,
)
from postoffice.protocols.smtp.replies import (
    AUTH_LINE_TOO_LONG,
    BAD_SEQUENCE,
    LINE_TOO_LONG,
    MESSAGE_TOO_BIG,
    TOO_MANY_RECIPIENTS,
    Reply,
)
from postoffice.protocols.smtp.states import TRANSITIONS, State, Transition

_TRANSACTION = (State.MAIL, State.RCPT, State.DATA, State.BDAT)
_GREETINGS = (220, 554)  # RFC 5321 §3.1: service ready, or no service here

Step = tuple[Event, Transition]


@dataclass(frozen=True, slots=True)
class Limits:
    command_line: int = 512  # RFC 5321 §4.5.3.1.4, CRLF included
    text_line: int = 1000  # RFC 5321 §4.5.3.1.6, CRLF included
    message_size: int = 26_214_400  # announced as SIZE (RFC 1870)
    recipients: int = 100  # RFC 5321 §4.5.3.1.8: at least 100 must be accepted


class ServerConnection:
    """One SMTP session, server side."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits if limits is not None else Limits()
        self.state = State.CONNECTED
        self.extended = False  # EHLO accepted: replies carry enhanced status codes
        self._buffer = LineBuffer()
        self._eof = False
        self._greeted = False
        self._pending: Step | None = None
        self._reader: DataReader | ChunkReader | None = None  # a message body being read
        self._mail: MailFrom | None = None  # the open transaction's accepted MAIL
        self._recipients = 0  # and how many RCPT it has had accepted
        self._body: Body | None = None  # and the BDAT chunks kept so far

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; b"" means it closed its side."""
        if self._eof:
            raise RuntimeError("receive_data() after EOF")
        if not data:
            self._eof = True
        elif not self.closed:
            self._buffer.feed(data)

    def next_event(self) -> Event | Signal:
        """The next event, NEED_DATA, or PAUSED while an event awaits its reply."""
        if self._pending is not None or self.state in (State.STARTTLS, State.CLOSED):
            return PAUSED
        step = self._read()
        if step is NEED_DATA:
            if not self._eof:
                return NEED_DATA
            self._enter(State.CLOSED)
            return ConnectionClosed()
        self._pending = step
        return step[0]

    def send(self, reply: Reply) -> bytes:
        """Serialise `reply`, the answer to the pending event (or the greeting, or a 421)."""
        if self._pending is None:
            return self._send_unsolicited(reply)
        event, transition = self._pending
        # RFC 5321 §3.8: 421 closes whatever it answers
        target = State.CLOSED if reply.code == 421 else transition.after(reply.code)
        self._pending = None
        # RFC 2034 §3: no enhanced code in the reply to HELO/EHLO
        wire = reply.to_bytes(enhanced=self.extended and not isinstance(event, Helo))
        if reply.code < 300:
            self._accept(event)
        self._enter(target)
        return wire

    def start_tls(self) -> int:
        """After 220 to STARTTLS: drop every buffered plaintext byte, return how many.

        RFC 3207 §4.2: the session starts over, so nothing the client sent before the
        handshake may be read as if it came through TLS (CVE-2011-0411).
        """
        if self.state is not State.STARTTLS:
            raise RuntimeError("start_tls() needs a 220 reply to STARTTLS first")
        self.extended = False
        self._enter(State.CONNECTED)
        return self._buffer.clear()

    def _send_unsolicited(self, reply: Reply) -> bytes:
        if reply.code == 421:  # RFC 5321 §3.8: shutting down, timeout
            self._enter(State.CLOSED)
        elif reply.code not in _GREETINGS or self._greeted:
            raise RuntimeError(f"no event awaits a reply, cannot send {reply.code}")
        self._greeted = True
        return reply.to_bytes(enhanced=self.extended)

    def _accept(self, event: Event) -> None:
        """Record what a positive reply to `event` committed to."""
        if isinstance(event, Helo):
            self.extended = event.extended
        elif isinstance(event, MailFrom):
            self._mail, self._recipients = event, 0
        elif isinstance(event, RcptTo):
            self._recipients += 1

    def _enter(self, state: State) -> None:
        if state is State.DATA:
            self._reader = DataReader(self.limits.text_line, self.limits.message_size)
        if state not in _TRANSACTION:
            self._mail, self._recipients, self._body = None, 0, None
        self.state = state

    def _read(self) -> Step | Literal[Signal.NEED_DATA]:
        if self._reader is not None:
            return self._read_body(self._reader)
        if self.state is State.AUTH:
            return self._read_auth_line()
        line = self._buffer.next_line(self.limits.command_line + PARAMETER_ALLOWANCE)
        if line is None:
            return NEED_DATA
        if line is TOO_LONG:
            return self._admit(CommandError(LINE_TOO_LONG))
        parsed = parse_command(line, self._context())
        if isinstance(parsed, Bdat):
            self._reader = self._start_chunk(parsed)
            return self._read_body(self._reader)
        return self._admit(parsed)

    def _context(self) -> Context:
        return Context(
            extended=self.extended,
            smtputf8=self._mail is not None and self._mail.smtputf8,
            command_line=self.limits.command_line,
            message_size=self.limits.message_size,
        )

    def _admit(self, event: Event) -> Step:
        """Pair a parsed command with its transition, or refuse it out of sequence."""
        stay = Transition.to(self.state)
        if isinstance(event, CommandError):
            return event, stay
        transition = TRANSITIONS.get((self.state, type(event)))
        if transition is None:
            return CommandError(BAD_SEQUENCE), stay
        if isinstance(event, RcptTo) and self._recipients >= self.limits.recipients:
            return CommandError(TOO_MANY_RECIPIENTS), stay  # RFC 5321 §4.5.3.1.10
        if isinstance(event, Data) and self._mail is not None and self._mail.body == "BINARYMIME":
            return CommandError(BAD_SEQUENCE), stay  # RFC 3030 §3: BINARYMIME needs BDAT
        return event, transition

    def _read_auth_line(self) -> Step | Literal[Signal.NEED_DATA]:
        line = self._buffer.next_line(AUTH_LINE)
        if line is None:
            return NEED_DATA
        event = CommandError(AUTH_LINE_TOO_LONG) if line is TOO_LONG else parse_auth_data(line)
        if isinstance(event, AuthData):
            return event, TRANSITIONS[(State.AUTH, AuthData)]
        return event, Transition.to(State.GREETED)  # RFC 4954 §4: the exchange failed

    def _start_chunk(self, chunk: Bdat) -> ChunkReader:
        if self.state not in (State.RCPT, State.BDAT):
            return ChunkReader(chunk, None)  # RFC 3030 §2: read it anyway, then answer 503
        if self._body is None:
            self._body = Body(self.limits.message_size)
        self.state = State.BDAT  # the reply comes after the octets
        return ChunkReader(chunk, self._body)

    def _read_body(self, reader: DataReader | ChunkReader) -> Step | Literal[Signal.NEED_DATA]:
        if not reader.feed(self._buffer):
            return NEED_DATA
        self._reader = None
        failed = Transition.to(State.GREETED)  # a refused body ends the transaction
        if isinstance(reader, DataReader):
            message = reader.result()
            if isinstance(message, Reply):
                return CommandError(message), failed
            return EndOfData(message), TRANSITIONS[(State.DATA, EndOfData)]
        if reader.body is None:
            return CommandError(BAD_SEQUENCE), Transition.to(self.state)
        if reader.body.too_big:
            return CommandError(MESSAGE_TOO_BIG), failed  # RFC 3030 §2: the transaction failed
        if reader.chunk.last:
            return EndOfData(reader.body.getvalue()), TRANSITIONS[(State.BDAT, EndOfData)]
        return BdatChunk(reader.chunk.size), TRANSITIONS[(State.BDAT, BdatChunk)]
