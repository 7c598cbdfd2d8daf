"""POP3 server session states and the transition table that moves between them.

The state changes when the session answers (`ServerConnection.send`, or the +OK line of a
streamed response): the table maps (state, event type) to the state after +OK, after a SASL
challenge (`Continue`) and after -ERR, plus, for QUIT, the state while the answer is being
prepared. A `None` target marks an answer that cannot be given there, which is our bug and
raises. An event type missing for a state is out of sequence, and the core answers it with
-ERR itself. Rules the table encodes:

- AUTHORIZATION (RFC 1939 §4) takes USER, AUTH, CAPA, STLS and QUIT. +OK to USER leads to
  USER, where PASS may follow (RFC 1939 §7); -ERR to PASS returns to AUTHORIZATION, so USER
  must be sent again. USER may be sent again instead of PASS; CAPA is valid throughout
  AUTHORIZATION (RFC 2449 §5).
- A SASL challenge to AUTH enters AUTH, where every line is a response until +OK (on to
  TRANSACTION) or -ERR (back to AUTHORIZATION) (RFC 5034 §4).
- +OK to STLS waits for the TLS handshake; `start_tls()` then returns to AUTHORIZATION
  (RFC 2595 §4: the server stays in AUTHORIZATION).
- TRANSACTION (RFC 1939 §5, §7) takes STAT, LIST, RETR, DELE, NOOP, RSET, TOP, UIDL, CAPA;
  none changes the state. NOOP is valid only here (RFC 1939 §5).
- QUIT in TRANSACTION enters UPDATE as soon as it is read: the session removes the deleted
  messages and answers, and whatever the answer, the session ends (RFC 1939 §6). QUIT in
  AUTHORIZATION ends the session without UPDATE (RFC 1939 §4).
- Outside the table, decided by `ServerConnection`: AUTH without a mechanism only lists the
  mechanisms and never leaves AUTHORIZATION; STLS is refused once TLS is active (RFC 2595 §4:
  once per session); a CommandError keeps the state, except inside a SASL exchange, which it
  ends (back to AUTHORIZATION); EOF closes; an -ERR sent with nothing to answer (a refused
  greeting, a shutdown) closes.

Standards: RFC 1939 §3-§7; RFC 2449 §5; RFC 2595 §4; RFC 5034 §4
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from postoffice.protocols.pop3.events import (
    Auth,
    AuthData,
    Capa,
    Dele,
    List,
    Noop,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
)
from postoffice.protocols.pop3.replies import Continue, Err, Reply


class State(enum.Enum):
    AUTHORIZATION = "not authenticated"
    USER = "USER accepted, PASS expected"
    AUTH = "inside a SASL exchange"
    STLS = "waiting for the TLS handshake"
    TRANSACTION = "authenticated, maildrop open"
    UPDATE = "QUIT read, deletions under way"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Transition:
    """Where an answer leads; None marks an answer that is not valid here."""

    done: State | None  # after +OK (single-line or multi-line)
    more: State | None  # after a SASL challenge
    failed: State  # after -ERR
    during: State | None = None  # the state while the answer is prepared, when it differs

    @classmethod
    def to(cls, state: State) -> Transition:
        """+OK and -ERR both lead to `state`; no challenge."""
        return cls(state, None, state)

    @classmethod
    def refused(cls, state: State) -> Transition:
        """Only -ERR may answer (a CommandError); it leads to `state`."""
        return cls(None, None, state)

    def after(self, reply: Reply) -> State:
        """The next state for `reply`; ValueError when it cannot answer here."""
        if isinstance(reply, Err):
            return self.failed
        target = self.more if isinstance(reply, Continue) else self.done
        if target is None:
            raise ValueError(f"{type(reply).__name__} is not a valid answer here")
        return target


_TRANSACTION_COMMANDS = (Stat, List, Retr, Dele, Noop, Rset, Top, Uidl, Capa)

TRANSITIONS: dict[tuple[State, type], Transition] = {
    # (state, event):                          after +OK          challenge    after -ERR
    (State.AUTHORIZATION, User): Transition(State.USER, None, State.AUTHORIZATION),
    (State.AUTHORIZATION, Auth): Transition(State.TRANSACTION, State.AUTH, State.AUTHORIZATION),
    (State.AUTHORIZATION, Stls): Transition(State.STLS, None, State.AUTHORIZATION),
    (State.AUTHORIZATION, Capa): Transition.to(State.AUTHORIZATION),
    (State.AUTHORIZATION, Quit): Transition.to(State.CLOSED),
    (State.USER, Pass): Transition(State.TRANSACTION, None, State.AUTHORIZATION),
    (State.USER, User): Transition(State.USER, None, State.AUTHORIZATION),
    (State.USER, Capa): Transition.to(State.USER),
    (State.USER, Quit): Transition.to(State.CLOSED),
    (State.AUTH, AuthData): Transition(State.TRANSACTION, State.AUTH, State.AUTHORIZATION),
    **{(State.TRANSACTION, e): Transition.to(State.TRANSACTION) for e in _TRANSACTION_COMMANDS},
    (State.TRANSACTION, Quit): Transition(State.CLOSED, None, State.CLOSED, State.UPDATE),
}
