"""A POP3, IMAP or SMTP session is in no reference cycle of its own: dropped, it is freed at once.

A session in a reference cycle waits for the collector's next full pass with all it holds:
a POP3 session's listing of a 10,000-message maildrop is 2.7 MiB. POP3 and IMAP sessions
each used to hold a table of their own bound methods.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from types import SimpleNamespace

import pytest

from postoffice.servers.imap import ImapSession
from postoffice.servers.pop3 import Pop3Session
from postoffice.servers.smtp import SmtpSession

CONTEXT = SimpleNamespace(
    config=SimpleNamespace(limits=SimpleNamespace(message_size=1 << 20)),
    limits=None,  # SMTP's core: its defaults
)


async def _make_and_drop(session_class: type) -> None:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    session_class(lambda: CONTEXT, reader, writer)
    writer.close()
    theirs.close()


@pytest.mark.parametrize("session_class", [Pop3Session, ImapSession, SmtpSession])
def test_a_session_is_freed_without_the_collector(session_class: type) -> None:
    gc.collect()
    gc.disable()
    try:
        asyncio.run(_make_and_drop(session_class))
        gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept, to be looked at
        gc.collect()
        left = [thing for thing in gc.garbage if isinstance(thing, session_class)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []
