"""`postoffice send`: write a message and hand it to the account's submission server.

The text comes from `--body`, `--body-file` (`-` is standard input), standard input when
it is not a terminal, or else `$EDITOR`. The message is built by `client/compose.py`,
kept in the local Sent folder and submitted over TLS with AUTH; the server's queue id is
printed. Bcc recipients get the message without any Bcc field in it.

Standards: RFC 6409, RFC 5322 §3.6.3
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from postoffice.cli.account import client_errors, open_account
from postoffice.cli.common import CliError
from postoffice.client import servers
from postoffice.client.compose import check_recipients, compose, mailbox, parse_recipients


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{where} is not UTF-8 text") from None


def _body(body: str | None, body_file: str | None) -> str:
    if body is not None:
        return body
    if body_file == "-" or (body_file is None and not sys.stdin.isatty()):
        return _text(sys.stdin.buffer.read(), "standard input")
    if body_file is not None:
        try:
            return _text(Path(body_file).read_bytes(), body_file)
        except OSError as exc:
            raise CliError(f"cannot read {body_file}: {exc.strerror}") from None
    written = click.edit("", extension=".txt")
    if not written:
        raise CliError("no text written: nothing sent")
    return written


@click.command()
@click.option("--to", multiple=True, help="Recipient (repeat, or separate with commas).")
@click.option("--cc", multiple=True, help="Copy recipient.")
@click.option("--bcc", multiple=True, help="Hidden recipient (never in the headers).")
@click.option("--subject", default="", help="The subject (any language).")
@click.option(
    "--attach",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Attach a file (repeat for more).",
)
@click.option("--body", help="The text of the message.")
@click.option("--body-file", metavar="FILE", help="Read the text from FILE (- for stdin).")
@click.option("--from", "account_name", metavar="ACCOUNT", help="Send from this account.")
@client_errors
def send(
    *,
    to: tuple[str, ...],
    cc: tuple[str, ...],
    bcc: tuple[str, ...],
    subject: str,
    attach: tuple[Path, ...],
    body: str | None,
    body_file: str | None,
    account_name: str | None,
) -> None:
    """Send a message (text from --body, a file, stdin or $EDITOR)."""
    account, password = open_account(account_name)
    to_list, cc_list, bcc_list = parse_recipients(to), parse_recipients(cc), parse_recipients(bcc)
    check_recipients(to_list, cc_list, bcc_list)  # before the editor opens
    outgoing = compose(
        sender=mailbox(account.address, account.display_name),
        to=to_list,
        cc=cc_list,
        bcc=bcc_list,
        subject=subject,
        body=_body(body, body_file),
        attachments=attach,
    )
    queue_id = asyncio.run(servers.send(account, password, outgoing))
    count = len(outgoing.recipients)
    click.echo(f"sent to {count} recipient{'s' * (count != 1)}: queued as {queue_id}")
