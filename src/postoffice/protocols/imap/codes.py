"""IMAP response codes: the bracketed, machine-readable part of a status response.

One typed `Code` per use, validated when built (a registered name, no "]" or line end in
its data), with a constant for each code without data and a builder for each one with data,
so that the session never writes a code as a raw string.

Standards: RFC 9051 §7.1; RFC 3501 §7.1 (UNSEEN); RFC 5530 (ALREADYEXISTS ... UNAVAILABLE);
RFC 4315 §3 (APPENDUID, COPYUID, UIDNOTSTICKY); RFC 7162 §3.1 (HIGHESTMODSEQ, NOMODSEQ,
MODIFIED); RFC 4469 §4.2, RFC 7889 §4 (TOOBIG); RFC 3516 §4.3 (UNKNOWN-CTE); RFC 6154 §3
(USEATTR); RFC 9051 §6.4.4 (BADCHARSET)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from postoffice.protocols.imap import serializer
from postoffice.protocols.imap.sequence import SequenceSet
from postoffice.protocols.imap.serializer import Atom

_CODE_DATA = re.compile(r"[\x20-\x5c\x5e-\x7e]*")  # no "]" inside a response code

# fmt: off
CODE_NAMES = frozenset((
    # RFC 9051 §7.1
    "ALERT", "ALREADYEXISTS", "APPENDUID", "AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED",
    "BADCHARSET", "CANNOT", "CAPABILITY", "CLIENTBUG", "CLOSED", "CONTACTADMIN", "COPYUID",
    "CORRUPTION", "EXPIRED", "EXPUNGEISSUED", "HASCHILDREN", "INUSE", "LIMIT", "NONEXISTENT",
    "NOPERM", "OVERQUOTA", "PARSE", "PERMANENTFLAGS", "PRIVACYREQUIRED", "READ-ONLY",
    "READ-WRITE", "SERVERBUG", "TRYCREATE", "UIDNEXT", "UIDNOTSTICKY", "UIDVALIDITY",
    "UNAVAILABLE", "UNKNOWN-CTE",
    "UNSEEN",  # RFC 3501 §7.1, IMAP4rev1 only
    "TOOBIG",  # RFC 4469 §4.2, RFC 7889 §4
    "HIGHESTMODSEQ", "NOMODSEQ", "MODIFIED",  # RFC 7162 §3.1
    "USEATTR",  # RFC 6154 §3
))
# fmt: on


@dataclass(frozen=True, slots=True)
class Code:
    """A response code, ``[NAME data]``; build the parameterised ones with the functions
    below."""

    name: str
    data: str = ""

    def __post_init__(self) -> None:
        if self.name not in CODE_NAMES:
            raise ValueError(f"unknown IMAP response code {self.name!r}")
        if _CODE_DATA.fullmatch(self.data) is None:
            raise ValueError(f"bad response code data {self.data[:60]!r}")

    def to_wire(self) -> str:
        return f"[{self.name} {self.data}]" if self.data else f"[{self.name}]"


ALERT = Code("ALERT")
ALREADYEXISTS = Code("ALREADYEXISTS")
AUTHENTICATIONFAILED = Code("AUTHENTICATIONFAILED")
AUTHORIZATIONFAILED = Code("AUTHORIZATIONFAILED")
CANNOT = Code("CANNOT")
CLIENTBUG = Code("CLIENTBUG")
CLOSED = Code("CLOSED")
CONTACTADMIN = Code("CONTACTADMIN")
CORRUPTION = Code("CORRUPTION")
EXPIRED = Code("EXPIRED")
EXPUNGEISSUED = Code("EXPUNGEISSUED")
HASCHILDREN = Code("HASCHILDREN")
INUSE = Code("INUSE")
LIMIT = Code("LIMIT")
NOMODSEQ = Code("NOMODSEQ")
NONEXISTENT = Code("NONEXISTENT")
NOPERM = Code("NOPERM")
OVERQUOTA = Code("OVERQUOTA")
PARSE = Code("PARSE")
PRIVACYREQUIRED = Code("PRIVACYREQUIRED")
READ_ONLY = Code("READ-ONLY")
READ_WRITE = Code("READ-WRITE")
SERVERBUG = Code("SERVERBUG")
TOOBIG = Code("TOOBIG")
TRYCREATE = Code("TRYCREATE")
UIDNOTSTICKY = Code("UIDNOTSTICKY")
UNAVAILABLE = Code("UNAVAILABLE")
UNKNOWN_CTE = Code("UNKNOWN-CTE")
USEATTR = Code("USEATTR")


def uidvalidity(value: int) -> Code:
    return Code("UIDVALIDITY", str(positive(value)))


def uidnext(value: int) -> Code:
    return Code("UIDNEXT", str(positive(value)))


def unseen(number: int) -> Code:
    """The first unseen message number, for IMAP4rev1 SELECT (RFC 3501 §7.1)."""
    return Code("UNSEEN", str(positive(number)))


def highestmodseq(value: int) -> Code:
    return Code("HIGHESTMODSEQ", str(positive(value)))


def permanentflags(flags: Iterable[str]) -> Code:
    """RFC 9051 §7.1: the flags STORE may change for good; include "\\*" for keywords."""
    return Code("PERMANENTFLAGS", serializer.atoms(flags).decode("ascii"))


def capability_code(names: Iterable[str]) -> Code:
    return Code("CAPABILITY", " ".join(Atom(name).text for name in names))


def badcharset(charsets: Iterable[str]) -> Code:
    return Code("BADCHARSET", "(" + " ".join(serializer.astring(c) for c in charsets) + ")")


def appenduid(uidvalidity: int, uids: SequenceSet) -> Code:
    """RFC 4315 §3: the UIDVALIDITY and UID(s) an APPEND got."""
    return Code("APPENDUID", f"{positive(uidvalidity)} {uids.to_wire()}")


def copyuid(uidvalidity: int, source: SequenceSet, destination: SequenceSet) -> Code:
    """RFC 4315 §3: source UIDs and the UIDs their copies got, in the same order."""
    return Code("COPYUID", f"{positive(uidvalidity)} {source.to_wire()} {destination.to_wire()}")


def modified(numbers: SequenceSet) -> Code:
    """RFC 7162 §3.1.3: the messages STORE ... UNCHANGEDSINCE did not change."""
    return Code("MODIFIED", numbers.to_wire())


def positive(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a positive number, not {value!r}")
    return value
