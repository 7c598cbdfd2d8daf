"""FETCH attributes: what a client may ask of a message, and the parser that reads them.

A `FetchAttribute` names one data item (FLAGS, ENVELOPE, BODY[1.2.HEADER.FIELDS (To)]<0.100>
...); the macros ALL, FAST and FULL are expanded here (RFC 9051 §6.4.5), so the session only
sees attributes. Each knows the name its answer carries (`response_name`: BODY.PEEK[...] is
answered as BODY[...], a partial fetch echoes only its origin, RFC 9051 §7.5.2) and whether
fetching it sets \\Seen (`sets_seen`). A `Section` is the part path and text specifier that
sections.py resolves against a message. Header field names are checked to be RFC 5322 field
names, since they are echoed back in the response.

Standards: RFC 9051 §6.4.5, §7.5.2, §9 (fetch-att, section, partial); RFC 3516 §4.1-§4.2
(BINARY, BINARY.PEEK, BINARY.SIZE); RFC 7162 §3.1.4-§3.1.5 (MODSEQ, CHANGEDSINCE);
RFC 7162 §3.2.6 (VANISHED)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from postoffice.protocols.imap.lexer import MAX_NUMBER, MAX_NUMBER64, Cursor, ParseError
from postoffice.protocols.imap.serializer import astring

_SECTIONED = re.compile(rb"(BODY\.PEEK|BODY|BINARY\.PEEK|BINARY\.SIZE|BINARY)\[", re.IGNORECASE)
_SECTION_TEXT = re.compile(rb"HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME", re.I)
_MACRO = re.compile(rb"(?:ALL|FAST|FULL)(?=[ \r\n])", re.IGNORECASE)
_PARTIAL = re.compile(rb"<([0-9]{1,19})\.([0-9]{1,19})>")
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 §3.6.8: ftext
# RFC 9051 §9 fetch-att without a section
SIMPLE = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
    }
)
SECTION_TEXTS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"})


@dataclass(frozen=True, slots=True)
class Section:
    """A body section: a part path (empty for the whole message) and an optional text
    specifier, HEADER, HEADER.FIELDS[.NOT] with `fields`, TEXT or MIME (RFC 9051 §6.4.5)."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.text is not None and self.text not in SECTION_TEXTS:
            raise ValueError(f"unknown section text {self.text!r}")
        if bool(self.fields) != (self.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT")):
            raise ValueError("header fields go with HEADER.FIELDS[.NOT] and only there")
        if self.text == "MIME" and not self.part:
            raise ValueError("MIME needs a part number")  # RFC 9051 §6.4.5

    def to_wire(self) -> str:
        spec = ".".join(str(n) for n in self.part)
        if self.text is not None:
            spec = f"{spec}.{self.text}" if spec else self.text
        if self.fields:
            spec += " (" + " ".join(astring(name) for name in self.fields) + ")"
        return spec


@dataclass(frozen=True, slots=True)
class FetchAttribute:
    """One FETCH data item: `name` upper-cased (BODY, BINARY, BINARY.SIZE, FLAGS ...), a
    `section` for BODY[...] and BINARY[...], a `partial` (origin, length), `peek` for
    BODY.PEEK and BINARY.PEEK. BODY without a section is the non-extensible BODYSTRUCTURE."""

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False
    # The item name in the FETCH response (RFC 9051 §7.5.2): made once, since a FETCH of a
    # large mailbox names every item of every message.
    response_name: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        name = self.name
        if self.section is not None:
            name = f"{name}[{self.section.to_wire()}]"
            if self.partial is not None:
                name = f"{name}<{self.partial[0]}>"
        object.__setattr__(self, "response_name", name)

    @property
    def sets_seen(self) -> bool:
        """Fetching this sets \\Seen (RFC 9051 §6.4.5; RFC 3516 §4.1)."""
        if self.name in ("BODY", "BINARY"):
            return self.section is not None and not self.peek
        return self.name in ("RFC822", "RFC822.TEXT")


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """The attributes asked for and the CONDSTORE/QRESYNC modifiers (RFC 7162 §3.1.4)."""

    attributes: tuple[FetchAttribute, ...]
    changed_since: int | None = None
    vanished: bool = False


def _simple(*names: str) -> tuple[FetchAttribute, ...]:
    return tuple(FetchAttribute(name) for name in names)


# RFC 9051 §6.4.5: the macros
_FAST = _simple("FLAGS", "INTERNALDATE", "RFC822.SIZE")
_ALL = (*_FAST, *_simple("ENVELOPE"))
MACROS = {"FAST": _FAST, "ALL": _ALL, "FULL": (*_ALL, *_simple("BODY"))}


def parse_fetch(cursor: Cursor) -> FetchRequest:
    """After "FETCH" SP sequence-set SP: a macro, an attribute or a list, then modifiers."""
    if cursor.peek() == b"(":
        attributes = tuple(cursor.items(lambda: _attribute(cursor)))
    elif (macro := cursor.match(_MACRO)) is not None:
        attributes = MACROS[macro[0].decode("ascii").upper()]
    else:
        attributes = (_attribute(cursor),)
    modifiers: dict[str, Any] = {}
    if cursor.accept(b" "):
        # RFC 7162 §3.1.4, §3.2.6: fetch-modifiers = SP "(" fetch-modifier *(SP ...) ")"
        changed_since = partial(cursor.number, minimum=1, maximum=MAX_NUMBER64)
        modifiers = cursor.options({"CHANGEDSINCE": changed_since, "VANISHED": None}, "modifier")
    changed_since = modifiers.get("CHANGEDSINCE")
    vanished = "VANISHED" in modifiers
    if vanished and changed_since is None:
        raise ParseError("VANISHED needs CHANGEDSINCE")  # RFC 7162 §3.2.6
    return FetchRequest(attributes, changed_since, vanished)


def _attribute(cursor: Cursor) -> FetchAttribute:
    sectioned = cursor.match(_SECTIONED)
    if sectioned is None:
        name = cursor.keyword()
        if name not in SIMPLE:
            raise ParseError(f"unknown FETCH attribute {name[:30]}")
        return FetchAttribute(name)
    written = sectioned[1].decode("ascii").upper()
    name = written.removesuffix(".PEEK")
    if name == "BODY":
        section = _section(cursor)
    else:  # RFC 3516 §4.1: section-binary = "[" [section-part] "]"
        section = Section(_part(cursor) if cursor.peek().isdigit() else ())
    cursor.expect(b"]")
    partial = None
    if name != "BINARY.SIZE" and (found := cursor.match(_PARTIAL)) is not None:
        origin, length = int(found[1]), int(found[2])
        if length < 1 or max(origin, length) > MAX_NUMBER64:  # RFC 9051 §9: nz-number64
            raise ParseError("bad partial range")
        partial = (origin, length)
    return FetchAttribute(name, section, partial, peek=written != name)


def _part(cursor: Cursor) -> tuple[int, ...]:
    part = [cursor.number(minimum=1, maximum=MAX_NUMBER)]
    while cursor.peek() == b"." and cursor.data[cursor.pos + 1 : cursor.pos + 2].isdigit():
        cursor.pos += 1
        part.append(cursor.number(minimum=1, maximum=MAX_NUMBER))
    return tuple(part)


def _section(cursor: Cursor) -> Section:
    """RFC 9051 §9 section-spec, inside the brackets."""
    part: tuple[int, ...] = ()
    if cursor.peek().isdigit():
        part = _part(cursor)
        if not cursor.accept(b"."):
            return Section(part)
    elif cursor.peek() == b"]":
        return Section()
    found = cursor.match(_SECTION_TEXT)
    if found is None:
        raise ParseError("bad section")
    text = found[0].decode("ascii").upper()
    if text == "MIME" and not part:
        raise ParseError("MIME needs a part number")
    fields: tuple[str, ...] = ()
    if text.startswith("HEADER.FIELDS"):
        cursor.sp()
        fields = tuple(cursor.items(lambda: _field_name(cursor)))
    return Section(part, text, fields)


def _field_name(cursor: Cursor) -> str:
    name = cursor.text(cursor.astring())
    if _FIELD_NAME.fullmatch(name) is None:
        raise ParseError("bad header field name")
    return name
