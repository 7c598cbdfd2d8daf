"""`postoffice account add|list|del`: the user agent's mail accounts.

`add` finds the servers as mail clients do (RFC 6186 SRV records, then the MX host and
`mail.<domain>` as guesses) unless `--smtp` / `--imap` / `--pop3` name them, asks for the
password (hidden prompt, or the first line of standard input with `--password-stdin`, never
argv), logs in to each server to prove it works, and only then stores the account. The
account reads over IMAP when an IMAP server works, else over POP3; `--read imap|pop3`
insists on one (the other is then only kept when named). Also home to
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
from postoffice.client.accounts import Access, Account
from postoffice.client.discovery import (
    IMAP_PORTS,
    POP3_PORTS,
    SUBMISSION_PORTS,
    Candidates,
    discover,
    guesses,
)
from postoffice.client.network import ClientError, Endpoint, Security, resolver
from postoffice.client.servers import (
    Check,
    imap_check,
    pop3_check,
    submission_check,
    working_server,
)
from postoffice.config import parse_hostport

# A failure of the user agent is one line (ClientError); so is a local file or index error.
client_errors = user_errors(ClientError, OSError, sqlite3.Error)
_SECURITY = click.Choice([security.value for security in Security])
_ACCESS = click.Choice([access.value for access in Access])


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
    text: str | None, security: str | None, standard: tuple[tuple[int, Security], ...]
) -> list[Endpoint] | None:
    """Candidates for a server given as HOST[:PORT]; TLS first when the mode is unknown."""
    if not text:
        return None
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
@click.option("--imap", "imap", metavar="HOST[:PORT]", help="IMAP server (no discovery).")
@click.option("--imap-security", type=_SECURITY, help="tls (port 993) or starttls (port 143).")
@click.option("--pop3", "pop3", metavar="HOST[:PORT]", help="POP3 server (no discovery).")
@click.option("--pop3-security", type=_SECURITY, help="tls (port 995) or starttls (port 110).")
@click.option(
    "--read",
    "read_over",
    type=_ACCESS,
    help="Read online over IMAP or download over POP3 (default: IMAP when it works).",
)
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
    imap: str | None,
    imap_security: str | None,
    pop3: str | None,
    pop3_security: str | None,
    read_over: str | None,
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
        pop3=None,
        display_name=display_name,
        ca=ca.resolve() if ca else None,
        insecure=insecure,
    )
    account = asyncio.run(
        _servers(
            draft,
            password,
            read=Access(read_over) if read_over else None,
            smtp=_given(smtp, smtp_security, SUBMISSION_PORTS),
            imap=_given(imap, imap_security, IMAP_PORTS),
            pop3=_given(pop3, pop3_security, POP3_PORTS),
        ),
    )
    if not accounts.add(account, password):
        warn(f"no system keyring: the password is stored in {accounts.accounts_file()}")
    click.echo(f"account {address} added")
    _show(account)
    click.echo(f"  mail in:   {account.maildir}")


def _show(account: Account) -> None:
    click.echo(f"  sending:   {account.submission}")
    for access in Access:
        if (endpoint := getattr(account, access.value)) is not None:
            reading = "  (reads here)" if access is account.read else ""
            click.echo(f"  {access.label}:      {endpoint}{reading}")


async def _servers(
    account: Account,
    password: str,
    *,
    read: Access | None,
    smtp: list[Endpoint] | None,
    imap: list[Endpoint] | None,
    pop3: list[Endpoint] | None,
) -> Account:
    """`account` with its servers, each the first candidate that accepts the login."""
    wanted = {
        Access.IMAP: imap is not None or read is not Access.POP3,
        Access.POP3: pop3 is not None or read is not Access.IMAP,
    }
    given = {Access.IMAP: imap, Access.POP3: pop3}
    if smtp is not None and all(given[a] is not None for a in Access if wanted[a]):
        candidates = Candidates([], [], [])
    else:
        candidates = await discover(resolver(), account.domain)
    check = submission_check(account, password)
    submission = await working_server("SMTP", smtp or candidates.submission, check)
    found: dict[Access, Endpoint | None] = dict.fromkeys(Access)
    checks: dict[Access, tuple[list[Endpoint], Check]] = {
        Access.IMAP: (imap or candidates.imap, imap_check(account, password)),
        Access.POP3: (pop3 or candidates.pop3, pop3_check(account, password)),
    }
    failures = []
    for access in (a for a in Access if wanted[a]):
        servers, check = checks[access]
        try:
            found[access] = await working_server(access.label, servers, check)
        except ClientError as exc:
            if access is read or given[access] is not None:
                raise
            failures.append(str(exc))
    if read is None:
        read = Access.IMAP if found[Access.IMAP] else Access.POP3
        if found[read] is None:
            raise ClientError("; ".join(failures))
    return dataclasses.replace(
        account, submission=submission, imap=found[Access.IMAP], pop3=found[Access.POP3], read=read
    )


@account.command("list")
@client_errors
def account_list() -> None:
    """List accounts (the first is the default)."""
    for number, known in enumerate(accounts.load()):
        default = "  (default)" if number == 0 else ""
        click.echo(f"{known.address}{default}")
        _show(known)


@account.command("del")
@click.argument("address")
@client_errors
def account_del(address: str) -> None:
    """Forget an account and its password (local mail stays on disk)."""
    removed = accounts.remove(address)
    click.echo(f"account {removed.address} removed (its mail stays in {removed.maildir})")
