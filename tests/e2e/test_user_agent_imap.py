"""The user agent over IMAP end to end: `account add` finds IMAP, then inbox/read/mark/move/folders
work on the server, and `fetch` downloads over IMAP. The loopback world of test_user_agent,
with IMAP SRV records: a.test publishes `_imaps._tcp` (a dead record first) and `_imap._tcp`,
b.test only `_imap._tcp` (STARTTLS).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from postoffice.storage.maildir import MaildirMailbox
from postoffice.testing.server import free_port
from postoffice.testing.world import LoopbackWorld
from tests.e2e.test_user_agent import Agent, add_account, ca, world  # noqa: F401 (a fixture)


@pytest.fixture
def imap_world(world: LoopbackWorld) -> LoopbackWorld:  # noqa: F811 (the fixture imported above)
    """The loopback world with the IMAP SRV records."""
    a, b = world.a, world.b
    world.dns.add(
        {
            "_imaps._tcp.a.test": [
                f"SRV 0 1 {free_port()} mx.a.test.",  # nothing listens there: skipped
                f"SRV 5 1 {a.imaps_port} mx.a.test.",
            ],
            "_imap._tcp.a.test": [f"SRV 0 1 {a.imap_port} mx.a.test."],
            "_imap._tcp.b.test": [f"SRV 0 1 {b.imap_port} mx.b.test."],
        }
    )
    return world


def accounts_toml(agent: Agent) -> dict[str, dict[str, object]]:
    path = agent.root / "config" / "postoffice" / "accounts.toml"
    return tomllib.loads(path.read_text())["accounts"]  # type: ignore[no-any-return]


def server_flags(loopback: LoopbackWorld, address: str, folder: str = "") -> list[frozenset[str]]:
    domain = address.partition("@")[2]
    path = loopback.servers[domain].maildir(address)
    box = MaildirMailbox(path / folder, f"mx.{domain}", subfolder=bool(folder))
    return [info.flags for info in box.messages()]


def test_account_add_finds_imap_and_reads_online(imap_world: LoopbackWorld, tmp_path: Path) -> None:
    world = imap_world  # noqa: F811 (the fixture imported above)
    alice = Agent(tmp_path / "alice", world)
    out = add_account(alice, world, "alice@a.test")
    assert f"IMAP:      mx.a.test:{world.a.imaps_port} (TLS)  (reads here)" in out
    account = accounts_toml(alice)["alice@a.test"]
    assert account["read"] == "imap"
    assert account["imap"] == {"host": "mx.a.test", "port": world.a.imaps_port, "security": "tls"}
    assert account["pop3"] == {"host": "mx.a.test", "port": world.a.pop3s_port, "security": "tls"}
    queried = [q.name for q in world.dns.queries if q.rtype == "SRV"]
    assert "_imaps._tcp.a.test" in queried and "_imap._tcp.a.test" in queried

    for subject in ("first", "Grüße"):
        alice.ok("send", "--to", "alice@a.test", "--subject", subject, "--body", f"{subject}!")
    world.a.wait_for_mail("alice@a.test", 2)
    listing = alice.ok("inbox").splitlines()
    assert len(listing) == 2 and all(" N " in line for line in listing)
    assert "first" in listing[0] and "Grüße" in listing[1]
    first, second = (int(line.split()[0]) for line in listing)
    assert server_flags(world, "alice@a.test") == [frozenset(), frozenset()]  # looking is free

    shown = alice.ok("read", str(second))
    assert "Subject: Grüße" in shown and "Grüße!" in shown
    assert sorted(map(sorted, server_flags(world, "alice@a.test"))) == [[], ["\\Seen"]]
    assert f"{first} N" in alice.ok("inbox", "--unread")
    assert str(second) not in alice.ok("inbox", "--unread").split()[:1]
    alice.ok("mark", str(first), str(second), "--read")
    assert "no unread messages" in alice.ok("inbox", "--unread")
    alice.ok("mark", str(second), "--unread")

    assert f"moved {second} to Archive" in alice.ok("move", str(second), "Archive")
    assert [line.split()[0] for line in alice.ok("inbox").splitlines()] == [str(first)]
    archived = alice.ok("inbox", "--folder", "Archive")
    assert "Grüße" in archived and " N " in archived
    assert len(server_flags(world, "alice@a.test", ".Archive")) == 1
    folders = {line.split()[0]: line for line in alice.ok("folders").splitlines()}
    assert "1 messages     0 new" in folders["INBOX"]
    assert "1 messages     1 new" in folders["Archive"] and "\\Archive" in folders["Archive"]
    assert "\\Sent" in folders["Sent"]
    assert f"no message {second} in INBOX" in alice.fails("read", str(second))
    assert "no folder 'Nowhere'" in alice.fails("move", str(first), "Nowhere")

    # fetch over IMAP: into the local Maildir once, deleted on the server only without --keep
    assert "1 new, 0 deleted on the server, 1 left" in alice.ok("fetch", "--keep")
    assert "0 new, 1 deleted on the server" in alice.ok("fetch")
    assert len(alice.files("alice@a.test")) == 1
    assert "no messages" in alice.ok("inbox")


def test_starttls_only_imap_and_choosing_pop3(imap_world: LoopbackWorld, tmp_path: Path) -> None:
    world = imap_world  # noqa: F811 (the fixture imported above)
    bob = Agent(tmp_path / "bob", world)
    out = add_account(bob, world, "bob@b.test")
    assert f"mx.b.test:{world.b.imap_port} (STARTTLS)  (reads here)" in out
    MaildirMailbox(world.b.maildir("bob@b.test"), "mx.b.test").deliver(
        b"Subject: hi bob\r\n\r\nhello\r\n"
    )
    assert "hi bob" in bob.ok("inbox")

    carol = Agent(tmp_path / "carol", world)
    add_account(carol, world, "carol@b.test", "--read", "pop3")
    account = accounts_toml(carol)["carol@b.test"]
    assert account["read"] == "pop3" and "imap" not in account
    assert "works on IMAP accounts" in carol.fails("folders")
    assert "works on IMAP accounts" in carol.fails("move", "1", "Archive")
    MaildirMailbox(world.b.maildir("carol@b.test"), "mx.b.test").deliver(
        b"Subject: for carol\r\n\r\nhello\r\n"
    )
    assert "1 new" in carol.ok("fetch")  # over POP3, into the Maildir
    assert " 1 N " in carol.ok("inbox")
    carol.ok("mark", "1")
    assert "no unread messages" in carol.ok("inbox", "--unread")

    dave = Agent(tmp_path / "dave", world)
    error = dave.fails(
        "account", "add", "bob@b.test", "--password-stdin", "--ca", ca(world, "b.test"),
        "--read", "imap", "--imap", f"127.0.0.1:{free_port()}", stdin="pw-bob-1\n",
    )  # fmt: skip
    assert "no working IMAP server" in error and "connection refused" in error
