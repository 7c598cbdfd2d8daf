"""Writing a message: headers, body and attachments, built with the stdlib `email` package.

`compose` turns what the user typed into the octets to submit and the envelope to submit
them with. The `email` package with the SMTP policy does the encoding: non-ASCII display
names and subjects become RFC 2047 encoded words, the body is UTF-8 in quoted-printable or
base64 (so no line is too long and no 8BITMIME is needed), attachment names with non-ASCII
characters use RFC 2231 parameters, attachment types are guessed from the file name.
Recipients from To, Cc and Bcc all go into the envelope; Bcc never goes into the message
that is submitted (RFC 5322 §3.6.3 lets a Bcc'ed copy carry no Bcc field). The copy kept
in the Sent folder does carry it, so the sender still sees whom they told.

Standards: RFC 5322 §3.3 (Date), §3.6 (fields), §3.6.4 (Message-ID); RFC 2045-2047;
RFC 2183 (Content-Disposition); RFC 2231 (parameter encoding); RFC 6409 §8 (what the
submitting client adds)
"""

from __future__ import annotations

import email.policy
import email.utils
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

from postoffice.client.network import ClientError
from postoffice.mail.address import AddressError, parse_address


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A composed message: what to submit, to whom, and the copy for the Sent folder."""

    message: bytes  # without Bcc
    recipients: list[str]  # envelope: To, Cc and Bcc addresses, each once
    sent_copy: bytes  # with Bcc
    message_id: str


def mailbox(address: str, display_name: str = "") -> Address:
    """A header address from a bare `local@domain`; ClientError when it is not one."""
    try:
        parsed = parse_address(address)
    except AddressError as exc:
        raise ClientError(f"{address!r} is not an email address: {exc}") from None
    if not (parsed.domain and str(parsed).isascii()):
        # Submission here uses no SMTPUTF8 (RFC 6531), so an address must be ASCII.
        raise ClientError(f"{address!r}: only ASCII addresses can be sent to")
    return Address(display_name=display_name, username=parsed.local, domain=parsed.domain)


def parse_recipients(values: Sequence[str]) -> list[Address]:
    """Addresses from options such as `--to "Zoë <z@b.test>, bob@b.test"`."""
    found = []
    for name, address in email.utils.getaddresses(list(values)):
        if not address:
            raise ClientError(f"no address in {', '.join(values)!r}")
        found.append(mailbox(address, name))
    return found


def _attach(message: EmailMessage, path: Path) -> None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ClientError(f"cannot read attachment {path}: {exc.strerror}") from None
    kind, encoding = mimetypes.guess_type(path.name)
    if kind is None or encoding is not None:  # e.g. .tar.gz: the bytes are not that type
        kind = "application/octet-stream"
    maintype, subtype = kind.split("/", 1)
    message.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)


def check_recipients(*lists: Sequence[Address]) -> None:
    """ClientError unless there is at least one recipient."""
    if not any(lists):
        raise ClientError("no recipient: give --to, --cc or --bcc")


def compose(
    *,
    sender: Address,
    to: Sequence[Address],
    cc: Sequence[Address] = (),
    bcc: Sequence[Address] = (),
    subject: str,
    body: str,
    attachments: Sequence[Path] = (),
) -> Outgoing:
    """Build the message; ClientError for bad input (no recipient, unreadable file)."""
    check_recipients(to, cc, bcc)
    message = EmailMessage(policy=email.policy.SMTP)
    message_id = email.utils.make_msgid(domain=sender.domain)
    try:
        message["From"] = sender
        if to:
            message["To"] = tuple(to)
        if cc:
            message["Cc"] = tuple(cc)
        message["Subject"] = subject
        message["Date"] = email.utils.format_datetime(datetime.now().astimezone())
        message["Message-ID"] = message_id
    except ValueError as exc:  # e.g. a line break in the subject
        raise ClientError(f"cannot use that header: {exc}") from None
    message.set_content(body if body.endswith("\n") or not body else body + "\n")
    for path in attachments:
        _attach(message, path)
    submitted = message.as_bytes()
    if bcc:
        message["Bcc"] = tuple(bcc)
    envelope = [address.addr_spec for address in (*to, *cc, *bcc)]
    return Outgoing(
        message=submitted,
        recipients=list(dict.fromkeys(envelope)),
        sent_copy=message.as_bytes(),
        message_id=message_id,
    )
