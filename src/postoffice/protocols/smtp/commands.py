"""Parse one SMTP command line into an event, or into a CommandError carrying the reply.

The line is checked once for what every command shares (CRLF ending, UTF-8, no control
characters, length), then the verb picks its parser from an explicit dict. Parsers are pure
functions of the argument text and a small `Context` (was EHLO used, did MAIL carry SMTPUTF8,
the limits); they never see the session state, whose sequence rules live in states.py.
MAIL and RCPT parameters are validated through one table per command: an unknown keyword is
555, a known one with a bad value 501. A path must be in angle brackets; the only leniency is
spaces after "FROM:"/"TO:", which common clients send. BDAT comes back as `Bdat`, not an event:
the connection reads the chunk octets before anything is answered.

Standards: RFC 5321 §2.3.8, §4.1.1, §4.1.2, §4.5.3.1.4; RFC 1870 §3; RFC 3030 §2-3;
RFC 3207 §4; RFC 3461 §4; RFC 4954 §4-5; RFC 6152 §2; RFC 6531 §3.4-3.5
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from postoffice.mail.address import Address, AddressError, parse_path
from postoffice.protocols.smtp.events import (
    Auth,
    AuthData,
    CommandError,
    Data,
    Event,
    Expn,
    Helo,
    Help,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
)
from postoffice.protocols.smtp.replies import (
    BAD_RECIPIENT,
    BAD_SENDER,
    LINE_TOO_LONG,
    MESSAGE_TOO_BIG,
    NON_ASCII_ADDRESS,
    NOT_CRLF,
    NOT_UTF8,
    SYNTAX_ERROR,
    UNKNOWN_COMMAND,
    Reply,
    bad_arguments,
    unknown_parameter,
)

PARAMETER_ALLOWANCE = 500  # RFC 4954 §5: MAIL/RCPT lines may be this much longer
AUTH_LINE = 12288  # RFC 4954 §4: SASL response lines at least this long must be accepted


@dataclass(frozen=True, slots=True)
class Bdat:
    """BDAT <size> [LAST] (RFC 3030 §2); the connection reads `size` octets next."""

    size: int
    last: bool


@dataclass(frozen=True, slots=True)
class Context:
    extended: bool  # EHLO was used, so MAIL/RCPT parameters may be given
    smtputf8: bool  # the accepted MAIL had SMTPUTF8: UTF-8 recipients are allowed
    command_line: int  # longest command line, CRLF included
    message_size: int  # largest message accepted


Parsed = Event | Bdat
Parser = Callable[[str, Context], Parsed]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PATH = re.compile(r'<(?:[^<>"]|"(?:[^"\\]|\\.)*")*>')  # ">" may sit inside a quoted local part
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")  # RFC 5321 §4.1.2 esmtp-keyword
_VALUE = re.compile(r"[^=\x00-\x20\x7f]+")  # esmtp-value, widened to UTF-8 by RFC 6531 §3.3
_NUMBER = re.compile(r"[0-9]{1,20}")  # RFC 1870 §3 size-value
_NOTIFY = re.compile(r"NEVER|(?:SUCCESS|FAILURE|DELAY)(?:,(?:SUCCESS|FAILURE|DELAY))*", re.I)
_BDAT = re.compile(r"([0-9]{1,20})(?: +(LAST))?", re.I)  # RFC 3030 §2 bdat-cmd
_AUTH = re.compile(r"([A-Za-z0-9_-]{1,20})(?: +(=|[A-Za-z0-9+/]+={0,2}))?")  # RFC 4954 §4

Check = Callable[[str | None], bool]


def _has_value(value: str | None) -> bool:
    return value is not None


_MAIL_PARAMETERS: dict[str, Check] = {
    "SIZE": lambda v: v is not None and _NUMBER.fullmatch(v) is not None,  # RFC 1870 §3
    "BODY": lambda v: v is not None and v.upper() in {"7BIT", "8BITMIME", "BINARYMIME"},
    "SMTPUTF8": lambda v: v is None,  # RFC 6531 §3.4
    "AUTH": _has_value,  # RFC 4954 §5
    "RET": lambda v: v is not None and v.upper() in {"FULL", "HDRS"},  # RFC 3461 §4.3
    "ENVID": _has_value,  # RFC 3461 §4.4
}
_RCPT_PARAMETERS: dict[str, Check] = {
    "NOTIFY": lambda v: v is not None and _NOTIFY.fullmatch(v) is not None,  # RFC 3461 §4.1
    "ORCPT": lambda v: v is not None and ";" in v,  # RFC 3461 §4.2 addr-type ";" xtext
}
_TYPED_MAIL_PARAMETERS = ("SIZE", "BODY", "SMTPUTF8")  # lifted into MailFrom fields


def _decode(line: bytes) -> str | CommandError:
    """The text of a line, or why it is unusable."""
    if not line.endswith(b"\r\n"):  # RFC 5321 §2.3.8: a bare LF does not end a line
        return CommandError(NOT_CRLF)
    try:
        text = line[:-2].decode("utf-8")
    except UnicodeDecodeError:
        return CommandError(NOT_UTF8)
    if _CONTROL.search(text):
        return CommandError(SYNTAX_ERROR)
    return text.rstrip(" ")


def parse_command(line: bytes, context: Context) -> Parsed:
    """One command line, its CRLF included, as an event (or `Bdat`, or `CommandError`)."""
    text = _decode(line)
    if isinstance(text, CommandError):
        return text
    verb, _, argument = text.partition(" ")
    verb = verb.upper() if verb.isascii() else ""
    parser = _PARSERS.get(verb)
    if parser is None:
        return CommandError(UNKNOWN_COMMAND)
    if len(line) > context.command_line and verb not in ("MAIL", "RCPT"):
        return CommandError(LINE_TOO_LONG)  # RFC 5321 §4.5.3.1.4
    return parser(argument, context)


def parse_auth_data(line: bytes) -> AuthData | CommandError:
    """A SASL response line after a 334 (RFC 4954 §4): raw text, not a command."""
    text = _decode(line)
    return text if isinstance(text, CommandError) else AuthData(text)


def _greeting(verb: str) -> Parser:
    """HELO or EHLO: one word, kept as sent; judging it is policy (RFC 5321 §4.1.4)."""

    def parse(argument: str, context: Context) -> Parsed:
        domain = argument.strip(" ")
        if not domain or " " in domain:
            return CommandError(bad_arguments(f"Syntax: {verb} hostname"))
        return Helo(domain, extended=verb == "EHLO")

    return parse


def _bare(event: Event, syntax: str) -> Parser:
    """A command that takes no argument (RFC 5321 §4.1.1.4, .5, .10; RFC 3207 §4)."""

    def parse(argument: str, context: Context) -> Parsed:
        return CommandError(bad_arguments(f"Syntax: {syntax}")) if argument.strip(" ") else event

    return parse


def _noop(argument: str, context: Context) -> Parsed:
    return Noop()  # RFC 5321 §4.1.1.9: an argument is allowed and ignored


def _help(argument: str, context: Context) -> Parsed:
    return Help(argument.strip(" "))


def _vrfy(argument: str, context: Context) -> Parsed:
    argument = argument.strip(" ")
    return Vrfy(argument) if argument else CommandError(bad_arguments("Syntax: VRFY address"))


def _expn(argument: str, context: Context) -> Parsed:
    argument = argument.strip(" ")
    return Expn(argument) if argument else CommandError(bad_arguments("Syntax: EXPN list"))


def _split(argument: str, prefix: str) -> tuple[str, dict[str, str | None]] | Reply:
    """Split `FROM:<path> KEY=value ...` into the path and its parameters."""
    syntax = bad_arguments(f"Syntax: {'MAIL' if prefix == 'FROM:' else 'RCPT'} {prefix}<address>")
    if argument[: len(prefix)].upper() != prefix:
        return syntax
    rest = argument[len(prefix) :].lstrip(" ")
    match = _PATH.match(rest)
    if match is None:
        return syntax
    tail = rest[match.end() :]
    if tail and not tail.startswith(" "):
        return syntax
    params: dict[str, str | None] = {}
    for item in tail.split():  # RFC 5321 §4.1.2 Mail-parameters
        keyword, equals, value = item.partition("=")
        if not _KEYWORD.fullmatch(keyword) or (equals and not _VALUE.fullmatch(value)):
            return bad_arguments(f"Bad parameter {item}")
        if keyword.upper() in params:
            return bad_arguments(f"Duplicate {keyword.upper()} parameter")
        params[keyword.upper()] = value if equals else None
    return match[0], params


def _check(
    params: dict[str, str | None], known: dict[str, Check], context: Context
) -> Reply | None:
    for keyword, value in params.items():
        if keyword not in known or not context.extended:  # parameters need EHLO
            return unknown_parameter(keyword)  # RFC 5321 §4.1.1.11
        if not known[keyword](value):
            return bad_arguments(f"Bad {keyword} parameter")
    return None


def _address(path: str, utf8: bool, bad: Reply) -> Address | CommandError | None:
    if not utf8 and not path.isascii():
        return CommandError(NON_ASCII_ADDRESS)  # RFC 6531 §3.5
    try:
        return parse_path(path, utf8=utf8)
    except AddressError:
        return CommandError(bad)


def _mail(argument: str, context: Context) -> Parsed:
    split = _split(argument, "FROM:")
    if isinstance(split, Reply):
        return CommandError(split)
    path, params = split
    refusal = _check(params, _MAIL_PARAMETERS, context)
    if refusal is not None:
        return CommandError(refusal)
    smtputf8 = "SMTPUTF8" in params
    sender = _address(path, smtputf8, BAD_SENDER)
    if isinstance(sender, CommandError):
        return sender
    size, body = params.get("SIZE"), params.get("BODY")  # both carry a value when given
    if size is not None and int(size) > context.message_size:
        return CommandError(MESSAGE_TOO_BIG)  # RFC 1870 §6
    return MailFrom(
        sender=sender,
        size=int(size) if size is not None else None,
        body=body.upper() if body is not None else None,
        smtputf8=smtputf8,
        params={k: v for k, v in params.items() if k not in _TYPED_MAIL_PARAMETERS},
    )


def _rcpt(argument: str, context: Context) -> Parsed:
    split = _split(argument, "TO:")
    if isinstance(split, Reply):
        return CommandError(split)
    path, params = split
    refusal = _check(params, _RCPT_PARAMETERS, context)
    if refusal is not None:
        return CommandError(refusal)
    if path.lower() == "<postmaster>":  # RFC 5321 §4.1.1.3: accepted without a domain
        return RcptTo(Address("postmaster", ""), params)
    recipient = _address(path, context.smtputf8, BAD_RECIPIENT)
    if isinstance(recipient, CommandError):
        return recipient
    if recipient is None:  # the null path is a reverse-path only
        return CommandError(BAD_RECIPIENT)
    return RcptTo(recipient, params)


def _bdat(argument: str, context: Context) -> Parsed:
    match = _BDAT.fullmatch(argument.strip(" "))
    if match is None:
        return CommandError(bad_arguments("Syntax: BDAT size [LAST]"))
    return Bdat(int(match[1]), match[2] is not None)


def _auth(argument: str, context: Context) -> Parsed:
    match = _AUTH.fullmatch(argument.strip(" "))
    if match is None:
        return CommandError(bad_arguments("Syntax: AUTH mechanism [initial-response]"))
    return Auth(match[1].upper(), match[2])


_PARSERS: dict[str, Parser] = {
    "HELO": _greeting("HELO"),
    "EHLO": _greeting("EHLO"),
    "MAIL": _mail,
    "RCPT": _rcpt,
    "DATA": _bare(Data(), "DATA"),
    "BDAT": _bdat,
    "RSET": _bare(Rset(), "RSET"),
    "NOOP": _noop,
    "QUIT": _bare(Quit(), "QUIT"),
    "VRFY": _vrfy,
    "EXPN": _expn,
    "HELP": _help,
    "STARTTLS": _bare(StartTls(), "STARTTLS"),
    "AUTH": _auth,
}
