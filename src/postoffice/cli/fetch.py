"""`postoffice fetch [ACCOUNT] [--keep] [--protocol imap|pop3]`: download new mail.

Mail is downloaded into the account's local Maildir over the protocol the account reads
with (`--protocol` chooses another one the account has a server for).

Without ACCOUNT, every account is fetched in turn; a failure of one is reported and the
others still run. A progress bar (on standard error) appears when a run has many
messages. The exactly-once and delete-after-fsync rules live in `client/fetch.py`.

Standards: RFC 1939, RFC 9051
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import click

from postoffice.cli.account import client_errors, open_account
from postoffice.cli.common import CliError
from postoffice.client import accounts
from postoffice.client.accounts import Access
from postoffice.client.fetch import FetchResult, fetch
from postoffice.client.network import ClientError

PROGRESS_FROM = 20  # messages: fewer are fetched without a progress bar


def _fetch_one(name: str, keep: bool, protocol: str | None) -> FetchResult:
    account, password = open_account(name)
    access = Access(protocol) if protocol else account.read
    with contextlib.ExitStack() as stack:
        bar = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None and total >= PROGRESS_FROM:
                shown = click.progressbar(length=total, label=account.address, file=sys.stderr)
                bar = stack.enter_context(shown)
            if bar is not None:
                bar.update(1)

        return asyncio.run(fetch(account, password, access=access, keep=keep, progress=progress))


@click.command("fetch")
@click.argument("account_name", metavar="[ACCOUNT]", required=False)
@click.option("--keep", is_flag=True, help="Leave the messages on the server.")
@click.option(
    "--protocol",
    type=click.Choice([access.value for access in Access]),
    help="Download over IMAP or POP3 (default: what the account reads with).",
)
@client_errors
def fetch_command(account_name: str | None, keep: bool, protocol: str | None) -> None:
    """Download new mail into the local Maildir (every account unless one is named)."""
    names = [account_name] if account_name else [a.address for a in accounts.load()]
    if not names:
        accounts.find(None)  # raises the "no account yet" error
    failures = []
    for name in names:
        try:
            result = _fetch_one(name, keep, protocol)
        except ClientError as exc:
            failures.append(f"{name}: {exc}" if len(names) > 1 else str(exc))
            continue
        left = f", {result.remaining} left on the server" if result.remaining else ""
        click.echo(f"{name}: {result.fetched} new, {result.deleted} deleted on the server{left}")
    for failure in failures[:-1]:
        click.echo(f"postoffice: error: {failure}", err=True)
    if failures:
        raise CliError(failures[-1])
