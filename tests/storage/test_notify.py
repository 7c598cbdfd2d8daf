"""MailboxEvents: watches woken by publishes from any thread, closed watches forgotten.

Standards: RFC 2177 (IDLE)
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from postoffice.storage.notify import MailboxEvents


def test_a_publish_from_another_thread_wakes_every_watch_on_the_key() -> None:
    async def scenario() -> None:
        hub = MailboxEvents()
        one, two, other = hub.watch("box"), hub.watch("box"), hub.watch("other")
        thread = threading.Thread(target=hub.publish, args=("box",))
        thread.start()
        thread.join()
        await asyncio.wait_for(asyncio.gather(one.wait(), two.wait()), 1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(other.wait(), 0.05)
        with pytest.raises(TimeoutError):  # one publish, one wake-up
            await asyncio.wait_for(one.wait(), 0.05)
        for watch in (one, two, other):
            watch.close()

    asyncio.run(scenario())


def test_publishes_before_the_wait_are_kept_and_coalesced() -> None:
    async def scenario() -> None:
        hub = MailboxEvents()
        watch = hub.watch("box")
        hub.publish("box")
        hub.publish("box")
        await asyncio.sleep(0)  # the loop runs the threadsafe callbacks
        await asyncio.wait_for(watch.wait(), 1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(watch.wait(), 0.05)
        watch.close()

    asyncio.run(scenario())


def test_a_closed_watch_is_forgotten() -> None:
    async def scenario() -> MailboxEvents:
        hub = MailboxEvents()
        watch = hub.watch("box")
        watch.close()
        hub.publish("box")
        return hub

    hub = asyncio.run(scenario())
    assert hub._watches == {}
    hub.publish("box")  # no watch, no loop: nothing happens
