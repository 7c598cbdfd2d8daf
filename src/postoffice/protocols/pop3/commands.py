"""Parse one POP3 command line into an event, or into a CommandError carrying the reply.

The line is checked once for what every command shares (UTF-8, no control characters,
length), then the keyword, case-insensitive, picks its parser from an explicit dict. Parsers
are pure functions of the argument text; they never see the session state, whose sequence
rules live in states.py. Two leniencies, both harmless here: a bare LF ends a line as well as
CRLF (POP3 has no message body a client sends, so there is nothing to smuggle, and hand-typed
sessions send LF), and arguments may be separated by more than one space. PASS takes the
whole rest of the line, spaces included (RFC 1939 §7). AUTH may exceed the command line
limit up to the SASL line limit, so that clients with a long initial response still work.

Standards: RFC 1939 §3, §5, §7; RFC 2449 §3-§5; RFC 2595 §4; RFC 5034 §4; RFC 4422 §3.1
"""

from __future__ import annotations

import re
from collections.abc import Callable

from postoffice.protocols.pop3.events import (
    MAX_NUMBER,
    Auth,
    AuthData,
    Capa,
    CommandError,
    Dele,
    Event,
    List,
    Noop,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
)
from postoffice.protocols.pop3.replies import (
    BAD_LINE_COUNT,
    BAD_MESSAGE_NUMBER,
    LINE_TOO_LONG,
    NO_APOP,
    NOT_UTF8,
    SYNTAX_ERROR,
    UNKNOWN_COMMAND,
    syntax,
)

Parser = Callable[[str], Event]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# RFC 5034 §4: "AUTH" SP sasl-mech [SP initial-response]; RFC 4422 §3.1: mechanism names
_AUTH = re.compile(r"([A-Za-z0-9_-]{1,20})(?: +(=|[A-Za-z0-9+/]+={0,2}))?")


def _decode(line: bytes) -> str | CommandError:
    """The text of a line without its line end, or why it is unusable."""
    text = line.removesuffix(b"\n").removesuffix(b"\r")  # RFC 1939 §3: CRLF (or a bare LF)
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return CommandError(NOT_UTF8)
    if _CONTROL.search(decoded):
        return CommandError(SYNTAX_ERROR)
    return decoded


def parse_command(line: bytes, command_line: int) -> Event:
    """One command line, its line end included, as an event (or a `CommandError`).

    `command_line` bounds every command but AUTH, whose line the caller bounds.
    """
    text = _decode(line)
    if isinstance(text, CommandError):
        return text
    keyword, _, argument = text.partition(" ")
    keyword = keyword.upper() if keyword.isascii() else ""
    if len(line) > command_line and keyword != "AUTH":
        return CommandError(LINE_TOO_LONG)  # RFC 2449 §4: 255 octets with CRLF
    parser = _PARSERS.get(keyword)
    return CommandError(UNKNOWN_COMMAND) if parser is None else parser(argument)


def parse_auth_data(line: bytes) -> AuthData | CommandError:
    """A SASL response line after a challenge (RFC 5034 §4): raw text, not a command."""
    text = _decode(line)
    return text if isinstance(text, CommandError) else AuthData(text)


def _words(argument: str) -> list[str]:
    return [word for word in argument.split(" ") if word]  # RFC 1939 §3: space-separated


def _number(word: str, minimum: int) -> int | None:  # RFC 1939 §3: numbers are decimal
    """A decimal number from `minimum` to MAX_NUMBER, or None."""
    if not (word.isascii() and word.isdigit() and len(word) <= 10):  # ASCII digits only
        return None
    value = int(word)
    return value if minimum <= value <= MAX_NUMBER else None


def _bare(event: Event, usage: str) -> Parser:
    """A command without arguments (RFC 1939 §4-§5, RFC 2449 §5, RFC 2595 §4)."""

    def parse(argument: str) -> Event:
        return CommandError(syntax(usage)) if _words(argument) else event

    return parse


def _user(argument: str) -> Event:
    words = _words(argument)
    return User(words[0]) if len(words) == 1 else CommandError(syntax("USER name"))


def _pass(argument: str) -> Event:
    # RFC 1939 §7: PASS has exactly one argument, so spaces in it belong to the password
    return Pass(argument) if argument else CommandError(syntax("PASS password"))


def _one_message(usage: str, make: Callable[[int], Event]) -> Parser:
    """RETR msg, DELE msg (RFC 1939 §5): exactly one message number."""

    def parse(argument: str) -> Event:
        words = _words(argument)
        if len(words) != 1:
            return CommandError(syntax(usage))
        msg = _number(words[0], 1)  # RFC 1939 §4: messages are numbered from 1
        return CommandError(BAD_MESSAGE_NUMBER) if msg is None else make(msg)

    return parse


def _optional(everything: Event, parse: Parser) -> Parser:
    """LIST [msg], UIDL [msg] (RFC 1939 §5, §7): without an argument, about every message."""
    return lambda argument: parse(argument) if _words(argument) else everything


def _top(argument: str) -> Event:
    words = _words(argument)
    if len(words) != 2:
        return CommandError(syntax("TOP msg n"))
    msg = _number(words[0], 1)
    lines = _number(words[1], 0)  # RFC 1939 §7: n is non-negative
    if msg is None:
        return CommandError(BAD_MESSAGE_NUMBER)
    return CommandError(BAD_LINE_COUNT) if lines is None else Top(msg, lines)


def _auth(argument: str) -> Event:
    argument = argument.strip(" ")
    if not argument:
        return Auth(None, None)  # RFC 1734 clients asking for the mechanisms
    match = _AUTH.fullmatch(argument)
    if match is None:
        return CommandError(syntax("AUTH mechanism [initial-response]"))
    return Auth(match[1].upper(), match[2])


def _apop(argument: str) -> Event:
    return CommandError(NO_APOP)  # RFC 1939 §7: optional; MD5 of a shared secret, not offered


_PARSERS: dict[str, Parser] = {
    "USER": _user,
    "PASS": _pass,
    "APOP": _apop,
    "AUTH": _auth,
    "CAPA": _bare(Capa(), "CAPA"),
    "STLS": _bare(Stls(), "STLS"),
    "STAT": _bare(Stat(), "STAT"),
    "LIST": _optional(List(None), _one_message("LIST [msg]", List)),
    "RETR": _one_message("RETR msg", Retr),
    "DELE": _one_message("DELE msg", Dele),
    "NOOP": _bare(Noop(), "NOOP"),
    "RSET": _bare(Rset(), "RSET"),
    "QUIT": _bare(Quit(), "QUIT"),
    "TOP": _top,
    "UIDL": _optional(Uidl(None), _one_message("UIDL [msg]", Uidl)),
}
