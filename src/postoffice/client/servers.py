"""Talking to the account's servers: checking a login, submitting, keeping Sent and Drafts.

`working_server` tries candidate servers in order and keeps the first that accepts the
login (the way `account add` settles on one); a refused login ends the search at once,
since the next server would refuse the same password. `send` keeps the copy for the Sent
folder on disk *before* submitting, so a full disk stops a message before it leaves and a
message that left is always in Sent; when submission fails, the copy moves to Drafts, so
a message typed into an editor is not lost.

Standards: RFC 6409 (submission), RFC 4954 (AUTH), RFC 1939 §7 (USER/PASS), RFC 5034 (AUTH),
RFC 9051 §6.2.2-§6.2.3 (AUTHENTICATE, LOGIN)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress

from postoffice.client import online
from postoffice.client.accounts import Account
from postoffice.client.compose import Outgoing
from postoffice.client.imap import ImapError
from postoffice.client.local import DRAFTS, SENT, folder
from postoffice.client.network import (
    FAILURES,
    ClientError,
    Endpoint,
    Security,
    address_of,
    describe,
    helo_name,
    open_endpoint,
    tls_context,
)
from postoffice.client.pop3 import Pop3Client, Pop3Error
from postoffice.client.reading import SEEN
from postoffice.client.submit import SubmitError, session, submit

Check = Callable[[Endpoint], Awaitable[None]]
CHECK_TIMEOUT = 15.0  # seconds per reply while trying candidates: a silent one is skipped


def _login_refused(exc: BaseException) -> bool:
    return (
        (isinstance(exc, SubmitError) and exc.step == "AUTH")
        or (isinstance(exc, Pop3Error) and exc.code == "AUTH")
        or (
            isinstance(exc, ImapError)
            and exc.command in ("LOGIN", "AUTHENTICATE")
            and exc.code not in ("UNAVAILABLE", "PRIVACYREQUIRED")  # RFC 5530 §3
        )
    )


async def working_server(what: str, candidates: Sequence[Endpoint], check: Check) -> Endpoint:
    """The first candidate `check` accepts; ClientError naming every failure otherwise."""
    failures = []
    for endpoint in candidates:
        try:
            await check(endpoint)
        except (*FAILURES, ClientError) as exc:
            if _login_refused(exc):
                raise ClientError(f"login refused: {describe(exc, endpoint)}") from None
            failures.append(describe(exc, endpoint))
        else:
            return endpoint
    if not failures:
        raise ClientError(f"no {what} server found: give it with the --{what.lower()} option")
    raise ClientError(f"no working {what} server: " + "; ".join(failures))


def submission_check(account: Account, password: str) -> Check:
    """Connect, TLS, AUTH and QUIT, as `account` would with `endpoint`."""

    async def check(endpoint: Endpoint) -> None:
        async with session(
            endpoint.host,
            endpoint.port,
            helo=helo_name(),
            auth=(account.login, password),
            tls=tls_context(account.ca, insecure=account.insecure),
            implicit_tls=endpoint.security is Security.TLS,
            address=await address_of(endpoint.host),
            timeout=CHECK_TIMEOUT,
        ):
            pass

    return check


def pop3_check(account: Account, password: str) -> Check:
    """Connect, TLS, log in and QUIT (nothing is deleted), as `account` would."""

    async def check(endpoint: Endpoint) -> None:
        client = await open_endpoint(
            Pop3Client.connect,
            endpoint,
            ca=account.ca,
            insecure=account.insecure,
            timeout=CHECK_TIMEOUT,
        )
        try:
            await client.login(account.login, password)
            await client.quit()
        finally:
            await client.close()

    return check


def imap_check(account: Account, password: str) -> Check:
    """Connect, TLS, log in and LOGOUT, as `account` would."""

    async def check(endpoint: Endpoint) -> None:
        client = await online.connect(account, password, endpoint, timeout=CHECK_TIMEOUT)
        try:
            await client.logout()
        finally:
            client.close()

    return check


async def send(account: Account, password: str, outgoing: Outgoing) -> str:
    """Submit `outgoing` with a copy in Sent; the server's queue id. ClientError if not sent."""
    sent = folder(account, SENT)
    try:
        key = sent.deliver(outgoing.sent_copy)
        sent.set_flags(key, frozenset({SEEN}))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ClientError(
            f"cannot save the copy in {sent.path}: {reason}; nothing was sent"
        ) from None
    endpoint = account.submission
    try:
        submitted = await submit(
            endpoint.host,
            endpoint.port,
            helo=helo_name(),
            sender=account.address,
            recipients=outgoing.recipients,
            message=outgoing.message,
            auth=(account.login, password),
            tls=tls_context(account.ca, insecure=account.insecure),
            implicit_tls=endpoint.security is Security.TLS,
            address=await address_of(endpoint.host),
        )
    except BaseException as exc:
        kept = _to_drafts(account, outgoing, key)
        if isinstance(exc, (*FAILURES, ClientError)):
            raise ClientError(f"not sent: {describe(exc, endpoint)}{kept}") from None
        raise
    return submitted.queue_id


def _to_drafts(account: Account, outgoing: Outgoing, key: str) -> str:
    """Move the unsent copy from Sent to Drafts; the note to add to the error."""
    sent, drafts = folder(account, SENT), folder(account, DRAFTS)
    try:
        drafts.deliver(outgoing.sent_copy)
    except OSError:
        return ""
    with suppress(OSError, KeyError):
        sent.remove([key])
    return f" (the message is kept in {drafts.path})"
