"""The IMAP server protocol engine: bytes in, events out, responses out as bytes (sans-I/O).

Modelled on h11 like the SMTP and POP3 cores: the server feeds received bytes with
`receive_data`, pulls one event at a time with `next_event`, and answers with `send`, which
returns the bytes to write. A command stays pending until its tagged completion (`Ok`,
`No`, `Bad`) is sent, and until then the connection is PAUSED, so pipelined commands are
handled strictly in order, each parsed in the mode and state its predecessors left (an
ENABLE IMAP4rev2 changes how the next command's mailbox names are read). Untagged
responses may be sent at any time after the greeting. The continuation requests for
synchronising literals are the core's own business: they collect in `data_to_send()`,
which the server writes before it waits for more input.

IDLE and AUTHENTICATE continue with a `Continuation`; the next line then arrives as `Done`
or `AuthenticateData` (or a CommandError), still answered on behalf of the command that
began the exchange, whose row of the state table applies. LOGOUT takes `Bye` and then
`Ok`. After `Ok` to STARTTLS the connection waits for `start_tls()`, which discards every
plaintext octet received after the command (CVE-2011-0411, RFC 9051 §6.2.1). Faults in the
peer's input become `CommandError` events; faults in our own use of the API (a completion
with nothing pending, a second greeting, `Ok` to LOGOUT before `Bye`) raise, because they
are bugs here, not there.

ENABLE QRESYNC switches CONDSTORE on too (RFC 7162 §3.2.3). Until it is enabled, SELECT's
QRESYNC parameter and UID FETCH's VANISHED modifier are refused with BAD; once it is, an
EXPUNGE response is a bug (VANISHED replaces it, §3.2.10) and `send` raises.

Standards: RFC 9051 §2.2, §5.5, §6.1-§6.2, §7; RFC 2177 §3; RFC 5161 §3.1; RFC 6855 §3;
RFC 7162 §3.2.3, §3.2.5, §3.2.6, §3.2.10
"""

from __future__ import annotations

from dataclasses import dataclass

from postoffice.protocols._buffer import TOO_LONG
from postoffice.protocols.imap.commands import (
    parse_authenticate_data,
    parse_command,
    parse_done,
)
from postoffice.protocols.imap.events import (
    NEED_DATA,
    PAUSED,
    Command,
    CommandError,
    ConnectionClosed,
    Enable,
    Event,
    Examine,
    Fetch,
    Logout,
    Select,
    Signal,
    StartTls,
)
from postoffice.protocols.imap.framing import CommandReader, Limits
from postoffice.protocols.imap.lexer import ParseLimits
from postoffice.protocols.imap.responses import (
    ALREADY_TLS,
    AUTH_LINE_TOO_LONG,
    LINE_TOO_LONG,
    QRESYNC_NOT_ENABLED,
    WRONG_STATE,
    Bad,
    Bye,
    Continuation,
    Enabled,
    Expunge,
    No,
    Ok,
    Preauth,
    Response,
    UntaggedOk,
)
from postoffice.protocols.imap.states import TRANSITIONS, State, Transition

# RFC 9051 §5.1, RFC 6855 §3: with either enabled, mailbox names and strings are UTF-8
UTF8_MODES = frozenset({"IMAP4REV2", "UTF8=ACCEPT"})


@dataclass(slots=True)
class _Pending:
    command: Command
    transition: Transition
    continued: bool = False  # a "+" went out: the client's next line is due, not our answer


class ServerConnection:
    """One IMAP session, server side; `tls` says the connection is TLS from the start.

    `literal_plus` False advertises LITERAL- instead of LITERAL+ (RFC 7888 §4):
    non-synchronising literals are then refused above 4096 octets.
    """

    def __init__(
        self, limits: Limits | None = None, *, tls: bool = False, literal_plus: bool = True
    ) -> None:
        self.limits = limits if limits is not None else Limits()
        self.state = State.NOT_AUTHENTICATED
        self.tls = tls
        self.enabled: frozenset[str] = frozenset()  # what `Enabled` responses switched on
        self._reader = CommandReader(self.limits, literal_plus=literal_plus)
        self._parse_limits = ParseLimits(self.limits.depth, self.limits.items)
        self._eof = False
        self._greeted = False
        self._bye_sent = False
        self._pending: _Pending | None = None

    @property
    def utf8(self) -> bool:
        """IMAP4rev2 or UTF8=ACCEPT is enabled: names and strings are UTF-8."""
        return not self.enabled.isdisjoint(UTF8_MODES)

    @property
    def closed(self) -> bool:
        return self.state is State.LOGOUT and self._pending is None

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; b"" means it closed its side."""
        if self._eof:
            raise RuntimeError("receive_data() after EOF")
        if not data:
            self._eof = True
        elif self.state is not State.LOGOUT:
            self._reader.feed(data)

    def data_to_send(self) -> bytes:
        """Continuation requests the core made for synchronising literals; write them before
        waiting for more input."""
        data = bytes(self._reader.outbox)
        self._reader.outbox.clear()
        return data

    def next_event(self) -> Event | Signal:
        """The next event, NEED_DATA, or PAUSED while an event awaits its answer."""
        if self.state in (State.STARTTLS, State.LOGOUT):
            return PAUSED
        pending = self._pending
        if pending is not None:
            return self._exchange_line(pending) if pending.continued else PAUSED
        # RFC 7889: only an authenticated client may send APPEND's large literal
        authenticated = self.state in (State.AUTHENTICATED, State.SELECTED)
        outcome = self._reader.next_command(append=authenticated)
        if outcome is None:
            return self._need_data()
        if isinstance(outcome, CommandError):
            command: Command = outcome
        else:
            command = parse_command(outcome, utf8=self.utf8, limits=self._parse_limits)
        command, transition = self._admit(command)
        self._pending = _Pending(command, transition)
        return command

    def send(self, response: Response) -> bytes:
        """Serialise `response`: the greeting, untagged data, a "+" or a completion."""
        if not self._greeted:
            return self._greet(response)
        if self.closed:
            raise RuntimeError("the session is over")
        match response:
            case Ok() | No() | Bad():
                return self._complete(response)
            case Continuation():
                pending = self._pending
                if pending is None or pending.continued or self.state is State.IDLE:
                    raise RuntimeError("no IDLE or AUTHENTICATE awaits a continuation")
                self.state = pending.transition.after(response)
                pending.continued = True
            case Bye():
                self._bye_sent = True
                self.state = State.LOGOUT
                if self._pending is not None and not isinstance(self._pending.command, Logout):
                    self._pending = None  # the session ends under it
            case Enabled(names):
                if self._pending is None or not isinstance(self._pending.command, Enable):
                    raise RuntimeError("ENABLED answers only ENABLE")  # RFC 5161 §3.2
                self.enabled |= {name.upper() for name in names}
                if "QRESYNC" in self.enabled:  # RFC 7162 §3.2.3: it implies CONDSTORE
                    self.enabled |= {"CONDSTORE"}
            case Expunge() if "QRESYNC" in self.enabled:
                raise RuntimeError("with QRESYNC enabled, VANISHED replaces EXPUNGE")
            case Preauth():
                raise RuntimeError("PREAUTH is only a greeting")
        return response.to_bytes(self.utf8)

    def start_tls(self) -> int:
        """After OK to STARTTLS: drop every buffered plaintext octet, return how many.

        Nothing the client sent before the handshake may be read as if it came through TLS
        (the command injection of CVE-2011-0411); RFC 9051 §6.2.1: the session stays
        NOT AUTHENTICATED.
        """
        if self.state is not State.STARTTLS:
            raise RuntimeError("start_tls() needs an OK to STARTTLS first")
        self.tls = True
        self.state = State.NOT_AUTHENTICATED
        return self._reader.clear()

    def _greet(self, response: Response) -> bytes:
        if not isinstance(response, UntaggedOk | Preauth | Bye):
            raise RuntimeError("the first response is the greeting: OK, PREAUTH or BYE")
        self._greeted = True
        if isinstance(response, Preauth):  # RFC 9051 §7.1.4
            self.state = State.AUTHENTICATED
        elif isinstance(response, Bye):
            self.state = State.LOGOUT
        return response.to_bytes(self.utf8)

    def _complete(self, response: Ok | No | Bad) -> bytes:
        pending = self._pending
        if pending is None or pending.continued:
            raise RuntimeError("no command awaits its completion")
        command = pending.command
        if isinstance(command, Logout) and isinstance(response, Ok) and not self._bye_sent:
            raise RuntimeError("LOGOUT takes Bye before Ok")  # RFC 9051 §6.1.3
        if self.state is not State.LOGOUT:
            self.state = pending.transition.after(response)
        self._pending = None
        return response.tagged(command.tag or "*")  # RFC 9051 §7.1.3: "*" when none was read

    def _exchange_line(self, pending: _Pending) -> Event | Signal:
        """The client's line inside AUTHENTICATE or IDLE, answered on the command's behalf."""
        idle = self.state is State.IDLE
        line = self._reader.next_line(self.limits.line if idle else self.limits.auth_line)
        if line is None:
            return self._need_data()
        tag = pending.command.tag or "*"  # never "*": only IDLE and AUTHENTICATE continue
        if line is TOO_LONG:
            event: Command = CommandError(tag, LINE_TOO_LONG if idle else AUTH_LINE_TOO_LONG)
        else:
            event = parse_done(line, tag) if idle else parse_authenticate_data(line, tag)
        pending.continued = False
        return event

    def _need_data(self) -> Event | Signal:
        if not self._eof:
            return NEED_DATA
        self.state = State.LOGOUT
        self._pending = None
        return ConnectionClosed()

    def _admit(self, event: Command) -> tuple[Command, Transition]:
        """Pair a parsed command with its transition, or refuse it in this state."""
        stay = Transition.to(self.state)
        if isinstance(event, CommandError):
            return event, stay
        transition = TRANSITIONS.get((self.state, type(event)))
        if transition is None:
            return CommandError(event.tag, WRONG_STATE), stay
        if isinstance(event, StartTls) and self.tls:
            return CommandError(event.tag, ALREADY_TLS), stay  # RFC 9051 §6.2.1
        if "QRESYNC" not in self.enabled and (
            (isinstance(event, Select | Examine) and event.qresync is not None)
            or (isinstance(event, Fetch) and event.request.vanished)
        ):
            return CommandError(event.tag, QRESYNC_NOT_ENABLED), stay
        return event, transition
