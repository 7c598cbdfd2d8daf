"""The spool on real files: durable store, state moves, recovery after crashes, disk full."""

from __future__ import annotations

import errno
import logging
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from postoffice.queue.entry import QueueEntry, QueueState, RecipientStatus
from postoffice.queue.spool import Spool, SpoolFull, UnknownQid
from tests.conftest import interned

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"


def store(spool: Spool, data: bytes = MESSAGE, message_id: str = "<m@example.org>") -> QueueEntry:
    return spool.store(
        "alice@example.org",
        [("bob@example.net", "bob@example.net"), ("carol@example.org", "c@example.org")],
        data,
        client={"addr": "192.0.2.1", "helo": "client.example"},
        message_id=message_id,
        arrival=1_700_000_000.5,
    )


def files(root: Path) -> list[str]:
    """Every file of the queue, but for removed ones kept to be reused (`spares`)."""
    names = (str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return sorted(n for n in names if n not in spares(root))


def spares(root: Path) -> list[str]:
    """Removed message files kept for reuse: retired (removal not yet synced) or spare."""
    retired = (f"tmp/{p.name}" for p in (root / "tmp").glob("retired.*"))
    spare = (f"spare/{p.name}" for p in (root / "spare").glob("*"))
    return sorted([*retired, *spare])


def test_store_writes_one_file_holding_envelope_and_message(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entry = store(spool)
    assert files(tmp_path) == [f"messages/{entry.qid}"]
    head, _, rest = (tmp_path / "messages" / entry.qid).read_bytes().partition(b"\n")
    assert head.startswith(b"\0postoffice-queue 3 %08x {" % zlib.crc32(MESSAGE))
    assert rest == MESSAGE
    assert spool.read_message(entry.qid) == MESSAGE
    with spool.open_message(entry.qid) as message:
        assert message.read() == MESSAGE
    assert spool.load(entry.qid) == entry
    assert entry.state is QueueState.ACTIVE
    assert entry.size == len(MESSAGE)
    assert [(r.address, r.original) for r in entry.recipients] == [
        ("bob@example.net", "bob@example.net"),
        ("carol@example.org", "c@example.org"),
    ]


def test_queue_ids_are_short_unique_safe_and_sorted_by_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    qids = [store(spool).qid for _ in range(50)]
    assert len(set(qids)) == 50
    assert qids == sorted(qids)
    assert all(re.fullmatch(r"[0-9A-Z]{16}", qid) for qid in qids)


def test_store_under_a_queue_id_taken_in_advance(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    qid = spool.new_qid()  # e.g. for the Received header
    entry = spool.store("", [("a@x", "a@x")], MESSAGE, client={}, message_id="", arrival=0, qid=qid)
    assert entry.qid == qid
    assert spool.read_message(qid) == MESSAGE
    with pytest.raises(ValueError):
        spool.store("", [], MESSAGE, client={}, message_id="", arrival=0, qid="../x")


def test_a_queue_id_taken_twice_never_replaces_the_first_message(tmp_path: Path) -> None:
    spool, other = Spool(tmp_path), Spool(tmp_path)  # e.g. two receiving processes
    qid = spool.new_qid()
    first = spool.store("", [("a@x", "a@x")], MESSAGE, client={}, message_id="", arrival=0, qid=qid)
    with pytest.raises(FileExistsError):
        other.store("", [("b@x", "b@x")], b"x\r\n", client={}, message_id="", arrival=0, qid=qid)
    assert spool.read_message(qid) == MESSAGE
    assert spool.load(qid) == first
    assert files(tmp_path) == [f"messages/{qid}"]


def test_store_then_recover_in_a_new_process_view(tmp_path: Path) -> None:
    stored = [store(Spool(tmp_path), message_id=f"<{i}@x>") for i in range(3)]
    recovered = Spool(tmp_path).recover()
    assert [e.qid for e in recovered] == [e.qid for e in stored]
    assert all(e.recovered for e in recovered)
    for before, after in zip(stored, recovered, strict=True):
        after.recovered = False
        assert after == before


def test_save_moves_state_file_between_directories(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entry = store(spool)
    entry.state = QueueState.DEFERRED
    entry.next_attempt = 1_700_000_300.0
    entry.recipients[0].status = RecipientStatus.DELIVERED
    spool.save(entry)
    assert files(tmp_path) == [f"deferred/{entry.qid}", f"messages/{entry.qid}"]
    assert spool.load(entry.qid) == entry
    entry.state = QueueState.HOLD
    spool.save(entry)
    assert files(tmp_path) == [f"hold/{entry.qid}", f"messages/{entry.qid}"]
    assert [e.qid for e in spool.list(QueueState.HOLD)] == [entry.qid]
    assert spool.list(QueueState.DEFERRED) == []


def test_list_filters_by_state_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first, second, third = store(spool), store(spool), store(spool)
    second.state = QueueState.DEFERRED
    spool.save(second)
    assert [e.qid for e in spool.list()] == [first.qid, second.qid, third.qid]
    assert [e.qid for e in spool.list(QueueState.ACTIVE)] == [first.qid, third.qid]
    assert [e.qid for e in spool.list(QueueState.DEFERRED)] == [second.qid]


def test_remove_deletes_state_and_message(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entry = store(spool)
    spool.remove(entry.qid)
    assert files(tmp_path) == []
    with pytest.raises(UnknownQid):
        spool.load(entry.qid)
    with pytest.raises(UnknownQid):
        spool.remove(entry.qid)
    with pytest.raises(UnknownQid):
        spool.save(entry)  # would resurrect a state file without a message


@pytest.mark.parametrize("qid", ["../../etc/passwd", "", "0123456789abcdef", "tmp"])
def test_unknown_or_unsafe_queue_ids(tmp_path: Path, qid: str) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(UnknownQid):
        spool.load(qid)
    with pytest.raises(UnknownQid):
        spool.read_message(qid)


def test_recover_returns_active_and_deferred_but_not_held(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    active, deferred, held = store(spool), store(spool), store(spool)
    deferred.state = QueueState.DEFERRED
    held.state = QueueState.HOLD
    spool.save(deferred)
    spool.save(held)
    recovered = Spool(tmp_path).recover()
    assert [(e.qid, e.state) for e in recovered] == [
        (active.qid, QueueState.ACTIVE),
        (deferred.qid, QueueState.DEFERRED),
    ]
    assert f"hold/{held.qid}" in files(tmp_path)


# -- crashes simulated by the partial files they leave ------------------------------------


def _cut_in_message_write(root: Path, qid: str) -> None:
    data = (root / "messages" / qid).read_bytes()
    (root / "tmp" / f"messages.{qid}").write_bytes(data[:5])
    (root / "messages" / qid).unlink()


def _cut_before_rename(root: Path, qid: str) -> None:
    (root / "messages" / qid).rename(root / "tmp" / f"messages.{qid}")


def _old_layout_cut_before_state_write(root: Path, qid: str) -> None:
    _rewrite_in_old_layout(root, qid)
    (root / "active" / qid).unlink()


def _old_layout_cut_in_state_write(root: Path, qid: str) -> None:
    _rewrite_in_old_layout(root, qid)
    (root / "active" / qid).rename(root / "tmp" / f"active.{qid}")


def _reserved_cut_in_the_envelope(root: Path, qid: str) -> None:
    """A store into a reserved name (no rename: its content is the commit) cut off early."""
    path = root / "messages" / qid
    path.write_bytes(path.read_bytes()[:40])


def _reserved_cut_in_the_message(root: Path, qid: str) -> None:
    path = root / "messages" / qid
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3])


def _reserved_length_written_before_the_data(root: Path, qid: str) -> None:
    """A machine crash may keep the file's new size but not its last block."""
    path = root / "messages" / qid
    data = path.read_bytes()
    path.write_bytes(data[:-5] + b"\0" * 5)


def _rewrite_in_old_layout(root: Path, qid: str) -> None:
    """What versions before one file per message left: message bytes + state in active/."""
    head, _, message = (root / "messages" / qid).read_bytes().partition(b"\n")
    (root / "messages" / qid).write_bytes(message)
    (root / "active" / qid).write_bytes(head[head.index(b"{") :])


def test_a_message_file_of_the_version_before_the_checksum_is_recovered(tmp_path: Path) -> None:
    entry = store(Spool(tmp_path))
    path = tmp_path / "messages" / entry.qid
    head, _, message = path.read_bytes().partition(b"\n")
    path.write_bytes(b"\0postoffice-queue 2 " + head[head.index(b"{") :] + b"\n" + message)
    spool = Spool(tmp_path)
    [recovered] = spool.recover()
    assert recovered.qid == entry.qid
    assert spool.read_message(entry.qid) == MESSAGE


def test_an_older_two_file_spool_is_recovered_and_delivered_from(tmp_path: Path) -> None:
    entry = store(Spool(tmp_path))
    _rewrite_in_old_layout(tmp_path, entry.qid)
    spool = Spool(tmp_path)
    [recovered] = spool.recover()
    recovered.recovered = False
    assert recovered == entry
    assert spool.read_message(entry.qid) == MESSAGE
    spool.remove(entry.qid)
    assert files(tmp_path) == []


@pytest.mark.parametrize(
    "crash",
    [
        _cut_in_message_write,
        _cut_before_rename,
        _old_layout_cut_before_state_write,
        _old_layout_cut_in_state_write,
        _reserved_cut_in_the_envelope,
        _reserved_cut_in_the_message,
        _reserved_length_written_before_the_data,
    ],
)
def test_store_cut_off_before_commit_is_never_recovered(
    tmp_path: Path, crash: Callable[[Path, str], None]
) -> None:
    spool = Spool(tmp_path)
    if crash.__name__.startswith("_reserved"):
        spool.reserve()
    entry = store(spool)
    crash(tmp_path, entry.qid)
    spool = Spool(tmp_path)
    assert spool.recover() == []
    assert files(tmp_path) == []


# -- names reserved ahead: a store commits by its content -----------------------------------


def test_a_store_under_a_reserved_name_syncs_no_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path)
    assert spool.wants_reserves()
    assert not spool.wants_reserves()  # once, until reserve() has run
    spool.reserve()
    real_fsync, synced = os.fsync, []

    def fsync(fd: int) -> None:
        synced.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    entry = store(spool)
    assert synced == ["file"]
    monkeypatch.setattr(os, "fsync", real_fsync)
    restarted = Spool(tmp_path)
    assert [e.qid for e in restarted.recover()] == [entry.qid]
    assert restarted.read_message(entry.qid) == MESSAGE
    assert files(tmp_path) == [f"messages/{entry.qid}"]  # unused reserved names are gone


def test_a_reserved_spare_still_holding_its_old_message_is_not_recovered(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    old = store(spool, data=MESSAGE * 3)
    spool.remove(old.qid)  # synced: the file becomes a spare at once
    assert spares(tmp_path) == [f"spare/{old.qid}"]
    spool.reserve()  # the spare, under a new name, still holds the old message
    assert spares(tmp_path) == []
    [reserved] = [p for p in (tmp_path / "messages").iterdir() if p.stat().st_size]
    assert reserved.name != old.qid and MESSAGE * 3 in reserved.read_bytes()
    restarted = Spool(tmp_path)
    assert restarted.recover() == []
    assert files(tmp_path) == []


def test_a_reserved_spare_is_overwritten_to_the_new_length(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    old = store(spool, data=MESSAGE * 50)
    spool.remove(old.qid)
    spool.reserve()  # the spare becomes the first reserved name
    short = [store(spool, data=b"%d\r\n" % i) for i in range(70)]
    for i, entry in enumerate(short):
        assert spool.read_message(entry.qid) == b"%d\r\n" % i
    assert sorted(e.qid for e in Spool(tmp_path).recover()) == sorted(e.qid for e in short)


def test_state_file_without_message_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entry = store(Spool(tmp_path))
    entry.state = QueueState.DEFERRED
    Spool(tmp_path).save(entry)
    (tmp_path / "messages" / entry.qid).unlink()  # a removal cut off before the state file
    with caplog.at_level(logging.INFO, logger="postoffice.queue.spool"):
        assert Spool(tmp_path).recover() == []
    assert files(tmp_path) == []
    assert entry.qid in caplog.text


def test_crash_during_a_move_keeps_the_newest_copy(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entry = store(spool)
    spool.save(entry)  # an explicit state file in active/, e.g. after a release
    old = tmp_path / "active" / entry.qid
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))
    entry.state = QueueState.DEFERRED
    entry.attempts = 1
    (tmp_path / "deferred" / entry.qid).write_bytes(entry.to_json())  # new copy, unlink pending
    [recovered] = Spool(tmp_path).recover()
    assert (recovered.state, recovered.attempts) == (QueueState.DEFERRED, 1)
    assert not old.exists()


def test_unreadable_state_file_is_left_in_place_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path)
    good, bad = store(spool), store(spool)
    spool.save(bad)
    (tmp_path / "active" / bad.qid).write_bytes(b"{not json")
    with caplog.at_level(logging.ERROR, logger="postoffice.queue.spool"):
        assert [e.qid for e in Spool(tmp_path).recover()] == [good.qid]
    assert f"active/{bad.qid}" in files(tmp_path)
    assert f"messages/{bad.qid}" in files(tmp_path)
    assert bad.qid in caplog.text


# -- disk full ------------------------------------------------------------------------------


def test_enospc_while_writing_the_message_raises_spool_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path)

    def no_space(fd: int, buffers: list[bytes]) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "writev", no_space)
    with pytest.raises(SpoolFull) as raised:
        store(spool)
    assert raised.value.errno == errno.ENOSPC
    assert files(tmp_path) == []


@pytest.mark.parametrize("failing_fsync", [1, 2])  # the message file, messages/
@pytest.mark.parametrize(("code", "expected"), [(errno.EDQUOT, SpoolFull), (errno.EIO, OSError)])
def test_failure_at_each_fsync_of_a_store_leaves_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing_fsync: int,
    code: int,
    expected: type[OSError],
) -> None:
    spool = Spool(tmp_path)
    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == failing_fsync:
            raise OSError(code, os.strerror(code))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(expected) as raised:
        store(spool)
    assert isinstance(raised.value, SpoolFull) == (expected is SpoolFull)
    assert files(tmp_path) == []


# -- threads ---------------------------------------------------------------------------------


def test_concurrent_stores_are_unique_and_all_recovered(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        qids = list(pool.map(lambda i: store(spool, message_id=f"<{i}@x>").qid, range(64)))
    assert len(set(qids)) == 64
    assert sorted(e.qid for e in Spool(tmp_path).recover()) == sorted(qids)


def test_load_never_misses_an_entry_while_it_moves(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entry = store(spool)
    done = threading.Event()

    def mover() -> None:
        for i in range(100):
            entry.state = QueueState.DEFERRED if i % 2 else QueueState.ACTIVE
            spool.save(entry)
        done.set()

    thread = threading.Thread(target=mover)
    thread.start()
    while not done.is_set():
        assert spool.load(entry.qid).qid == entry.qid
        assert len(spool.list()) == 1
    thread.join()


# -- a real crash ----------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from postoffice.queue.spool import Spool

    spool = Spool(Path(sys.argv[1]))
    base = int(sys.argv[2])
    for i in range(base, base + 100_000):
        if sys.argv[3] == "reserved" and spool.wants_reserves():
            spool.reserve()  # stores then write into names made durable ahead
        body = (f"{i}:" * (1 + i * 7919 % 60_000)).encode()  # as body() below
        entry = spool.store("s@x", [("r@y", "r@y")], body, client={}, message_id=str(i), arrival=0)
        print(entry.qid, i, flush=True)
    """
)


def body(i: int) -> bytes:
    """What WRITER stores as message `i` (up to ~450 kB, so a kill can land mid-write)."""
    return (f"{i}:" * (1 + i * 7919 % 60_000)).encode()


@pytest.mark.parametrize("names", ["fresh", "reserved"])
def test_sigkill_while_storing_loses_no_acknowledged_message(tmp_path: Path, names: str) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    acknowledged: dict[str, int] = {}
    for round_ in range(5):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(round_ * 1_000_000), names],
            stdout=subprocess.PIPE,
        )
        assert writer.stdout is not None
        first = writer.stdout.readline()  # started storing; now kill it at a random moment
        time.sleep(rng.uniform(0.0, 0.3))
        writer.send_signal(signal.SIGKILL)
        rest, _ = writer.communicate(timeout=10)
        assert writer.returncode == -signal.SIGKILL
        for line in (first + rest).split(b"\n")[:-1]:  # a cut-off last line was not printed
            qid, index = line.split()
            acknowledged[qid.decode()] = int(index)

        spool = Spool(tmp_path)
        recovered = {entry.qid: entry for entry in spool.recover()}
        assert acknowledged.keys() <= recovered.keys(), f"seed {seed}"
        for qid, entry in recovered.items():  # acknowledged or not, never torn
            assert spool.read_message(qid) == body(int(entry.message_id)), f"seed {seed}"
            assert acknowledged.get(qid, int(entry.message_id)) == int(entry.message_id)
        assert len(files(tmp_path)) == len(recovered), f"seed {seed}"


def test_concurrent_stores_share_directory_fsyncs_and_all_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "q")
    real_fsync, dir_syncs = os.fsync, []

    def slow_fsync(fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            dir_syncs.append(fd)
            time.sleep(0.01)  # long enough for other stores to queue behind this one
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    with ThreadPoolExecutor(16) as pool:
        entries = list(pool.map(lambda _: store(spool), range(64)))
    assert len(dir_syncs) < len(entries)  # without group commit: one per store
    assert {e.qid for e in Spool(tmp_path / "q").recover()} == {e.qid for e in entries}


def test_a_failed_directory_fsync_fails_every_store_waiting_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "q")
    real_fsync = os.fsync

    def failing_dir_fsync(fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            time.sleep(0.01)
            raise OSError(errno.EIO, "I/O error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_dir_fsync)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: _store_error(spool), range(16)))
    assert outcomes == [errno.EIO] * 16
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert Spool(tmp_path / "q").recover() == []


def _store_error(spool: Spool) -> int | None:
    try:
        store(spool)
    except OSError as exc:
        return exc.errno
    return None


def test_remove_without_sync_skips_the_directory_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "q")
    entry = store(spool)
    real_fsync, calls = os.fsync, []
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    spool.remove(entry.qid, sync=False)
    assert calls == []
    assert files(tmp_path / "q") == []
    other = store(spool)
    calls.clear()
    spool.remove(other.qid)
    assert len(calls) == 1  # messages/


def test_remove_syncs_the_message_removal_before_dropping_a_state_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Else a machine crash could bring the message back with its first envelope."""
    spool = Spool(tmp_path / "q")
    entry = store(spool)
    entry.recipients[0].status = RecipientStatus.DELIVERED
    entry.state = QueueState.DEFERRED
    spool.save(entry)
    real_fsync, steps = os.fsync, []
    monkeypatch.setattr(os, "fsync", lambda fd: (steps.append("fsync"), real_fsync(fd)))
    real_unlink, real_rename = os.unlink, os.rename
    monkeypatch.setattr(
        os, "unlink", lambda path: (steps.append(Path(path).parent.name), real_unlink(path))
    )
    monkeypatch.setattr(
        os, "rename", lambda src, dst: (steps.append(Path(src).parent.name), real_rename(src, dst))
    )
    spool.remove(entry.qid, sync=False)
    assert steps == ["messages", "fsync", "tmp", "deferred"]  # tmp: retired file to spare/


def test_short_writes_still_store_every_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_writev = os.writev
    monkeypatch.setattr(os, "writev", lambda fd, buffers: real_writev(fd, [buffers[0][:3]]))
    spool = Spool(tmp_path)
    entry = store(spool, data=MESSAGE * 3)
    assert spool.read_message(entry.qid) == MESSAGE * 3
    assert Spool(tmp_path).load(entry.qid).recipients == entry.recipients


# -- recycled message files ------------------------------------------------------------------


def inode(root: Path, qid: str) -> int:
    return (root / "messages" / qid).stat().st_ino


def test_a_removed_file_is_reused_only_once_its_removal_is_durable(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first = store(spool, data=MESSAGE * 50)
    first_inode = inode(tmp_path, first.qid)
    spool.remove(first.qid, sync=False)
    assert spares(tmp_path) == [f"tmp/retired.{first.qid}"]
    second = store(spool)  # its messages/ fsync makes the removal durable, too late for it
    assert inode(tmp_path, second.qid) != first_inode
    assert spares(tmp_path) == [f"spare/{first.qid}"]
    third = store(spool, data=MESSAGE)
    assert inode(tmp_path, third.qid) == first_inode
    assert spares(tmp_path) == []
    assert spool.read_message(third.qid) == MESSAGE  # nothing of the longer first message
    recovered = {e.qid: e for e in Spool(tmp_path).recover()}
    assert sorted(recovered) == sorted([second.qid, third.qid])
    assert recovered[third.qid].recipients == third.recipients


def test_spares_outlive_a_restart_but_unsynced_retired_files_do_not(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    kept, dropped = store(spool), store(spool)
    kept_inode = inode(tmp_path, kept.qid)
    spool.remove(kept.qid)
    spool.remove(dropped.qid, sync=False)
    assert spares(tmp_path) == [f"spare/{kept.qid}", f"tmp/retired.{dropped.qid}"]
    restarted = Spool(tmp_path)
    assert restarted.recover() == []
    assert spares(tmp_path) == [f"spare/{kept.qid}"]
    assert inode(tmp_path, store(restarted).qid) == kept_inode


def test_unsynced_removals_become_spares_a_batch_at_a_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entries = [store(spool) for _ in range(32)]
    for entry in entries[:31]:
        spool.remove(entry.qid, sync=False)
    assert all(name.startswith("tmp/retired.") for name in spares(tmp_path))
    spool.remove(entries[31].qid, sync=False)  # the 32nd: one messages/ fsync for them all
    assert spares(tmp_path) == sorted(f"spare/{e.qid}" for e in entries)


def test_a_receiver_soon_reuses_what_the_main_process_removed(tmp_path: Path) -> None:
    main, receiver = Spool(tmp_path), Spool(tmp_path)
    receiver.reserve()  # finds no spare: new files, each taken by a store
    for _ in range(len(receiver._reserved)):
        store(receiver)
    removed = [store(main) for _ in range(4)]
    inodes = {inode(tmp_path, entry.qid) for entry in removed}
    for entry in removed:
        main.remove(entry.qid)
    time.sleep(0.1)  # a receiver looks at spare/ again within a tenth of a second
    receiver.reserve()
    assert {inode(tmp_path, store(receiver).qid) for _ in range(4)} == inodes
    assert spares(tmp_path) == []


def test_two_processes_never_claim_the_same_spare(tmp_path: Path) -> None:
    first, second = Spool(tmp_path), Spool(tmp_path)  # e.g. two receiving processes
    for entry in [store(first) for _ in range(4)]:
        first.remove(entry.qid)
    with ThreadPoolExecutor(8) as pool:
        stored = list(
            pool.map(
                lambda i: (spool := (first, second)[i % 2], store(spool, data=b"%d\r\n" % i)),
                range(16),
            )
        )
    inodes = [inode(tmp_path, entry.qid) for _, entry in stored]
    assert len(set(inodes)) == 16
    for i, (spool, entry) in enumerate(stored):
        assert spool.read_message(entry.qid) == b"%d\r\n" % i
    assert spares(tmp_path) == []


def test_large_files_and_files_beyond_the_pool_are_unlinked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("postoffice.queue.spool._SPARES", 2)
    spool = Spool(tmp_path)
    large = store(spool, data=b"x" * (64 * 1024 + 1))
    spool.remove(large.qid)
    assert spares(tmp_path) == []
    small = [store(spool) for _ in range(3)]
    for entry in small:
        spool.remove(entry.qid)
    assert spares(tmp_path) == sorted(f"spare/{e.qid}" for e in small[:2])


def test_a_spare_name_left_on_a_queued_message_is_dropped_at_recovery(tmp_path: Path) -> None:
    """After a crash without a journal, a spare's old name may lead to a committed message."""
    spool = Spool(tmp_path)
    queued = store(spool, data=MESSAGE)
    os.link(tmp_path / "messages" / queued.qid, tmp_path / "spare" / "0SGPQV3HNJJZTMB5")
    restarted = Spool(tmp_path)
    assert [e.qid for e in restarted.recover()] == [queued.qid]
    assert spares(tmp_path) == []
    other = store(restarted, data=MESSAGE * 2)
    assert inode(tmp_path, other.qid) != inode(tmp_path, queued.qid)
    assert restarted.read_message(queued.qid) == MESSAGE


def test_queue_ids_are_not_interned(tmp_path: Path) -> None:
    """A name a Path parsed stays interned while alive: every message's would fill the table
    (fileio.file_in)."""
    spool = Spool(tmp_path)
    entries = [store(spool)]  # a fresh name
    spool.reserve()
    entries.append(store(spool))  # a reserved name
    for entry in entries:
        spool.read_message(entry.qid)
        spool.open_message(entry.qid).close()
        entry.state = QueueState.DEFERRED
        spool.save(entry)
        spool.load(entry.qid)
    spool.remove(entries[0].qid)
    assert not any(interned(entry.qid) for entry in entries)
