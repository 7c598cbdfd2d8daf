"""The event log: key=value lines, written once per event-loop round."""

from __future__ import annotations

import asyncio
import io

from postoffice.logs import EventLog


def events(stream: io.StringIO) -> list[str]:
    return [line.split()[1] for line in stream.getvalue().splitlines()]


def test_a_line_quotes_only_values_that_need_it() -> None:
    stream = io.StringIO()
    EventLog(stream=stream).event("queued", qid="Q1", rcpt=["a@x", "b@x"], detail="two words")
    (line,) = stream.getvalue().splitlines()
    assert line.endswith('Z queued qid=Q1 rcpt=a@x,b@x detail="two words"')


def test_lines_on_a_loop_wait_for_the_round_and_keep_their_order() -> None:
    stream = io.StringIO()
    log = EventLog(stream=stream)
    seen: list[list[str]] = []

    async def server() -> None:
        log.event("queued", qid="Q1")
        log.event("delivered", qid="Q1")
        seen.append(events(stream))  # held back for this round
        await asyncio.sleep(0)
        seen.append(events(stream))  # the round is over: written
        log.event("queued", qid="Q2")
        log.event("disconnect", client="c")  # held back too
        seen.append(events(stream))
        log.warning("refused", client="c")  # a warning: written at once, after the others
        seen.append(events(stream))

    asyncio.run(server())
    log.event("queued", qid="Q3")  # no loop: at once
    assert seen == [
        [],
        ["queued", "delivered"],
        ["queued", "delivered"],
        ["queued", "delivered", "queued", "disconnect", "refused"],
    ]
    assert events(stream)[-1] == "queued"
