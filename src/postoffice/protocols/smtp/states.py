"""SMTP server session states and the transition table that moves between them.

The state changes only when the session replies (`ServerConnection.send`): the table maps
(state, event type) to the state after a 2xx completion, after a 3xx intermediate reply, and
after a 4xx/5xx failure. An event type missing for a state is out of sequence, and the core
answers it with 503 itself. Rules the table encodes:

- NOOP, HELP, VRFY, EXPN, RSET, QUIT, HELO and EHLO are valid whenever a command may be
  sent, even before HELO (RFC 5321 §4.1.4); HELO/EHLO and RSET end any transaction.
  A refused HELO/EHLO leaves the state as it was (RFC 5321 §4.1.4).
- MAIL needs HELO first and no transaction open; RCPT needs an accepted MAIL; DATA needs an
  accepted RCPT (RFC 5321 §3.3) and answers 354, never 2xx.
- The end of the data ends the transaction whatever the reply (RFC 5321 §4.1.1.4).
- A BDAT chunk refused by the session fails the whole transaction (RFC 3030 §2).
- AUTH and STARTTLS are outside a transaction only (RFC 4954 §4, RFC 3207 §4); 334 continues
  a SASL exchange, 220 to STARTTLS waits for the TLS handshake (`start_tls()` then resets to
  CONNECTED: RFC 3207 §4.2 discards all earlier knowledge).
- Outside the table, decided by `ServerConnection`: any 421 closes (RFC 5321 §3.8); a valid
  BDAT command moves RCPT to BDAT before any reply (the reply comes after the chunk); EOF
  closes; a CommandError keeps the state, except one ending a DATA/BDAT body or a SASL
  exchange, which returns to GREETED.

Standards: RFC 5321 §3.3, §4.1.4, §3.8; RFC 3030 §2; RFC 3207 §4; RFC 4954 §4
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from postoffice.protocols.smtp.events import (
    Auth,
    AuthData,
    BdatChunk,
    Data,
    EndOfData,
    Expn,
    Helo,
    Help,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
)


class State(enum.Enum):
    CONNECTED = "no HELO yet"
    GREETED = "HELO done"
    MAIL = "MAIL accepted"
    RCPT = "a RCPT accepted"
    DATA = "reading DATA"
    BDAT = "between or inside BDAT chunks"
    AUTH = "inside a SASL exchange"
    STARTTLS = "waiting for the TLS handshake"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Transition:
    """Where a reply leads; None marks a reply class that is not a valid answer."""

    done: State | None  # after 2xx
    more: State | None  # after 3xx
    failed: State  # after 4xx or 5xx

    @classmethod
    def to(cls, state: State) -> Transition:
        """Every valid reply (2xx, 4xx, 5xx) leads to `state`."""
        return cls(state, None, state)

    def after(self, code: int) -> State:
        """The next state for a reply code; ValueError when the code cannot answer here."""
        target = {2: self.done, 3: self.more}.get(code // 100, self.failed)
        if target is None:
            raise ValueError(f"a {code} reply is not a valid answer here")
        return target


COMMAND_STATES = (State.CONNECTED, State.GREETED, State.MAIL, State.RCPT, State.BDAT)

TRANSITIONS: dict[tuple[State, type], Transition] = {
    # commands valid wherever a command line may come (RFC 5321 §4.1.4)
    **{(s, Helo): Transition(State.GREETED, None, s) for s in COMMAND_STATES},
    **{
        (s, Rset): Transition(State.CONNECTED if s is State.CONNECTED else State.GREETED, None, s)
        for s in COMMAND_STATES
    },
    **{(s, Quit): Transition(State.CLOSED, None, s) for s in COMMAND_STATES},
    **{(s, e): Transition.to(s) for s in COMMAND_STATES for e in (Noop, Help, Vrfy, Expn)},
    # (state, event):                after 2xx       after 3xx   after 4xx/5xx
    (State.GREETED, StartTls): Transition(State.STARTTLS, None, State.GREETED),
    (State.GREETED, Auth): Transition(State.GREETED, State.AUTH, State.GREETED),
    (State.AUTH, AuthData): Transition(State.GREETED, State.AUTH, State.GREETED),
    (State.GREETED, MailFrom): Transition(State.MAIL, None, State.GREETED),
    (State.MAIL, RcptTo): Transition(State.RCPT, None, State.MAIL),
    (State.RCPT, RcptTo): Transition(State.RCPT, None, State.RCPT),
    (State.RCPT, Data): Transition(None, State.DATA, State.RCPT),
    (State.DATA, EndOfData): Transition(State.GREETED, None, State.GREETED),
    (State.BDAT, BdatChunk): Transition(State.BDAT, None, State.GREETED),
    (State.BDAT, EndOfData): Transition(State.GREETED, None, State.GREETED),
}
