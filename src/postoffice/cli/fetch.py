"""`postoffice fetch [ACCOUNT] [--keep]`: download new mail over POP3 into the local Maildir.

Without ACCOUNT, every account is fetched in turn; a failure of one is reported and the
others still run. A progress bar (on standard error) appears when a run has many
messages. The exactly-once and delete-after-fsync rules live in `client/fetch.py`.

Standards: RFC 1939
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import click

from postoffice.cli.account import client_errors, open_account
from postoffice.cli.common import CliError
from postoffice.client import accounts
from postoffice.client.fetch import FetchResult, fetch
from postoffice.client.network import ClientError

PROGRESS_FROM = 20  # messages: fewer are fetched without a progress bar


def _fetch_one(name: str, keep: bool) -> FetchResult:
    account, password = open_account(name)
    with contextlib.ExitStack() as stack:
        bar = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None and total >= PROGRESS_FROM:
                shown = click.progressbar(length=total, label=account.address, file=sys.stderr)
                bar = stack.enter_context(shown)
            if bar is not None:
                bar.update(1)

        return asyncio.run(fetch(account, password, keep=keep, progress=progress))


@click.command("fetch")
@click.argument("account_name", metavar="[ACCOUNT]", required=False)
@click.option("--keep", is_flag=True, help="Leave the messages on the server.")
@client_errors
def fetch_command(account_name: str | None, keep: bool) -> None:
    """Download new mail over POP3 (every account unless one is named)."""
    names = [account_name] if account_name else [a.address for a in accounts.load()]
    if not names:
        accounts.find(None)  # raises the "no account yet" error
    failures = []
    for name in names:
        try:
            result = _fetch_one(name, keep)
        except ClientError as exc:
            failures.append(f"{name}: {exc}" if len(names) > 1 else str(exc))
            continue
        left = f", {result.remaining} left on the server" if result.remaining else ""
        click.echo(f"{name}: {result.fetched} new, {result.deleted} deleted on the server{left}")
    for failure in failures[:-1]:
        click.echo(f"postoffice: error: {failure}", err=True)
    if failures:
        raise CliError(failures[-1])
