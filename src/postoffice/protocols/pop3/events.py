"""POP3 server events: what the client asked for, as typed values the session answers.

Every event is a frozen slots dataclass named after its command. `ServerConnection.next_event`
returns one at a time and then pauses until the session has answered it; the kind of answer
(+OK, a SASL challenge, -ERR) drives the state (see states.py). Two signals are not events:
`NEED_DATA` (feed more bytes) and `PAUSED` (an event still waits for its answer, or a TLS
handshake is due). Message numbers are checked for syntax only (a positive integer that fits
`MAX_NUMBER`); whether a message exists or is marked deleted is the session's business, as it
holds the maildrop listing. `CommandError` carries a reply the core already chose;
`ConnectionClosed` needs no reply.

Standards: RFC 1939 §4-§7; RFC 2449 §5; RFC 2595 §4; RFC 5034 §4
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from postoffice.protocols.pop3.replies import Err

MAX_NUMBER = 2**31 - 1  # no maildrop holds more messages, no TOP asks for more lines


class Signal(enum.Enum):
    NEED_DATA = "need data"
    PAUSED = "paused"


NEED_DATA: Literal[Signal.NEED_DATA] = Signal.NEED_DATA
PAUSED: Literal[Signal.PAUSED] = Signal.PAUSED


@dataclass(frozen=True, slots=True)
class User:
    """USER name (RFC 1939 §7); PASS may follow only a +OK to it."""

    name: str


@dataclass(frozen=True, slots=True)
class Pass:
    """PASS string (RFC 1939 §7): the whole rest of the line, spaces included."""

    password: str


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH (RFC 5034 §4); the mechanism upper-cased, the initial response as sent ("=" empty).

    `Auth(None, None)` is AUTH alone, which RFC 5034 leaves undefined; old RFC 1734 clients
    send it to learn the mechanisms, so it is answered with an `OkLines` list of them.
    """

    mechanism: str | None
    initial_response: str | None


@dataclass(frozen=True, slots=True)
class AuthData:
    """One SASL response line after a `Continue` (RFC 5034 §4); "*" cancels the exchange."""

    line: str


@dataclass(frozen=True, slots=True)
class Capa:
    """CAPA (RFC 2449 §5): answer with `capabilities(...)`."""


@dataclass(frozen=True, slots=True)
class Stls:
    """STLS (RFC 2595 §4); after sending +OK, call `ServerConnection.start_tls()`."""


@dataclass(frozen=True, slots=True)
class Stat:
    """STAT (RFC 1939 §5): ``+OK <count> <octets>`` of the messages not marked deleted."""


@dataclass(frozen=True, slots=True)
class List:
    """LIST [msg] (RFC 1939 §5); without `msg` the answer is an `OkLines` scan listing."""

    msg: int | None


@dataclass(frozen=True, slots=True)
class Retr:
    """RETR msg (RFC 1939 §5): answer with `send_multiline_start` and the message encoder."""

    msg: int


@dataclass(frozen=True, slots=True)
class Dele:
    msg: int


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    """QUIT: in TRANSACTION the state is UPDATE until the answer (RFC 1939 §6)."""


@dataclass(frozen=True, slots=True)
class Top:
    """TOP msg n (RFC 1939 §7): the headers and `lines` body lines, streamed like RETR."""

    msg: int
    lines: int


@dataclass(frozen=True, slots=True)
class Uidl:
    """UIDL [msg] (RFC 1939 §7); without `msg` the answer is an `OkLines` listing."""

    msg: int | None


@dataclass(frozen=True, slots=True)
class CommandError:
    """The core refused the input; send `reply` as it is."""

    reply: Err


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The client closed its side (EOF); no reply is due."""


Event = (
    User
    | Pass
    | Auth
    | AuthData
    | Capa
    | Stls
    | Stat
    | List
    | Retr
    | Dele
    | Noop
    | Rset
    | Quit
    | Top
    | Uidl
    | CommandError
    | ConnectionClosed
)
