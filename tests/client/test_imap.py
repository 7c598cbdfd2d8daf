"""The IMAP client and the online commands against a real server, and a few silent peers."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import Iterator

import pytest

from postoffice.client import online
from postoffice.client.accounts import Access, Account
from postoffice.client.imap import ImapClient, ImapError, parse_fetch, uid_set
from postoffice.client.network import ClientError, Endpoint, Security, describe, tls_context
from postoffice.storage.maildir import MaildirMailbox
from postoffice.testing.server import ServerProcess
from tests.client.conftest import PASSWORD

SEEN = "\\Seen"


def mailbox(server: ServerProcess, folder: str = "") -> MaildirMailbox:
    path = server.maildir("alice@localhost")
    if folder:
        return MaildirMailbox(path / f".{folder}", "localhost", subfolder=True)
    return MaildirMailbox(path, "localhost")


def deliver(server: ServerProcess, *subjects: str) -> MaildirMailbox:
    box = mailbox(server)
    for subject in subjects:
        box.deliver(
            f"From: Bob <bob@b.test>\r\nSubject: {subject}\r\n"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody of {subject}\r\n".encode()
        )
    return box


def imap(account: Account, **changes: object) -> Account:
    return dataclasses.replace(account, read=Access.IMAP, **changes)  # type: ignore[arg-type]


def flags(box: MaildirMailbox) -> list[frozenset[str]]:
    return [info.flags for info in box.messages()]


def test_uid_sets_and_fetch_responses_with_the_literal_anywhere() -> None:
    assert uid_set([9, 3, 4, 5, 5, 11, 12]) == "3:5,9,11:12"
    data = [
        (b"1 (UID 7 RFC822.SIZE 30 BODY[HEADER.FIELDS (SUBJECT)] {9}", b"Subject:x"),
        b" FLAGS (\\Seen \\Answered))",
        b"2 (UID 8 FLAGS ())",  # an unsolicited flag change: no literal, skipped
        (b"3 (FLAGS () UID 9 RFC822.SIZE 5 BODY[] {5}", b"hello"),
        b")",
    ]
    first, second = parse_fetch(data)
    assert (first.uid, first.size, first.flags, first.body) == (
        7, 30, frozenset({"\\Seen", "\\Answered"}), b"Subject:x"
    )  # fmt: skip
    assert (second.uid, second.flags, second.body) == (9, frozenset(), b"hello")


@pytest.mark.parametrize("security", [Security.TLS, Security.STARTTLS])
def test_listing_peeks_and_reading_marks_seen_on_the_server(
    server: ServerProcess, account: Account, security: Security
) -> None:
    port = server.imaps_port if security is Security.TLS else server.imap_port
    account = imap(account, imap=Endpoint("127.0.0.1", port, security))
    box = deliver(server, "first", "zweite Grüße")
    listed = asyncio.run(online.summaries(account, PASSWORD))
    assert [(s.subject, s.sender, s.seen) for s in listed] == [
        ("first", "Bob", False), ("zweite Grüße", "Bob", False)
    ]  # fmt: skip
    assert all(s.info.size > 0 and s.date is not None for s in listed)
    assert flags(box) == [frozenset(), frozenset()]  # looking changed nothing
    second = listed[1].number
    message = asyncio.run(online.message(account, PASSWORD, second))
    assert message["Subject"] == "zweite Grüße"
    assert flags(box) == [frozenset(), frozenset({SEEN})]
    asyncio.run(online.message(account, PASSWORD, listed[0].number, mark_seen=False))
    assert flags(box)[0] == frozenset()


def test_mark_move_and_folders(server: ServerProcess, account: Account) -> None:
    account = imap(account)
    deliver(server, "a", "b", "c")
    a, b, c = (s.number for s in asyncio.run(online.summaries(account, PASSWORD)))
    asyncio.run(online.mark(account, PASSWORD, [a, c], seen=True))
    assert [s.seen for s in asyncio.run(online.summaries(account, PASSWORD))] == [True, False, True]
    asyncio.run(online.mark(account, PASSWORD, [c], seen=False))
    asyncio.run(online.move(account, PASSWORD, [b], "Archive"))
    left = asyncio.run(online.summaries(account, PASSWORD))
    assert [(s.number, s.subject, s.seen) for s in left] == [(a, "a", True), (c, "c", False)]
    (moved,) = asyncio.run(online.summaries(account, PASSWORD, "Archive"))
    assert moved.subject == "b"
    assert len(mailbox(server, "Archive").messages()) == 1 and len(mailbox(server).messages()) == 2
    found = {f.name: f for f in asyncio.run(online.folders(account, PASSWORD))}
    assert (found["INBOX"].messages, found["INBOX"].unseen) == (2, 1)
    assert (found["Archive"].messages, found["Archive"].unseen) == (1, 1)
    assert "\\Archive" in found["Archive"].attributes and "\\Sent" in found["Sent"].attributes
    with pytest.raises(ClientError, match=f"no message {b} in INBOX"):
        asyncio.run(online.message(account, PASSWORD, b))
    with pytest.raises(ClientError, match=f"no message {b} in INBOX"):
        asyncio.run(online.move(account, PASSWORD, [a, b], "Archive"))
    with pytest.raises(ClientError, match="no folder 'Nowhere'"):
        asyncio.run(online.move(account, PASSWORD, [a], "Nowhere"))
    assert len(mailbox(server).messages()) == 2  # a failed move moved nothing


def test_move_without_the_move_extension_copies_flags_and_expunges(
    server: ServerProcess, account: Account
) -> None:
    box = deliver(server, "keep", "go")

    async def without_move() -> None:
        client = await online.connect(account, PASSWORD, account.server(Access.IMAP))
        try:
            client.capabilities -= {"MOVE"}  # as a server without RFC 6851 would say
            await client.select("INBOX")
            uids = await client.uids()
            await client.move(uids[1:], "Archive")
            await client.logout()
        finally:
            client.close()

    asyncio.run(without_move())
    assert [box.read(i.key).split(b"\r\n")[1] for i in box.messages()] == [b"Subject: keep"]
    assert len(mailbox(server, "Archive").messages()) == 1


def test_a_refused_login_is_one_line(server: ServerProcess, account: Account) -> None:
    account = imap(account)
    with pytest.raises(ClientError) as refused:
        asyncio.run(online.summaries(account, "wrong"))
    text = str(refused.value)
    assert "AUTHENTICATE refused" in text and "AUTHENTICATIONFAILED" in text
    assert "\n" not in text


def test_a_certificate_for_another_name_is_refused(server: ServerProcess, account: Account) -> None:
    endpoint = Endpoint("127.0.0.2", server.imaps_port, Security.TLS)
    account = imap(account, imap=endpoint)

    async def connect() -> None:
        await ImapClient.connect(
            "other.test", server.imaps_port, tls=tls_context(account.ca), implicit_tls=True,
            address="127.0.0.1", timeout=5,
        )  # fmt: skip

    with pytest.raises(OSError) as failure:
        asyncio.run(connect())
    assert "certificate not accepted" in describe(failure.value, endpoint)


@pytest.fixture
def silent_peer() -> Iterator[tuple[int, list[bytes]]]:
    """A peer that greets without STARTTLS, then records what it is sent, or stays silent."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                if received == [b"silent"]:
                    conn.recv(1)  # never greets
                    continue
                conn.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] plain only\r\n")
                while data := conn.recv(4096):
                    received.append(data)
                    tag = data.split(b" ", 1)[0]
                    conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], received
    listener.close()
    thread.join(5)


def test_no_starttls_means_no_login_and_silence_times_out(
    silent_peer: tuple[int, list[bytes]],
) -> None:
    port, received = silent_peer

    async def connect(timeout: float) -> None:
        client = await ImapClient.connect(
            "127.0.0.1", port, tls=tls_context(), implicit_tls=False, timeout=timeout
        )
        client.close()

    with pytest.raises(ImapError, match="STARTTLS refused: not offered"):
        asyncio.run(connect(5))
    assert not any(b"AUTHENTICATE" in data or b"LOGIN" in data for data in received)
    received[:] = [b"silent"]
    with pytest.raises(TimeoutError) as silent:
        asyncio.run(connect(0.5))
    assert "no answer (timed out)" in describe(silent.value, f"127.0.0.1:{port}")
