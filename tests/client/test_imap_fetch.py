"""Fetching over IMAP against a real server: each message once, deleted only once stored."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from postoffice.client import fetch as fetching
from postoffice.client.accounts import Access, Account
from postoffice.client.fetch import IMAP_LOG_NAME, LOG_NAME, UidlLog, fetch
from postoffice.client.imap import ImapClient
from postoffice.client.local import folder
from postoffice.client.network import ClientError
from postoffice.storage.maildir import MaildirMailbox
from postoffice.testing.server import ServerProcess
from tests.client.conftest import PASSWORD
from tests.client.test_fetch import local_ids, on_server


def run(account: Account, **options: object) -> fetching.FetchResult:
    return asyncio.run(fetch(account, PASSWORD, access=Access.IMAP, **options))  # type: ignore[arg-type]


def test_each_message_once_with_keep_then_deleted_without(
    server: ServerProcess, account: Account
) -> None:
    box = on_server(server, 3)
    done: list[tuple[int, int]] = []
    first = run(account, keep=True, progress=lambda n, total: done.append((n, total)))
    assert (first.fetched, first.deleted, first.remaining) == (3, 0, 3)
    assert done == [(1, 3), (2, 3), (3, 3)]
    assert all(info.flags == frozenset() for info in box.messages())  # BODY.PEEK: not \Seen
    assert run(account, keep=True).fetched == 0
    MaildirMailbox(server.maildir("alice@localhost"), "localhost").deliver(
        b"Message-ID: <3@t>\r\n\r\n..3\r\n"
    )
    last = run(account)
    assert (last.fetched, last.deleted, last.remaining) == (1, 4, 0)
    assert box.messages() == []
    assert local_ids(account) == [f"Message-ID: <{i}@t>" for i in range(4)]
    stored = folder(account)
    assert stored.read(stored.messages()[0].key).endswith(b"\r\n\r\n..0\r\n")  # unchanged
    log = (stored.path / IMAP_LOG_NAME).read_text().split("\n")
    held = [line for line in log if line.startswith("+")]
    assert len(held) == 4 and len({line.partition(".")[0] for line in held}) == 1  # one UIDVALIDITY
    assert not (stored.path / LOG_NAME).exists()  # the POP3 log is another one


def test_an_interrupted_expunge_deletes_nothing_and_the_next_run_only_deletes(
    server: ServerProcess, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = on_server(server, 3)

    async def cut(self: ImapClient, uids: object) -> None:
        raise ConnectionResetError("cut")

    with monkeypatch.context() as patch:
        patch.setattr(ImapClient, "expunge", cut)
        with pytest.raises(ClientError, match="connection closed"):
            run(account)
    assert len(box.messages()) == 3  # flagged \Deleted at most, still there
    result = run(account)
    assert (result.fetched, result.deleted, result.remaining) == (0, 3, 0)
    assert box.messages() == []
    assert len(local_ids(account)) == 3


def test_a_crash_between_the_write_and_the_log_fetches_nothing_twice(
    server: ServerProcess, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = on_server(server, 4)
    real_append = UidlLog._append
    calls: list[str] = []

    def crash_on_second_done(self: UidlLog, mark: str, uid: str) -> None:
        calls.append(mark)
        if calls.count("+") == 2:
            raise OSError(28, "No space left on device")
        real_append(self, mark, uid)

    with monkeypatch.context() as patch:
        patch.setattr(fetching.UidlLog, "_append", crash_on_second_done)
        with pytest.raises(ClientError, match="No space left on device"):
            run(account)
    assert len(box.messages()) == 3  # only the first, logged as stored, was deleted
    result = run(account)
    assert (result.fetched, result.deleted) == (2, 3)  # the second was found, not fetched
    assert local_ids(account) == [f"Message-ID: <{i}@t>" for i in range(4)]
    assert box.messages() == []


def test_an_account_without_an_imap_server_says_so(server: ServerProcess, account: Account) -> None:
    on_server(server, 1)
    with pytest.raises(ClientError, match="has no IMAP server"):
        asyncio.run(fetch(dataclasses.replace(account, imap=None), PASSWORD, access=Access.IMAP))
    with pytest.raises(ClientError, match=r"AUTHENTICATE refused: \[AUTHENTICATIONFAILED\]"):
        asyncio.run(fetch(account, "wrong", access=Access.IMAP))
