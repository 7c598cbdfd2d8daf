"""MaildirStore: durable delivery, the UID/flag/modseq index and stable keys, on real files."""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from postoffice.storage.maildir import INDEX_NAME, MaildirMailbox
from postoffice.storage.maildir_store import MaildirStore
from tests.conftest import interned

MESSAGE = b"From: a@remote.example\r\nSubject: hi\r\n\r\nbody\r\n"
NAME = re.compile(r"(\d+)\.M(\d+)P(\d+)Q([A-Za-z0-9_-]+)\.mx\.test,S=(\d+)")


@pytest.fixture
def store(tmp_path: Path) -> MaildirStore:
    return MaildirStore(tmp_path / "mail", hostname="mx.test")


@pytest.fixture
def inbox(store: MaildirStore) -> Iterator[MaildirMailbox]:
    with store.mailbox("alice@a.test") as mailbox:
        yield mailbox


def files(mailbox: MaildirMailbox, sub: str) -> list[str]:
    return sorted(os.listdir(mailbox.path / sub))


def put(mailbox: MaildirMailbox, sub: str, name: str, data: bytes = MESSAGE) -> None:
    """Drop a file the way another Maildir writer would, bypassing deliver()."""
    (mailbox.path / sub).mkdir(parents=True, exist_ok=True)
    (mailbox.path / sub / name).write_bytes(data)


def drop_index(mailbox: MaildirMailbox) -> None:
    for name in (INDEX_NAME, INDEX_NAME + "-wal", INDEX_NAME + "-shm"):
        (mailbox.path / name).unlink(missing_ok=True)


# -- layout -------------------------------------------------------------------


def test_users_live_under_domain_and_local_part(store: MaildirStore, tmp_path: Path) -> None:
    assert store.mailbox("Alice@A.Test").path == tmp_path / "mail" / "a.test" / "alice"
    assert store.mailbox("alice@a.test", "inbox").path == tmp_path / "mail" / "a.test" / "alice"
    assert store.mailbox("alice@a.test", "Sent").path == tmp_path / "mail/a.test/alice/.Sent"


@pytest.mark.parametrize("address", ["../x@a.test", "a/b@a.test", "alice@../a.test", "alice"])
def test_unsafe_addresses_are_refused(store: MaildirStore, address: str) -> None:
    with pytest.raises(ValueError, match="not a valid"):
        store.mailbox(address)


@pytest.mark.parametrize("folder", ["", "a/b", "..", "a..b", ".hidden", "end.", "x\x00y", "\t"])
def test_unsafe_folder_names_are_refused(store: MaildirStore, folder: str) -> None:
    with pytest.raises(ValueError, match="is not allowed"):
        store.mailbox("alice@a.test", folder)


def test_folders_are_maildir_plus_plus(store: MaildirStore) -> None:
    assert list(store.folders("alice@a.test")) == ["INBOX"]
    with store.mailbox("alice@a.test", "Sent") as sent:
        sent.deliver(MESSAGE)
        assert (sent.path / "maildirfolder").is_file()
    with store.mailbox("alice@a.test", "Lists.python") as lists:
        assert lists.messages() == []  # first use creates the folder
    assert list(store.folders("alice@a.test")) == ["INBOX", "Lists.python", "Sent"]
    assert not (store.mailbox("alice@a.test").path / "maildirfolder").exists()


# -- delivery -----------------------------------------------------------------


def test_deliver_writes_exactly_the_bytes_into_new(inbox: MaildirMailbox) -> None:
    key = inbox.deliver(MESSAGE, delivery_id="Q1-0")
    assert files(inbox, "new") == [key]
    assert files(inbox, "tmp") == []
    assert files(inbox, "cur") == []
    assert (inbox.path / "new" / key).read_bytes() == MESSAGE
    assert (inbox.path / "new" / key).stat().st_mode & 0o777 == 0o600
    match = NAME.fullmatch(key)
    assert match is not None
    assert match[3] == str(os.getpid())
    assert match[4] == "Q1-0"
    assert int(match[5]) == len(MESSAGE)


def test_a_burst_of_first_deliveries_to_a_new_mailbox_all_succeed(
    store: MaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads delivering while another is still making the folder find new/ there."""
    real_mkdir = Path.mkdir

    def slow_mkdir(path: Path, *args: object, **kwargs: object) -> None:
        if path.name == "new":
            time.sleep(0.2)  # widen the window between the folder's subdirectories
        real_mkdir(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", slow_mkdir)

    def deliver(i: int) -> str:
        with store.mailbox("fresh@example.org") as mailbox:
            time.sleep(0.02 * i)  # some arrive while the folder is being made
            return mailbox.deliver(b"Subject: %d\r\n\r\nbody\r\n" % i)

    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(deliver, range(16)))
    with store.mailbox("fresh@example.org") as mailbox:
        assert sorted(m.key for m in mailbox.messages()) == sorted(keys)


def test_keys_are_unique_without_a_delivery_id(inbox: MaildirMailbox) -> None:
    keys = {inbox.deliver(MESSAGE) for _ in range(50)}
    assert len(keys) == 50
    assert len(files(inbox, "new")) == 50


def test_an_invalid_delivery_id_is_refused(inbox: MaildirMailbox) -> None:
    with pytest.raises(ValueError, match="delivery id"):
        inbox.deliver(MESSAGE, delivery_id="a.b")


def test_hostname_characters_that_would_break_the_name_are_escaped(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path, hostname="odd/host:name,x")
    with store.mailbox("alice@a.test") as mailbox:
        key = mailbox.deliver(MESSAGE)
        assert key.endswith(f".odd\\057host\\072name\\054x,S={len(MESSAGE)}")
        assert [m.size for m in mailbox.messages()] == [len(MESSAGE)]


def test_a_failed_delivery_leaves_no_file_behind(inbox: MaildirMailbox) -> None:
    inbox.deliver(MESSAGE)
    for name in files(inbox, "new"):
        (inbox.path / "new" / name).unlink()
    (inbox.path / "new").rmdir()
    (inbox.path / "new").write_bytes(b"")  # a file where new/ should be: rename fails
    with pytest.raises(OSError):
        inbox.deliver(MESSAGE)
    assert files(inbox, "tmp") == []


def test_has_delivery(store: MaildirStore, inbox: MaildirMailbox) -> None:
    assert not inbox.has_delivery("Q1-0")  # no Maildir yet
    key = inbox.deliver(MESSAGE, delivery_id="Q1-0")
    inbox.deliver(MESSAGE, delivery_id="XQ1-1")
    assert inbox.has_delivery("Q1-0")
    assert inbox.has_delivery("XQ1-1")
    assert not inbox.has_delivery("Q1-1")
    assert not inbox.has_delivery("1-0")
    inbox.set_flags(key, frozenset({"\\Seen"}))  # now in cur/
    assert inbox.has_delivery("Q1-0")
    assert not store.mailbox("bob@a.test").has_delivery("Q1-0")


# -- the index ----------------------------------------------------------------


def test_messages_get_ascending_uids_in_delivery_order(inbox: MaildirMailbox) -> None:
    keys = [inbox.deliver(MESSAGE + bytes([65 + n])) for n in range(3)]
    listed = inbox.messages()
    assert [m.uid for m in listed] == [1, 2, 3]
    assert [m.key for m in listed] == keys
    assert [m.size for m in listed] == [len(MESSAGE) + 1] * 3
    assert all(m.flags == frozenset() for m in listed)
    assert listed[0].internaldate <= listed[2].internaldate
    assert inbox.uidnext == 4
    assert inbox.read(keys[1]) == MESSAGE + b"B"
    with inbox.open(keys[2]) as file:
        assert file.read() == MESSAGE + b"C"


def test_uids_are_stable_across_reopening_and_new_mail_follows(store: MaildirStore) -> None:
    with store.mailbox("alice@a.test") as first:
        first.deliver(MESSAGE)
        first.deliver(MESSAGE)
        before = first.messages()
        uidvalidity = first.uidvalidity
    with store.mailbox("alice@a.test") as second:
        third = second.deliver(MESSAGE)
        after = second.messages()
        assert second.uidvalidity == uidvalidity
    assert after[:2] == before
    assert (after[2].uid, after[2].key) == (3, third)


def test_uids_follow_arrival_time_not_listing_order(inbox: MaildirMailbox) -> None:
    put(inbox, "new", "1700000300.M5P1Q1.other,S=3", b"abc")
    put(inbox, "cur", "1700000100.M900000P1Q2.other:2,S", b"abcd")
    put(inbox, "new", "1700000100.M5P1Q3.other")
    put(inbox, "new", "foreign-name")
    os.utime(inbox.path / "new" / "foreign-name", (1700000200, 1700000200))
    listed = inbox.messages()
    assert [m.key for m in listed] == [
        "1700000100.M5P1Q3.other",
        "1700000100.M900000P1Q2.other",
        "foreign-name",
        "1700000300.M5P1Q1.other,S=3",
    ]
    assert [m.uid for m in listed] == [1, 2, 3, 4]
    assert [m.size for m in listed] == [len(MESSAGE), 4, len(MESSAGE), 3]
    assert listed[1].flags == frozenset({"\\Seen"})
    assert listed[2].internaldate == 1700000200
    assert listed[0].internaldate == pytest.approx(1700000100.000005)


def test_vanished_files_are_dropped_and_uids_not_reused(inbox: MaildirMailbox) -> None:
    first, second = inbox.deliver(MESSAGE), inbox.deliver(MESSAGE)
    inbox.messages()
    (inbox.path / "new" / second).unlink()  # another program deleted it
    assert [m.key for m in inbox.messages()] == [first]
    third = inbox.deliver(MESSAGE)
    assert [(m.uid, m.key) for m in inbox.messages()] == [(1, first), (3, third)]
    with pytest.raises(KeyError):
        inbox.read(second)


def test_keys_survive_deleting_the_index(store: MaildirStore) -> None:
    with store.mailbox("alice@a.test") as mailbox:
        keys = [mailbox.deliver(MESSAGE) for _ in range(3)]
        mailbox.set_flags(keys[0], frozenset({"\\Seen"}))
        mailbox.remove([keys[1]])
        mailbox.messages()
        drop_index(mailbox)
    with store.mailbox("alice@a.test") as rebuilt:
        listed = rebuilt.messages()
        assert rebuilt.uidvalidity > 0
    assert [(m.uid, m.key) for m in listed] == [(1, keys[0]), (2, keys[2])]
    assert listed[0].flags == frozenset({"\\Seen"})  # flags live in the file name


def test_ten_thousand_messages(inbox: MaildirMailbox) -> None:
    (inbox.path / "new").mkdir(parents=True)
    for sub in ("cur", "tmp"):
        (inbox.path / sub).mkdir()
    for n in range(10_000):
        name = f"{1_700_000_000 + n}.M{n % 1_000_000}P1Q{n}.gen,S=5"
        (inbox.path / "new" / name).write_bytes(b"x\r\n\r\n")
    listed = inbox.messages()
    assert len(listed) == 10_000
    assert [m.uid for m in listed] == list(range(1, 10_001))
    assert listed[-1].key == "1700009999.M9999P1Q9999.gen,S=5"
    assert inbox.messages() == listed  # the no-change sync
    assert inbox.uidnext == 10_001


# -- flags --------------------------------------------------------------------


def test_flags_are_maildir_info_letters(inbox: MaildirMailbox) -> None:
    key = inbox.deliver(MESSAGE)
    inbox.messages()
    everything = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})
    info = inbox.set_flags(key, everything)
    assert files(inbox, "new") == []
    assert files(inbox, "cur") == [f"{key}:2,DFRST"]
    assert info.flags == everything
    assert inbox.set_flags(key, frozenset({"\\seen"})).flags == frozenset({"\\Seen"})
    assert files(inbox, "cur") == [f"{key}:2,S"]
    inbox.set_flags(key, frozenset())
    assert files(inbox, "cur") == [f"{key}:2,"]
    assert inbox.read(key) == MESSAGE


def test_letters_of_other_programs_are_kept(inbox: MaildirMailbox) -> None:
    put(inbox, "cur", "1700000000.M1P1Q1.other:2,PSa")
    inbox.set_flags("1700000000.M1P1Q1.other", frozenset({"\\Flagged"}))
    assert files(inbox, "cur") == ["1700000000.M1P1Q1.other:2,FPa"]


def test_modseq_rises_with_each_change(inbox: MaildirMailbox) -> None:
    key = inbox.deliver(MESSAGE)
    (listed,) = inbox.messages()
    start = inbox.highestmodseq
    assert listed.modseq == start
    seen = inbox.set_flags(key, frozenset({"\\Seen"}))
    assert seen.modseq == start + 1 == inbox.highestmodseq
    assert inbox.set_flags(key, frozenset({"\\Seen"})).modseq == start + 1  # no change
    tagged = inbox.set_flags(key, frozenset({"\\Seen", "$Forwarded", "Work"}))
    assert tagged.modseq == start + 2
    assert tagged.flags == frozenset({"\\Seen", "$Forwarded", "Work"})
    assert inbox.messages()[0] == tagged  # keywords live in the index


def test_a_flag_change_by_another_program_is_picked_up(inbox: MaildirMailbox) -> None:
    key = inbox.deliver(MESSAGE)
    (before,) = inbox.messages()
    os.rename(inbox.path / "new" / key, inbox.path / "cur" / f"{key}:2,RS")
    (after,) = inbox.messages()
    assert after.flags == frozenset({"\\Answered", "\\Seen"})
    assert after.modseq > before.modseq
    assert after.uid == before.uid


def test_a_file_moved_behind_the_index_is_still_found(inbox: MaildirMailbox) -> None:
    key = inbox.deliver(MESSAGE)
    inbox.messages()
    os.rename(inbox.path / "new" / key, inbox.path / "cur" / f"{key}:2,S")
    assert inbox.read(key) == MESSAGE
    os.rename(inbox.path / "cur" / f"{key}:2,S", inbox.path / "cur" / f"{key}:2,T")
    assert inbox.set_flags(key, frozenset({"\\Seen", "\\Deleted"})).uid == 1
    assert files(inbox, "cur") == [f"{key}:2,ST"]


def test_read_cached_gives_listed_small_messages_and_never_guesses(
    store: MaildirStore, inbox: MaildirMailbox
) -> None:
    key, big = inbox.deliver(MESSAGE), inbox.deliver(MESSAGE * 100)
    assert inbox.read_cached(key, 4096) is None  # not listed yet: read() finds it
    inbox.messages()
    assert inbox.read_cached(key, 4096) == MESSAGE  # just written: in the page cache
    assert inbox.read_cached(big, 4096) is None  # over the limit
    with store.mailbox("alice@a.test") as other:
        other.set_flags(key, frozenset({"\\Seen"}))  # renamed by another session here:
    assert inbox.read_cached(key, 4096) == MESSAGE  # where it went is shared
    os.rename(inbox.path / "cur" / f"{key}:2,S", inbox.path / "cur" / f"{key}:2,FS")
    assert inbox.read_cached(key, 4096) is None  # renamed by a foreign tool
    assert inbox.read(key) == MESSAGE  # found again
    assert inbox.read_cached(key, 4096) == MESSAGE
    size = len(MESSAGE)  # the listed size, given, spares the fstat but is checked
    assert inbox.read_cached(key, 4096, size) == MESSAGE
    assert inbox.read_cached(key, 4096, size - 1) is None
    assert inbox.read_cached(key, 4096, size + 1) is None
    assert inbox.read_cached(big, 4096, size * 100) is None  # over the limit


def test_a_listed_file_in_new_with_info_letters_is_read_where_it_is(
    inbox: MaildirMailbox,
) -> None:
    """A foreign writer may leave info letters on a file in new/: its name is not its key,
    so where it is must be remembered, not assumed to be new/<key>."""
    put(inbox, "new", "1700000000.M1P1.other.test:2,S")
    put(inbox, "new", "1700000001.M2P1.other.test", MESSAGE * 2)
    first, second = inbox.messages()
    assert first.flags == frozenset({"\\Seen"})
    assert inbox.read_cached(first.key, 4096) == MESSAGE
    assert inbox.read(first.key) == MESSAGE
    assert inbox.read_cached(second.key, 4096) == MESSAGE * 2
    assert inbox.read(second.key) == MESSAGE * 2


def test_two_sessions_share_the_index(store: MaildirStore) -> None:
    with store.mailbox("alice@a.test") as one, store.mailbox("alice@a.test") as two:
        key = one.deliver(MESSAGE)
        assert two.set_flags(key, frozenset({"\\Seen"})).uid == 1  # two syncs on demand
        assert one.read(key) == MESSAGE
        assert one.messages() == two.messages()


@pytest.mark.parametrize("flag", ["\\Recent", "\\Unknown", "two words", "a(b", "ünïcode"])
def test_flags_that_cannot_be_stored(inbox: MaildirMailbox, flag: str) -> None:
    key = inbox.deliver(MESSAGE)
    with pytest.raises(ValueError, match=re.escape(flag)):
        inbox.set_flags(key, frozenset({flag}))


def test_unknown_keys(inbox: MaildirMailbox) -> None:
    inbox.deliver(MESSAGE)
    for call in (inbox.read, inbox.open, lambda k: inbox.set_flags(k, frozenset())):
        with pytest.raises(KeyError):
            call("no-such-key")


# -- removal ------------------------------------------------------------------


def test_remove(inbox: MaildirMailbox) -> None:
    keys = [inbox.deliver(MESSAGE) for _ in range(3)]
    inbox.set_flags(keys[0], frozenset({"\\Deleted"}))
    before = inbox.highestmodseq
    inbox.remove([keys[0], keys[2], "no-such-key"])
    assert files(inbox, "cur") == []
    assert files(inbox, "new") == [keys[1]]
    assert [m.key for m in inbox.messages()] == [keys[1]]
    assert inbox.highestmodseq > before
    inbox.remove([keys[0]])  # again: already gone


def test_expunges_are_remembered_with_their_modseq(inbox: MaildirMailbox) -> None:
    """RFC 7162 §3.2: what vanished since a modseq, by removal or by another program."""
    keys = [inbox.deliver(MESSAGE) for _ in range(4)]
    inbox.messages()
    start = inbox.highestmodseq
    assert inbox.expunged_since(start) == []
    inbox.remove([keys[1]])
    after_remove = inbox.highestmodseq
    assert after_remove == start + 1
    (inbox.path / "new" / keys[3]).unlink()  # a POP3 client of another server, say
    inbox.messages()
    assert inbox.highestmodseq == after_remove + 1
    assert inbox.expunged_since(start) == [2, 4]
    assert inbox.expunged_since(after_remove) == [4]
    assert inbox.expunged_since(inbox.highestmodseq) == []


def test_an_index_from_before_the_expunge_record_says_it_does_not_know(
    inbox: MaildirMailbox,
) -> None:
    """An index made before table `expunged` existed gains it empty; older modseqs get None."""
    inbox.remove([inbox.deliver(MESSAGE)])
    inbox.close()
    db = sqlite3.connect(inbox.path / INDEX_NAME)
    db.execute("DROP TABLE expunged")
    db.execute("DELETE FROM meta WHERE name = 'expunged_from'")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    reopened = MaildirMailbox(inbox.path, "mx.test")
    try:
        highest = reopened.highestmodseq
        assert reopened.expunged_since(highest - 1) is None
        assert reopened.expunged_since(highest) == []
    finally:
        reopened.close()


# -- stamp (what IMAP compares before re-listing a selected mailbox) ----------------------


def _age(mailbox: MaildirMailbox) -> None:
    """Make new/ and cur/ look last changed a minute ago, past the mtime settle time."""
    for sub in ("new", "cur"):
        os.utime(mailbox.path / sub, (time.time() - 60, time.time() - 60))


def test_stamp_moves_with_every_change_other_writers_make(
    store: MaildirStore, inbox: MaildirMailbox
) -> None:
    other = store.mailbox("alice@a.test")
    key = other.deliver(MESSAGE)
    other.set_flags(key, frozenset({"\\Seen"}))  # into cur/
    _age(inbox)
    stamp, settled = inbox.stamp()
    assert settled and inbox.stamp() == (stamp, True)  # nothing changed: it stands
    other.set_flags(key, frozenset({"\\Seen", "$Label1"}))  # keyword only: no file renamed
    keyword, settled = inbox.stamp()
    assert keyword != stamp
    assert inbox.messages()[0].flags == {"\\Seen", "$Label1"}
    put(inbox, "new", "1700000300.M1P1.foreign")  # a foreign tool: no index change at all
    young, settled = inbox.stamp()
    assert young != keyword and not settled  # moved, but too young to trust alone
    _age(inbox)
    assert inbox.stamp()[0] not in (young, keyword)
    other.close()


def test_another_process_changing_only_the_index_moves_the_stamp(
    store: MaildirStore, inbox: MaildirMailbox
) -> None:
    key = inbox.deliver(MESSAGE)
    inbox.messages()
    _age(inbox)
    stamp, _ = inbox.stamp()
    elsewhere = MaildirMailbox(inbox.path, "other")  # its own connection, nothing published
    elsewhere.set_flags(key, frozenset({"$Label1"}))
    elsewhere.close()
    assert inbox.stamp()[0] != stamp
    assert store.mailbox("alice@a.test").messages()[0].flags == {"$Label1"}


def test_an_unchanged_folder_is_listed_from_the_shared_cache(
    store: MaildirStore, inbox: MaildirMailbox
) -> None:
    inbox.deliver(MESSAGE)
    inbox.messages()
    _age(inbox)
    first = store.mailbox("alice@a.test").messages()
    put(inbox, "new", "1700000300.M1P1.foreign")
    _age(inbox)
    again = store.mailbox("alice@a.test")
    assert [m.key for m in again.messages()] == [first[0].key, "1700000300.M1P1.foreign"]
    again.messages().clear()  # a copy: the next caller still gets both
    assert len(store.mailbox("alice@a.test").messages()) == 2


def test_a_deleted_index_is_rebuilt_although_another_session_had_it_open(
    store: MaildirStore, inbox: MaildirMailbox
) -> None:
    inbox.deliver(MESSAGE)
    validity = inbox.uidvalidity
    inbox.close()
    drop_index(inbox)
    fresh = store.mailbox("alice@a.test")
    assert fresh.uidvalidity > validity
    assert len(fresh.messages()) == 1


def test_concurrent_deliveries_share_the_fsync_of_new(
    inbox: MaildirMailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync, dir_syncs = os.fsync, []

    def slow_fsync(fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            dir_syncs.append(fd)
            time.sleep(0.01)  # long enough for other deliveries to queue behind this one
        real_fsync(fd)

    inbox.deliver(MESSAGE)  # the folder exists before the clock starts
    dir_syncs.clear()
    monkeypatch.setattr(os, "fsync", slow_fsync)
    with ThreadPoolExecutor(16) as pool:
        keys = list(pool.map(lambda _: inbox.deliver(MESSAGE), range(64)))
    assert len(dir_syncs) < len(keys)  # without group commit: one per delivery
    assert set(keys) <= set(files(inbox, "new"))


def test_message_names_are_not_interned(inbox: MaildirMailbox) -> None:
    """A name a Path parsed stays interned while alive: every message's would fill the
    interpreter's table of interned strings (fileio.file_in)."""
    keys = [inbox.deliver(MESSAGE) for _ in range(3)]
    foreign = os.path.join(inbox.path, "new", f"{1_700_000_000}.M1P1.foreign")  # not a Path
    with open(foreign, "wb") as handle:
        handle.write(b"Subject: x\n\nbody\n")
    listed = inbox.messages()
    for info in listed:
        inbox.read(info.key)
        inbox.open(info.key).close()
    inbox.set_flags(keys[0], frozenset({"\\Seen"}))
    inbox.remove([keys[1]])
    names = [name for sub in ("new", "cur") for name in os.listdir(inbox.path / sub)]
    texts = {*keys, *names, *(info.key for info in listed)}
    assert [text for text in texts if interned(text)] == []


def test_deliveries_cut_off_by_a_crash_are_swept_from_tmp_at_the_next_sync(
    inbox: MaildirMailbox,
) -> None:
    inbox.deliver(b"Subject: first\r\n\r\n")
    tmp = inbox.path / "tmp"
    dead, in_progress = tmp / "1.M1P1Qdead.host,S=5", tmp / "2.M2P2Qlive.host,S=5"
    for path in (dead, in_progress):
        path.write_bytes(b"cut\r\n")
    long_ago = time.time() - 37 * 3600  # the Maildir rule: untouched for 36 hours
    os.utime(dead, (long_ago, long_ago))

    inbox.deliver(b"Subject: second\r\n\r\n")  # new mail: the next listing syncs
    assert len(inbox.messages()) == 2

    assert not dead.exists()
    assert in_progress.exists()  # may still be renamed into new/ by its writer
