"""IMAP server events: each command a client sends, as a typed value carrying its tag.

Every event is a frozen slots dataclass named after its command, with the tag first.
`ServerConnection.next_event` returns one at a time and then pauses until the session has
completed it with a tagged `Ok`, `No` or `Bad` (untagged data may go out before); IDLE and
AUTHENTICATE continue with `+` lines, after which the next line arrives as `Done` or
`AuthenticateData`. The UID forms are the plain events with `uid=True` (UID EXPUNGE is
`Expunge` with a UID set). Two signals are not events: `NEED_DATA` and `PAUSED`.
`CommandError` carries the response the core chose (its tag is None when none could be
read, and the response then goes out untagged); `ConnectionClosed` needs no answer.
Mailbox names are decoded (modified UTF-7 or UTF-8, as the session's mode says), INBOX is
spelled "INBOX"; flags are in their canonical case; everything else is as the client sent.

Standards: RFC 9051 §6 (commands); RFC 3501 §6 (LSUB, CHECK); RFC 2177 (IDLE); RFC 2971
(ID); RFC 4315 §2.1 (UID EXPUNGE); RFC 4959 (SASL-IR); RFC 5161 (ENABLE); RFC 5258,
RFC 5819, RFC 6154 (LIST options, CREATE USE); RFC 6851 (MOVE); RFC 7162 §3.1.2, §3.2.5
(CONDSTORE, QRESYNC select parameters); RFC 3516 (BINARY APPEND); RFC 3502 (MULTIAPPEND)
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Literal

from postoffice.protocols.imap.fetch import FetchRequest
from postoffice.protocols.imap.responses import Bad, Bye, No
from postoffice.protocols.imap.search import SearchProgram
from postoffice.protocols.imap.sequence import SequenceSet


class Signal(enum.Enum):
    NEED_DATA = "need data"
    PAUSED = "paused"


NEED_DATA: Literal[Signal.NEED_DATA] = Signal.NEED_DATA
PAUSED: Literal[Signal.PAUSED] = Signal.PAUSED


# -- any state (RFC 9051 §6.1) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capability:
    tag: str


@dataclass(frozen=True, slots=True)
class Noop:
    tag: str


@dataclass(frozen=True, slots=True)
class Logout:
    """LOGOUT: send `Bye`, then `Ok`; the session then ends (RFC 9051 §6.1.3)."""

    tag: str


@dataclass(frozen=True, slots=True)
class Id:
    """ID (RFC 2971 §3.1): the client's field/value pairs, or None for NIL."""

    tag: str
    fields: tuple[tuple[str, str | None], ...] | None


# -- not authenticated (RFC 9051 §6.2) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartTls:
    """STARTTLS: after `Ok`, call `ServerConnection.start_tls()` (RFC 9051 §6.2.1)."""

    tag: str


@dataclass(frozen=True, slots=True)
class Authenticate:
    """AUTHENTICATE mechanism [initial-response] (RFC 9051 §6.2.2, RFC 4959 SASL-IR).

    `mechanism` is upper-cased; `initial_response` is the base64 text as sent ("=" is an
    empty response), ready for `sasl.ServerExchange.start`.
    """

    tag: str
    mechanism: str
    initial_response: str | None


@dataclass(frozen=True, slots=True)
class AuthenticateData:
    """One SASL response line after a `Continuation`; "*" cancels (RFC 9051 §6.2.2)."""

    tag: str
    line: str


@dataclass(frozen=True, slots=True)
class Login:
    tag: str
    user: str
    password: str


# -- authenticated (RFC 9051 §6.3) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enable:
    """ENABLE (RFC 5161): capability names upper-cased; answer with `Enabled` then `Ok`."""

    tag: str
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Qresync:
    """SELECT's QRESYNC parameter (RFC 7162 §3.2.5)."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_sequence: SequenceSet | None = None  # seq-match-data: message numbers ...
    known_sequence_uids: SequenceSet | None = None  # ... and their UIDs


@dataclass(frozen=True, slots=True)
class Select:
    """SELECT mailbox [(CONDSTORE) | (QRESYNC (...))]; Ok enters SELECTED, No leaves
    none selected (RFC 9051 §6.3.2)."""

    tag: str
    mailbox: str
    condstore: bool = False
    qresync: Qresync | None = None


@dataclass(frozen=True, slots=True)
class Examine:
    """EXAMINE: SELECT, read-only (RFC 9051 §6.3.3)."""

    tag: str
    mailbox: str
    condstore: bool = False
    qresync: Qresync | None = None


@dataclass(frozen=True, slots=True)
class Namespace:
    tag: str


@dataclass(frozen=True, slots=True)
class Create:
    """CREATE mailbox [(USE (\\Sent ...))] (RFC 9051 §6.3.4, RFC 6154 §3)."""

    tag: str
    mailbox: str
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete:
    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename:
    tag: str
    mailbox: str
    new_name: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class List:
    """LIST [(selection)] reference pattern(s) [RETURN (options)] (RFC 9051 §6.3.9,
    RFC 5258 §3). `selection` and `returns` hold the option names upper-cased (SUBSCRIBED,
    REMOTE, RECURSIVEMATCH, SPECIAL-USE; SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS);
    `status` holds the STATUS items of RETURN (STATUS (...)) (RFC 5819)."""

    tag: str
    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()
    returns: frozenset[str] = frozenset()
    status: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Lsub:
    """LSUB reference pattern, IMAP4rev1 (RFC 3501 §6.3.9)."""

    tag: str
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Status:
    """STATUS mailbox (items): item names upper-cased (RFC 9051 §6.3.11)."""

    tag: str
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of an APPEND: [(flags)] [date-time] literal (RFC 9051 §6.3.12); `binary`
    when it came as literal8 (RFC 3516 §4.4)."""

    flags: tuple[str, ...]
    date: datetime.datetime | None
    message: bytes
    binary: bool = False


@dataclass(frozen=True, slots=True)
class Append:
    """APPEND mailbox message...: one message, or several with MULTIAPPEND (RFC 3502 §6),
    to be stored all or none."""

    tag: str
    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class Idle:
    """IDLE: answer `Continuation("idling")`; `Done` follows, then `Ok` (RFC 2177 §3)."""

    tag: str


@dataclass(frozen=True, slots=True)
class Done:
    """DONE ends IDLE: now complete the IDLE with `Ok` (RFC 2177 §3)."""

    tag: str


# -- selected (RFC 9051 §6.4) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """CHECK, IMAP4rev1 (RFC 3501 §6.4.1); a NOOP in effect."""

    tag: str


@dataclass(frozen=True, slots=True)
class Close:
    tag: str


@dataclass(frozen=True, slots=True)
class Unselect:
    tag: str


@dataclass(frozen=True, slots=True)
class Expunge:
    """EXPUNGE, or UID EXPUNGE with the `uids` it is limited to (RFC 4315 §2.1)."""

    tag: str
    uids: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class Search:
    tag: str
    uid: bool
    program: SearchProgram


@dataclass(frozen=True, slots=True)
class Fetch:
    tag: str
    uid: bool
    sequence: SequenceSet
    request: FetchRequest


class StoreMode(enum.Enum):
    REPLACE = "FLAGS"
    ADD = "+FLAGS"
    REMOVE = "-FLAGS"


@dataclass(frozen=True, slots=True)
class Store:
    """STORE set [(UNCHANGEDSINCE n)] [+-]FLAGS[.SILENT] flags (RFC 9051 §6.4.6,
    RFC 7162 §3.1.3)."""

    tag: str
    uid: bool
    sequence: SequenceSet
    mode: StoreMode
    flags: tuple[str, ...]
    silent: bool = False
    unchanged_since: int | None = None


@dataclass(frozen=True, slots=True)
class Copy:
    tag: str
    uid: bool
    sequence: SequenceSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class Move:
    """MOVE (RFC 6851 §3)."""

    tag: str
    uid: bool
    sequence: SequenceSet
    mailbox: str


# -- not commands ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandError:
    """The core refused the input; send `response` as it is. With no `tag`, a `Bad` goes
    out untagged; a `Bye` ends the session."""

    tag: str | None
    response: Bad | No | Bye


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The client closed its side (EOF); no answer is due."""


Command = (
    Capability
    | Noop
    | Logout
    | Id
    | StartTls
    | Authenticate
    | AuthenticateData
    | Login
    | Enable
    | Select
    | Examine
    | Namespace
    | Create
    | Delete
    | Rename
    | Subscribe
    | Unsubscribe
    | List
    | Lsub
    | Status
    | Append
    | Idle
    | Done
    | Check
    | Close
    | Unselect
    | Expunge
    | Search
    | Fetch
    | Store
    | Copy
    | Move
    | CommandError
)  # everything that carries a tag and awaits an answer
Event = Command | ConnectionClosed
