"""Reading mail online over IMAP: the listing, one message, flags, moving, the folder list.

For an account that reads over IMAP, `inbox`, `read`, `save`, `mark`, `move` and `folders`
work on the server: nothing is downloaded and every change is the server's. Each command
is one short session (connect, log in, select, act, LOGOUT). Messages are named by their
UID, the number the server gave each message in its folder for good, so the number a
listing showed still names the same message when other messages were moved or removed
in between; a listing only EXAMINEs the folder (read-only) and fetches with BODY.PEEK, so
looking changes nothing, while `read` fetches BODY[] and the server sets \\Seen.

Standards: RFC 9051 §6.3.2-§6.3.3 (SELECT, EXAMINE), §6.4.5 (FETCH sets \\Seen), §6.4.9
(UID); RFC 6851 (MOVE); RFC 6154 (special-use)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from email.message import EmailMessage

from postoffice.client.accounts import Access, Account
from postoffice.client.imap import SEEN, Folder, ImapClient, ImapError, uid_set
from postoffice.client.network import (
    FAILURES,
    ClientError,
    Endpoint,
    describe,
    open_endpoint,
)
from postoffice.client.reading import Summary, parse, summary
from postoffice.storage.base import MessageInfo

INBOX = "INBOX"
TIMEOUT = 60.0  # seconds per command


async def connect(
    account: Account, password: str, endpoint: Endpoint, *, timeout: float = TIMEOUT
) -> ImapClient:
    """A logged-in connection to `endpoint`; the failures as they are (see `session`)."""
    client = await open_endpoint(
        ImapClient.connect, endpoint, ca=account.ca, insecure=account.insecure, timeout=timeout
    )
    try:
        await client.login(account.login, password)
    except BaseException:
        client.close()
        raise
    return client


@asynccontextmanager
async def session(account: Account, password: str) -> AsyncIterator[ImapClient]:
    """The account's IMAP server, logged in; every failure becomes one ClientError line."""
    endpoint = account.server(Access.IMAP)
    try:
        client = await connect(account, password, endpoint)
        try:
            yield client
            await client.logout()
        finally:
            client.close()
    except FAILURES as exc:
        raise ClientError(describe(exc, endpoint)) from None


async def _existing(client: ImapClient, folder: str, uids: Iterable[int]) -> list[int]:
    """`uids`, all in the selected folder; ClientError naming the first that is not."""
    wanted = sorted(set(uids))
    found = set(await client.uids(f"UID {uid_set(wanted)}"))
    for uid in wanted:
        if uid not in found:
            raise ClientError(f"no message {uid} in {folder} (see `postoffice inbox`)")
    return wanted


async def summaries(account: Account, password: str, folder: str = INBOX) -> list[Summary]:
    """One line's worth for every message of `folder`, numbered by UID, oldest first."""
    async with session(account, password) as client:
        await client.select(folder, readonly=True)
        uids = await client.uids()
        fetched = await client.summaries(uids) if uids else []
    return [
        summary(
            found.uid,
            MessageInfo(found.uid, str(found.uid), found.size, found.flags),
            parse(found.body, headers_only=True),
        )
        for found in sorted(fetched, key=lambda found: found.uid)
    ]


async def message(
    account: Account, password: str, uid: int, *, folder: str = INBOX, mark_seen: bool = True
) -> EmailMessage:
    """Message `uid` of `folder`, parsed; with `mark_seen` the server flags it \\Seen."""
    async with session(account, password) as client:
        await client.select(folder, readonly=not mark_seen)
        data = await client.message(uid, peek=not mark_seen)
    if data is None:
        raise ClientError(f"no message {uid} in {folder} (see `postoffice inbox`)")
    return parse(data)


async def mark(
    account: Account, password: str, uids: Iterable[int], *, seen: bool, folder: str = INBOX
) -> None:
    """Flag `uids` read (\\Seen) or unread."""
    async with session(account, password) as client:
        await client.select(folder)
        await client.store(await _existing(client, folder, uids), SEEN, add=seen)


async def move(
    account: Account, password: str, uids: Iterable[int], target: str, *, folder: str = INBOX
) -> None:
    """Move `uids` from `folder` to `target`, which must exist."""
    async with session(account, password) as client:
        await client.select(folder)
        existing = await _existing(client, folder, uids)
        try:
            await client.move(existing, target)
        except ImapError as exc:
            if exc.code in ("TRYCREATE", "NONEXISTENT"):
                raise ClientError(
                    f"no folder {target!r} on the server (see `postoffice folders`)"
                ) from None
            raise


async def folders(account: Account, password: str) -> list[Folder]:
    """The account's folders with their special uses and counts."""
    async with session(account, password) as client:
        return await client.folders()
