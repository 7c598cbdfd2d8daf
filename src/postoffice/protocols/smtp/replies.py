"""SMTP replies: the typed value a server sends, and the catalogue of replies the core makes.

A `Reply` is validated when it is built (code range, enhanced-code syntax and class, no CR
or LF in any text line), so a bad reply fails at the line of code that made it instead of
reaching the wire; serialising one cannot fail. Whether the enhanced status code is written
is decided per session by the connection (RFC 2034 §3: only after EHLO, never in the greeting
or the EHLO reply). The constants below are every reply the protocol core produces on its
own; the server's session builds the rest (250 to MAIL, 550 for unknown users, the EHLO list).

Codes chosen, and why:
- 500 5.5.1 unknown verb; 500 5.5.2 unparsable line, not CRLF-terminated, not UTF-8, or longer
  than RFC 5321 §4.5.3.1.4 allows (X.5.2 "syntax error": X.5.6 is RFC 4954's code for
  overlong AUTH exchange lines and is used for those only).
- 501 5.5.4 bad arguments; 501 5.1.7 / 5.1.3 bad sender / recipient syntax (RFC 3463 §3.2).
- 503 5.5.1 bad sequence (RFC 5321 §4.3.2, RFC 3030 §2-3: DATA after BDAT or with BINARYMIME).
- 555 5.5.4 unknown MAIL/RCPT parameter (RFC 5321 §4.1.1.11 / §4.2.3).
- 553 5.6.7 UTF-8 address without SMTPUTF8 (RFC 6531 §3.5).
- 452 4.5.3 too many recipients (RFC 5321 §4.5.3.1.10, RFC 3463 §3.6).
- 552 5.3.4 message too big, for SIZE= and for the data itself (RFC 1870 §6).
- 554 5.6.0 message refused for its octets: bare CR or LF, NUL, or an overlong line
  (RFC 5321 §2.3.8, §4.5.3.1.6; 554 is the "transaction failed" code allowed after DATA).
  One reply for all three: which one is met first depends on how reads split the data,
  and the reply must not.

Standards: RFC 5321 §4.2, §4.5.3.1.5; RFC 2034 §3; RFC 3463
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_STATUS = re.compile(r"([245])\.[0-9]{1,3}\.[0-9]{1,3}")  # RFC 3463 §2 class.subject.detail


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply; a tuple `text` makes a multi-line reply (RFC 5321 §4.2.1)."""

    code: int
    status: str | None
    text: str | tuple[str, ...]

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:  # RFC 5321 §4.2.1: 2yz-5yz are the only replies
            raise ValueError(f"not an SMTP reply code: {self.code}")
        if self.status is not None:
            match = _STATUS.fullmatch(self.status)
            if match is None or int(match[1]) != self.code // 100:  # RFC 3463 §2: same class
                raise ValueError(f"enhanced status {self.status!r} does not fit {self.code}")
        if not self.lines:
            raise ValueError("a reply needs at least one line")
        for line in self.lines:
            if "\r" in line or "\n" in line:  # RFC 5321 §4.2: text is one line each
                raise ValueError(f"CR or LF inside reply text {line!r}")

    @property
    def lines(self) -> tuple[str, ...]:
        return (self.text,) if isinstance(self.text, str) else self.text

    def to_bytes(self, *, enhanced: bool) -> bytes:
        """Wire form; `enhanced` writes the status code on every line (RFC 2034 §3)."""
        prefix = f"{self.status} " if enhanced and self.status is not None else ""
        last = len(self.lines) - 1
        return "".join(
            f"{self.code}{' ' if i == last else '-'}{prefix}{line}\r\n"  # RFC 5321 §4.2.1
            for i, line in enumerate(self.lines)
        ).encode("utf-8")


def bad_arguments(text: str) -> Reply:
    return Reply(501, "5.5.4", text)


def unknown_parameter(keyword: str) -> Reply:
    return Reply(555, "5.5.4", f"{keyword} parameter not recognized")


SYNTAX_ERROR = Reply(500, "5.5.2", "Syntax error")
NOT_CRLF = Reply(500, "5.5.2", "Syntax error: lines must end with CRLF")
NOT_UTF8 = Reply(500, "5.5.2", "Syntax error: invalid UTF-8")
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
UNKNOWN_COMMAND = Reply(500, "5.5.1", "Command unrecognized")
BAD_SENDER = Reply(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT = Reply(501, "5.1.3", "Bad recipient address syntax")
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
NON_ASCII_ADDRESS = Reply(553, "5.6.7", "Non-ASCII address needs SMTPUTF8")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication Exchange line is too long")
BAD_DATA = Reply(554, "5.6.0", "Message refused: bare CR or LF, NUL, or line too long")
