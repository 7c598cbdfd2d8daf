"""A raw MIME walker: a message's parts as the exact octets they occupy, headers read as-is.

IMAP reports sizes and line counts of parts as stored and serves parts byte for byte
(RFC 9051 §6.4.5, §7.5.2), so this walker never decodes or re-serialises anything: each
`Part` holds its raw header block (with the blank line that ends it) and raw body, and
multipart bodies are cut at their boundary delimiter lines, the CRLF before a delimiter
belonging to the delimiter (RFC 2046 §5.1.1). The stdlib `email` parser is not used here
because it gives neither octet offsets nor raw header values (it hands back `Header`
objects for 8-bit fields and keeps comments inside parameters). Header fields are unfolded
(RFC 5322 §2.2.3) and kept as bytes; Content-Type and Content-Disposition are split into a
value and parameters with quoted strings unescaped and comments dropped (RFC 2045 §5.1).
An absent or unreadable Content-Type is text/plain (message/rfc822 inside
multipart/digest), RFC 2045 §5.2, RFC 2046 §5.1.5. Nesting deeper than `MAX_DEPTH` is not
followed: such a part is reported as application/octet-stream, so a hostile message
cannot make the walker recurse without bound. Line ends may be CRLF or bare LF.

Standards: RFC 2045 §5, §6; RFC 2046 §5.1.1, §5.1.5, §5.2.1; RFC 5322 §2.2; RFC 6532 §3.2
(8-bit header values pass through)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_DEPTH = 32
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:")  # RFC 5322 §3.6.8: field name, then ":"
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_TOKEN = re.compile(rb"[!#-'*+\-.0-9A-Z^-~]+")  # RFC 2045 §5.1: token (no tspecials)
_QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)

Params = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Part:
    """One entity: a message or a body part. `children` are a multipart's parts, or the
    encapsulated message of a message/rfc822 (or message/global) part."""

    header: bytes
    body: bytes
    fields: tuple[tuple[bytes, bytes], ...]  # (lower-case name, unfolded value)
    media: tuple[str, str]  # (TYPE, SUBTYPE), upper-cased
    params: Params
    children: tuple[Part, ...] = ()

    def field(self, name: bytes) -> bytes | None:
        """The first field called `name` (lower-case), unfolded; None when absent."""
        return next((value for key, value in self.fields if key == name), None)

    @property
    def multipart(self) -> bool:
        return self.media[0] == "MULTIPART"

    @property
    def encapsulates(self) -> bool:
        """A message/rfc822 or message/global part (RFC 9051 §7.5.2, RFC 6532 §3.7)."""
        return self.media[0] == "MESSAGE" and self.media[1] in ("RFC822", "GLOBAL")


def parse(raw: bytes, default: tuple[str, str] = ("TEXT", "PLAIN"), depth: int = 0) -> Part:
    """The entity `raw`, its parts walked down to `MAX_DEPTH`."""
    header, body = split_header(raw)
    fields = header_fields(header)
    media, params = default, ()
    content_type = next((value for key, value in fields if key == b"content-type"), None)
    if content_type is not None:
        parsed = parse_value(content_type)
        kind, slash, subtype = parsed[0].partition(b"/")
        if slash and _TOKEN.fullmatch(kind) and _TOKEN.fullmatch(subtype):
            media = (kind.decode("ascii").upper(), subtype.decode("ascii").upper())
            params = parsed[1]
    if depth >= MAX_DEPTH and (media[0] == "MULTIPART" or media[0] == "MESSAGE"):
        return Part(header, body, fields, ("APPLICATION", "OCTET-STREAM"), params)
    part = Part(header, body, fields, media, params)
    if part.multipart:
        boundary = next((value for key, value in params if key.lower() == b"boundary"), None)
        if not boundary:  # RFC 2045 §5.2: unusable, so plain text
            return Part(header, body, fields, ("TEXT", "PLAIN"), ())
        inner = ("MESSAGE", "RFC822") if media[1] == "DIGEST" else ("TEXT", "PLAIN")
        parts = tuple(parse(chunk, inner, depth + 1) for chunk in _split(body, boundary))
        return Part(header, body, fields, media, params, parts)
    if part.encapsulates:
        return Part(header, body, fields, media, params, (parse(body, depth=depth + 1),))
    return part


def split_header(raw: bytes) -> tuple[bytes, bytes]:
    """(header with its ending blank line, body); an entity without one is all header."""
    for start in (b"\r\n", b"\n"):
        if raw.startswith(start):  # no header fields at all
            return raw[: len(start)], raw[len(start) :]
    found = _BLANK_LINE.search(raw)
    if found is None:
        return raw, b""
    return raw[: found.end()], raw[found.end() :]


def header_fields(header: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """Each field as (lower-case name, unfolded value), in order; junk lines are skipped."""
    fields = []
    for chunk in raw_fields(header):
        found = _FIELD.match(chunk)
        if found is not None:
            value = _FOLD.sub(b"", chunk[found.end() :]).strip(b" \t\r\n")
            fields.append((found[1].lower(), value))
    return tuple(fields)


def raw_fields(header: bytes) -> list[bytes]:
    """The header's fields as raw octets, continuation lines and line ends included."""
    fields: list[bytes] = []
    for line in header.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        elif line.strip(b"\r\n"):
            fields.append(line)
    return fields


def parse_value(value: bytes) -> tuple[bytes, Params]:
    """A Content-Type or Content-Disposition value: (main value, parameters)."""
    pieces = _semicolon_split(strip_comments(value))
    params = []
    for piece in pieces[1:]:
        name, equals, rest = piece.partition(b"=")
        name, rest = name.strip(b" \t"), rest.strip(b" \t")
        if not equals or _TOKEN.fullmatch(name) is None:
            continue  # RFC 2045 §5.1: not a parameter; skip it rather than fail the part
        quoted = _QUOTED.fullmatch(rest)
        params.append((name, _ESCAPE.sub(rb"\1", quoted[1]) if quoted else rest))
    return pieces[0].strip(b" \t"), tuple(params)


def strip_comments(value: bytes) -> bytes:
    """`value` without RFC 5322 §3.2.2 comments (quoted strings are left alone)."""
    out = bytearray()
    depth = 0
    quoted = escaped = False
    for byte in value:
        char = bytes((byte,))
        if escaped:
            escaped = False
        elif char == b"\\" and (quoted or depth):
            escaped = True
        elif depth == 0 and char == b'"':
            quoted = not quoted
        elif not quoted and char == b"(":
            depth += 1
            continue
        elif not quoted and depth and char == b")":
            depth -= 1
            continue
        if depth == 0:
            out += char
    return bytes(out)


def _semicolon_split(value: bytes) -> list[bytes]:
    pieces, start, quoted, escaped = [], 0, False, False
    for index, byte in enumerate(value):
        if escaped:
            escaped = False
        elif byte == 0x5C and quoted:
            escaped = True
        elif byte == 0x22:
            quoted = not quoted
        elif byte == 0x3B and not quoted:
            pieces.append(value[start:index])
            start = index + 1
    pieces.append(value[start:])
    return pieces


def _split(body: bytes, boundary: bytes) -> list[bytes]:
    """The body parts between delimiter lines (RFC 2046 §5.1.1); preamble and epilogue go.

    A multipart without any delimiter still has one (empty) part, as IMAP's grammar needs.
    """
    delimiter = re.compile(rb"^--" + re.escape(boundary) + rb"(--)?[ \t]*\r?$", re.MULTILINE)
    parts: list[bytes] = []
    start = None
    for found in delimiter.finditer(body):
        if start is not None:
            end = found.start() - 1  # the LF before the delimiter line ...
            if end > 0 and body[end - 1 : end] == b"\r":
                end -= 1  # ... and its CR belong to the delimiter
            parts.append(body[start : max(end, start)])
        if found[1]:  # the close delimiter
            start = None
            break
        start = found.end() + 1
    if start is not None:
        parts.append(body[start:])
    return parts or [b""]
