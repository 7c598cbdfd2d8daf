"""Modified UTF-7, the mailbox name encoding of IMAP4rev1 sessions.

Printable US-ASCII other than "&" stands for itself, "&" is written "&-", and every run of
other characters is written "&" + its UTF-16BE code units in base64 (with "," for "/" and no
padding) + "-". Decoding is strict so that a name has exactly one spelling: a shift must be
closed, must not encode a character that could stand for itself, must not follow another
shift directly (one run is one shift), must leave no stray or non-zero bits, and must decode
to valid UTF-16. Anything else raises ValueError, which the parser turns into a BAD.
IMAP4rev2 and UTF8=ACCEPT sessions use UTF-8 instead and never come here.

Standards: RFC 3501 §5.1.3; RFC 2152 (UTF-7); RFC 9051 §5.1 (UTF-8 names in IMAP4rev2)
"""

from __future__ import annotations

import re

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"
_VALUES = {char: index for index, char in enumerate(_ALPHABET)}
_SHIFT = re.compile(r"&([A-Za-z0-9+,]*)-")  # RFC 3501 §5.1.3: "," instead of "/"
_DIRECT = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"&"}


def encode(name: str) -> str:
    """The modified UTF-7 spelling of `name`; ValueError on a lone surrogate."""
    out: list[str] = []
    run: list[str] = []
    for char in name:
        if char not in _DIRECT and char != "&":
            run.append(char)
            continue
        if run:
            out.append(_shift("".join(run)))
            run.clear()
        out.append("&-" if char == "&" else char)
    if run:
        out.append(_shift("".join(run)))
    return "".join(out)


def decode(name: str) -> str:
    """The text a modified UTF-7 name stands for; ValueError unless it is canonical."""
    out: list[str] = []
    position = 0
    last_shift_end = -1
    while position < len(name):
        char = name[position]
        if char != "&":
            if char not in _DIRECT:
                raise ValueError(f"{char!r} must be encoded in modified UTF-7")
            out.append(char)
            position += 1
            continue
        match = _SHIFT.match(name, position)
        if match is None:
            raise ValueError("unterminated or malformed modified UTF-7 shift")
        if not match[1]:
            out.append("&")  # RFC 3501 §5.1.3: "&-" is "&"
        elif position == last_shift_end:
            raise ValueError("adjacent modified UTF-7 shifts")
        else:
            out.append(_unshift(match[1]))
            last_shift_end = match.end()
        position = match.end()
    return "".join(out)


def _shift(text: str) -> str:
    data = text.encode("utf-16-be")  # UnicodeEncodeError (a ValueError) on a lone surrogate
    bits = len(data) * 8
    spare = -bits % 6
    value = int.from_bytes(data, "big") << spare
    chars = (bits + spare) // 6
    b64 = "".join(_ALPHABET[(value >> (6 * (chars - 1 - i))) & 0x3F] for i in range(chars))
    return f"&{b64}-"


def _unshift(b64: str) -> str:
    value = 0
    for char in b64:
        value = value << 6 | _VALUES[char]
    units, spare = divmod(len(b64) * 6, 16)
    if spare >= 6 or value & ((1 << spare) - 1):  # a stray character or non-zero padding
        raise ValueError("modified UTF-7 shift does not end on a code unit")
    text = (value >> spare).to_bytes(units * 2, "big").decode("utf-16-be")
    if any(char in _DIRECT or char == "&" for char in text):
        raise ValueError("modified UTF-7 shift encodes a character that stands for itself")
    return text
