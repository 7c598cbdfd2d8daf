"""What a Maildir file name says: arrival time, size, delivery id, and the flags in its info.

`MaildirMailbox.deliver` writes ``<secs>.M<usecs>P<pid>Q<delivery id>.<host>,S=<size>``;
Dovecot's names carry ``,W=<size>`` (the CRLF size). After ``:2,`` come the flag letters (D F R S T
for the IMAP system flags; other letters, e.g. Dovecot's keywords, are kept as they are).

Standards: Maildir (D. J. Bernstein), RFC 1939 §11 (sizes in CRLF form), RFC 3501 §2.3.2 (flags),
RFC 3501 §9 (keyword atoms).
"""

from __future__ import annotations

import re

from postoffice.fileio import read_file

INFO = ":2,"  # Maildir info separator: ":2," followed by the flag letters
FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}
_LETTERS = {flag.lower(): letter for letter, flag in FLAGS.items()}
_ARRIVAL = re.compile(r"(\d+)\.(?:M(\d{1,6}))?")
_VSIZE = re.compile(r",W=([0-9]+)")  # Dovecot's virtual (CRLF) size
_BARE_LINE_END = re.compile(rb"\r(?!\n)|(?<!\r)\n")  # each becomes CRLF on the wire
_SIZE = re.compile(r",S=(\d+)")
DELIVERY_ID = re.compile(r"[A-Za-z0-9_-]+")
_KEYWORD = re.compile(r'[^\x00-\x20\x7f(){%*"\\\]]+')  # RFC 3501 §9 atom


def letters(flags: frozenset[str]) -> tuple[set[str], str]:
    """Info letters and the space-joined keyword list for IMAP `flags`; ValueError if invalid."""
    letters: set[str] = set()
    keywords: list[str] = []
    for flag in flags:
        if flag.startswith("\\"):
            if flag.lower() not in _LETTERS:
                raise ValueError(f"flag {flag} cannot be stored")
            letters.add(_LETTERS[flag.lower()])
        elif flag.isascii() and _KEYWORD.fullmatch(flag):
            keywords.append(flag)
        else:
            raise ValueError(f"{flag!r} is not a valid keyword")
    return letters, " ".join(sorted(keywords))


def arrival(key: str) -> float | None:
    """Arrival time from a name starting ``<secs>.M<usecs>``; None for other names."""
    match = _ARRIVAL.match(key)
    if match is None:
        return None
    return int(match[1]) + int(match[2] or 0) / 1e6


def delivery_id(name: str) -> str | None:
    """The ``Q`` part of a name written by `deliver` (``<secs>.M<usecs>P<pid>Q<id>.<host>``)."""
    parts = name.split(".", 2)
    if len(parts) < 3:
        return None
    _, q, delivery_id = parts[1].partition("Q")
    return delivery_id if q else None


def flag_set(info: str, keywords: str) -> frozenset[str]:
    """IMAP flags from the info letters (what follows ``:2,``) and the keyword list."""
    flags = {FLAGS[letter] for letter in info if letter in FLAGS}
    flags.update(keywords.split())
    return frozenset(flags)


def crlf_size(path: str) -> int:
    """Octets of the file once every bare CR and bare LF is sent as CRLF."""
    data = read_file(path)
    return len(data) + len(_BARE_LINE_END.findall(data))


def name_size(name: str) -> int | None:
    """The CRLF size a name records (Dovecot's ``,W=`` first), or None."""
    size = _VSIZE.search(name) or _SIZE.search(name)
    return None if size is None else int(size[1])
