"""Mailbox addresses as SMTP carries them: parse a reverse- or forward-path, print it back.

The grammar of RFC 5321 §4.1.2 is compiled into one anchored regular expression per mode
(ASCII, or UTF-8 per RFC 6531 §3.3), applied only after the length limits are checked, so
matching stays linear on bounded input. The regex splits the path into local part and domain;
everything after that is plain checks: label and literal validity, octet limits. Routing
syntax is never interpreted: a source route is matched and thrown away (RFC 5321 §4.1.2,
Appendix C), and `%`, `!` or a quoted `@` stay part of the local part, so an address can never
smuggle a relay hop. The local part keeps its case (RFC 5321 §2.4); the domain is lower-cased.

Standards: RFC 5321 §2.4, §4.1.2, §4.1.3, §4.5.3.1, Appendix C; RFC 6531 §3.3
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

MAX_LOCAL = 64  # RFC 5321 §4.5.3.1.1
MAX_PATH = 256  # RFC 5321 §4.5.3.1.3, brackets and route included; so a domain (§4.5.3.1.2:
# at most 255) that fits a path is at most 252 octets and needs no check of its own
MAX_LABEL = 63  # RFC 1035 §2.3.4, referenced by RFC 5321 §2.3.5

_ATEXT = r"\-A-Za-z0-9!#$%&'*+/=?^_`{|}~"  # RFC 5322 §3.2.3 atext (escaped "-" first)
_QTEXT = r"\x20\x21\x23-\x5b\x5d-\x7e"  # RFC 5321 §4.1.2 qtextSMTP
_UTF8 = "\u0080-\ud7ff\ue000-\U0010ffff"  # RFC 6531 §3.3 UTF8-non-ascii (no lone surrogates)


class AddressError(ValueError):
    """The text is not a valid RFC 5321 path or mailbox."""


def _grammar(extra: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Compile (path, dot-string) patterns; `extra` widens atext, qtext and labels."""
    atom = f"[{_ATEXT}{extra}]+"
    dot_string = rf"{atom}(?:\.{atom})*"
    quoted = rf'"(?:[{_QTEXT}{extra}]|\\[\x20-\x7e])*"'  # RFC 5321 §4.1.2 Quoted-string
    let_dig = f"[A-Za-z0-9{extra}]"
    label = rf"{let_dig}(?:[A-Za-z0-9{extra}-]*{let_dig})?"  # sub-domain, or U-label
    domain = rf"{label}(?:\.{label})*"
    route = rf"@{domain}(?:,@{domain})*:"  # RFC 5321 §4.1.2 A-d-l, matched then discarded
    path = re.compile(
        rf"<(?:{route})?(?P<local>{dot_string}|{quoted})@(?P<domain>{domain}|\[[^\[\]\\]*\])>"
    )
    return path, re.compile(dot_string)


_ASCII_PATH, _ASCII_DOT_STRING = _grammar("")
_UTF8_PATH, _UTF8_DOT_STRING = _grammar(_UTF8)
_QUOTED_PAIR = re.compile(r"\\(.)")
_IPV6_TEXT = re.compile(r"[0-9A-Fa-f:.]+")  # refuses zone ids ("%eth0"), which are not SMTP


def _octets(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))  # lone surrogates fail the grammar later


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox: `local` as the user wrote it (unquoted), `domain` lower-cased.

    `Address("postmaster", "")` stands for the domain-less `<Postmaster>` that
    RFC 5321 §4.1.1.3 lets every server accept; it prints as `postmaster`.
    """

    local: str
    domain: str

    def __str__(self) -> str:
        local = self.local
        if not _UTF8_DOT_STRING.fullmatch(local):
            # RFC 5321 §4.1.2: a local part that is not a dot-string travels quoted
            local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{local}@{self.domain}" if self.domain else local


def _domain_literal(text: str) -> str:
    """Validate an RFC 5321 §4.1.3 address literal; return its canonical form."""
    inner = text[1:-1]
    ipv6 = inner[:5].lower() == "ipv6:"
    try:
        if not ipv6:
            return f"[{ipaddress.IPv4Address(inner)}]"
        if _IPV6_TEXT.fullmatch(inner[5:]):
            return f"[IPv6:{ipaddress.IPv6Address(inner[5:]).compressed}]"
    except ValueError:
        pass
    # RFC 5321 §4.1.3: a General-address-literal needs a registered tag; only IPv6 is
    raise AddressError(f"bad address literal {text!r}")


def _parse(text: str, utf8: bool) -> Address:
    """Parse a non-null `<...>` path."""
    if _octets(text) > MAX_PATH:
        raise AddressError(f"path longer than {MAX_PATH} octets")
    if not utf8 and not text.isascii():
        raise AddressError("non-ASCII address without SMTPUTF8")  # RFC 6531 §3.3
    match = (_UTF8_PATH if utf8 else _ASCII_PATH).fullmatch(text)
    if match is None:
        raise AddressError(f"not a valid path: {text!r}")
    local, domain = match["local"], match["domain"]
    if _octets(local) > MAX_LOCAL:
        raise AddressError(f"local part longer than {MAX_LOCAL} octets")
    if local.startswith('"'):
        local = _QUOTED_PAIR.sub(r"\1", local[1:-1])
    if domain.startswith("["):
        return Address(local, _domain_literal(domain))
    if any(_octets(label) > MAX_LABEL for label in domain.split(".")):
        raise AddressError(f"domain label longer than {MAX_LABEL} octets")
    return Address(local, domain.lower())


def parse_path(text: str, *, utf8: bool) -> Address | None:
    """Parse `<...>` from MAIL FROM or RCPT TO; `<>` (the null reverse-path) gives None.

    `utf8` allows UTF-8 in the local part and domain (the transaction used SMTPUTF8).
    """
    return None if text == "<>" else _parse(text, utf8)


def parse_address(text: str) -> Address:
    """Parse a bare `local@domain` (configuration, command line); UTF-8 is allowed."""
    if not text or text.startswith("@"):  # neither null nor source-routed here
        raise AddressError(f"not a mailbox: {text!r}")
    return _parse(f"<{text}>", utf8=True)
