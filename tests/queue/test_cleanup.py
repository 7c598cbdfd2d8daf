"""Cleanup's store: on the disk pool, or inline on the loop's thread for a lone session."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from postoffice.mail.address import parse_address
from postoffice.queue.cleanup import Cleanup, Origin
from postoffice.queue.entry import QueueEntry
from postoffice.queue.spool import Spool
from postoffice.storage.directory import SqliteDirectory
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
