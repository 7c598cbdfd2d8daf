"""RFC 5322 address lists read into IMAP ENVELOPE address structures, raw octets kept.

ENVELOPE hands the client each address as (name adl mailbox host), with group syntax
marked by a start (NIL NIL group NIL) and an end (NIL NIL NIL NIL) (RFC 9051 §7.5.2), and
with the text as it stands in the header: encoded-words are the client's to decode. The
stdlib's `email.utils.getaddresses` drops groups and `email.headerregistry` decodes, so this
is a small tokenizer (quoted strings, comments, domain literals, specials, atoms, 8-bit
octets passed through) and a forgiving reader: one malformed address never costs the
others, and whatever cannot be read as an address is skipped.

Standards: RFC 5322 §3.4 (address, group, mailbox, angle-addr), §4.4 (obs-route);
RFC 9051 §7.5.2 (envelope addresses); RFC 6532 §3.2 (UTF-8 in addresses)
"""

from __future__ import annotations

import re

from postoffice.protocols.imap.mime import strip_comments

Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]

_TOKENS = re.compile(
    rb'"(?:[^"\\]|\\.)*"?'  # quoted string (an unterminated one runs to the end)
    rb"|\[[^\]]*\]?"  # domain literal
    rb"|[<>@,;:.]"  # specials that matter here
    rb"|[^\s\"\[\]<>@,;:.()]+",  # atom text, 8-bit included
    re.DOTALL,
)
_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)
_GROUP_END: Address = (None, None, None, None)


def parse_addresses(value: bytes) -> tuple[Address, ...]:
    """The address structures of one address-list header value."""
    text = strip_comments(value)
    found = list(_TOKENS.finditer(text))
    tokens = [match[0] for match in found]
    # a word keeps the space before it, so that a phrase reads as it was written
    spaced = [i > 0 and match.start() > found[i - 1].end() for i, match in enumerate(found)]
    out: list[Address] = []
    in_group = False
    words: list[tuple[bytes, bool]] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token == b":" and not in_group and words:
            out.append((None, None, _phrase(words), None))  # RFC 9051 §7.5.2: group start
            in_group, words = True, []
        elif token == b"<":
            close = tokens.index(b">", index) if b">" in tokens[index:] else len(tokens)
            inside = tokens[index:close]
            address = _angle(_phrase(words), inside)
            if address is not None:
                out.append(address)
            index, words = close + 1, []
        elif token in (b",", b";"):
            if (address := _addr_spec(None, None, [w for w, _ in words])) is not None:
                out.append(address)
            words = []
            if token == b";" and in_group:
                out.append(_GROUP_END)
                in_group = False
        else:
            words.append((token, spaced[index - 1]))
    if (address := _addr_spec(None, None, [w for w, _ in words])) is not None:
        out.append(address)
    if in_group:  # an unterminated group still ends
        out.append(_GROUP_END)
    return tuple(out)


def _angle(name: bytes | None, inside: list[bytes]) -> Address | None:
    """``<[route:] addr-spec>`` (RFC 5322 §3.4, §4.4 obs-route)."""
    route = None
    if b":" in inside:
        colon = inside.index(b":")
        route = b"".join(inside[:colon]) or None
        inside = inside[colon + 1 :]
    return _addr_spec(name, route, inside)


def _addr_spec(name: bytes | None, route: bytes | None, words: list[bytes]) -> Address | None:
    """local-part "@" domain; an address without a domain gets an empty host (NIL would
    read as group syntax)."""
    if not words:
        return None
    if b"@" in words:
        at = len(words) - 1 - words[::-1].index(b"@")
        local, domain = b"".join(words[:at]), b"".join(words[at + 1 :])
    else:
        local, domain = b"".join(words), b""
    if not local:
        return None
    return (name, route, local, domain)


def _phrase(words: list[tuple[bytes, bool]]) -> bytes | None:
    """A display name: its words with one space where there was space, quotes removed."""
    out = bytearray()
    for word, space in words:
        if space and out:
            out += b" "
        out += _unquote(word) if word.startswith(b'"') else word
    return bytes(out) or None


def _unquote(word: bytes) -> bytes:
    """A quoted string's content (an unterminated one runs to the end)."""
    inner = word[1:-1] if word.endswith(b'"') and len(word) > 1 else word[1:]
    return _ESCAPE.sub(rb"\1", inner)
