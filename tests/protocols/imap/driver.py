"""A test driver for the IMAP core: answers every event the way a simple server would."""

from __future__ import annotations

from collections.abc import Callable

from postoffice.protocols.imap import (
    NEED_DATA,
    PAUSED,
    Bye,
    Continuation,
    Limits,
    No,
    Ok,
    Response,
    ServerConnection,
    UntaggedOk,
    events,
    responses,
)

Answer = Callable[[events.Event], list[Response]]


def default_answer(event: events.Event) -> list[Response]:
    """OK to everything that can be done; the core's own refusals as they are."""
    match event:
        case events.CommandError(response=response):
            return [response]
        case events.Logout():
            return [Bye("logging out"), Ok("LOGOUT completed")]
        case events.Idle():
            return [Continuation("idling")]
        case events.Authenticate(initial_response=None):
            return [Continuation()]
        case events.Enable(capabilities=names):
            return [responses.Enabled(names), Ok("ENABLE completed")]
        case events.Select(mailbox="Missing") | events.Examine(mailbox="Missing"):
            return [No("no such mailbox")]
        case events.Login(password="wrong"):
            return [No("authentication failed")]
    return [Ok("done")]


class Session:
    """Drives a ServerConnection as servers/imap would, recording every byte it writes."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        tls: bool = False,
        literal_plus: bool = True,
        answer: Answer = default_answer,
    ) -> None:
        self.conn = ServerConnection(limits, tls=tls, literal_plus=literal_plus)
        self.answer = answer
        self.events: list[events.Event] = []
        self.wire = self.conn.send(UntaggedOk("postoffice ready"))

    def feed(self, data: bytes) -> list[events.Event]:
        """Feed bytes (b"" is EOF), answer every event; return the new events."""
        start = len(self.events)
        self.conn.receive_data(data)
        while not self.conn.closed:
            event = self.conn.next_event()
            self.wire += self.conn.data_to_send()
            if event is NEED_DATA or event is PAUSED:
                break
            assert not isinstance(event, events.Signal)
            self.events.append(event)
            if isinstance(event, events.ConnectionClosed):
                break
            for response in self.answer(event):
                self.wire += self.conn.send(response)
        return self.events[start:]

    def output(self) -> bytes:
        """The bytes written since the last call."""
        wire, self.wire = self.wire, b""
        return wire
