"""IMAP commands on the user's mailboxes as a whole: LIST, CREATE, DELETE, RENAME, STATUS, SELECT.

Split from servers/imap.py by concern: the session class mixes these in. Folders are the
user's Maildir++ folders ("." is the hierarchy delimiter); INBOX, Sent, Drafts, Trash, Junk
and Archive are created at the first login and carry RFC 6154 special-use attributes.
Subscriptions are a plain `postoffice-subscriptions` file in the user's Maildir.

Standards: RFC 9051 §6.3, RFC 5258/RFC 5819 (LIST-EXTENDED, LIST-STATUS), RFC 6154
(SPECIAL-USE), RFC 5161 (ENABLE), RFC 2342 (NAMESPACE)
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from postoffice.fileio import replace_file
from postoffice.protocols.imap import No, Ok, UntaggedOk, codes, events, responses
from postoffice.servers.imap_mailbox import SYSTEM_FLAGS, SelectedMailbox

DELIMITER = "."
SPECIAL_USE = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}
SUBSCRIPTIONS = "postoffice-subscriptions"
NONEXISTENT = No("no such mailbox", codes.NONEXISTENT)
NOT_ALLOWED = No("mailbox name not allowed", codes.CANNOT)
_ENABLEABLE = frozenset({"IMAP4REV2", "CONDSTORE", "QRESYNC"})


class FolderCommands:
    """The mailbox-level commands of an IMAP session (mixed into `ImapSession`, which
    provides `ctx`, `user`, `conn`, `out`, `selected` and the selected-mailbox helpers)."""

    ctx: Any
    user: str

    def create_defaults(self, user: str) -> None:
        existing = set(self.ctx.store.folders(user))
        for name in ("INBOX", *SPECIAL_USE):
            if name not in existing:
                mailbox = self.ctx.store.mailbox(user, name)
                try:
                    mailbox.messages()  # creates the Maildir and its index
                finally:
                    mailbox.close()
        path = self.user_dir(user) / SUBSCRIPTIONS
        if not path.exists():
            text = "".join(f"{n}\n" for n in ("INBOX", *SPECIAL_USE))
            replace_file(path, text.encode("utf-8"))

    # -- authenticated: mailboxes ---------------------------------------------------------

    def user_dir(self, user: str | None = None) -> Path:
        return Path(self.ctx.store.user_dir(user or self.user))  # type: ignore[attr-defined]

    def folders(self) -> list[str]:
        return list(self.ctx.store.folders(self.user))

    def exists(self, name: str) -> bool:
        return name in self.folders()

    @staticmethod
    def canonical(name: str) -> str:
        return "INBOX" if name.upper() == "INBOX" else name

    def subscriptions(self) -> list[str]:
        try:
            text = (self.user_dir() / SUBSCRIPTIONS).read_text("utf-8")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line]

    def save_subscriptions(self, names: list[str]) -> None:
        text = "".join(f"{n}\n" for n in dict.fromkeys(names))
        replace_file(self.user_dir() / SUBSCRIPTIONS, text.encode("utf-8"))

    async def on_enable(self, event: events.Enable) -> responses.Response:
        names = tuple(n for n in event.capabilities if n in _ENABLEABLE)
        self.out(responses.Enabled(names))
        return Ok("ENABLE completed")

    async def on_namespace(self, event: events.Namespace) -> responses.Response:
        self.out(responses.Namespaces((("", DELIMITER),)))
        return Ok("NAMESPACE completed")

    def attributes(self, name: str, folders: list[str], subscribed: set[str]) -> list[str]:
        children = any(f.startswith(name + DELIMITER) for f in folders)
        attrs = ["\\HasChildren" if children else "\\HasNoChildren"]
        if name in SPECIAL_USE:
            attrs.append(SPECIAL_USE[name])
        if name in subscribed:
            attrs.append("\\Subscribed")
        return attrs

    async def on_list(self, event: events.List) -> responses.Response:
        if event.patterns == ("",):  # RFC 9051 §6.3.9: the delimiter and root
            self.out(responses.ListEntry("", DELIMITER, ("\\Noselect",)))
            return Ok("LIST completed")
        folders = self.folders()
        subscribed = set(self.subscriptions())
        want_subscribed = "SUBSCRIBED" in event.selection
        special_only = "SPECIAL-USE" in event.selection
        for name in folders:
            if not any(_match(event.reference + p, name) for p in event.patterns):
                continue
            if want_subscribed and name not in subscribed:
                continue
            if special_only and name not in SPECIAL_USE:
                continue
            attrs = self.attributes(name, folders, subscribed)
            if "SUBSCRIBED" not in event.returns and not want_subscribed:
                attrs = [a for a in attrs if a != "\\Subscribed"]
            self.out(responses.ListEntry(name, DELIMITER, tuple(attrs)))
            if event.status:
                self.out(await self.status_of(name, event.status))
        return Ok("LIST completed")

    async def on_lsub(self, event: events.Lsub) -> responses.Response:
        for name in self.subscriptions():
            if _match(event.reference + event.pattern, name):
                self.out(responses.ListEntry(name, DELIMITER, (), lsub=True))
        return Ok("LSUB completed")

    async def on_create(self, event: events.Create) -> responses.Response:
        name = self.canonical(event.mailbox.rstrip(DELIMITER))
        if self.exists(name):
            return No("mailbox already exists", codes.ALREADYEXISTS)
        try:
            mailbox = self.ctx.store.mailbox(self.user, name)
        except ValueError:
            return NOT_ALLOWED
        try:
            await asyncio.to_thread(mailbox.messages)
        finally:
            mailbox.close()
        return Ok("CREATE completed")

    async def on_delete(self, event: events.Delete) -> responses.Response:
        name = self.canonical(event.mailbox)
        if name == "INBOX":
            return No("INBOX cannot be deleted", codes.CANNOT)
        if self.selected is not None and self.selected.name == name:
            return No("mailbox is selected", codes.INUSE)
        try:
            await asyncio.to_thread(self.ctx.store.delete_folder, self.user, name)
        except (ValueError, FileNotFoundError):
            return NONEXISTENT
        self.save_subscriptions([s for s in self.subscriptions() if s != name])
        return Ok("DELETE completed")

    async def on_rename(self, event: events.Rename) -> responses.Response:
        """RFC 9051 §6.3.6: the mailbox and its children; renaming INBOX is not supported."""
        old, new = self.canonical(event.mailbox), self.canonical(event.new_name)
        if old == "INBOX":
            return No("renaming INBOX is not supported", codes.CANNOT)
        try:
            await asyncio.to_thread(self.ctx.store.rename_folder, self.user, old, new)
        except FileNotFoundError:
            return NONEXISTENT
        except FileExistsError:
            return No("mailbox already exists", codes.ALREADYEXISTS)
        except ValueError:
            return NOT_ALLOWED
        return Ok("RENAME completed")

    async def on_subscribe(self, event: events.Subscribe) -> responses.Response:
        name = self.canonical(event.mailbox)
        if not self.exists(name):
            return NONEXISTENT
        self.save_subscriptions([*self.subscriptions(), name])
        return Ok("SUBSCRIBE completed")

    async def on_unsubscribe(self, event: events.Unsubscribe) -> responses.Response:
        name = self.canonical(event.mailbox)
        self.save_subscriptions([s for s in self.subscriptions() if s != name])
        return Ok("UNSUBSCRIBE completed")

    async def status_of(self, name: str, items: tuple[str, ...]) -> responses.MailboxStatus:
        mailbox = self.ctx.store.mailbox(self.user, name)
        try:
            messages = await asyncio.to_thread(mailbox.messages)
            values = {
                "MESSAGES": len(messages),
                "UIDNEXT": mailbox.uidnext,
                "UIDVALIDITY": mailbox.uidvalidity,
                "UNSEEN": sum("\\Seen" not in m.flags for m in messages),
                "DELETED": sum("\\Deleted" in m.flags for m in messages),
                "SIZE": sum(m.size for m in messages),
                "RECENT": 0,  # \Recent is never set: see on_select
                "HIGHESTMODSEQ": mailbox.highestmodseq,
            }
        finally:
            mailbox.close()
        return responses.MailboxStatus(name, tuple((i, values[i]) for i in items if i in values))

    async def on_status(self, event: events.Status) -> responses.Response:
        name = self.canonical(event.mailbox)
        if not self.exists(name):
            return NONEXISTENT
        self.out(await self.status_of(name, event.items))
        return Ok("STATUS completed")

    async def on_select(self, event: events.Select | events.Examine) -> responses.Response:
        if self.selected is not None:
            self.out(UntaggedOk("previous mailbox closed", codes.CLOSED))  # RFC 9051 §7.1
        self.deselect()
        name = self.canonical(event.mailbox)
        if not self.exists(name):
            return NONEXISTENT
        readonly = isinstance(event, events.Examine)
        mailbox = self.ctx.store.mailbox(self.user, name)
        self.watch = self.ctx.store.watch(self.user, name)  # before the snapshot: miss nothing
        enabled = self.conn.enabled
        self.selected = selected = await asyncio.to_thread(
            SelectedMailbox,
            name,
            mailbox,
            readonly=readonly,
            condstore=event.condstore or "CONDSTORE" in enabled,
            qresync="QRESYNC" in enabled,
        )
        self.out(responses.Flags(SYSTEM_FLAGS))
        self.out(responses.Exists(len(selected.messages)))
        if "IMAP4REV2" not in self.conn.enabled:
            # \Recent is never set, so RECENT is always 0 (and SEARCH RECENT, NEW find
            # nothing): RFC 9051 dropped it, and RFC 3501 §2.3.2's "first session to be told
            # of the message" would need bookkeeping shared by every session and process
            # for a flag today's clients ignore; Gmail and others answer 0 the same way.
            self.out(responses.Recent(0))
        permanent = () if readonly else (*SYSTEM_FLAGS, "\\*")
        self.out(UntaggedOk("flags", codes.permanentflags(permanent)))
        self.out(UntaggedOk("UIDs valid", codes.uidvalidity(mailbox.uidvalidity)))
        self.out(UntaggedOk("predicted next UID", codes.uidnext(mailbox.uidnext)))
        self.out(UntaggedOk("modseq", codes.highestmodseq(mailbox.highestmodseq)))
        if event.qresync is not None:  # RFC 7162 §3.2.5.1, after the usual responses
            for update in await asyncio.to_thread(selected.resync, event.qresync):
                self.out(update)
        if readonly:
            return Ok("EXAMINE completed", codes.READ_ONLY)
        return Ok("SELECT completed", codes.READ_WRITE)


def _match(pattern: str, name: str) -> bool:
    """RFC 9051 §6.3.9: "*" matches anything, "%" anything but the delimiter."""
    if name == "INBOX":  # INBOX is case-insensitive
        pattern = re.sub("^inbox", "INBOX", pattern, flags=re.IGNORECASE)
    regex = "".join(".*" if c == "*" else "[^.]*" if c == "%" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name) is not None
