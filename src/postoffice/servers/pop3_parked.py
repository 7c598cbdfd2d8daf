"""A logged-in POP3 session's connection while its task waits for the client.

`Parked` (servers/parked.py lends the transport) answers the commands that need no waiting
right as their bytes arrive; anything else goes back to the session's task, in order (see
the class). Split from servers/pop3.py, which uses it.

Standards: RFC 1939 (the commands answered), RFC 2449 §6.6 (PIPELINING: replies in order)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from postoffice.protocols.pop3 import NEED_DATA
from postoffice.servers import parked

if TYPE_CHECKING:
    from postoffice.servers.pop3 import Pop3Session


class Parked(parked.Parked):
    """The transport's protocol while a TRANSACTION session waits for its client.

    Parked, the session answers what needs no waiting (`Pop3Session.QUICK`: STAT, LIST,
    UIDL, DELE, NOOP, RSET, and RETR/TOP of a cached message) right in `data_received`, in
    order, so a client fetching message after message never wakes the task. Anything else —
    a command needing the disk or a login, a limit hit, a write buffer not yet empty (the task
    drains it), the end of the stream — gives the transport back to the stream protocol and
    wakes the task with it. The idle timer and shutdown still cancel the waiting task.
    """

    NOTHING = NEED_DATA
    session: Pop3Session

    def data_received(self, data: bytes) -> None:
        if self.hand_back(data):  # the task was cancelled (idle, shutdown) and is leaving
            return
        session, conn = self.session, self.session.conn
        conn.receive_data(data)
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                session.idle_since = self.loop.time()
                session.read_ahead()  # while the client reads what was just sent
                return
            quick = session.QUICK.get(type(event))
            if quick is None or self.transport.get_write_buffer_size():  # type: ignore[attr-defined]
                self.unpark(event)
                return
            if not session.ctx.client_limits.command(session.client_ip):
                self.unpark(event)  # the task counts again, and hangs up
                return
            reply = quick(session, event)
            if reply is None:
                session.admitted = event  # counted; the task goes straight to the disk
                self.unpark(event)
                return
            self.transport.write(reply)  # type: ignore[attr-defined]
