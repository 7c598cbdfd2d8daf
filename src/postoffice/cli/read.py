"""`postoffice inbox|read|save`: read the mail that `fetch` downloaded.

`inbox` lists number, new mark, date, sender, subject and size; `read N` shows the
headers, the text (text/html converted) and the attachments, and marks the message read;
`save N --dir D` writes its attachments under safe names. All three work on the local
Maildir only, so they need no network.

Standards: RFC 5322 §3.6, RFC 2183
"""

from __future__ import annotations

from pathlib import Path

import click

from postoffice.cli.account import client_errors
from postoffice.client import accounts, reading
from postoffice.client.local import folder

_ACCOUNT = click.option("--account", "account_name", metavar="ACCOUNT", help="Not the default.")


def _size(octets: int) -> str:
    if octets < 1024:
        return str(octets)
    if octets < 1024 * 1024:
        return f"{octets / 1024:.1f}K"
    return f"{octets / (1024 * 1024):.1f}M"


@click.command()
@click.option("--unread", is_flag=True, help="Only messages not read yet.")
@_ACCOUNT
@client_errors
def inbox(unread: bool, account_name: str | None) -> None:
    """List the messages downloaded so far (N marks new ones)."""
    shown = 0
    for summary in reading.summaries(folder(accounts.find(account_name))):
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
@_ACCOUNT
@client_errors
def read(number: int, account_name: str | None) -> None:
    """Show message N and mark it read."""
    box = folder(accounts.find(account_name))
    info, message = reading.load(box, number)
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
    reading.mark_seen(box, info)


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
@_ACCOUNT
@client_errors
def save(number: int, directory: Path, account_name: str | None) -> None:
    """Save the attachments of message N (under safe file names)."""
    _, message = reading.load(folder(accounts.find(account_name)), number)
    saved = reading.save_attachments(message, directory)
    for path in saved:
        click.echo(f"saved {reading.printable(str(path))}")
    if not saved:
        click.echo(f"message {number} has no attachments")
