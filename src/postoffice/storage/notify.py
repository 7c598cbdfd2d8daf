"""In-process change notifications for mailboxes, so IDLE hears about changes without polling.

`MailboxEvents` is a small hub keyed by mailbox (the Maildir store keys it by folder
directory). Anything that changes a mailbox through the store — local delivery, a POP3
UPDATE, an IMAP STORE, EXPUNGE, APPEND, COPY or MOVE — publishes once the change is on
disk; every `Watch` on that mailbox is then set, and a coroutine waiting on it (an IMAP
session in IDLE) wakes and re-reads the mailbox. Publishing is safe from any thread (the
store's file work runs in worker threads): a watch is set on the event loop that created
it, through `call_soon_threadsafe`. The hub also counts the changes published per mailbox
(`generation`): the Maildir index puts that count into its stamps, so a change made in
this process is seen at once, without waiting for the mtime rule. The hub only knows this
process; changes made by other processes are found by the waiter's own slow re-check.

Standards: RFC 2177 (IDLE: the server sends updates as they happen), RFC 9051 §5.2.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable
from contextlib import suppress


class Watch:
    """One waiter's view of one mailbox: set by every publish until `wait()` returns."""

    def __init__(self, hub: MailboxEvents, key: Hashable) -> None:
        self._hub, self._key = hub, key
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Mark the mailbox changed; callable from any thread."""
        with suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self) -> None:
        """Return once a change was published since the last return (at once if one was)."""
        await self._event.wait()
        self._event.clear()

    def close(self) -> None:
        """Stop receiving notifications."""
        self._hub.drop(self._key, self)


class MailboxEvents:
    """The hub: `watch(key)` from the event loop, `publish(key)` from anywhere."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: dict[Hashable, set[Watch]] = {}
        self._generations: dict[Hashable, int] = {}  # a few bytes per mailbox ever changed

    def watch(self, key: Hashable) -> Watch:
        """A new `Watch` on mailbox `key`; call from a coroutine, close it when done."""
        watch = Watch(self, key)
        with self._lock:
            self._watches.setdefault(key, set()).add(watch)
        return watch

    def generation(self, key: Hashable) -> int:
        """How many changes to mailbox `key` were published so far."""
        return self._generations.get(key, 0)

    def publish(self, key: Hashable) -> None:
        """Count one change to mailbox `key` and wake every watch on it."""
        with self._lock:
            self._generations[key] = self._generations.get(key, 0) + 1
            watches = list(self._watches.get(key, ()))
        for watch in watches:
            watch.notify()

    def drop(self, key: Hashable, watch: Watch) -> None:
        """Forget `watch` (what `Watch.close` calls)."""
        with self._lock:
            watches = self._watches.get(key)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[key]
