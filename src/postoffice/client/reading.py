"""Reading local mail: the inbox list, one message's text and attachments, saving them safely.

Messages are numbered 1, 2, … in arrival order (the order of the Maildir index's UIDs),
so a number stays the same until messages are removed. Everything shown comes from the
sender and may be hostile: headers are decoded by the `email` package, then control
characters (terminal escape sequences among them) are replaced before anything is printed.
The text shown is the text/plain body, else the text/html body turned into text. An
attachment is any part with Content-Disposition attachment, or any non-text part with a
file name that is not the body. Saving never trusts the sender's file name: only its last
path component is kept, control characters and separators are replaced, leading dots
dropped, the length bounded; a name that exists gets " (2)", " (3)"… and files are
created with O_EXCL | O_NOFOLLOW, so nothing outside the chosen directory is touched or
overwritten, and a file that could not be written completely is removed.

Standards: RFC 5322 §3.6, RFC 2045 §5-§6, RFC 2047, RFC 2183 §2.3 (file names are only a
suggestion), RFC 2231
"""

from __future__ import annotations

import email.policy
import email.utils
import mimetypes
import os
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from postoffice.client.html_text import html_to_text
from postoffice.client.network import ClientError
from postoffice.storage.base import MessageInfo
from postoffice.storage.maildir import MaildirMailbox

SEEN = "\\Seen"
MAX_NAME_BYTES = 200  # below NAME_MAX (255) with room for " (999)"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f-\x9f/\\:*?"<>|\u202a-\u202e\u2066-\u2069]')
_PARSER = BytesParser(policy=email.policy.default)


def printable(text: str) -> str:
    """`text` safe for a terminal: controls (escapes, bidi overrides) become U+FFFD."""
    return _CONTROL.sub("\ufffd", text)


@dataclass(frozen=True, slots=True)
class Summary:
    number: int
    info: MessageInfo
    date: datetime | None
    sender: str
    subject: str

    @property
    def seen(self) -> bool:
        return SEEN in self.info.flags


def header(message: EmailMessage, name: str) -> str:
    try:
        return str(message.get(name, ""))
    except (ValueError, IndexError, TypeError):  # a header the parser cannot decode
        return ""


def _sender(message: EmailMessage) -> str:
    name, address = email.utils.parseaddr(header(message, "From"))
    return name or address or "(unknown sender)"


def _date(message: EmailMessage) -> datetime | None:
    try:
        return email.utils.parsedate_to_datetime(header(message, "Date"))
    except (ValueError, TypeError):
        return None


def summary(number: int, info: MessageInfo, headers: EmailMessage) -> Summary:
    """The inbox line of a message from its header fields."""
    sender, subject = printable(_sender(headers)), printable(header(headers, "Subject"))
    return Summary(number, info, _date(headers), sender, subject)


def parse(data: bytes, *, headers_only: bool = False) -> EmailMessage:
    return _PARSER.parsebytes(data, headersonly=headers_only)


def summaries(box: MaildirMailbox) -> list[Summary]:
    """One line's worth for every message, in arrival order."""
    found = []
    for number, info in enumerate(box.messages(), start=1):
        with box.open(info.key) as file:
            found.append(summary(number, info, _PARSER.parse(file, headersonly=True)))
    return found


def load(box: MaildirMailbox, number: int) -> tuple[MessageInfo, EmailMessage]:
    """Message `number` (1-based), parsed; ClientError when there is no such message."""
    messages = box.messages()
    if not 1 <= number <= len(messages):
        raise ClientError(f"no message {number} (the inbox has {len(messages)})")
    info = messages[number - 1]
    return info, parse(box.read(info.key))


def mark_seen(box: MaildirMailbox, info: MessageInfo) -> None:
    if SEEN not in info.flags:
        box.set_flags(info.key, info.flags | {SEEN})


def _content(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # unknown charset, broken encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def body_text(message: EmailMessage) -> str:
    """The readable text: text/plain, else text/html as text, else a note."""
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return "(no text in this message)\n"
    text = _content(body)
    if body.get_content_subtype() == "html":
        text = html_to_text(text)
    return printable(text.replace("\r\n", "\n"))


def attachments(message: EmailMessage) -> list[EmailMessage]:
    """The attached parts, in the order they appear."""
    body = message.get_body(preferencelist=("plain", "html"))
    return [
        part
        for part in message.walk()
        if not part.is_multipart()
        and part is not body
        and part is not message
        and (
            part.get_content_disposition() == "attachment"
            or (part.get_filename() and part.get_content_maintype() != "text")
        )
    ]


def attachment_name(part: EmailMessage, index: int) -> str:
    """A safe file name for attachment `index` (1-based), whatever the sender called it."""
    try:
        suggested = part.get_filename() or ""
    except (ValueError, LookupError):
        suggested = ""
    name = unicodedata.normalize("NFC", suggested).replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME.sub("_", name).strip().lstrip(".").strip()
    if not name:
        extension = mimetypes.guess_extension(part.get_content_type()) or ".bin"
        name = f"attachment-{index}{extension}"
    if len(name.encode()) > MAX_NAME_BYTES:  # cut the stem, keep a short extension
        stem, dot, extension = name.rpartition(".")
        if not (dot and stem and len(extension) <= 10):
            stem, dot, extension = name, "", ""
        budget = MAX_NAME_BYTES - len(f"{dot}{extension}".encode())
        name = stem.encode()[:budget].decode("utf-8", "ignore") + dot + extension
    return name


def _create(directory: Path, name: str) -> tuple[Path, int]:
    stem, dot, extension = name.rpartition(".")
    if not stem:
        stem, dot, extension = name, "", ""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for attempt in range(1, 1000):
        candidate = name if attempt == 1 else f"{stem} ({attempt}){dot}{extension}"
        path = directory / candidate
        try:
            return path, os.open(path, flags, 0o644)
        except FileExistsError:
            continue
    raise ClientError(f"too many files named like {name!r} in {directory}")


def save_attachments(message: EmailMessage, directory: Path) -> list[Path]:
    """Write every attachment into `directory` (which must exist); the paths written."""
    if not directory.is_dir():
        raise ClientError(f"{directory} is not a directory")
    saved = []
    for index, part in enumerate(attachments(message), start=1):
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        path, fd = _create(directory, attachment_name(part, index))
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise ClientError(f"cannot write {path}: {exc.strerror or exc}") from None
        saved.append(path)
    return saved
