"""LocalDeliveryAgent: queued messages into real Maildirs, trace headers, crash recovery."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.delivery.base import Outcome, RecipientResult
from postoffice.delivery.local import LocalDeliveryAgent
from postoffice.queue.entry import QueueEntry, RecipientState
from postoffice.storage.maildir import MaildirMailbox
from postoffice.storage.maildir_store import MaildirStore

MESSAGE = b"From: s@remote.example\r\nSubject: hello\r\n\r\nHi.\r\n"


class Spool:
    """The spool as the agent sees it: message bytes by queue id."""

    def __init__(self, messages: dict[str, bytes]) -> None:
        self.messages = messages

    def read_message(self, qid: str) -> bytes:
        try:
            return self.messages[qid]
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "no such queue file", qid) from None


class FullMailbox(MaildirMailbox):
    """A mailbox on a disk that is full."""

    def deliver(self, data: bytes, *, delivery_id: str | None = None) -> str:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FullStore(MaildirStore):
    def mailbox(self, address: str, folder: str = "INBOX") -> MaildirMailbox:
        return FullMailbox(self.user_dir(address), "mx.test")


def entry(*recipients: str, qid: str = "Q1", sender: str = "s@remote.example") -> QueueEntry:
    states = [RecipientState(address=r, original=r) for r in recipients]
    return QueueEntry(qid=qid, sender=sender, recipients=states, arrival=0.0, size=len(MESSAGE))


@pytest.fixture
def store(tmp_path: Path) -> MaildirStore:
    return MaildirStore(tmp_path / "mail", hostname="mx.test")


@pytest.fixture
def agent(store: MaildirStore) -> LocalDeliveryAgent:
    return LocalDeliveryAgent(store, Spool({"Q1": MESSAGE}), "mx.a.test")


def deliver(
    agent: LocalDeliveryAgent, queued: QueueEntry, recipients: list[str] | None = None
) -> list[RecipientResult]:
    wanted = [r.address for r in queued.recipients] if recipients is None else recipients
    return asyncio.run(agent.deliver(queued, wanted))


def stored(store: MaildirStore, address: str) -> list[bytes]:
    new = store.user_dir(address) / "new"
    return [(new / name).read_bytes() for name in sorted(os.listdir(new))]


@pytest.fixture
def inbox(store: MaildirStore) -> Iterator[MaildirMailbox]:
    with store.mailbox("alice@a.test") as mailbox:
        yield mailbox


def test_each_recipient_gets_the_message_with_trace_headers(
    agent: LocalDeliveryAgent, store: MaildirStore
) -> None:
    results = deliver(agent, entry("alice@a.test", "bob@a.test"))
    assert [(r.recipient, r.outcome, r.status) for r in results] == [
        ("alice@a.test", Outcome.DELIVERED, "2.0.0"),
        ("bob@a.test", Outcome.DELIVERED, "2.0.0"),
    ]
    assert "mx.a.test" in results[0].detail
    for address in ("alice@a.test", "bob@a.test"):
        trace = f"Return-Path: <s@remote.example>\r\nDelivered-To: {address}\r\n"
        assert stored(store, address) == [trace.encode() + MESSAGE]


def test_the_null_sender_becomes_an_empty_return_path(
    agent: LocalDeliveryAgent, store: MaildirStore
) -> None:
    deliver(agent, entry("alice@a.test", sender=""))
    (data,) = stored(store, "alice@a.test")
    assert data.startswith(b"Return-Path: <>\r\nDelivered-To: alice@a.test\r\n")


def test_the_delivery_id_is_the_position_in_the_queue_entry(
    agent: LocalDeliveryAgent, store: MaildirStore
) -> None:
    queued = entry("alice@a.test", "bob@a.test", "carol@a.test")
    deliver(agent, queued, ["carol@a.test", "bob@a.test"])
    assert store.mailbox("carol@a.test").has_delivery("Q1-2")
    assert store.mailbox("bob@a.test").has_delivery("Q1-1")
    assert not store.mailbox("alice@a.test").has_delivery("Q1-0")


def test_a_recovered_entry_is_not_delivered_twice(
    agent: LocalDeliveryAgent, store: MaildirStore, inbox: MaildirMailbox
) -> None:
    queued = entry("alice@a.test", "bob@a.test")
    deliver(agent, queued, ["alice@a.test"])  # then the process died before the queue update
    inbox.set_flags(inbox.messages()[0].key, frozenset({"\\Seen"}))  # and alice read it
    queued.recovered = True
    results = deliver(agent, queued)
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert "before a restart" in results[0].detail
    assert len(inbox.messages()) == 1
    assert len(stored(store, "bob@a.test")) == 1


def test_a_full_disk_defers_with_4_3_1(tmp_path: Path) -> None:
    agent = LocalDeliveryAgent(FullStore(tmp_path), Spool({"Q1": MESSAGE}), "mx.a.test")
    (result,) = deliver(agent, entry("alice@a.test"))
    assert (result.outcome, result.status) == (Outcome.DEFERRED, "4.3.1")
    assert "No space left on device" in result.detail


def test_other_file_errors_defer_with_4_2_0(agent: LocalDeliveryAgent, store: MaildirStore) -> None:
    store.root.mkdir()
    (store.root / "a.test").write_bytes(b"")  # a file where the domain directory belongs
    results = deliver(agent, entry("alice@a.test", "bob@b.test"))
    assert [(r.outcome, r.status) for r in results] == [
        (Outcome.DEFERRED, "4.2.0"),
        (Outcome.DELIVERED, "2.0.0"),
    ]
    assert "a.test" in results[0].detail


def test_an_unreadable_queue_file_defers_everyone(store: MaildirStore) -> None:
    agent = LocalDeliveryAgent(store, Spool({}), "mx.a.test")
    results = deliver(agent, entry("alice@a.test", "bob@a.test"))
    assert [(r.outcome, r.status) for r in results] == [(Outcome.DEFERRED, "4.3.0")] * 2


def test_a_recipient_the_store_cannot_name_fails(agent: LocalDeliveryAgent) -> None:
    (result,) = deliver(agent, entry("../etc@a.test"))
    assert (result.outcome, result.status) == (Outcome.FAILED, "5.1.3")


def test_recipients_must_belong_to_the_entry(agent: LocalDeliveryAgent) -> None:
    with pytest.raises(ValueError, match=r"mallory@a\.test not among its recipients"):
        deliver(agent, entry("alice@a.test"), ["mallory@a.test"])
