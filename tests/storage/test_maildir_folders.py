"""MaildirStore folders and syncing: delete and rename, the mtime shortcut, change notifications.

Standards: Maildir++, RFC 9051 §6.3.4-§6.3.6 (DELETE, RENAME), RFC 2177 (IDLE notifications)
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from postoffice.storage.maildir import MaildirMailbox
from postoffice.storage.maildir_store import MaildirStore

USER = "alice@a.test"
MESSAGE = b"From: a@remote.example\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.fixture
def store(tmp_path: Path) -> MaildirStore:
    return MaildirStore(tmp_path / "mail", hostname="mx.test")


def make(store: MaildirStore, *folders: str) -> None:
    for folder in folders:
        with store.mailbox(USER, folder) as mailbox:
            mailbox.deliver(MESSAGE)
            mailbox.messages()


def age(mailbox: MaildirMailbox, when: int) -> None:
    """Set the mtimes (ns) of new/ and cur/ to `when`, as if nothing had changed since."""
    for sub in ("new", "cur"):
        os.utime(mailbox.path / sub, ns=(when, when))


def test_delete_folder_removes_it_but_not_its_children(store: MaildirStore) -> None:
    make(store, "Work", "Work.2026")
    store.delete_folder(USER, "Work")
    assert list(store.folders(USER)) == ["INBOX", "Work.2026"]
    assert [p.name for p in store.user_dir(USER).iterdir() if p.name.startswith("..")] == []
    with pytest.raises(FileNotFoundError):
        store.delete_folder(USER, "Work")


def test_a_folder_made_again_within_the_second_gets_a_new_uidvalidity(
    store: MaildirStore,
) -> None:
    """RFC 9051 §2.3.1.1: a name's UIDVALIDITY is never reused with other UIDs."""
    seen = []
    for _ in range(3):  # all within one second: the creation time alone would repeat
        make(store, "Work")
        with store.mailbox(USER, "Work") as mailbox:
            seen.append(mailbox.uidvalidity)
        store.delete_folder(USER, "Work")
    with store.mailbox(USER) as inbox:
        seen.append(inbox.uidvalidity)
    assert seen == sorted(set(seen)), "strictly increasing for the user, so never reused"
    assert seen[0] >= int(time.time()) - 60  # still the creation time when it is free
    with store.mailbox(USER, "Work") as mailbox:  # and kept while the folder lives
        first = mailbox.uidvalidity
    with store.mailbox(USER, "Work") as mailbox:
        assert mailbox.uidvalidity == first > seen[-1]


def test_a_tombstone_left_by_a_crash_is_never_a_folder_and_is_cleaned_up(
    store: MaildirStore,
) -> None:
    make(store, "Old", "Other")
    base = store.user_dir(USER)
    os.rename(base / ".Old", base / "..postoffice-deleted-0123")  # crashed before rmtree
    assert list(store.folders(USER)) == ["INBOX", "Other"]
    store.delete_folder(USER, "Other")
    assert sorted(p.name for p in base.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("name", ["INBOX", "inbox", "../x", "a..b", ".hidden", "a/b", ""])
def test_delete_and_rename_refuse_inbox_and_unsafe_names(store: MaildirStore, name: str) -> None:
    make(store, "Work")
    with pytest.raises(ValueError):
        store.delete_folder(USER, name)
    with pytest.raises(ValueError):
        store.rename_folder(USER, name, "Elsewhere")
    with pytest.raises(ValueError):
        store.rename_folder(USER, "Work", name)
    assert list(store.folders(USER)) == ["INBOX", "Work"]


def test_rename_moves_children_and_keeps_uids(store: MaildirStore) -> None:
    make(store, "Work", "Work.2026", "Workshop")
    with store.mailbox(USER, "Work.2026") as mailbox:
        before = (mailbox.uidvalidity, [m.uid for m in mailbox.messages()])
    store.rename_folder(USER, "Work", "Jobs")
    assert list(store.folders(USER)) == ["INBOX", "Jobs", "Jobs.2026", "Workshop"]
    with store.mailbox(USER, "Jobs.2026") as mailbox:
        assert (mailbox.uidvalidity, [m.uid for m in mailbox.messages()]) == before


def test_rename_refuses_missing_sources_and_existing_targets(store: MaildirStore) -> None:
    make(store, "A", "A.x", "B", "C.x")
    with pytest.raises(FileNotFoundError):
        store.rename_folder(USER, "Nope", "D")
    with pytest.raises(FileExistsError):
        store.rename_folder(USER, "A", "B")
    with pytest.raises(FileExistsError):  # a child's new name is taken: nothing moves
        store.rename_folder(USER, "A", "C")
    assert list(store.folders(USER)) == ["INBOX", "A", "A.x", "B", "C.x"]


def test_unchanged_directories_skip_the_listing(store: MaildirStore) -> None:
    with store.mailbox(USER) as mailbox:
        mailbox.deliver(MESSAGE)
        past = time.time_ns() - 10_000_000_000
        age(mailbox, past)
        assert len(mailbox.messages()) == 1  # mtimes changed since the last sync: lists
        hidden = mailbox.path / "new" / "1.M1P1Qforeign.other,S=10"
        hidden.write_bytes(MESSAGE)
        age(mailbox, past)  # the same old mtimes as recorded: the new file goes unseen
        assert len(mailbox.messages()) == 1
        os.utime(mailbox.path / "new")  # any real change moves the mtime on
        assert len(mailbox.messages()) == 2


def test_a_recent_mtime_always_lists_again(store: MaildirStore) -> None:
    with store.mailbox(USER) as mailbox:
        mailbox.deliver(MESSAGE)
        assert len(mailbox.messages()) == 1
        recorded = os.stat(mailbox.path / "new").st_mtime_ns
        (mailbox.path / "new" / "1.M1P1Qforeign.other,S=10").write_bytes(MESSAGE)
        os.utime(mailbox.path / "new", ns=(recorded, recorded))  # same tick as the last sync
        assert len(mailbox.messages()) == 2


def test_listing_again_makes_objects_only_for_what_changed(store: MaildirStore) -> None:
    """A folder is listed again after each change (every delivery into an INBOX an IMAP
    client watches with IDLE); unchanged messages keep the objects of the last listing."""
    with store.mailbox(USER) as mailbox:
        for _ in range(3):
            mailbox.deliver(MESSAGE)
        age(mailbox, time.time_ns() - 10_000_000_000)
        first = mailbox.messages()
        mailbox.set_flags(first[0].key, frozenset({"\\Seen"}))
        mailbox.deliver(MESSAGE)  # young mtimes: the next listing syncs the folder again
        again = mailbox.messages()
    assert [m.uid for m in again] == [1, 2, 3, 4]
    assert again[0] is not first[0] and again[0].flags == {"\\Seen"}
    assert again[1] is first[1] and again[2] is first[2]
    assert again[1].key is first[1].key


def test_writers_through_the_store_notify_watchers(store: MaildirStore) -> None:
    make(store, "Work")

    async def scenario() -> list[str]:
        seen = []
        inbox, work = store.watch(USER, "inbox"), store.watch(USER, "Work")
        try:
            with store.mailbox(USER) as mailbox:
                key = await asyncio.to_thread(mailbox.deliver, MESSAGE)
                await asyncio.wait_for(inbox.wait(), 1)
                seen.append("deliver")
                await asyncio.to_thread(mailbox.set_flags, key, frozenset({"\\Seen"}))
                await asyncio.wait_for(inbox.wait(), 1)
                seen.append("flags")
                await asyncio.to_thread(mailbox.set_flags, key, frozenset({"\\Seen"}))
                await asyncio.to_thread(mailbox.remove, [key])
                await asyncio.wait_for(inbox.wait(), 1)
                seen.append("remove")
            with pytest.raises(TimeoutError):  # unchanged flags, other folders: no news
                await asyncio.wait_for(inbox.wait(), 0.1)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(work.wait(), 0.1)
        finally:
            inbox.close()
            work.close()
        return seen

    assert asyncio.run(scenario()) == ["deliver", "flags", "remove"]
