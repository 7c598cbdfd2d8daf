"""Fetching against a real server: the UIDL log, and runs cut short at the worst moments."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from postoffice.client import fetch as fetching
from postoffice.client.accounts import Account
from postoffice.client.fetch import UidlLog, delivery_id, fetch
from postoffice.client.local import folder
from postoffice.client.network import ClientError
from postoffice.client.pop3 import Pop3Client
from postoffice.storage.maildir import MaildirMailbox
from postoffice.testing.server import ServerProcess
from tests.client.conftest import PASSWORD


def on_server(server: ServerProcess, count: int) -> MaildirMailbox:
    box = MaildirMailbox(server.maildir("alice@localhost"), "localhost")
    for i in range(count):
        box.deliver(f"Message-ID: <{i}@t>\r\n\r\n..{i}\r\n".encode())
    return box


def local_ids(account: Account) -> list[str]:
    box = folder(account)
    return sorted(box.read(info.key).split(b"\r\n")[0].decode() for info in box.messages())


def test_log_recovery_keeps_only_what_is_stored_and_still_on_the_server(tmp_path: Path) -> None:
    inbox = MaildirMailbox(tmp_path / "box", "host")
    inbox.deliver(b"x", delivery_id=delivery_id("stored"))
    log = UidlLog(inbox)
    log.path.write_text("+ kept\n+ gone\n? stored\n? lost\n+ torn")
    assert log.recover({"kept", "stored", "lost", "torn", "new"}) == {"kept", "stored"}
    assert log.path.read_text() == "+ kept\n+ stored\n"


def test_an_interrupted_quit_deletes_nothing_and_the_next_run_only_deletes(
    server: ServerProcess, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = on_server(server, 3)

    async def broken_quit(self: Pop3Client) -> None:
        raise ConnectionResetError("cut")

    with monkeypatch.context() as patch:
        patch.setattr(Pop3Client, "quit", broken_quit)
        with pytest.raises(ClientError, match="connection closed"):
            asyncio.run(fetch(account, PASSWORD))
    assert len(box.messages()) == 3  # no QUIT, no deletion
    result = asyncio.run(fetch(account, PASSWORD))
    assert (result.fetched, result.deleted, result.remaining) == (0, 3, 0)
    assert local_ids(account) == ["Message-ID: <0@t>", "Message-ID: <1@t>", "Message-ID: <2@t>"]
    assert folder(account).read(folder(account).messages()[0].key).endswith(b"\r\n\r\n..0\r\n")


def test_a_crash_between_the_write_and_the_log_fetches_nothing_twice(
    server: ServerProcess, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = on_server(server, 4)
    real_append = UidlLog._append
    calls = []

    def crash_on_second_done(self: UidlLog, mark: str, uidl: str) -> None:
        calls.append(mark)
        if calls.count("+") == 2:
            raise OSError(28, "No space left on device")
        real_append(self, mark, uidl)

    with monkeypatch.context() as patch:
        patch.setattr(fetching.UidlLog, "_append", crash_on_second_done)
        with pytest.raises(ClientError, match="No space left on device"):
            asyncio.run(fetch(account, PASSWORD))
    assert len(box.messages()) == 3  # only the first, logged as stored, was deleted
    result = asyncio.run(fetch(account, PASSWORD))
    assert (result.fetched, result.deleted) == (2, 3)  # the second was found, not fetched
    assert len(local_ids(account)) == len(set(local_ids(account))) == 4
    assert box.messages() == []


def test_keep_leaves_everything_and_a_wrong_password_is_one_error(
    server: ServerProcess, account: Account
) -> None:
    box = on_server(server, 2)
    first = asyncio.run(fetch(account, PASSWORD, keep=True))
    assert (first.fetched, first.deleted, first.remaining) == (2, 0, 2)
    assert asyncio.run(fetch(account, PASSWORD, keep=True)).fetched == 0
    assert len(box.messages()) == 2
    with pytest.raises(ClientError, match=r"\[AUTH\]"):
        asyncio.run(fetch(account, "wrong"))
