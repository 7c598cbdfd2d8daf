"""BODY[section]<partial> and BINARY[part]: the octets a FETCH of part of a message returns.

Parts are numbered as RFC 9051 §6.4.5 says: the parts of a multipart are 1, 2, ...; a
message that is not multipart has one part, 1, its body; a MESSAGE/RFC822 part's numbers
continue into the encapsulated message, whose HEADER and TEXT the part's HEADER and TEXT
name. MIME is a part's own header; HEADER.FIELDS(.NOT) keeps (drops) the named fields and
ends with the blank line. A section that does not exist gives None, which goes out as NIL.
BINARY returns a part's content with its transfer encoding undone (RFC 3516 §4.2); an
encoding we cannot undo raises `UnknownEncoding`, for a NO [UNKNOWN-CTE]. A partial range
`(origin, length)` then cuts the result, an origin past the end giving an empty string.

Standards: RFC 9051 §6.4.5 (section, partial); RFC 3516 §4.1-§4.2 (BINARY, BINARY.SIZE);
RFC 2045 §6 (transfer encodings)
"""

from __future__ import annotations

import binascii

from postoffice.protocols.imap import mime
from postoffice.protocols.imap.fetch import Section
from postoffice.protocols.imap.mime import Part

_IDENTITY = (b"", b"7bit", b"8bit", b"binary")  # RFC 2045 §6.2: no decoding needed


class UnknownEncoding(ValueError):
    """The part's Content-Transfer-Encoding is not one we can undo (RFC 3516 §4.2)."""


def section(message: bytes, spec: Section, partial: tuple[int, int] | None = None) -> bytes | None:
    """The octets BODY[spec]<partial> returns, or None when the section does not exist."""
    if not spec.part:  # BODY[] needs no parse: the most common fetch of all
        data = message if spec.text is None else _text(mime.parse(message), spec)
    else:
        found = _locate(mime.parse(message), spec.part)
        if found is None:
            return None
        node, whole = found
        if spec.text is None:
            data = node.body
        elif spec.text == "MIME":
            data = node.header
        elif whole is not None:  # HEADER, TEXT, HEADER.FIELDS of an encapsulated message
            data = _text(whole, spec)
        else:
            return None
    return _cut(data, partial)


def binary(
    message: bytes, part: tuple[int, ...], partial: tuple[int, int] | None = None
) -> bytes | None:
    """The content BINARY[part]<partial> returns (decoded), or None when it does not exist."""
    if not part:
        return _cut(message, partial)
    found = _locate(mime.parse(message), part)
    if found is None:
        return None
    node = found[0]
    encoding = (node.field(b"content-transfer-encoding") or b"").strip().lower()
    if encoding in _IDENTITY:
        data = node.body
    elif encoding == b"base64":
        data = _base64(node.body)
    elif encoding == b"quoted-printable":
        data = binascii.a2b_qp(node.body)
    else:
        raise UnknownEncoding(encoding.decode("ascii", "replace"))
    return _cut(data, partial)


def _locate(root: Part, path: tuple[int, ...]) -> tuple[Part, Part | None] | None:
    """The part at `path`, and the message it encapsulates (for HEADER and TEXT) if any."""
    node, message_level = root, True  # at a message level, its body is what is numbered
    for number in path:
        if not message_level and node.encapsulates:
            node, message_level = node.children[0], True
        if node.multipart:
            if number > len(node.children):
                return None
            node = node.children[number - 1]
        elif not message_level or number != 1:
            return None  # a leaf has no parts; a single-part message has only part 1
        message_level = False
    return node, node.children[0] if node.encapsulates else None


def _text(entity: Part, spec: Section) -> bytes:
    """HEADER, TEXT or HEADER.FIELDS(.NOT) of a message."""
    if spec.text == "TEXT":
        return entity.body
    if spec.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        names = {name.lower().encode("ascii") for name in spec.fields}
        keep = spec.text == "HEADER.FIELDS"
        chosen = [
            field
            for field in mime.raw_fields(entity.header)
            if (field.split(b":", 1)[0].strip().lower() in names) == keep
        ]
        return b"".join(chosen) + b"\r\n"  # RFC 9051 §6.4.5: with the blank line
    return entity.header


def _base64(data: bytes) -> bytes:
    try:
        return binascii.a2b_base64(data)  # lenient: line breaks and stray characters go
    except binascii.Error:
        raise UnknownEncoding("base64 that cannot be decoded") from None


def _cut(data: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is None:
        return data
    origin, length = partial
    return data[origin : origin + length]
