"""The SMTP server protocol core, sans-I/O: bytes in, events out, typed replies back to bytes.

A session drives one `ServerConnection`: it feeds received bytes, answers each event with a
`Reply` through `send()`, and writes the bytes `send()` returns. Nothing here touches a socket,
a clock or a file; servers/smtp is the asyncio adapter. See connection.py for the flow,
states.py for the state table, data.py for the end-of-data and smuggling rules.

Standards: RFC 5321, RFC 1870, RFC 2034, RFC 2920, RFC 3030, RFC 3207, RFC 3461, RFC 4954,
RFC 6152, RFC 6531
"""

from postoffice.protocols.smtp import events, replies, states
from postoffice.protocols.smtp.connection import Limits, ServerConnection
from postoffice.protocols.smtp.events import NEED_DATA, PAUSED, Event, Signal
from postoffice.protocols.smtp.replies import Reply
from postoffice.protocols.smtp.states import State

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "Event",
    "Limits",
    "Reply",
    "ServerConnection",
    "Signal",
    "State",
    "events",
    "replies",
    "states",
]
