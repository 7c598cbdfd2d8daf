"""POP3 replies: the typed values a server sends, the catalogue the core makes, and CAPA.

A reply is validated when it is built (no CR or LF in any text, a status line within the
512 octets RFC 2449 §4 allows, a known response code, a base64 challenge), so a bad reply
fails at the line of code that made it instead of reaching the wire; serialising one cannot
fail. `Ok` and `Err` are single lines; `OkLines` is a small multi-line response built in
memory (CAPA, LIST, UIDL) and byte-stuffed by the shared `_dotstuff.stuff_lines`; a large one
(RETR, TOP) streams through `ServerConnection.message_encoder()` instead. `Continue` is a SASL
challenge. The constants below are every reply the core produces on its own; the server's
session builds the rest, and `capabilities` builds its CAPA answer.

Standards: RFC 1939 §3; RFC 2449 §3-§6, §8; RFC 2595 §4; RFC 3206 §4-§5; RFC 5034 §4
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postoffice.protocols._dotstuff import stuff_lines

STATUS_LINE = 512  # RFC 2449 §4: a status line, CRLF included
# RFC 2449 §8.1 (LOGIN-DELAY, IN-USE), RFC 3206 §4-§5 (SYS/TEMP, SYS/PERM, AUTH)
RESPONSE_CODES = frozenset({"IN-USE", "LOGIN-DELAY", "SYS/TEMP", "SYS/PERM", "AUTH"})
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_EXPIRE = re.compile(r"(?:[0-9]+|NEVER)(?: USER)?")  # RFC 2449 §6.7 expire-policy


def _one_line(text: str) -> str:
    if "\r" in text or "\n" in text:  # RFC 1939 §3: a response is CRLF-terminated lines
        raise ValueError(f"CR or LF inside reply text {text!r}")
    return text


def _status(indicator: str, text: str) -> bytes:
    line = f"{indicator} {text}" if text else indicator
    wire = line.encode("utf-8") + b"\r\n"
    if len(wire) > STATUS_LINE:  # RFC 2449 §4
        raise ValueError(f"status line longer than {STATUS_LINE} octets: {line[:60]!r}")
    return wire


@dataclass(frozen=True, slots=True)
class Ok:
    """A single-line positive response, ``+OK text``."""

    text: str = ""

    def __post_init__(self) -> None:
        _status("+OK", _one_line(self.text))

    def to_bytes(self) -> bytes:
        return _status("+OK", self.text)


@dataclass(frozen=True, slots=True)
class Err:
    """A negative response, ``-ERR [CODE] text``; `code` is an RFC 2449 §8 response code."""

    text: str
    code: str | None = None

    def __post_init__(self) -> None:
        if self.code is not None and self.code not in RESPONSE_CODES:
            raise ValueError(f"unknown POP3 response code {self.code!r}")
        _status("-ERR", self._text())

    def _text(self) -> str:
        text = _one_line(self.text)
        if self.code is None:
            return text
        return f"[{self.code}] {text}" if text else f"[{self.code}]"  # RFC 2449 §3 resp-code

    def to_bytes(self) -> bytes:
        return _status("-ERR", self._text())


@dataclass(frozen=True, slots=True)
class OkLines:
    """``+OK text`` and then `lines`, byte-stuffed and ended by ".CRLF" (RFC 1939 §3)."""

    text: str
    lines: tuple[str, ...]

    def __post_init__(self) -> None:
        _status("+OK", _one_line(self.text))
        joined = "".join(self.lines)  # one scan for CR and LF, not a call per line
        if "\r" in joined or "\n" in joined:
            for line in self.lines:
                _one_line(line)  # raises for the first bad line

    def to_bytes(self) -> bytes:
        return _status("+OK", self.text) + stuff_lines(self.lines)


@dataclass(frozen=True, slots=True)
class Continue:
    """A SASL challenge, ``+ <base64>`` (RFC 5034 §4); "" is an empty challenge."""

    data_b64: str

    def __post_init__(self) -> None:
        if _BASE64.fullmatch(self.data_b64) is None:
            raise ValueError(f"SASL challenge is not base64: {self.data_b64[:60]!r}")

    def to_bytes(self) -> bytes:
        return f"+ {self.data_b64}\r\n".encode("ascii")  # RFC 5034 §4: "+" SP base64


Reply = Ok | Err | OkLines | Continue


def capabilities(
    *,
    tls_active: bool,
    user_allowed: bool,
    sasl: tuple[str, ...],
    implementation: str,
    login_delay: int | None = None,
    expire: str | None = None,
) -> OkLines:
    """The answer to CAPA (RFC 2449 §5-§6) for a session in this situation.

    `user_allowed`: USER/PASS may be used now (policy: usually only under TLS);
    `sasl`: the mechanisms on offer now; `expire`: "NEVER", a number of days, with " USER"
    when it is this user's own policy (TRANSACTION state only).
    """
    lines = ["TOP", "UIDL"]  # RFC 2449 §6.1, §6.8
    if user_allowed:
        lines.append("USER")  # RFC 2449 §6.2
    if sasl:
        lines.append("SASL " + " ".join(sasl))  # RFC 2449 §6.3
    lines += ["RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]  # RFC 2449 §6.4, RFC 3206, §6.6
    if not tls_active:
        lines.append("STLS")  # RFC 2595 §4: offered only before TLS
    lines.append(f"IMPLEMENTATION {implementation}")  # RFC 2449 §6.9
    if login_delay is not None:
        if login_delay < 0:
            raise ValueError(f"negative LOGIN-DELAY {login_delay}")
        lines.append(f"LOGIN-DELAY {login_delay}")  # RFC 2449 §6.5
    if expire is not None:
        if _EXPIRE.fullmatch(expire) is None:
            raise ValueError(f"not an RFC 2449 §6.7 expire policy: {expire!r}")
        lines.append(f"EXPIRE {expire}")
    return OkLines("Capability list follows", tuple(lines))


def syntax(usage: str) -> Err:
    """Missing, extra or malformed arguments: show how the command is written."""
    return Err(f"Syntax: {usage}")


UNKNOWN_COMMAND = Err("Unknown command")
SYNTAX_ERROR = Err("Syntax error")
NOT_UTF8 = Err("Syntax error: invalid UTF-8")
LINE_TOO_LONG = Err("Line too long")
WRONG_STATE = Err("Command not valid in this state")
PASS_WITHOUT_USER = Err("PASS must follow an accepted USER")
ALREADY_TLS = Err("TLS is already active")
NO_APOP = Err("APOP is not supported")
BAD_MESSAGE_NUMBER = Err("Invalid message number")
BAD_LINE_COUNT = Err("Invalid line count")
AUTH_LINE_TOO_LONG = Err("Authentication line too long")
