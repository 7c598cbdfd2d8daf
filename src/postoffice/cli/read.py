"""`postoffice inbox|read|save|mark|move|folders`: read mail, online or downloaded.

An account that reads over IMAP works on the server: `inbox` lists a folder (INBOX unless
`--folder`), `read N` shows message N and the server marks it read, `mark N… --read/--unread`
changes that, `move N… FOLDER` moves messages, `folders` lists the folders with their special
uses and counts. Its messages are numbered by the server's UIDs, which never change, so
the N a listing showed names the same message after others moved (see client/online.py).
An account that reads over POP3 works on the Maildir that `fetch` fills, with no network:
messages are numbered 1, 2, … in arrival order, and `move` and `folders` are not offered.

`inbox` lists number, new mark, date, sender, subject and size; `read N` shows the headers,
the text (text/html converted) and the attachments; `save N --dir D` writes its attachments
under safe names.

Standards: RFC 5322 §3.6, RFC 2183, RFC 9051, RFC 6154
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path

import click

from postoffice.cli.account import client_errors, open_account
from postoffice.client import accounts, online, reading
from postoffice.client.accounts import Access, Account
from postoffice.client.local import folder as local_folder
from postoffice.client.network import ClientError
from postoffice.client.reading import SEEN, Summary
from postoffice.storage.maildir import MaildirMailbox

_ACCOUNT = click.option("--account", "account_name", metavar="ACCOUNT", help="Not the default.")
# RFC 6154 §2: the special uses `folders` shows
_SPECIAL_USE = {"\\all", "\\archive", "\\drafts", "\\flagged", "\\junk", "\\sent", "\\trash"}
_FOLDER = click.option(
    "--folder", default=online.INBOX, show_default=True, help="The folder to work in."
)


def _size(octets: int) -> str:
    if octets < 1024:
        return str(octets)
    if octets < 1024 * 1024:
        return f"{octets / 1024:.1f}K"
    return f"{octets / (1024 * 1024):.1f}M"


def _online(account: Account) -> bool:
    return account.read is Access.IMAP


def _local(account: Account, name: str) -> MaildirMailbox:
    """The downloaded folder `name` (INBOX: the Maildir itself)."""
    return local_folder(account, None if name.upper() == online.INBOX else name)


def _message(account_name: str | None, number: int, name: str, *, seen: bool) -> EmailMessage:
    """Message `number`, from the server or the Maildir; `seen` marks it read."""
    account = accounts.find(account_name)
    if _online(account):
        account, password = open_account(account_name)
        return asyncio.run(online.message(account, password, number, folder=name, mark_seen=seen))
    box = _local(account, name)
    info, message = reading.load(box, number)
    if seen:
        reading.mark_seen(box, info)
    return message


@click.command()
@click.option("--unread", is_flag=True, help="Only messages not read yet.")
@_FOLDER
@_ACCOUNT
@client_errors
def inbox(unread: bool, folder: str, account_name: str | None) -> None:
    """List the messages (N marks new ones)."""
    account = accounts.find(account_name)
    summaries: list[Summary]
    if _online(account):
        account, password = open_account(account_name)
        summaries = asyncio.run(online.summaries(account, password, folder))
    else:
        summaries = reading.summaries(_local(account, folder))
    shown = 0
    for summary in summaries:
        if unread and summary.seen:
            continue
        date = summary.date.astimezone().strftime("%Y-%m-%d %H:%M") if summary.date else "?"
        mark = " " if summary.seen else "N"
        click.echo(
            f"{summary.number:>4} {mark} {date:<16}  {summary.sender[:24]:<24}"
            f"  {summary.subject[:50]:<50}  {_size(summary.info.size):>6}"
        )
        shown += 1
    if not shown:
        click.echo("no unread messages" if unread else "no messages")


@click.command()
@click.argument("number", type=int)
@_FOLDER
@_ACCOUNT
@client_errors
def read(number: int, folder: str, account_name: str | None) -> None:
    """Show message N and mark it read."""
    message = _message(account_name, number, folder, seen=True)
    for name in ("Date", "From", "To", "Cc", "Subject"):
        if value := reading.header(message, name):
            click.echo(f"{name}: {reading.printable(value)}")
    click.echo("")
    click.echo(reading.body_text(message), nl=False)
    parts = reading.attachments(message)
    if parts:
        click.echo("\nAttachments (save them with `postoffice save N --dir DIR`):")
    for index, part in enumerate(parts, start=1):
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        name = reading.printable(reading.attachment_name(part, index))
        click.echo(f"  {index}. {name} ({part.get_content_type()}, {_size(size)})")


@click.command()
@click.argument("number", type=int)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="Where to save the attachments.",
)
@_FOLDER
@_ACCOUNT
@client_errors
def save(number: int, directory: Path, folder: str, account_name: str | None) -> None:
    """Save the attachments of message N (under safe file names)."""
    message = _message(account_name, number, folder, seen=False)
    saved = reading.save_attachments(message, directory)
    for path in saved:
        click.echo(f"saved {reading.printable(str(path))}")
    if not saved:
        click.echo(f"message {number} has no attachments")


@click.command()
@click.argument("numbers", metavar="N...", nargs=-1, type=int, required=True)
@click.option("--read/--unread", "seen", default=True, help="Mark read (default) or unread.")
@_FOLDER
@_ACCOUNT
@client_errors
def mark(numbers: tuple[int, ...], seen: bool, folder: str, account_name: str | None) -> None:
    """Mark messages read or unread."""
    account = accounts.find(account_name)
    if _online(account):
        account, password = open_account(account_name)
        asyncio.run(online.mark(account, password, numbers, seen=seen, folder=folder))
    else:
        box = _local(account, folder)
        for number in numbers:
            info, _ = reading.load(box, number)
            box.set_flags(info.key, info.flags | {SEEN} if seen else info.flags - {SEEN})
    state = "read" if seen else "unread"
    click.echo(f"marked {' '.join(map(str, numbers))} {state}")


def _imap_account(account_name: str | None, command: str) -> tuple[Account, str]:
    if not _online(accounts.find(account_name)):
        raise ClientError(f"`{command}` works on IMAP accounts (add one with --read imap)")
    return open_account(account_name)


@click.command()
@click.argument("numbers", metavar="N...", nargs=-1, type=int, required=True)
@click.argument("target", metavar="FOLDER")
@_FOLDER
@_ACCOUNT
@client_errors
def move(numbers: tuple[int, ...], target: str, folder: str, account_name: str | None) -> None:
    """Move messages to FOLDER on the server (IMAP accounts)."""
    account, password = _imap_account(account_name, "move")
    asyncio.run(online.move(account, password, numbers, target, folder=folder))
    click.echo(f"moved {' '.join(map(str, numbers))} to {reading.printable(target)}")


@click.command()
@_ACCOUNT
@client_errors
def folders(account_name: str | None) -> None:
    """List the folders on the server with their counts (IMAP accounts)."""
    account, password = _imap_account(account_name, "folders")
    for found in asyncio.run(online.folders(account, password)):
        uses = sorted(a for a in found.attributes if a.lower() in _SPECIAL_USE)
        counts = (
            "" if found.messages is None else f"{found.messages:>6} messages {found.unseen:>5} new"
        )
        click.echo(f"{reading.printable(found.name):<30} {counts:<26} {' '.join(uses)}".rstrip())
