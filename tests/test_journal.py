"""The trace journal: JSON lines in a file per UTC day, looked up by queue id or Message-ID."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from postoffice.journal import Journal
from postoffice.testing.clock import FakeClock

DAY = 86_400
START = 1_795_910_400.0  # 2026-11-29 00:00:00 UTC


def journal(tmp_path: Path, start: float = START) -> tuple[Journal, FakeClock]:
    clock = FakeClock(start)
    return Journal(tmp_path / "journal", clock), clock


def test_records_are_json_lines_in_a_file_per_utc_day(tmp_path: Path) -> None:
    log, clock = journal(tmp_path, START + 10)
    log.record("QID1", "queued", sender="a@x.test", rcpt=["b@y.test"], remote_reply=None)
    clock.advance(DAY)
    log.record("QID1", "delivered", recipient="b@y.test", status="2.0.0")
    log.close()
    assert sorted(p.name for p in (tmp_path / "journal").iterdir()) == [
        "2026-11-29.jsonl",
        "2026-11-30.jsonl",
    ]
    first = json.loads((tmp_path / "journal" / "2026-11-29.jsonl").read_text())
    assert first == {
        "ts": START + 10,
        "qid": "QID1",
        "event": "queued",
        "sender": "a@x.test",
        "rcpt": ["b@y.test"],
    }  # None fields are left out
    assert [r["event"] for r in log.find("QID1")] == ["queued", "delivered"]
    assert log.find("OTHER") == []


def test_message_id_finds_every_queue_id_and_the_dsns_they_caused(tmp_path: Path) -> None:
    log, clock = journal(tmp_path)
    log.record("HOP1", "queued", message_id="<m1@a.test>", sender="a@a.test")
    log.record("UNRELATED", "queued", message_id="<m2@a.test>")
    clock.advance(DAY + 5)
    log.record("HOP2", "queued", message_id=" <m1@a.test>", sender="a@a.test")  # relayed again
    log.record("HOP2", "failed", recipient="z@b.test", status="5.1.1")
    log.record("HOP2", "bounce", dsn="DSN1")
    log.record("DSN1", "queued", message_id="<dsn-1@a.test>", sender="")
    log.record("DSN1", "delivered", recipient="a@a.test", status="2.0.0")
    clock.advance(DAY)
    log.record("HOP1", "delivered", recipient="b@b.test", status="2.0.0")
    log.record("UNRELATED", "delivered", recipient="c@c.test")
    log.close()

    found = log.find("<m1@a.test>")
    assert [(r["qid"], r["event"]) for r in found] == [
        ("HOP1", "queued"),
        ("HOP2", "queued"),
        ("HOP2", "failed"),
        ("HOP2", "bounce"),
        ("DSN1", "queued"),
        ("DSN1", "delivered"),
        ("HOP1", "delivered"),
    ]
    assert [r["ts"] for r in found] == sorted(r["ts"] for r in found)
    assert log.find("m1@a.test") == found  # brackets are optional
    hop2 = [r["event"] for r in log.find("HOP2")]
    assert hop2 == ["queued", "failed", "bounce", "queued", "delivered"]  # and its DSN's
    assert log.related_qids(["<m2@a.test>", "HOP1"]) == {"UNRELATED", "HOP1"}


def test_damaged_lines_are_skipped_and_a_cut_line_is_kept_apart(tmp_path: Path) -> None:
    day = tmp_path / "journal" / "2026-11-29.jsonl"
    day.parent.mkdir()
    day.write_text('{"ts": 1, "qid": "Q", "event": "queued"}\nnot json\n{"ts": 2, "qid": "Q", "ev')
    log, _ = journal(tmp_path)
    log.record("Q", "delivered")
    log.close()
    assert [r["event"] for r in log.find("Q")] == ["queued", "delivered"]


def test_a_full_disk_never_raises_and_is_counted(tmp_path: Path) -> None:
    log, _ = journal(tmp_path)
    (tmp_path / "journal").mkdir()
    day = tmp_path / "journal" / "2026-11-29.jsonl"
    day.symlink_to("/dev/full")  # every write fails with ENOSPC
    log.record("Q", "queued")
    log.record("Q", "delivered")
    assert log.failures == 2
    day.unlink()
    log.record("Q", "stored", mailbox="/m")
    log.close()
    assert log.failures == 2
    assert [r["event"] for r in log.find("Q")] == ["stored"]


def test_odd_values_are_stringified_or_counted_never_raised(tmp_path: Path) -> None:
    log, _ = journal(tmp_path)
    log.record("Q", "queued", path=tmp_path)
    log.record("Q", "weird", mapping={(1, 2): "tuple keys cannot be JSON"})
    log.close()
    assert log.failures == 1
    assert log.find("Q")[0]["path"] == str(tmp_path)


def test_concurrent_writers_never_interleave_lines(tmp_path: Path) -> None:
    log, _ = journal(tmp_path)

    def write(n: int) -> None:
        for i in range(200):
            log.record(f"Q{n}", "attempt", index=i, detail="x" * 500)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    lines = (tmp_path / "journal" / "2026-11-29.jsonl").read_text().splitlines()
    assert len(lines) == 1600
    assert all(json.loads(line)["event"] == "attempt" for line in lines)
    assert [r["index"] for r in log.find("Q3")] == list(range(200))


def test_on_an_event_loop_a_round_of_records_is_flushed_at_once(tmp_path: Path) -> None:
    log, _ = journal(tmp_path)
    day = tmp_path / "journal" / "2026-11-29.jsonl"
    seen: list[int] = []

    async def server() -> None:
        log.record("Q1", "queued")
        log.record("Q2", "queued")
        seen.append(len(day.read_bytes().splitlines()))  # still buffered in this round
        await asyncio.sleep(0)
        seen.append(len(day.read_bytes().splitlines()))  # the loop went round: written
        log.record("Q1", "delivered")
        seen.append(len(log.find("Q1")))  # reading flushes first

    asyncio.run(server())
    assert seen == [0, 2, 2]
    log.close()
