"""`postoffice account add|list|del`: the user agent's mail accounts.

`add` finds the servers as mail clients do (RFC 6186 SRV records, then the MX host and
`mail.<domain>` as guesses) unless `--smtp` / `--pop3` name them, asks for the password
(hidden prompt, or the first line of standard input with `--password-stdin`, never argv),
logs in to both servers to prove it works, and only then stores the account. Also home to
what the other user-agent commands share: warnings, the error conversion, an account with
its password.

Environment: `POSTOFFICE_NAMESERVERS` ("127.0.0.1:5353", comma-separated) makes every DNS
lookup of the user agent go to those servers; `XDG_CONFIG_HOME` and `XDG_DATA_HOME` move
the accounts file and the local mail.

Standards: RFC 6186, RFC 8314 §5.1
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import sys
from pathlib import Path

import click

from postoffice.cli.common import CliError, user_errors
from postoffice.client import accounts
from postoffice.client.accounts import Account
from postoffice.client.discovery import (
    POP3_PORTS,
    SUBMISSION_PORTS,
    Candidates,
    discover,
    guesses,
)
from postoffice.client.network import ClientError, Endpoint, Security, resolver
from postoffice.client.servers import pop3_check, submission_check, working_server
from postoffice.config import parse_hostport

# A failure of the user agent is one line (ClientError); so is a local file or index error.
client_errors = user_errors(ClientError, OSError, sqlite3.Error)
_SECURITY = click.Choice([security.value for security in Security])


def warn(text: str) -> None:
    click.echo(f"postoffice: warning: {text}", err=True)


def open_account(name: str | None) -> tuple[Account, str]:
    """The account `name` (default: the first) and its password, with the insecure warning."""
    account = accounts.find(name)
    if account.insecure:
        warn(f"{account.address}: server certificates are not checked (--insecure)")
    return account, accounts.password(account)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CliError("no password on standard input")
        return line
    return str(click.prompt("Password", hide_input=True))


def _given(
    text: str, security: str | None, standard: tuple[tuple[int, Security], ...]
) -> list[Endpoint]:
    """Candidates for a server given as HOST[:PORT]; TLS first when the mode is unknown."""
    try:
        host, port = parse_hostport(text) if text.rpartition(":")[2].isdigit() else (text, 0)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    modes = [Security(security)] if security else [Security.TLS, Security.STARTTLS]
    if not port:
        return [e for e in guesses([host], standard) if e.security in modes]
    known = dict(standard)
    if not security and port in known:
        modes = [known[port]]
    return [Endpoint(host, port, mode) for mode in modes]


@click.group()
def account() -> None:
    """Your mail accounts: where you send from and fetch mail."""


@account.command("add")
@click.argument("address")
@click.option("--name", "display_name", default="", help="Your name, shown in From.")
@click.option("--login", help="User name on the servers (default: the address).")
@click.option("--smtp", "smtp", metavar="HOST[:PORT]", help="Submission server (no discovery).")
@click.option("--smtp-security", type=_SECURITY, help="tls (port 465) or starttls (port 587).")
@click.option("--pop3", "pop3", metavar="HOST[:PORT]", help="POP3 server (no discovery).")
@click.option("--pop3-security", type=_SECURITY, help="tls (port 995) or starttls (port 110).")
@click.option(
    "--ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also trust the CA (or self-signed certificate) in this PEM file.",
)
@click.option("--insecure", is_flag=True, help="Do not check certificates (TLS stays on).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@client_errors
def account_add(
    *,
    address: str,
    display_name: str,
    login: str | None,
    smtp: str | None,
    smtp_security: str | None,
    pop3: str | None,
    pop3_security: str | None,
    ca: Path | None,
    insecure: bool,
    password_stdin: bool,
) -> None:
    """Add an account: find its servers, check the login, store it."""
    address = accounts.check_address(address)
    accounts.check_new(address)  # before asking for the password
    if insecure:
        warn("--insecure: certificates are not checked; anyone on the way can read your mail")
    password = _password(password_stdin)
    draft = Account(
        address=address,
        login=login or address,
        submission=Endpoint("", 0, Security.TLS),
        pop3=Endpoint("", 0, Security.TLS),
        display_name=display_name,
        ca=ca.resolve() if ca else None,
        insecure=insecure,
    )
    submission, pop3_server = asyncio.run(
        _servers(
            draft,
            password,
            smtp=smtp,
            smtp_security=smtp_security,
            pop3=pop3,
            pop3_security=pop3_security,
        ),
    )
    account = dataclasses.replace(draft, submission=submission, pop3=pop3_server)
    if not accounts.add(account, password):
        warn(f"no system keyring: the password is stored in {accounts.accounts_file()}")
    click.echo(f"account {address} added")
    click.echo(f"  sending:   {account.submission}")
    click.echo(f"  receiving: {account.pop3}")
    click.echo(f"  mail in:   {account.maildir}")


async def _servers(
    account: Account,
    password: str,
    *,
    smtp: str | None,
    smtp_security: str | None,
    pop3: str | None,
    pop3_security: str | None,
) -> tuple[Endpoint, Endpoint]:
    if smtp and pop3:
        candidates = Candidates([], [])
    else:
        candidates = await discover(resolver(), account.domain)
    if smtp:
        candidates.submission[:] = _given(smtp, smtp_security, SUBMISSION_PORTS)
    if pop3:
        candidates.pop3[:] = _given(pop3, pop3_security, POP3_PORTS)
    check = submission_check(account, password)
    submission = await working_server("SMTP", candidates.submission, check)
    return submission, await working_server("POP3", candidates.pop3, pop3_check(account, password))


@account.command("list")
@client_errors
def account_list() -> None:
    """List accounts (the first is the default)."""
    for number, known in enumerate(accounts.load()):
        default = "  (default)" if number == 0 else ""
        click.echo(f"{known.address}{default}")
        click.echo(f"  sending:   {known.submission}")
        click.echo(f"  receiving: {known.pop3}")


@account.command("del")
@click.argument("address")
@client_errors
def account_del(address: str) -> None:
    """Forget an account and its password (local mail stays on disk)."""
    removed = accounts.remove(address)
    click.echo(f"account {removed.address} removed (its mail stays in {removed.maildir})")
