"""Delivery status notifications: the bounce and delay-warning messages the queue sends.

`build_dsn` writes the whole message itself, in CRLF form, instead of going
through `email.message`: RFC 3464 fixes the exact syntax of the report, and
only a hand-built message guarantees it (the stdlib supplies dates, the
Message-ID and quoted-printable). The message is a multipart/report of three
parts: a human explanation, the message/delivery-status report (per-message
fields, then one block per recipient) and the original header section as
text/rfc822-headers. Everything that comes from outside is made harmless
first: remote replies and local reasons become one line of printable ASCII,
so a CR or LF in a reply can never start a field or a part, and every field is
folded at spaces to 78 columns; an address with non-ASCII characters uses the
utf-8 address type with its escapes; a text part that is not 7-bit clean or has
a line over 998 octets is sent quoted-printable. So the report is 7-bit
throughout, except a To: header naming a UTF-8 address (RFC 6532). A message
whose sender was <> is never returned to it: its notification goes to the
postmaster instead.

Standards: RFC 3464 §2.1-§2.3 (message/delivery-status), RFC 3461 §4.2
(Original-Recipient), RFC 6522 §3-§4 (multipart/report, text/rfc822-headers),
RFC 6533 §3 (utf-8 address type), RFC 3834 §3.1.5, §5 (auto-replies),
RFC 5321 §4.5.5, §6.1 (notifications to <>), RFC 5322 §2.1.1, §2.2.3 (line
length, folding), RFC 2045 §6.7 (quoted-printable).
"""

from __future__ import annotations

import binascii
import email.utils
import re
import secrets
import textwrap
from typing import Literal

from postoffice.queue.entry import QueueEntry, RecipientState

Action = Literal["failed", "delayed"]

_SUBJECTS: dict[Action, str] = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
}
_FALLBACK_STATUS: dict[Action, str] = {"failed": "5.0.0", "delayed": "4.0.0"}
_STATUS = re.compile(r"[45]\.\d{1,3}\.\d{1,3}")  # RFC 3464 §2.3.4, RFC 3463 §2
_MESSAGE_ID = re.compile(r"<[!-;=?-~]+>")  # one msg-id, printable ASCII without < >
_SEVEN_BIT_LINE = re.compile(rb"[\t\x20-\x7e]{0,998}")  # RFC 5322 §2.1.1
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
# RFC 6533 §3 QCHAR: printable ASCII except space, "+", "=" and "\"; the rest is \x{HEXPOINT}
_QCHAR = frozenset(chr(c) for c in range(0x21, 0x7F)) - frozenset("+=\\")
_WIDTH = 78  # RFC 5322 §2.1.1: lines should not be longer than 78 characters


def notify_address(sender: str, postmaster: str) -> str:
    """Who a notification goes to: the sender, or the postmaster when the sender was <>."""
    # RFC 5321 §6.1, RFC 3464 §2: never send a notification about a notification to <>
    return sender or postmaster


def build_dsn(
    *,
    entry: QueueEntry,
    recipients: list[RecipientState],
    action: Action,
    reporting_mta: str,
    original_headers: bytes,
    now: float,
    postmaster: str,
    retry_until: float | None = None,
) -> bytes:
    """The complete notification about `recipients` of `entry`, CRLF line ends.

    `original_headers` is the header section of the queued message;
    `retry_until` (delayed only) is when the queue gives up on it.
    """
    boundary = f"=_{secrets.token_hex(16)}"  # "=_" cannot occur in quoted-printable
    subject = _SUBJECTS[action]
    if not entry.sender:
        subject = f"Postmaster Copy: {subject}"
    header = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{notify_address(entry.sender, postmaster)}>",
        f"Subject: {subject}",
        f"Date: {_date(now)}",
        f"Message-ID: {email.utils.make_msgid('dsn', domain=reporting_mta)}",
    ]
    if _MESSAGE_ID.fullmatch(entry.message_id):  # RFC 3834 §3.1.5
        header += [f"In-Reply-To: {entry.message_id}", f"References: {entry.message_id}"]
    header += [
        "Auto-Submitted: auto-replied",  # RFC 3834 §5
        "MIME-Version: 1.0",
        # RFC 6522 §3: multipart/report with report-type delivery-status
        "Content-Type: multipart/report; report-type=delivery-status;",
        f' boundary="{boundary}"',
    ]
    explanation = _explanation(
        entry,
        recipients,
        action=action,
        reporting_mta=reporting_mta,
        now=now,
        retry_until=retry_until,
    )
    report = _report(entry, recipients, action, reporting_mta, retry_until)
    parts = [
        _text_part("text/plain; charset=utf-8", "Notification", explanation.encode()),
        # RFC 3464 §2.1: message/delivery-status is 7bit
        _part(
            ["Content-Type: message/delivery-status", "Content-Description: Delivery report"],
            report,
        ),
        _text_part("text/rfc822-headers", "Undelivered Message Headers", original_headers),
    ]
    delimiter = b"--" + boundary.encode()
    body = b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts)
    preamble = b"This is a MIME-encapsulated message.\r\n\r\n"
    head = "\r\n".join(header).encode() + b"\r\n\r\n"
    return head + preamble + body + delimiter + b"--\r\n"


def _report(
    entry: QueueEntry,
    recipients: list[RecipientState],
    action: Action,
    reporting_mta: str,
    retry_until: float | None,
) -> bytes:
    """The message/delivery-status body: per-message fields, then one block per recipient."""
    # RFC 3464 §2.2: per-message fields
    blocks = [
        [
            f"Reporting-MTA: dns; {reporting_mta}",
            f"X-Postoffice-Queue-ID: {entry.qid}",  # RFC 3464 §2.4: extension field
            f"Arrival-Date: {_date(entry.arrival)}",
        ]
    ]
    for recipient in recipients:
        blocks.append(_recipient_fields(entry, recipient, action, retry_until))
    text = "\r\n".join("".join(_fold(field) + "\r\n" for field in block) for block in blocks)
    return text.encode("ascii")


def _recipient_fields(
    entry: QueueEntry, recipient: RecipientState, action: Action, retry_until: float | None
) -> list[str]:
    """RFC 3464 §2.3: the per-recipient fields of one recipient."""
    fields = []
    if recipient.original and recipient.original != recipient.address:
        # RFC 3464 §2.3.1, RFC 3461 §4.2: the address as the sender gave it
        fields.append(f"Original-Recipient: {_address_type(recipient.original)}")
    status = recipient.last_status
    fields += [
        f"Final-Recipient: {_address_type(recipient.address)}",  # §2.3.2
        f"Action: {action}",  # §2.3.3
        f"Status: {status if _STATUS.fullmatch(status) else _FALLBACK_STATUS[action]}",  # §2.3.4
    ]
    # §2.3.6: the remote server's reply verbatim, else our own reason (an X- type)
    if recipient.remote_reply:
        fields.append(f"Diagnostic-Code: smtp; {_one_line(recipient.remote_reply)}")
    elif recipient.last_detail:
        fields.append(f"Diagnostic-Code: X-Postoffice; {_one_line(recipient.last_detail)}")
    if entry.last_attempt:
        fields.append(f"Last-Attempt-Date: {_date(entry.last_attempt)}")  # §2.3.7
    if action == "delayed" and retry_until is not None:
        fields.append(f"Will-Retry-Until: {_date(retry_until)}")  # §2.3.9
    return fields


def _explanation(
    entry: QueueEntry,
    recipients: list[RecipientState],
    *,
    action: Action,
    reporting_mta: str,
    now: float,
    retry_until: float | None,
) -> str:
    """The human-readable first part (RFC 6522 §3)."""
    lines = [f"This is the mail system at {reporting_mta}.", ""]
    if action == "delayed":
        hours = (now - entry.arrival) / 3600
        lines += [
            "THIS IS A WARNING ONLY. YOU DO NOT NEED TO RESEND YOUR MESSAGE.",
            "",
            f"Your message has not been delivered to the recipients below for {hours:.1f} hours.",
        ]
        if retry_until is not None:
            lines.append(f"The mail system will keep trying until {_date(retry_until)}.")
    elif entry.sender:
        lines += [
            "Your message could not be delivered to the recipients below.",
            "The delivery report and the headers of your message are attached.",
        ]
    else:
        lines += [
            "A message with the null sender <> (itself a delivery notification) could not",
            "be delivered. It is not returned to its sender, which would start a mail loop;",
            "this copy goes to the postmaster.",
        ]
    lines.append("")
    for recipient in recipients:
        detail = _one_line(recipient.last_detail) or "no reason given"
        status = recipient.last_status or "no status"
        lines += _wrap(f"<{recipient.address}>: {detail} ({status})", "", "    ")
        reply = _one_line(recipient.remote_reply or "")
        if reply and reply != detail:
            lines += _wrap(f"The mail server said: {reply}", "    ", "    ")
    return "\r\n".join(lines) + "\r\n"


def _wrap(text: str, first: str, rest: str) -> list[str]:
    """Human text in lines of 76 columns; words (URLs) are never split."""
    return textwrap.wrap(
        text,
        76,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _part(headers: list[str], body: bytes) -> bytes:
    return "\r\n".join(headers).encode() + b"\r\n\r\n" + body


def _text_part(content_type: str, description: str, body: bytes) -> bytes:
    """A text part, quoted-printable unless 7-bit clean with lines of at most 998 octets."""
    lines = body.split(b"\r\n")
    if all(_SEVEN_BIT_LINE.fullmatch(line) for line in lines):
        encoding = "7bit"
    else:
        # RFC 2045 §6.7: line by line, so a bare CR or LF is encoded, never a line break
        encoding = "quoted-printable"
        qp = (binascii.b2a_qp(line, istext=False).replace(b"=\n", b"=\r\n") for line in lines)
        body = b"\r\n".join(qp)
    headers = [
        f"Content-Type: {content_type}",
        f"Content-Description: {description}",
        f"Content-Transfer-Encoding: {encoding}",
    ]
    return _part(headers, body)


def _address_type(address: str) -> str:
    """`address-type; address` (RFC 3464 §2.3.2): rfc822, or utf-8 with escapes (RFC 6533 §3)."""
    if _PRINTABLE.fullmatch(address):
        return f"rfc822; {address}"
    escaped = "".join(c if c in _QCHAR else f"\\x{{{ord(c):02X}}}" for c in address)
    return f"utf-8; {escaped}"


def _one_line(text: str) -> str:
    """`text` as one line of printable ASCII: whitespace runs (CR, LF…) become one space."""
    flat = " ".join(text.split())
    return "".join(c if " " <= c <= "~" else "?" for c in flat)


def _fold(field: str) -> str:
    """Fold one field at spaces (RFC 5322 §2.2.3); a word too long for a line is split."""
    lines = textwrap.wrap(field, _WIDTH, subsequent_indent=" ", break_on_hyphens=False)
    return "\r\n".join(lines)


def _date(timestamp: float) -> str:
    """An RFC 5322 §3.3 date-time, as RFC 3464 §2.1 asks for its date fields."""
    return email.utils.formatdate(timestamp, localtime=True)
