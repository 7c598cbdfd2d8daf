"""The POP3 server protocol core, sans-I/O: bytes in, events out, typed replies back to bytes.

A session drives one `ServerConnection`: it feeds received bytes, answers each event with
`Ok`, `OkLines`, `Continue` or `Err` through `send()` (RETR and TOP through
`send_multiline_start()` and `message_encoder()`), and writes the bytes it gets back.
Nothing here touches a socket, a clock or a file; servers/pop3 is the asyncio adapter. See
connection.py for the flow, states.py for the state table, commands.py for the syntax.

Standards: RFC 1939, RFC 2449, RFC 2595, RFC 3206, RFC 5034
"""

from postoffice.protocols._dotstuff import stuff, stuff_lines
from postoffice.protocols.pop3 import events, replies, states
from postoffice.protocols.pop3.connection import Limits, MessageEncoder, ServerConnection
from postoffice.protocols.pop3.events import NEED_DATA, PAUSED, Event, Signal
from postoffice.protocols.pop3.replies import Continue, Err, Ok, OkLines, Reply, capabilities
from postoffice.protocols.pop3.states import State

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "Continue",
    "Err",
    "Event",
    "Limits",
    "MessageEncoder",
    "Ok",
    "OkLines",
    "Reply",
    "ServerConnection",
    "Signal",
    "State",
    "capabilities",
    "events",
    "replies",
    "states",
    "stuff",
    "stuff_lines",
]
