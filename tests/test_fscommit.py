"""fscommit.GroupCommit: one sync for a loop round's operations, errors to whom they belong."""

from __future__ import annotations

import asyncio
import errno
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from postoffice import fscommit


class Syncs:
    """The sync a GroupCommit is given: records what each sync covered, can be made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []  # the operations each sync came after
        self.ran: list[str] = []  # operations run, in order
        self.failing = False
        self.release = threading.Event()  # a sync waits for it: the test decides
        self.release.set()

    def sync(self, fd: int) -> None:
        os.fstat(fd)  # a real descriptor of the directory
        self.release.wait(5)
        self.batches.append(self.ran[sum(map(len, self.batches)) :])
        if self.failing:
            raise OSError(errno.EIO, "Input/output error")

    def op(self, name: str, result: object = None) -> Callable[[], object]:
        def operation() -> object:
            self.ran.append(name)
            if isinstance(result, Exception):
                raise result
            return result

        return operation


def test_operations_of_one_loop_round_share_one_sync(tmp_path: Path) -> None:
    syncs = Syncs()

    async def main() -> list[object]:
        commit = fscommit.GroupCommit(tmp_path, sync=syncs.sync)
        return await asyncio.gather(*(commit.run(syncs.op(f"op{i}", i)) for i in range(5)))

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]
    assert syncs.batches == [["op0", "op1", "op2", "op3", "op4"]]


def test_operations_queued_during_a_sync_wait_for_the_next_one(tmp_path: Path) -> None:
    syncs = Syncs()

    async def main() -> None:
        commit = fscommit.GroupCommit(tmp_path, sync=syncs.sync)
        syncs.release.clear()
        first = asyncio.ensure_future(commit.run(syncs.op("first")))
        while syncs.ran != ["first"]:  # the first batch is in its sync
            await asyncio.sleep(0.001)
        later = [asyncio.ensure_future(commit.run(syncs.op(f"later{i}"))) for i in range(3)]
        await asyncio.sleep(0.05)
        assert not first.done() and syncs.ran == ["first"]  # nothing returns before its sync
        syncs.release.set()
        await asyncio.gather(first, *later)

    asyncio.run(main())
    assert syncs.batches == [["first"], ["later0", "later1", "later2"]]


def test_an_operation_that_raises_fails_its_caller_only(tmp_path: Path) -> None:
    syncs = Syncs()

    async def main() -> list[object]:
        commit = fscommit.GroupCommit(tmp_path, sync=syncs.sync)
        return await asyncio.gather(
            commit.run(syncs.op("good", "kept")),
            commit.run(syncs.op("bad", FileNotFoundError(errno.ENOENT, "gone"))),
            return_exceptions=True,
        )

    good, bad = asyncio.run(main())
    assert good == "kept" and isinstance(bad, FileNotFoundError)
    assert syncs.batches == [["good", "bad"]]


def test_a_failed_sync_fails_every_operation_of_its_batch_and_only_that_batch(
    tmp_path: Path,
) -> None:
    syncs = Syncs()

    async def main() -> None:
        commit = fscommit.GroupCommit(tmp_path, sync=syncs.sync)
        syncs.failing = True
        results = await asyncio.gather(
            commit.run(syncs.op("a", 1)), commit.run(syncs.op("b", 2)), return_exceptions=True
        )
        for result in results:
            assert isinstance(result, OSError) and result.errno == errno.EIO
            assert str(tmp_path) in str(result)  # names what could not be synced
        syncs.failing = False
        assert await commit.run(syncs.op("c", 3)) == 3

    asyncio.run(main())
    assert syncs.batches == [["a", "b"], ["c"]]


def test_the_steps_of_an_operation_are_made_durable_one_after_the_other(tmp_path: Path) -> None:
    syncs = Syncs()

    async def main() -> list[object]:
        commit = fscommit.GroupCommit(tmp_path, sync=syncs.sync)
        return await asyncio.gather(
            commit.run(syncs.op("write a"), syncs.op("rename a", "a")),
            commit.run(syncs.op("write b", OSError(errno.ENOSPC, "full")), syncs.op("rename b")),
            commit.run(syncs.op("single", "s")),
            return_exceptions=True,
        )

    a, b, single = asyncio.run(main())
    assert a == "a" and single == "s"
    assert isinstance(b, OSError) and b.errno == errno.ENOSPC  # its second step never ran
    assert syncs.batches == [["write a", "write b", "single"], ["rename a"]]


def test_a_failed_sync_stops_the_operations_before_their_next_step(tmp_path: Path) -> None:
    syncs = Syncs()
    syncs.failing = True

    async def main() -> object:
        commit = fscommit.GroupCommit(tmp_path, sync=syncs.sync)
        return await commit.run(syncs.op("write"), syncs.op("rename"))

    with pytest.raises(OSError, match="Input/output error"):
        asyncio.run(main())
    assert syncs.ran == ["write"]


def test_an_operation_whose_caller_left_before_its_batch_is_not_run(tmp_path: Path) -> None:
    syncs = Syncs()

    async def main() -> None:
        commit = fscommit.GroupCommit(tmp_path, sync=syncs.sync)
        gone = asyncio.ensure_future(commit.run(syncs.op("gone")))
        await asyncio.sleep(0)  # queued, its batch not started yet
        gone.cancel()
        assert await commit.run(syncs.op("kept", 1)) == 1

    asyncio.run(main())
    assert syncs.ran == ["kept"]


def test_one_group_commit_serves_loop_after_loop(tmp_path: Path) -> None:
    syncs = Syncs()
    commit = fscommit.GroupCommit(tmp_path, sync=syncs.sync)

    async def one(name: str) -> object:
        return await commit.run(syncs.op(name, name))

    assert [asyncio.run(one("first loop")), asyncio.run(one("second loop"))] == [
        "first loop",
        "second loop",
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="syncfs is Linux's")
def test_on_linux_operations_are_made_durable_with_the_real_syncfs(tmp_path: Path) -> None:
    commit = fscommit.for_path(tmp_path)
    assert commit is not None and commit.device == os.stat(tmp_path).st_dev

    async def main() -> int:
        return await commit.run(lambda: (tmp_path / "file").write_bytes(b"durable"))

    assert asyncio.run(main()) == len(b"durable")
    assert (tmp_path / "file").read_bytes() == b"durable"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_BATCH is Linux's")
def test_the_batches_run_on_a_thread_that_never_preempts_the_loop(tmp_path: Path) -> None:
    commit = fscommit.GroupCommit(tmp_path, sync=Syncs().sync)

    async def main() -> tuple[int, str]:
        return await commit.run(lambda: (os.sched_getscheduler(0), threading.current_thread().name))

    assert asyncio.run(main()) == (os.SCHED_BATCH, "postoffice-commit")
