"""Cleanup's store: on the disk pool, or inline on the loop's thread for a lone session;
delivery at reception into local users' Maildirs."""

from __future__ import annotations

import asyncio
import errno
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from postoffice import fscommit
from postoffice.delivery.base import RecipientResult
from postoffice.delivery.local import AT_RECEPTION_RECIPIENTS, AtReception, LocalDeliveryAgent
from postoffice.delivery.routing import Router
from postoffice.mail.address import parse_address
from postoffice.queue.cleanup import Cleanup, Origin
from postoffice.queue.entry import QueueEntry, RecipientStatus
from postoffice.queue.spool import Spool
from postoffice.storage.directory import SqliteDirectory
from postoffice.storage.maildir_store import MaildirStore
from postoffice.testing.clock import FakeClock

MESSAGE = b"Subject: hi\r\n\r\nHello.\r\n"


class RecordingSpool(Spool):
    """A real spool that notes which thread each store ran on."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.threads: list[threading.Thread] = []

    def write(self, entry: QueueEntry, data: bytes, envelope: bytes | None = None) -> None:
        self.threads.append(threading.current_thread())
        super().write(entry, data, envelope)


@pytest.mark.parametrize("inline", [True, False])
def test_a_store_runs_inline_only_when_asked_and_is_durable_either_way(
    tmp_path: Path, inline: bool
) -> None:
    spool = RecordingSpool(tmp_path / "queue")
    directory = SqliteDirectory(
        tmp_path / "directory.sqlite",
        hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    cleanup = Cleanup(spool, directory, "mx.example.org", FakeClock())
    origin = Origin(client_ip="127.0.0.1", helo="client.example")
    rcpt = parse_address("bob@example.net")

    entry = asyncio.run(cleanup.submit(None, [rcpt], MESSAGE, origin, inline=inline))

    on_caller = spool.threads == [threading.main_thread()]
    assert on_caller is inline
    stored = Spool(tmp_path / "queue").read_message(entry.qid)  # as a restart would see it
    assert stored.endswith(MESSAGE) and stored.startswith(b"Received: from client.example")


def test_the_envelope_handed_on_is_the_one_stored(tmp_path: Path) -> None:
    """Receivers pass it down their pipe to the main process as it is (workers.py)."""
    handed: list[tuple[QueueEntry, bytes]] = []
    directory = SqliteDirectory(
        tmp_path / "directory.sqlite",
        hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    cleanup = Cleanup(
        Spool(tmp_path / "queue"),
        directory,
        "mx.example.org",
        FakeClock(),
        lambda entry, envelope: handed.append((entry, envelope)),
    )
    origin = Origin(client_ip="127.0.0.1", helo="client.example")
    entry = asyncio.run(cleanup.submit(None, [parse_address("bob@example.net")], MESSAGE, origin))

    [(told, envelope)] = handed
    assert told is entry
    [recovered] = Spool(tmp_path / "queue").recover()  # as a restart would see it
    assert envelope == recovered.to_json()


class RemoteAgent:
    """Stands for the SMTP agent: routing only compares agents, nothing is sent."""

    async def deliver(self, entry: QueueEntry, recipients: list[str]) -> list[RecipientResult]:
        raise AssertionError("not used at reception")


WAYS = ["group commit", "disk pool", "inline"]  # AtReception with syncfs, without, inline


class Reception:
    """A cleanup with delivery at reception, on a real spool, directory and Maildir store;
    `way` is one of WAYS."""

    def __init__(
        self,
        root: Path,
        way: str = "group commit",
        *,
        max_recipients: int = AT_RECEPTION_RECIPIENTS,
        sync: Callable[[int], None] = fscommit.syncfs,
    ) -> None:
        self.directory = SqliteDirectory(
            root / "directory.sqlite",
            hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
        )
        for domain in ("a.test", "b.test"):
            self.directory.add_domain(domain)
        for user in ("alice@a.test", "bob@b.test", "carol@b.test"):
            self.directory.add_user(user, "pw-long-enough-1")
        self.spool = Spool(root / "queue")
        self.store = MaildirStore(root / "mail", hostname="mx.test")
        local = LocalDeliveryAgent(self.store, self.spool, "mx.test")
        commit = fscommit.GroupCommit(root, sync=sync) if way == "group commit" else None
        self.inline = way == "inline"
        at_reception = AtReception(
            Router(self.directory, local, RemoteAgent()),
            local,
            commit=commit,
            max_recipients=max_recipients,
        )
        self.accepted: list[tuple[QueueEntry, bytes | None]] = []
        self.events: list[tuple[str, str, object]] = []
        self.cleanup = Cleanup(
            self.spool,
            self.directory,
            "mx.test",
            FakeClock(),
            lambda entry, envelope: self.accepted.append((entry, envelope)),
            at_reception=at_reception,
            on_event=lambda kind, entry, detail: self.events.append(
                (kind, entry.qid, detail["recipient"])
            ),
            commit=commit,
        )

    def submit(self, *recipients: str) -> QueueEntry:
        async def submit_and_let_the_loop_turn() -> QueueEntry:
            origin = Origin(client_ip="127.0.0.1", helo="client.example")
            rcpts = [parse_address(r) for r in recipients]
            entry = await self.cleanup.submit(None, rcpts, MESSAGE, origin, inline=self.inline)
            await asyncio.sleep(0)
            return entry

        return asyncio.run(submit_and_let_the_loop_turn())

    def inbox(self, address: str) -> list[bytes]:
        new = self.store.user_dir(address) / "new"
        return [p.read_bytes() for p in new.iterdir()] if new.is_dir() else []

    def staged(self, address: str) -> list[str]:
        tmp = self.store.user_dir(address) / "tmp"
        return os.listdir(tmp) if tmp.is_dir() else []


@pytest.mark.parametrize("way", WAYS)
def test_mail_for_local_users_is_in_their_maildirs_when_submit_returns_and_never_spooled(
    tmp_path: Path, way: str
) -> None:
    world = Reception(tmp_path, way)
    world.spool.reserve()
    reserved = set(os.listdir(tmp_path / "queue" / "messages"))

    entry = world.submit("alice@a.test", "bob@b.test")

    for user in ("alice@a.test", "bob@b.test"):
        [copy] = world.inbox(user)
        assert copy.startswith(b"Return-Path: <>\r\nDelivered-To: " + user.encode())
        assert f"id {entry.qid}".encode() in copy and copy.endswith(MESSAGE)
    assert world.accepted == [(entry, None)]  # nothing for the queue to schedule
    assert world.events == [
        ("delivered", entry.qid, "alice@a.test"),
        ("delivered", entry.qid, "bob@b.test"),
    ]
    assert entry.qid not in reserved  # a name reserved for a store would stay empty
    assert set(os.listdir(tmp_path / "queue" / "messages")) == reserved
    assert Spool(tmp_path / "queue").recover() == []  # as a restart would see it


@pytest.mark.parametrize("way", WAYS)
def test_a_recipient_not_delivered_at_reception_is_spooled_for_the_queue(
    tmp_path: Path, way: str
) -> None:
    world = Reception(tmp_path, way)
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "b.test").write_bytes(b"")  # a file where b.test's mailboxes belong

    entry = world.submit("alice@a.test", "bob@b.test")

    assert len(world.inbox("alice@a.test")) == 1
    [(told, envelope)] = world.accepted
    assert told is entry and envelope is not None
    [queued] = Spool(tmp_path / "queue").recover()
    assert envelope == queued.to_json()
    assert [(r.address, r.status) for r in queued.recipients] == [
        ("alice@a.test", RecipientStatus.DELIVERED),
        ("bob@b.test", RecipientStatus.PENDING),  # the queue retries, and bounces in the end
    ]
    assert world.events == [("delivered", entry.qid, "alice@a.test")]


def test_a_mailbox_outside_the_synced_file_system_is_left_to_the_queue(tmp_path: Path) -> None:
    elsewhere = Path("/dev/shm")  # tmpfs: another file system than tmp_path's
    assert os.stat(elsewhere).st_dev != os.stat(tmp_path).st_dev
    world = Reception(tmp_path)
    (tmp_path / "mail").mkdir()
    with tempfile.TemporaryDirectory(dir=elsewhere) as b_test:
        (tmp_path / "mail" / "b.test").symlink_to(b_test)

        entry = world.submit("alice@a.test", "bob@b.test")

        assert len(world.inbox("alice@a.test")) == 1  # syncfs of tmp_path covers alice only
        assert world.inbox("bob@b.test") == [] and world.staged("bob@b.test") == []
    [queued] = Spool(tmp_path / "queue").recover()
    assert queued.qid == entry.qid
    assert [(r.address, r.status) for r in queued.recipients] == [
        ("alice@a.test", RecipientStatus.DELIVERED),
        ("bob@b.test", RecipientStatus.PENDING),  # the queue delivers with fsyncs of its own
    ]


def test_when_a_sync_fails_nothing_is_delivered_and_the_queue_gets_everyone(
    tmp_path: Path,
) -> None:
    syncs: list[int] = []

    def failing_second_sync(fd: int) -> None:  # the copies are written, their renames fail
        syncs.append(fd)
        if len(syncs) == 2:
            raise OSError(errno.EIO, "Input/output error")

    world = Reception(tmp_path, sync=failing_second_sync)

    entry = world.submit("alice@a.test", "bob@b.test")

    for user in ("alice@a.test", "bob@b.test"):  # taken back: no copy nor leftover
        assert world.inbox(user) == [] and world.staged(user) == []
    [queued] = Spool(tmp_path / "queue").recover()
    assert queued.qid == entry.qid
    assert all(r.status is RecipientStatus.PENDING for r in queued.recipients)
    assert world.events == []


@pytest.mark.parametrize(
    "recipients",
    [("alice@a.test", "dave@remote.example"), ("alice@a.test", "bob@b.test", "carol@b.test")],
    ids=["a remote recipient too", "more recipients than max_recipients"],
)
def test_other_mail_goes_into_the_spool_whole(tmp_path: Path, recipients: tuple[str]) -> None:
    world = Reception(tmp_path, max_recipients=2)

    entry = world.submit(*recipients)

    assert world.inbox("alice@a.test") == []
    [queued] = Spool(tmp_path / "queue").recover()
    assert queued.qid == entry.qid
    assert all(r.status is RecipientStatus.PENDING for r in queued.recipients)
    assert world.events == []


class CountedSyncs:
    """The group commit's sync, counted; `fail` makes the next ones fail."""

    def __init__(self) -> None:
        self.count = 0
        self.fail = False

    def __call__(self, fd: int) -> None:
        self.count += 1
        if self.fail:
            raise OSError(errno.EIO, "Input/output error")
        fscommit.syncfs(fd)


def test_mail_for_the_queue_is_spooled_in_the_group_commit(tmp_path: Path) -> None:
    syncs = CountedSyncs()
    world = Reception(tmp_path, sync=syncs)
    world.spool.reserve()  # the usual case: the store writes a name made durable before

    entry = world.submit("dave@remote.example")

    assert syncs.count == 1  # the store's durability came from the batch's one sync
    [queued] = Spool(tmp_path / "queue").recover()  # whole, as a restart would see it
    assert queued.qid == entry.qid
    assert [(told.qid, envelope) for told, envelope in world.accepted] == [
        (entry.qid, queued.to_json())
    ]


def test_when_the_spools_sync_fails_the_message_is_not_left_for_a_restart(
    tmp_path: Path,
) -> None:
    syncs = CountedSyncs()
    world = Reception(tmp_path, sync=syncs)
    world.spool.reserve()
    syncs.fail = True

    with pytest.raises(OSError, match="Input/output error"):
        world.submit("dave@remote.example")  # the session answers 451: nothing acknowledged

    assert Spool(tmp_path / "queue").recover() == []  # never delivered after a restart
    assert world.accepted == []


def test_a_spool_on_another_file_system_keeps_its_own_fsyncs(tmp_path: Path) -> None:
    syncs = CountedSyncs()
    with tempfile.TemporaryDirectory(dir="/dev/shm") as elsewhere:  # tmpfs
        (tmp_path / "queue").symlink_to(elsewhere)
        world = Reception(tmp_path, sync=syncs)

        entry = world.submit("dave@remote.example")

        assert syncs.count == 0  # a syncfs of tmp_path would not cover the spool
        [queued] = Spool(tmp_path / "queue").recover()
        assert queued.qid == entry.qid
