"""SMTP server events: what the client did, as typed values the session answers with a Reply.

Every event is a frozen slots dataclass named after its verb. `ServerConnection.next_event`
returns one at a time and then pauses until the session has sent the reply for it; the reply
code drives the state (see states.py). Two signals are not events: `NEED_DATA` (feed more
bytes) and `PAUSED` (an event still waits for its reply, or a TLS handshake is due).
`CommandError` carries a reply the core already chose; `ConnectionClosed` needs no reply.

Standards: RFC 5321 §4.1.1, RFC 1870, RFC 3030, RFC 3461 §4, RFC 4954 §4-5, RFC 6152, RFC 6531
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from postoffice.mail.address import Address
from postoffice.protocols.smtp.replies import Reply


class Signal(enum.Enum):
    NEED_DATA = "need data"
    PAUSED = "paused"


NEED_DATA: Literal[Signal.NEED_DATA] = Signal.NEED_DATA
PAUSED: Literal[Signal.PAUSED] = Signal.PAUSED


@dataclass(frozen=True, slots=True)
class Helo:
    """HELO or EHLO (`extended`); the argument as sent, not verified (RFC 5321 §4.1.4)."""

    domain: str
    extended: bool


@dataclass(frozen=True, slots=True)
class MailFrom:
    """MAIL FROM; `sender` None is the null reverse-path `<>`.

    `size`, `body` (7BIT, 8BITMIME or BINARYMIME) and `smtputf8` are the parameters the core
    validated; `params` holds the other recognised ones (AUTH, RET, ENVID) as sent.
    """

    sender: Address | None
    size: int | None
    body: str | None
    smtputf8: bool
    params: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class RcptTo:
    """RCPT TO; `<Postmaster>` without a domain is `Address("postmaster", "")`.

    `params` holds NOTIFY and ORCPT (RFC 3461 §4) as sent.
    """

    recipient: Address
    params: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class Data:
    """DATA with at least one accepted recipient; answer 354 to receive the message."""


@dataclass(frozen=True, slots=True)
class BdatChunk:
    """A non-LAST BDAT chunk of `size` octets was received and kept (RFC 3030 §2)."""

    size: int


@dataclass(frozen=True, slots=True)
class EndOfData:
    """The whole message: dot-unstuffed with CRLF line ends (DATA), or all BDAT chunks."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Vrfy:
    argument: str


@dataclass(frozen=True, slots=True)
class Expn:
    argument: str


@dataclass(frozen=True, slots=True)
class Help:
    argument: str  # "" when HELP came alone


@dataclass(frozen=True, slots=True)
class StartTls:
    """STARTTLS (RFC 3207); after sending 220, call `ServerConnection.start_tls()`."""


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH (RFC 4954 §4); the mechanism upper-cased, the initial response as sent ("=" empty)."""

    mechanism: str
    initial_response: str | None


@dataclass(frozen=True, slots=True)
class AuthData:
    """One SASL response line after a 334 (RFC 4954 §4); "*" cancels the exchange."""

    line: str


@dataclass(frozen=True, slots=True)
class CommandError:
    """The core refused the input; send `reply` as it is."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The client closed its side (EOF); no reply is due."""


Event = (
    Helo
    | MailFrom
    | RcptTo
    | Data
    | BdatChunk
    | EndOfData
    | Rset
    | Noop
    | Quit
    | Vrfy
    | Expn
    | Help
    | StartTls
    | Auth
    | AuthData
    | CommandError
    | ConnectionClosed
)
