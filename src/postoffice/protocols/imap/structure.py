"""ENVELOPE and BODYSTRUCTURE of a message, as values the serializer writes.

Both are computed from the raw octets through mime.py, so every size is the size of the
part as stored, every line count counts its lines, and every string is the header text as
it stands (8-bit octets included; the serializer sends those as literals outside UTF-8
mode). ENVELOPE is the RFC 9051 §7.5.2 list of date, subject, six address lists, In-Reply-To
and Message-ID; Sender and Reply-To default to From when absent or empty. BODYSTRUCTURE
follows the same section: a basic part is type, subtype, parameters, id, description,
encoding, size; TEXT adds its line count; MESSAGE/RFC822 and MESSAGE/GLOBAL add the
encapsulated message's envelope, body structure and line count; the extension data (MD5,
disposition, language, location) follows unless `extensible` is False, which gives the
older BODY form. A multipart is its parts, then its subtype, then its parameters,
disposition, language and location. TEXT parts without a charset get RFC 2046 §4.1.2's
US-ASCII; a part without Content-Transfer-Encoding is 7BIT (RFC 2045 §6.1).

Standards: RFC 9051 §6.4.5, §7.5.2 (ENVELOPE, BODYSTRUCTURE, BODY); RFC 2045 §5-§6, §8-§9;
RFC 2046 §4.1.2; RFC 2183 (disposition); RFC 3066/RFC 3282 (language); RFC 2557 §4
(location); RFC 1864 (MD5); RFC 6532 §3.7 (message/global)
"""

from __future__ import annotations

from postoffice.protocols.imap import mime
from postoffice.protocols.imap.addresses import parse_addresses
from postoffice.protocols.imap.mime import Part
from postoffice.protocols.imap.serializer import Value

_ADDRESS_FIELDS = (b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc")


def envelope(message: bytes) -> Value:
    """The ENVELOPE of `message` (RFC 9051 §7.5.2)."""
    return _envelope(mime.parse(message))


def bodystructure(message: bytes, *, extensible: bool = True) -> Value:
    """BODYSTRUCTURE of `message`, or with `extensible` False, BODY (RFC 9051 §7.5.2)."""
    return _structure(mime.parse(message), extensible)


def _envelope(part: Part) -> Value:
    addresses = {name: _address_list(part.field(name)) for name in _ADDRESS_FIELDS}
    for fallback in (b"sender", b"reply-to"):  # RFC 9051 §7.5.2: default to From
        if addresses[fallback] is None:
            addresses[fallback] = addresses[b"from"]
    return (
        _nstring(part.field(b"date")),
        _nstring(part.field(b"subject")),
        *(addresses[name] for name in _ADDRESS_FIELDS),
        _nstring(part.field(b"in-reply-to")),
        _nstring(part.field(b"message-id")),
    )


def _address_list(value: bytes | None) -> Value:
    if value is None:
        return None
    return tuple(parse_addresses(value)) or None  # present but empty is NIL too


def _structure(part: Part, extensible: bool) -> Value:
    if part.multipart:
        items: list[Value] = [_structure(child, extensible) for child in part.children]
        items.append(part.media[1])
        if extensible:  # RFC 9051 §9: body-ext-mpart
            items += [_params(part.params), *_disposition_language_location(part)]
        return tuple(items)
    params = part.params
    if part.media[0] == "TEXT" and not any(k.lower() == b"charset" for k, _ in params):
        params = ((b"CHARSET", b"US-ASCII"), *params)  # RFC 2046 §4.1.2
    encoding = part.field(b"content-transfer-encoding")
    items = [
        part.media[0],
        part.media[1],
        _params(params),
        _nstring(part.field(b"content-id")),
        _nstring(part.field(b"content-description")),
        encoding.upper() if encoding else "7BIT",  # RFC 2045 §6.1
        len(part.body),
    ]
    if part.encapsulates:
        inner = part.children[0]
        items += [_envelope(inner), _structure(inner, extensible), _lines(part.body)]
    elif part.media[0] == "TEXT":
        items.append(_lines(part.body))
    if extensible:  # RFC 9051 §9: body-ext-1part
        items += [_nstring(part.field(b"content-md5")), *_disposition_language_location(part)]
    return tuple(items)


def _disposition_language_location(part: Part) -> list[Value]:
    disposition: Value = None
    raw = part.field(b"content-disposition")
    if raw is not None:  # RFC 2183: "(" string SP body-fld-param ")"
        kind, params = mime.parse_value(raw)
        if kind:
            disposition = (kind.upper(), _params(params))
    return [
        disposition,
        _language(part.field(b"content-language")),
        _nstring(part.field(b"content-location")),
    ]


def _language(value: bytes | None) -> Value:
    """RFC 9051 §9 body-fld-lang: one string, or a list when there are several."""
    if value is None:
        return None
    tags = [tag.strip() for tag in mime.strip_comments(value).split(b",") if tag.strip()]
    if not tags:
        return None
    return tags[0] if len(tags) == 1 else tuple(tags)


def _params(params: mime.Params) -> Value:
    """RFC 9051 §9 body-fld-param: (name value ...) or NIL."""
    return tuple(item for pair in params for item in pair) or None


def _nstring(value: bytes | None) -> Value:
    return value if value else None


def _lines(body: bytes) -> int:
    """The number of lines: each line end, plus an unterminated last line."""
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
