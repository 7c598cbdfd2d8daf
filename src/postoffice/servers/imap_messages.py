"""IMAP commands on the messages of the selected mailbox: FETCH, STORE, SEARCH, EXPUNGE,
COPY/MOVE, and APPEND into any mailbox.

Split from servers/imap.py by concern: the session class mixes these in. FETCH builds its
responses in batches (read from the page cache on the loop, else one disk-pool hop per
batch, reading one batch ahead) and writes each batch at once; a listing without content
comes from the core's templates.

Standards: RFC 9051 §6.4 (FETCH, STORE, SEARCH, EXPUNGE, COPY, UID), §6.3.12 (APPEND),
RFC 6851 (MOVE), RFC 4315 (UIDPLUS), RFC 3502 (MULTIAPPEND), RFC 5182 (SEARCHRES),
RFC 7162 (CONDSTORE, QRESYNC)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Iterator
from typing import Any

from postoffice.protocols.imap import Bad, No, Ok, UntaggedOk, codes, events, responses, search
from postoffice.protocols.imap.fetch import FetchAttribute
from postoffice.protocols.imap.sequence import SequenceSet
from postoffice.servers.imap_mailbox import SelectedMailbox, flag_atoms
from postoffice.storage.base import MessageInfo


class MessageCommands:
    """The message-level commands of an IMAP session (mixed into `ImapSession`, which
    provides `ctx`, `user`, `conn`, `writer`, `out`, `selected`, and from `FolderCommands`
    `canonical` and `exists`)."""

    ctx: Any
    user: str
    conn: Any
    writer: Any
    selected: SelectedMailbox | None
    out: Any
    canonical: Any
    exists: Any

    def mailbox_view(self) -> SelectedMailbox:
        assert self.selected is not None
        return self.selected

    async def on_fetch(self, event: events.Fetch) -> responses.Response:
        view = self.mailbox_view()
        attributes = event.request.attributes
        if event.uid and not any(a.name == "UID" for a in attributes):
            attributes = (*attributes, _UID)
        content = view.needs_content(attributes)
        sets_seen = not view.readonly and any(a.sets_seen for a in attributes)
        with_flags = (*attributes, _FLAGS)  # RFC 9051 §6.4.5: a \\Seen just set is told
        if any(a.name == "FLAGS" for a in attributes):
            with_flags = attributes
        since = event.request.changed_since
        if since is not None and not any(a.name == "MODSEQ" for a in attributes):
            attributes = (*attributes, _MODSEQ)  # RFC 7162 §3.1.4.1: CHANGEDSINCE implies it
        if event.request.vanished:  # RFC 7162 §3.2.6: before the FETCH responses
            assert since is not None  # the parser insists
            gone = await asyncio.to_thread(view.vanished, event.sequence, since)
            if gone is not None:
                self.out(gone)
        chosen = view.targets(event.sequence, uid=event.uid)
        if since is not None:
            chosen = [(number, info) for number, info in chosen if info.modseq > since]
        if not content:  # a listing: ready lines from the core's template, a chunk a write
            for lines in view.summaries(chosen, attributes, self.conn.utf8):
                self.writer.write(self.conn.send(responses.FetchLines(lines)))
                await self.writer.drain()
            return Ok("FETCH completed")
        # In batches: one worker hop reads (and marks) a batch, one write sends its responses;
        # the next batch is built while the client still reads the previous one (drain after).
        batches = list(_batches(chosen, content))
        async with contextlib.aclosing(_read_ahead(view, batches, sets_seen, content)) as loads:
            async for loaded in loads:
                for number, info, _, marked in loaded:
                    if marked:
                        view.replace(info, number)
                lines = view.fetch_lines(loaded, attributes, with_flags, self.conn.utf8)
                await self.writer.drain()
                self.writer.write(self.conn.send(responses.FetchLines(lines)))
        return Ok("FETCH completed")

    async def on_store(self, event: events.Store) -> responses.Response:
        view = self.mailbox_view()
        if view.readonly:
            return No("mailbox is read-only", codes.READ_ONLY)
        wanted = frozenset(f for f in event.flags if f != "\\Recent")
        modified = []
        for number, found in view.targets(event.sequence, uid=event.uid):
            info = found
            if event.unchanged_since is not None and info.modseq > event.unchanged_since:
                modified.append(info.uid if event.uid else number)
                continue
            if event.mode is events.StoreMode.ADD:
                flags = info.flags | wanted
            elif event.mode is events.StoreMode.REMOVE:
                flags = info.flags - wanted
            else:
                flags = wanted
            if flags != info.flags:
                try:
                    info = await asyncio.to_thread(view.mailbox.set_flags, info.key, flags)
                except KeyError:
                    continue
                except ValueError:
                    return Bad("invalid flag")
                view.replace(info)
            if not event.silent:
                items: list[tuple[str, Any]] = [("FLAGS", flag_atoms(info.flags))]
                if event.uid:
                    items.insert(0, ("UID", info.uid))
                if event.unchanged_since is not None or view.condstore:  # RFC 7162 §3.1.3
                    items.append(("MODSEQ", (info.modseq,)))
                self.out(responses.FetchResult(number, tuple(items)))
        if modified:
            return Ok("conditional STORE failed", codes.modified(SequenceSet.of(modified)))
        return Ok("STORE completed")

    async def on_search(self, event: events.Search) -> responses.Response:
        view = self.mailbox_view()
        found = await asyncio.to_thread(view.search, event.program.criteria)
        numbers = [m.uid if event.uid else n for n, m in found]
        returns = event.program.returns
        if returns is None and "IMAP4REV2" not in self.conn.enabled:
            self.out(responses.SearchResult(tuple(numbers)))
            return Ok("SEARCH completed")
        if returns is not None and "SAVE" in returns:  # RFC 5182 §2.1: kept as UIDs for "$"
            view.saved = frozenset(search.saved_result(returns, [m.uid for _, m in found]))
        options = search.result_options(returns or frozenset())
        if options is None:
            return Ok("SEARCH completed, result saved")
        self.out(
            responses.ESearchResult(
                event.tag,
                event.uid,
                min=min(numbers) if numbers and "MIN" in options else None,
                max=max(numbers) if numbers and "MAX" in options else None,
                count=len(numbers) if "COUNT" in options else None,
                all=SequenceSet.of(numbers) if numbers and "ALL" in options else None,
            )
        )
        return Ok("SEARCH completed")

    async def on_expunge(self, event: events.Expunge) -> responses.Response:
        view = self.mailbox_view()
        if view.readonly:
            return No("mailbox is read-only", codes.READ_ONLY)
        for update in await asyncio.to_thread(view.expunge, event.uids):
            self.out(update)
        return Ok("EXPUNGE completed")

    async def on_append(self, event: events.Append) -> responses.Response:
        name = self.canonical(event.mailbox)
        if not self.exists(name):
            return No("no such mailbox", codes.TRYCREATE)
        mailbox = self.ctx.store.mailbox(self.user, name)
        try:
            uids = await asyncio.to_thread(_append_all, mailbox, event.messages)
            validity = mailbox.uidvalidity
        except ValueError:
            return Bad("invalid flag")
        finally:
            mailbox.close()
        return Ok("APPEND completed", codes.appenduid(validity, SequenceSet.of(uids)))

    async def on_copy(self, event: events.Copy | events.Move) -> responses.Response:
        view = self.mailbox_view()
        move = isinstance(event, events.Move)
        if move and view.readonly:
            return No("mailbox is read-only", codes.READ_ONLY)
        name = self.canonical(event.mailbox)
        if not self.exists(name):
            return No("no such mailbox", codes.TRYCREATE)
        chosen = view.targets(event.sequence, uid=event.uid)
        if not chosen:
            return Ok("nothing to copy")
        target = self.ctx.store.mailbox(self.user, name)
        sources, copies = [], []
        try:
            for _, info in chosen:
                try:
                    data = await asyncio.to_thread(view.mailbox.read, info.key)
                except KeyError:
                    continue
                # RFC 9051 §6.4.7: the copy keeps the flags and the internal date
                when = info.internaldate
                copies.append(await asyncio.to_thread(_store_copy, target, data, info.flags, when))
                sources.append(info.uid)
            validity = target.uidvalidity
        finally:
            target.close()
        if not copies:
            return No("messages vanished", codes.EXPUNGEISSUED)
        code = codes.copyuid(validity, SequenceSet.of(sources), SequenceSet.of(copies))
        if not move:
            return Ok("COPY completed", code)
        self.out(UntaggedOk("moved", code))  # RFC 6851 §4.3
        moved = [(n, m) for n, m in chosen if m.uid in set(sources)]
        for update in await asyncio.to_thread(view.remove, moved):
            self.out(update)
        return Ok("MOVE completed")


_UID = FetchAttribute("UID")
_FLAGS = FetchAttribute("FLAGS")
_MODSEQ = FetchAttribute("MODSEQ")
_BATCH_MESSAGES = 128  # FETCH responses built and written at once
_BATCH_OCTETS = 1 << 20  # of message content read for one batch


async def _read_ahead(
    view: SelectedMailbox, batches: list[list[tuple[int, MessageInfo]]], seen: bool, content: bool
) -> AsyncIterator[list[tuple[int, MessageInfo, bytes | None, bool]]]:
    """Each batch as `SelectedMailbox.load` gives it: on the event loop while the messages
    are in the page cache (`load_cached`), else from a worker thread, where content is read
    one batch ahead, while the previous one is being sent (the disk and the client's reading
    overlap), unless fetching sets \\Seen: only messages about to be sent are marked."""
    if not (content or seen):
        for batch in batches:
            yield [(number, info, None, False) for number, info in batch]
        return
    load = functools.partial(view.load, content=content, seen=seen)

    def start(batch: list[tuple[int, MessageInfo]]) -> asyncio.Future[Any]:
        return asyncio.ensure_future(asyncio.to_thread(load, batch))

    ahead: asyncio.Future[Any] | None = None
    try:
        for index, batch in enumerate(batches):
            if ahead is None and content and not seen:
                ready = view.load_cached(batch)
                if ready is not None:
                    yield ready
                    continue
            current = ahead or start(batch)
            ahead = start(batches[index + 1]) if index + 1 < len(batches) and not seen else None
            yield await current
    finally:
        if ahead is not None:
            ahead.cancel()


def _batches(
    chosen: list[tuple[int, MessageInfo]], content: bool
) -> Iterator[list[tuple[int, MessageInfo]]]:
    """`chosen` in runs of at most `_BATCH_MESSAGES` and, when content is read, about
    `_BATCH_OCTETS` (never less than one message)."""
    batch: list[tuple[int, MessageInfo]] = []
    octets = 0
    for target in chosen:
        if batch and (
            len(batch) >= _BATCH_MESSAGES or (content and octets + target[1].size > _BATCH_OCTETS)
        ):
            yield batch
            batch, octets = [], 0
        batch.append(target)
        octets += target[1].size
    if batch:
        yield batch


def _append_all(mailbox: Any, messages: tuple[events.AppendMessage, ...]) -> list[int]:
    """Store every message of an APPEND or none (RFC 3502 §3); their UIDs, ascending.

    A failure (a flag the store cannot keep, a full disk) takes back the messages already
    stored. A crash midway may leave those: Maildir has no transaction over several files.
    """
    uids: list[int] = []
    try:
        for message in messages:
            flags = frozenset(f for f in message.flags if f != "\\Recent")
            when = None if message.date is None else message.date.timestamp()  # §6.3.12
            uids.append(_store_copy(mailbox, message.message, flags, when))
    except BaseException:
        stored = set(uids)
        mailbox.remove([info.key for info in mailbox.messages() if info.uid in stored])
        raise
    return uids


def _store_copy(
    mailbox: Any, data: bytes, flags: frozenset[str], internaldate: float | None = None
) -> int:
    """Deliver `data` to `mailbox` with `flags` (and `internaldate`); the UID it got.

    When the flags cannot be stored, the message is taken back before the error goes on.
    """
    key = mailbox.deliver(data, internaldate=internaldate)
    try:
        if flags:
            return int(mailbox.set_flags(key, flags).uid)
        for info in mailbox.messages():
            if info.key == key:
                return int(info.uid)
    except BaseException:
        mailbox.messages()  # index it first: remove() skips keys the index does not know
        mailbox.remove([key])
        raise
    raise KeyError(key)
