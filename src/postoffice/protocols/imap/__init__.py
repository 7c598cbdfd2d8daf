"""The IMAP server protocol core, sans-I/O: bytes in, events out, typed responses back to bytes.

A session drives one `ServerConnection`: it feeds received bytes, answers each event with
untagged data and a tagged `Ok`, `No` or `Bad` through `send()` (IDLE and AUTHENTICATE with
a `Continuation` first), and writes the bytes it gets back, plus `data_to_send()` (the
core's own "+" for literals) before waiting for input. Nothing here touches a socket, a
clock or a file. See connection.py for the flow, framing.py for literals and limits,
commands.py for the syntax, states.py for the state table, responses.py and serializer.py
for what goes out, and structure.py / sections.py for ENVELOPE, BODYSTRUCTURE and body
sections built from a stored message.

Extensions the core parses: IMAP4rev1 (RFC 3501) and IMAP4rev2 (RFC 9051), LITERAL+ and
LITERAL- (RFC 7888), SASL-IR (RFC 4959), ENABLE (RFC 5161), IDLE (RFC 2177), NAMESPACE,
ID (RFC 2971), UIDPLUS (RFC 4315), MOVE (RFC 6851), UNSELECT, LIST-EXTENDED (RFC 5258),
LIST-STATUS (RFC 5819), SPECIAL-USE and CREATE-SPECIAL-USE (RFC 6154), ESEARCH (RFC 4731),
SEARCHRES (RFC 5182), CONDSTORE and QRESYNC (RFC 7162), BINARY (RFC 3516), UTF8=ACCEPT
(RFC 6855), STATUS=SIZE, APPENDLIMIT (RFC 7889), MULTIAPPEND (RFC 3502).

Standards: RFC 9051, RFC 3501 and the extensions above
"""

from postoffice.protocols.imap import codes, events, responses, states
from postoffice.protocols.imap.codes import Code
from postoffice.protocols.imap.connection import ServerConnection
from postoffice.protocols.imap.events import NEED_DATA, PAUSED, Event, Signal
from postoffice.protocols.imap.framing import Limits
from postoffice.protocols.imap.responses import (
    Bad,
    Bye,
    Continuation,
    No,
    Ok,
    Preauth,
    Response,
    UntaggedNo,
    UntaggedOk,
)
from postoffice.protocols.imap.sequence import SequenceSet
from postoffice.protocols.imap.serializer import Atom, Literal8, Value
from postoffice.protocols.imap.states import State

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "Atom",
    "Bad",
    "Bye",
    "Code",
    "Continuation",
    "Event",
    "Limits",
    "Literal8",
    "No",
    "Ok",
    "Preauth",
    "Response",
    "SequenceSet",
    "ServerConnection",
    "Signal",
    "State",
    "UntaggedNo",
    "UntaggedOk",
    "Value",
    "codes",
    "events",
    "responses",
    "states",
]
