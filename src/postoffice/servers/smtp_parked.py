"""An SMTP session's connection while its task waits for the client.

`Parked` (servers/parked.py lends the transport) answers, right as their bytes arrive, the
commands whose handlers never wait (`SmtpSession.QUICK`: EHLO, MAIL, RCPT, DATA, RSET, NOOP,
…) and takes in a message body, so a client sending message after message on one
connection wakes the session's task once a message, for the store at its end. Split from
servers/smtp.py, which uses it.

Standards: RFC 5321 §4.5.3.2 (the time limits move on with every command and body read),
RFC 2920 (PIPELINING: replies in order)
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from postoffice.protocols.smtp import NEED_DATA
from postoffice.servers import parked

if TYPE_CHECKING:
    from postoffice.servers.smtp import SmtpSession


class Parked(parked.Parked):
    """The transport's protocol while an SMTP session waits for its client.

    Each command with a quick handler is counted against the client's command rate,
    answered and the session's time limit moved on (`timer`, the task's timeout). Anything
    else — a handler that waits (the end of a message, STARTTLS, AUTH), a limit hit,
    a write buffer not yet empty, shutdown — wakes the task with that event, in order.
    """

    NOTHING = NEED_DATA
    session: SmtpSession

    def __init__(
        self, session: SmtpSession, transport: asyncio.BaseTransport, timer: asyncio.Timeout
    ):
        super().__init__(session, transport)
        self.timer = timer

    def data_received(self, data: bytes) -> None:
        if self.hand_back(data):  # the task was cancelled (idle, shutdown) and is leaving
            return
        session, conn = self.session, self.session.conn
        session.count_body(data)
        conn.receive_data(data)
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                session.idle = session.between_transactions
                self.timer.reschedule(session.deadline(self.loop.time()))
                return
            quick = session.QUICK.get(type(event))
            if (
                quick is None
                or session.stopping
                or self.transport.get_write_buffer_size()  # type: ignore[attr-defined]
                or not session.ctx.client_limits.command(session.client_ip)  # the task: 421
            ):
                self.unpark(event)
                return
            session.command_deadline = None  # a command arrived whole: the next one anew
            self.transport.write(conn.send(quick(session, event)))  # type: ignore[attr-defined]
            if conn.closed:
                self.unpark()
                return
