"""The POP3 server protocol engine: bytes in, events out, replies out as bytes (sans-I/O).

Modelled on h11 like the SMTP core: the server feeds received bytes with `receive_data`,
pulls one event at a time with `next_event`, and answers it with `send(reply)`. Until the
answer is complete the connection is PAUSED, so pipelined commands (RFC 2449 §6.6) are
handled strictly in order, each against the state its predecessors' answers produced; the
kind of answer, looked up in the transition table of states.py, is what moves the state.
RETR and TOP are answered in two steps: `send_multiline_start(Ok(...))` gives the status
line, then `message_encoder()` gives a `MessageEncoder` through which the server streams the
stored message; its `finish()` writes the terminating line and completes the event.
Commands are parsed by commands.py; this module only frames lines, routes and applies the
rules the table cannot hold. Faults in the peer's input become `CommandError` events; faults
in our own use of the API (answering with nothing pending, a single-line +OK where the
command needs a multi-line one, a challenge outside AUTH) raise, because they are bugs here,
not there.

Standards: RFC 1939 §3-§7; RFC 2449 §4, §6.6; RFC 2595 §4; RFC 5034 §4
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from postoffice.protocols._buffer import TOO_LONG, LineBuffer
from postoffice.protocols._dotstuff import DotEncoder, stuff
from postoffice.protocols.pop3.commands import parse_auth_data, parse_command
from postoffice.protocols.pop3.events import (
    NEED_DATA,
    PAUSED,
    Auth,
    Capa,
    CommandError,
    ConnectionClosed,
    Event,
    List,
    Pass,
    Retr,
    Signal,
    Stls,
    Top,
    Uidl,
)
from postoffice.protocols.pop3.replies import (
    ALREADY_TLS,
    AUTH_LINE_TOO_LONG,
    LINE_TOO_LONG,
    PASS_WITHOUT_USER,
    WRONG_STATE,
    Err,
    Ok,
    OkLines,
    Reply,
)
from postoffice.protocols.pop3.states import TRANSITIONS, State, Transition

Step = tuple[Event, Transition]


@dataclass(frozen=True, slots=True)
class Limits:
    line: int = 255  # RFC 2449 §4: a command line, CRLF included
    # A SASL response line, and AUTH with an initial response. RFC 5034 §4 keeps AUTH within
    # the 255 octets and bounds no response line; 12288 is RFC 4954 §4's figure for SMTP.
    auth_line: int = 12288


class _Form(enum.Enum):
    """The shape of a positive answer."""

    SINGLE = "a single +OK line (send)"
    LINES = "an OkLines multi-line answer (send)"
    STREAM = "a streamed multi-line answer (send_multiline_start)"


def _form(event: Event) -> _Form:
    """How +OK answers `event` (RFC 1939 §5, §7; RFC 2449 §5)."""
    kind = type(event)  # a type test per case: this runs for every command
    if kind is Retr or kind is Top:
        return _Form.STREAM
    if kind is Capa or (
        (kind is List or kind is Uidl) and event.msg is None  # type: ignore[union-attr]
    ):
        return _Form.LINES
    if kind is Auth and event.mechanism is None:  # type: ignore[union-attr]
        return _Form.LINES
    return _Form.SINGLE


class MessageEncoder(DotEncoder):
    """Byte-stuffs a stored message for RETR/TOP; `finish()` completes the pending event."""

    __slots__ = ("_on_finish",)

    def __init__(self, on_finish: Callable[[], None]) -> None:
        super().__init__()
        self._on_finish: Callable[[], None] | None = on_finish

    def feed(self, chunk: bytes) -> bytes:
        if self._on_finish is None:
            raise RuntimeError("feed() after finish()")
        return super().feed(chunk)

    def finish(self) -> bytes:
        if self._on_finish is None:
            raise RuntimeError("finish() called twice")
        tail = super().finish()
        on_finish, self._on_finish = self._on_finish, None
        on_finish()
        return tail


class ServerConnection:
    """One POP3 session, server side; `tls` says the connection is TLS from the start."""

    def __init__(self, limits: Limits | None = None, *, tls: bool = False) -> None:
        self.limits = limits if limits is not None else Limits()
        self.state = State.AUTHORIZATION
        self.tls = tls  # RFC 2595 §4: STLS is refused once TLS is active
        self._buffer = LineBuffer()
        self._eof = False
        self._greeted = False
        self._pending: Step | None = None
        self._streaming = False  # the +OK of RETR/TOP went out, the message has not
        self._encoder: MessageEncoder | None = None

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
        """The next event, NEED_DATA, or PAUSED while an event awaits its answer."""
        if self._pending is not None or self.state in (State.STLS, State.CLOSED):
            return PAUSED
        step = self._read()
        if step is NEED_DATA:
            if not self._eof:
                return NEED_DATA
            self.state = State.CLOSED
            return ConnectionClosed()
        event, transition = step
        self._pending = step
        if transition.during is not None:
            self.state = transition.during  # RFC 1939 §6: QUIT enters UPDATE
        return event

    def send(self, reply: Reply) -> bytes:
        """Serialise `reply`, the answer to the pending event (or the greeting, or an -ERR
        that ends the session)."""
        if self._pending is None:
            return self._send_unsolicited(reply)
        if self._streaming:
            raise RuntimeError("a message is being streamed: finish its encoder first")
        given = _Form.LINES if isinstance(reply, OkLines) else _Form.SINGLE
        self._answer(self._pending, reply, given)
        self._pending = None
        return reply.to_bytes()

    def send_multiline_start(self, reply: Ok) -> bytes:
        """The +OK line of a RETR or TOP answer; the message follows through
        `message_encoder()`. A refusal is sent with `send(Err(...))` instead."""
        if self._pending is None or self._streaming:
            raise RuntimeError("no RETR or TOP awaits its answer")
        if not isinstance(reply, Ok):
            raise ValueError("send_multiline_start() takes Ok; send an Err with send()")
        self._answer(self._pending, reply, _Form.STREAM)
        self._streaming = True
        return reply.to_bytes()

    def send_message(self, reply: Ok, content: bytes) -> bytes:
        """The whole answer to a RETR or TOP whose message (for TOP, the part to send) is in
        memory: the +OK line, the byte-stuffed message and the terminating line, for one
        write. A message streamed in chunks goes through `message_encoder()` instead."""
        return self.send_stuffed(reply, stuff(content))

    def send_stuffed(self, reply: Ok, block: bytes) -> bytes:
        """`send_message` for a message stuffed ahead: `block` is what `stuff` made of it,
        its terminating line included."""
        status = self.send_multiline_start(reply)
        self._end_multiline()
        return status + block

    def message_encoder(self) -> MessageEncoder:
        """The encoder for the message whose +OK line was just sent (RFC 1939 §3)."""
        if not self._streaming or self._encoder is not None:
            raise RuntimeError("message_encoder() needs send_multiline_start() first, once")
        self._encoder = MessageEncoder(self._end_multiline)
        return self._encoder

    def start_tls(self) -> int:
        """After +OK to STLS: drop every buffered plaintext byte, return how many.

        Nothing the client sent before the handshake may be read as if it came through TLS
        (the STARTTLS command injection of CVE-2011-0411; RFC 3207 §4.2 states it for SMTP).
        RFC 2595 §4: the session stays in AUTHORIZATION.
        """
        if self.state is not State.STLS:
            raise RuntimeError("start_tls() needs a +OK answer to STLS first")
        self.tls = True
        self.state = State.AUTHORIZATION
        return self._buffer.clear()

    def _answer(self, pending: Step, reply: Reply, given: _Form) -> None:
        """Check that `reply` may answer the pending event, and move to the state it leads to."""
        event, transition = pending
        if isinstance(reply, Ok | OkLines) and given is not _form(event):
            raise ValueError(f"{type(event).__name__} takes {_form(event).value}")
        self.state = transition.after(reply)

    def _end_multiline(self) -> None:
        self._pending, self._streaming, self._encoder = None, False, None

    def _send_unsolicited(self, reply: Reply) -> bytes:
        if self.closed:
            raise RuntimeError("the session is closed")
        if isinstance(reply, Err):  # a refused greeting or a shutdown: the session ends
            self.state = State.CLOSED
        elif not isinstance(reply, Ok) or self._greeted:
            raise RuntimeError(f"no event awaits an answer, cannot send {reply!r}")
        self._greeted = True
        return reply.to_bytes()

    def _read(self) -> Step | Literal[Signal.NEED_DATA]:
        if self.state is State.AUTH:  # RFC 5034 §4: a line here is a SASL response
            line = self._buffer.next_line(self.limits.auth_line)
            if line is None:
                return NEED_DATA
            return self._admit(
                CommandError(AUTH_LINE_TOO_LONG) if line is TOO_LONG else parse_auth_data(line)
            )
        line = self._buffer.next_line(max(self.limits.line, self.limits.auth_line))
        if line is None:
            return NEED_DATA
        if line is TOO_LONG:
            return self._admit(CommandError(LINE_TOO_LONG))
        return self._admit(parse_command(line, self.limits.line))

    def _admit(self, event: Event) -> Step:
        """Pair a parsed line with its transition, or refuse it out of sequence."""
        state = self.state
        transition = TRANSITIONS.get((state, type(event)))
        if transition is None or isinstance(event, CommandError):
            if not isinstance(event, CommandError):
                wrong_pass = isinstance(event, Pass) and state is State.AUTHORIZATION
                event = CommandError(PASS_WITHOUT_USER if wrong_pass else WRONG_STATE)
            return event, _REFUSED[state]
        if type(event) is Stls and self.tls:
            return CommandError(ALREADY_TLS), _REFUSED[state]  # RFC 2595 §4: not after TLS
        if type(event) is Auth and event.mechanism is None:  # type: ignore[union-attr]
            return event, Transition.to(state)  # only lists the mechanisms
        return event, transition


# RFC 5034 §4: an unusable line inside a SASL exchange ends the exchange
_REFUSED = {
    state: Transition.refused(State.AUTHORIZATION if state is State.AUTH else state)
    for state in State
}
