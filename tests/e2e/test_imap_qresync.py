"""IMAP QRESYNC against a running server: a raw socket client, imaplib and poplib.

A QRESYNC client remembers UIDVALIDITY and HIGHESTMODSEQ, and on its next SELECT is told
exactly what vanished and what changed meanwhile, whoever did it: another IMAP session or a
POP3 client deleting mail. `Wire` shows the lines as the server wrote them, because the
order matters (VANISHED (EARLIER) before the FETCHes) and imaplib merges untagged data.

Standards: RFC 7162 §3.2 (QRESYNC), §3.2.5 (SELECT QRESYNC), §3.2.6 (UID FETCH VANISHED),
§3.2.10 (VANISHED instead of EXPUNGE)
"""

from __future__ import annotations

import imaplib
import poplib
import re
import socket
from collections.abc import Iterator

import pytest

from postoffice.testing.server import ServerProcess, with_user

USER, PASSWORD = "dora@localhost", "secret-dora"
MESSAGE = b"From: dora@localhost\r\nSubject: %d\r\n\r\nbody %d\r\n"
UID = re.compile(r"UID (\d+)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("qresync") / "data"
    proc = with_user(data, USER, PASSWORD, limits={"commands_per_minute": 100_000})
    proc.start()
    yield proc
    proc.stop()


class Wire:
    """A raw IMAP client: each command's untagged lines and its completion, as sent."""

    def __init__(self, proc: ServerProcess) -> None:
        self.sock = socket.create_connection((proc.host, proc.imap_port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.count = 0
        assert self.file.readline().startswith(b"* OK")
        self.command(f"LOGIN {USER} {PASSWORD}")

    def command(self, line: str) -> tuple[list[str], str]:
        """(untagged lines, tagged completion) of one command."""
        self.count += 1
        tag = f"w{self.count}"
        self.sock.sendall(f"{tag} {line}\r\n".encode())
        untagged = []
        while True:
            reply = self.file.readline().decode().rstrip("\r\n")
            assert reply, "the server closed the connection"
            if reply.startswith(tag + " "):
                return untagged, reply[len(tag) + 1 :]
            untagged.append(reply)

    def ok(self, line: str) -> list[str]:
        untagged, completion = self.command(line)
        assert completion.startswith("OK"), completion
        return untagged

    def close(self) -> None:
        self.command("LOGOUT")
        self.file.close()
        self.sock.close()


def connect(proc: ServerProcess) -> imaplib.IMAP4:
    client = imaplib.IMAP4(proc.host, proc.imap_port, timeout=10)
    client.login(USER, PASSWORD)
    return client


def fill(proc: ServerProcess, folder: str, count: int) -> None:
    """Make `folder` (unless INBOX) and append `count` messages to it."""
    client = connect(proc)
    if folder != "INBOX":
        assert client.create(folder)[0] == "OK"
    for n in range(1, count + 1):
        assert client.append(folder, None, None, MESSAGE % (n, n))[0] == "OK"
    client.logout()


def state(untagged: list[str]) -> tuple[int, int]:
    """UIDVALIDITY and HIGHESTMODSEQ from a SELECT's untagged responses."""
    text = "\n".join(untagged)
    validity = re.search(r"\[UIDVALIDITY (\d+)\]", text)
    highest = re.search(r"\[HIGHESTMODSEQ (\d+)\]", text)
    assert validity and highest, text
    return int(validity[1]), int(highest[1])


def remember(proc: ServerProcess, folder: str) -> tuple[int, int]:
    """What a QRESYNC client keeps from its last session on `folder`."""
    wire = Wire(proc)
    wire.ok("ENABLE QRESYNC")
    known = state(wire.ok(f"EXAMINE {folder}"))
    wire.close()
    return known


def resync_lines(untagged: list[str]) -> list[str]:
    return [line for line in untagged if "VANISHED" in line or " FETCH " in line]


def test_qresync_is_advertised_and_enable_implies_condstore(server: ServerProcess) -> None:
    wire = Wire(server)
    (caps,) = wire.ok("CAPABILITY")
    assert "QRESYNC" in caps.split() and "CONDSTORE" in caps.split()
    _, completion = wire.command("SELECT INBOX (QRESYNC (1 1))")
    assert completion.startswith("BAD")  # RFC 7162 §3.2.5: not enabled yet
    assert wire.ok("ENABLE QRESYNC") == ["* ENABLED QRESYNC"]
    assert wire.ok("SELECT INBOX (QRESYNC (1 1))")
    wire.close()


def test_resync_after_another_session_expunged_and_flagged(server: ServerProcess) -> None:
    fill(server, "Resync", 5)
    validity, highest = remember(server, "Resync")
    other = connect(server)
    other.select("Resync")
    other.uid("STORE", "2,4", "+FLAGS", "(\\Deleted)")
    other.expunge()
    other.uid("STORE", "5", "+FLAGS", "(\\Flagged)")
    other.logout()

    wire = Wire(server)
    wire.ok("ENABLE QRESYNC")
    untagged = wire.ok(f"SELECT Resync (QRESYNC ({validity} {highest} 1:5))")
    assert "* 3 EXISTS" in untagged
    assert state(untagged)[1] > highest
    vanished, fetch = resync_lines(untagged)
    assert vanished == "* VANISHED (EARLIER) 2,4"
    assert re.fullmatch(r"\* 3 FETCH \(UID 5 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)", fetch)
    # nothing since the new HIGHESTMODSEQ
    _, now = state(untagged)
    again = wire.ok(f"EXAMINE Resync (QRESYNC ({validity} {now}))")
    assert resync_lines(again) == []
    wire.close()


def test_resync_without_known_uids_reports_every_expunge_since(server: ServerProcess) -> None:
    fill(server, "Unknown", 3)
    validity, highest = remember(server, "Unknown")
    other = connect(server)
    other.select("Unknown")
    other.uid("STORE", "3", "+FLAGS", "(\\Deleted)")
    other.expunge()
    other.logout()
    wire = Wire(server)
    wire.ok("ENABLE QRESYNC")
    untagged = wire.ok(f"EXAMINE Unknown (QRESYNC ({validity} {highest}))")
    assert resync_lines(untagged) == ["* VANISHED (EARLIER) 3"]
    wire.close()


def test_resync_after_a_pop3_deletion(server: ServerProcess) -> None:
    fill(server, "INBOX", 3)
    validity, highest = remember(server, "INBOX")
    wire = Wire(server)
    wire.ok("ENABLE QRESYNC")
    wire.ok("EXAMINE INBOX")
    uids = [int(m[1]) for m in map(UID.search, wire.ok("UID FETCH 1:* (UID)")) if m]
    pop = poplib.POP3(server.host, server.pop3_port, timeout=10)
    pop.user(USER)
    pop.pass_(PASSWORD)
    pop.dele(1)  # the oldest: the lowest UID
    pop.quit()
    untagged = wire.ok(f"EXAMINE INBOX (QRESYNC ({validity} {highest}))")
    assert resync_lines(untagged) == [f"* VANISHED (EARLIER) {uids[0]}"]
    wire.close()


def test_uidvalidity_mismatch_is_a_plain_select(server: ServerProcess) -> None:
    fill(server, "Stale", 2)
    validity, _ = remember(server, "Stale")
    wire = Wire(server)
    wire.ok("ENABLE QRESYNC")
    untagged = wire.ok(f"SELECT Stale (QRESYNC ({validity + 1} 1 1:100))")
    assert resync_lines(untagged) == []
    assert "* 2 EXISTS" in untagged
    assert state(untagged)[0] == validity
    wire.close()


def test_expunges_are_vanished_once_enabled(server: ServerProcess) -> None:
    fill(server, "Gone", 6)
    wire = Wire(server)
    wire.ok("ENABLE QRESYNC")
    _, start = state(wire.ok("SELECT Gone"))
    wire.ok("UID STORE 1,2 +FLAGS.SILENT (\\Deleted)")
    assert wire.ok("EXPUNGE") == ["* VANISHED 1:2"]
    wire.ok("UID STORE 3 +FLAGS.SILENT (\\Deleted)")
    assert wire.ok("UID EXPUNGE 3") == ["* VANISHED 3"]
    moved = wire.ok("UID MOVE 4 INBOX")
    assert moved[-1] == "* VANISHED 4" and not any("EXPUNGE" in line for line in moved)
    other = connect(server)  # another session's expunge, told at the next command
    other.select("Gone")
    other.uid("STORE", "5", "+FLAGS", "(\\Deleted)")
    other.expunge()
    other.logout()
    assert wire.ok("NOOP") == ["* VANISHED 5"]
    # RFC 7162 §3.2.6: UID FETCH ... VANISHED tells what vanished in the set since then
    untagged = wire.ok(f"UID FETCH 2:* (FLAGS) (CHANGEDSINCE {start} VANISHED)")
    assert untagged[0] == "* VANISHED (EARLIER) 2:5"
    assert not any(line.startswith("* VANISHED") for line in untagged[1:])
    wire.ok("UID SEARCH RETURN (SAVE) UID 1:3,6")  # only 6 is left of these
    wire.ok("UID STORE 6 +FLAGS.SILENT (\\Seen)")
    untagged = wire.ok(f"UID FETCH $ (FLAGS) (CHANGEDSINCE {start} VANISHED)")
    (fetch,) = untagged  # no VANISHED: 6 is still here
    assert re.fullmatch(r"\* 1 FETCH \(FLAGS \(\\Seen\) UID 6 MODSEQ \(\d+\)\)", fetch)
    wire.close()


def test_without_qresync_expunge_responses_stay(server: ServerProcess) -> None:
    fill(server, "Plain", 2)
    wire = Wire(server)
    wire.ok("SELECT Plain")
    wire.ok("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    assert wire.ok("EXPUNGE") == ["* 2 EXPUNGE", "* 1 EXPUNGE"]
    _, completion = wire.command("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
    assert completion.startswith("BAD")
    wire.close()
