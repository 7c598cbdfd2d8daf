"""The SMTP client protocol core, sans-I/O: replies parsed from bytes, commands and data to bytes.

The delivery agent (delivery/smtp.py) moves the bytes; everything about their shape lives here.
`ReplyParser` is fed whatever the socket gave and hands out complete `Reply` values, the same
type the server core sends. It frames lines with the shared `LineBuffer` and bounds every reply
three ways (octets per line, lines per reply, octets per reply), so a server that sends an
endless or malformed reply costs a bounded amount of memory and ends in `ProtocolError` instead
of a hang; so do a code that changes inside a multi-line reply and a close in mid-reply. Command
builders refuse CR, LF and NUL in their arguments, so no address can inject a command. The
`DataEncoder` turns any stored message into exactly one well-formed DATA body: bare CR and bare
LF become CRLF, a line starting with "." gets another one, a missing final CRLF is added, and
".CRLF" ends it, streaming in bounded memory; it is `_dotstuff.DotEncoder`, which POP3's
multi-line responses use too.

Standards: RFC 5321 §2.3.8, §4.1.1, §4.2, §4.5.2, §4.5.3.1.5; RFC 1870 §4, §6; RFC 2034 §3;
RFC 3207 §4.2; RFC 4954 §4; RFC 4616 §2; RFC 6152 §2; RFC 6531 §3.4
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from postoffice.protocols._buffer import TOO_LONG, LineBuffer
from postoffice.protocols._dotstuff import DotEncoder
from postoffice.protocols.smtp.replies import Reply

REPLY_LINE = 512  # RFC 5321 §4.5.3.1.5: reply line, code and CRLF included
REPLY_LINES = 100  # more lines than any EHLO list or error text needs
REPLY_OCTETS = 32_768

_REPLY = re.compile(rb"([2-5][0-9][0-9])(?:([ -])(.*))?", re.DOTALL)  # RFC 5321 §4.2
_ENHANCED = re.compile(r"([245])\.[0-9]{1,3}\.[0-9]{1,3}(?= |$)")  # RFC 2034 §3, RFC 3463 §2


class ProtocolError(Exception):
    """The server's bytes cannot be a valid reply (or the connection ended inside one)."""


class ReplyParser:
    """Bytes received from a server in, complete replies out."""

    __slots__ = ("_buffer", "_code", "_eof", "_lines", "_octets")

    def __init__(self) -> None:
        self._buffer = LineBuffer()
        self._eof = False
        self._code = 0
        self._lines: list[str] = []  # of the reply being read
        self._octets = 0

    def feed(self, data: bytes) -> None:
        """Bytes from the server; b"" means it closed the connection."""
        if data:
            self._buffer.feed(data)
        else:
            self._eof = True

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None until more bytes arrive; `ProtocolError` if bad."""
        while True:
            line = self._buffer.next_line(REPLY_LINE)
            if line is None:
                if self._eof:
                    where = "inside a reply" if self._lines else "before a reply"
                    raise ProtocolError(f"connection closed by the server {where}")
                return None
            if line is TOO_LONG:
                raise ProtocolError(f"reply line longer than {REPLY_LINE} octets")
            self._octets += len(line)
            code, last, text = _split(line)
            if self._lines and code != self._code:
                # RFC 5321 §4.2.1: every line of a multi-line reply has the same code
                raise ProtocolError(f"reply code changed from {self._code} to {code} mid-reply")
            self._code = code
            self._lines.append(text)
            if len(self._lines) > REPLY_LINES:
                raise ProtocolError(f"reply of more than {REPLY_LINES} lines")
            if self._octets > REPLY_OCTETS:
                raise ProtocolError(f"reply of more than {REPLY_OCTETS} octets")
            if last:
                lines, self._lines, self._octets = self._lines, [], 0
                return _reply(code, lines)

    def discard(self) -> int:
        """Drop every buffered byte (RFC 3207 §4.2: nothing read before TLS counts after it)."""
        self._lines, self._octets = [], 0
        return self._buffer.clear()


def _split(line: bytes) -> tuple[int, bool, str]:
    """(code, is the last line, text) of one reply line with its line end."""
    body = line.removesuffix(b"\n").removesuffix(b"\r")
    match = _REPLY.fullmatch(body)
    if match is None or b"\r" in body:
        raise ProtocolError(f"not a reply line: {body[:80]!r}")
    code, separator, text = match.groups()
    # RFC 5321 §4.2: "xyz-text" continues a reply; "xyz text" or a bare "xyz" ends it
    return int(code), separator != b"-", (text or b"").decode("utf-8", "replace")


def _reply(code: int, lines: list[str]) -> Reply:
    """A `Reply`, with the enhanced status code (RFC 2034 §3) taken off every line that has it."""
    found = _ENHANCED.match(lines[0])
    if found is None or int(found[1]) != code // 100:
        return Reply(code, None, tuple(lines))
    status = found[0]
    return Reply(code, status, tuple(_strip_status(line, status) for line in lines))


def _strip_status(line: str, status: str) -> str:
    if line == status:
        return ""
    return line.removeprefix(status + " ")


def describe(reply: Reply) -> str:
    """One line for logs and DSNs, e.g. "550 5.1.1 <x@b.test>: user unknown"."""
    status = f"{reply.status} " if reply.status else ""
    return f"{reply.code} {status}{' '.join(reply.lines)}".rstrip()


def transcript(reply: Reply) -> list[str]:
    """The reply's lines as sent, for a session transcript."""
    return reply.to_bytes(enhanced=True).decode("utf-8").splitlines()


# --- EHLO ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The service extensions of an EHLO reply: keyword (upper case) -> parameters."""

    extensions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_ehlo(cls, reply: Reply) -> Capabilities:
        """RFC 5321 §4.1.1.1: the lines after the first are "keyword [params]"."""
        extensions: dict[str, str] = {}
        for line in reply.lines[1:]:
            keyword, _, params = line.strip().partition(" ")
            if keyword.upper().startswith("AUTH="):  # the pre-RFC 4954 spelling of AUTH
                keyword, params = "AUTH", keyword[5:] + " " + params
            extensions.setdefault(keyword.upper(), params.strip())
        return cls(extensions)

    def __contains__(self, keyword: str) -> bool:
        return keyword in self.extensions

    @property
    def size(self) -> int | None:
        """RFC 1870 §4: the largest message accepted; None when not declared or 0 (no limit)."""
        value = self.extensions.get("SIZE", "")
        return int(value) if value.isdigit() and int(value) > 0 else None

    @property
    def auth(self) -> frozenset[str]:
        """RFC 4954 §3: the SASL mechanisms offered."""
        return frozenset(self.extensions.get("AUTH", "").upper().split())


# --- commands -----------------------------------------------------------------------------


def _line(text: str) -> bytes:
    if any(c in text for c in "\r\n\0"):  # RFC 5321 §2.3.8: one command is one line
        raise ValueError(f"CR, LF or NUL in SMTP command {text!r}")
    return text.encode("utf-8") + b"\r\n"


def ehlo(hostname: str) -> bytes:
    return _line(f"EHLO {hostname}")


def helo(hostname: str) -> bytes:
    return _line(f"HELO {hostname}")


def mail_from(
    sender: str, capabilities: Capabilities, *, size: int, eight_bit: bool, smtputf8: bool
) -> bytes:
    """MAIL FROM with the parameters the server offers; `sender` "" is the null path."""
    params = ""
    if "SIZE" in capabilities:
        params += f" SIZE={size}"  # RFC 1870 §6
    if eight_bit and "8BITMIME" in capabilities:
        params += " BODY=8BITMIME"  # RFC 6152 §2
    if smtputf8 and "SMTPUTF8" in capabilities:
        params += " SMTPUTF8"  # RFC 6531 §3.4
    return _line(f"MAIL FROM:<{sender}>{params}")


def rcpt_to(recipient: str) -> bytes:
    return _line(f"RCPT TO:<{recipient}>")


DATA = b"DATA\r\n"
RSET = b"RSET\r\n"
QUIT = b"QUIT\r\n"
STARTTLS = b"STARTTLS\r\n"


def auth_commands(mechanism: str, user: str, password: str) -> list[tuple[bytes, str]]:
    """The lines of an AUTH exchange, each with its transcript form (secrets masked).

    PLAIN sends its one response as the initial response (RFC 4954 §4, RFC 4616 §2); LOGIN
    answers the server's two 334 prompts with the user name and the password.
    """
    if mechanism == "PLAIN":
        secret = _b64(f"\0{user}\0{password}")
        return [(_line(f"AUTH PLAIN {secret}"), "AUTH PLAIN <secret>")]
    if mechanism == "LOGIN":
        return [
            (_line("AUTH LOGIN"), "AUTH LOGIN"),
            (_line(_b64(user)), "<secret>"),
            (_line(_b64(password)), "<secret>"),
        ]
    raise ValueError(f"unsupported SASL mechanism {mechanism!r}")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


# --- message data -------------------------------------------------------------------------


DataEncoder = DotEncoder  # RFC 5321 §4.5.2 dot-stuffing, shared with POP3 (RFC 1939 §3)
