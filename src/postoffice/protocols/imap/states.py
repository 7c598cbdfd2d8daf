"""IMAP server session states and the transition table that moves between them.

The state changes when the session completes a command (`ServerConnection.send`): the table
maps (state, command event type) to the state after a tagged OK, after a "+" continuation,
and after a tagged NO or BAD. A command missing for a state is not valid there and the core
answers it with BAD itself (RFC 9051 §6: "BAD - command unknown or arguments invalid").
Rules the table encodes:

- CAPABILITY, NOOP, LOGOUT and ID are valid in every state (RFC 9051 §6.1, RFC 2971 §3.1).
- NOT AUTHENTICATED takes STARTTLS, AUTHENTICATE and LOGIN (RFC 9051 §6.2); OK to LOGIN or
  AUTHENTICATE enters AUTHENTICATED, NO stays. A "+" to AUTHENTICATE enters AUTHENTICATE,
  where each line is a SASL response, until the tagged answer (RFC 9051 §6.2.2).
- OK to STARTTLS waits in STARTTLS for the handshake; `start_tls()` returns to NOT
  AUTHENTICATED (RFC 9051 §6.2.1: nothing learned before TLS is kept).
- AUTHENTICATED takes ENABLE, SELECT, EXAMINE, NAMESPACE, CREATE, DELETE, RENAME,
  SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS, APPEND and IDLE (RFC 9051 §6.3); OK to SELECT
  or EXAMINE enters SELECTED.
- SELECTED takes the same (but ENABLE, RFC 5161 §3.1) plus CHECK, CLOSE, UNSELECT,
  EXPUNGE, SEARCH, FETCH, STORE, COPY, MOVE and their UID forms (RFC 9051 §6.4). OK to CLOSE
  or UNSELECT returns to AUTHENTICATED; a SELECT or EXAMINE that fails leaves no mailbox
  selected (RFC 9051 §6.3.2), so NO and BAD to it return to AUTHENTICATED as well.
- A "+" to IDLE enters IDLE, where the only valid line is DONE; the tagged answer after it
  returns to where IDLE began (RFC 2177 §3).
- OK to LOGOUT enters LOGOUT, the end (RFC 9051 §6.1.3).
- Outside the table, decided by `ServerConnection`: lines inside AUTHENTICATE and IDLE are
  answered through the command that began them, so its row applies; STARTTLS is refused
  once TLS is active; a PREAUTH greeting enters AUTHENTICATED; any BYE enters LOGOUT; EOF
  closes; a CommandError keeps the state.

Standards: RFC 9051 §3, §6.1-§6.4; RFC 2177 §3; RFC 5161 §3.1
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from postoffice.protocols.imap.events import (
    Append,
    Authenticate,
    Capability,
    Check,
    Close,
    Copy,
    Create,
    Delete,
    Enable,
    Examine,
    Expunge,
    Fetch,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    Move,
    Namespace,
    Noop,
    Rename,
    Search,
    Select,
    StartTls,
    Status,
    Store,
    Subscribe,
    Unselect,
    Unsubscribe,
)
from postoffice.protocols.imap.responses import Continuation, Ok, Response


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATE = "inside a SASL exchange"
    STARTTLS = "waiting for the TLS handshake"
    AUTHENTICATED = "authenticated"
    SELECTED = "a mailbox is selected"
    IDLE = "idling"
    LOGOUT = "logged out"


@dataclass(frozen=True, slots=True)
class Transition:
    """Where an answer leads; `more` None means a "+" cannot answer."""

    done: State  # after a tagged OK
    more: State | None  # after a "+" continuation
    failed: State  # after a tagged NO or BAD

    @classmethod
    def to(cls, state: State) -> Transition:
        """Every answer leads to `state`; no continuation."""
        return cls(state, None, state)

    def after(self, response: Response) -> State:
        if isinstance(response, Continuation):
            if self.more is None:
                raise ValueError("a continuation cannot answer this command")
            return self.more
        return self.done if isinstance(response, Ok) else self.failed


_ANY = (Capability, Noop, Id)
_MAILBOXES = (
    Select,
    Examine,
    Namespace,
    Create,
    Delete,
    Rename,
    Subscribe,
    Unsubscribe,
    List,
    Lsub,
    Status,
    Append,
)
_MESSAGES = (Check, Expunge, Search, Fetch, Store, Copy, Move)


def _any(state: State) -> dict[tuple[State, type], Transition]:
    return {
        **{(state, event): Transition.to(state) for event in _ANY},
        (state, Logout): Transition(State.LOGOUT, None, state),
    }


def _authenticated(state: State) -> dict[tuple[State, type], Transition]:
    """The commands of the authenticated state, valid in SELECTED too (RFC 9051 §6.3)."""
    return {
        **_any(state),
        **{(state, event): Transition.to(state) for event in _MAILBOXES},
        (state, Select): Transition(State.SELECTED, None, State.AUTHENTICATED),
        (state, Examine): Transition(State.SELECTED, None, State.AUTHENTICATED),
        (state, Idle): Transition(state, State.IDLE, state),
    }


_NA, _AUTHENTICATED, _SELECTED = State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED

TRANSITIONS: dict[tuple[State, type], Transition] = {
    # (state, event): Transition(after OK, after "+", after NO or BAD)
    **_any(_NA),
    (_NA, StartTls): Transition(State.STARTTLS, None, _NA),
    (_NA, Login): Transition(_AUTHENTICATED, None, _NA),
    (_NA, Authenticate): Transition(_AUTHENTICATED, State.AUTHENTICATE, _NA),
    **_authenticated(_AUTHENTICATED),
    (_AUTHENTICATED, Enable): Transition.to(_AUTHENTICATED),
    **_authenticated(_SELECTED),
    **{(_SELECTED, event): Transition.to(_SELECTED) for event in _MESSAGES},
    (_SELECTED, Close): Transition(_AUTHENTICATED, None, _SELECTED),
    (_SELECTED, Unselect): Transition(_AUTHENTICATED, None, _SELECTED),
}
