"""Authentication-Results: the result vocabulary, our header field, and removal of forged ones.

SPF, DKIM and DMARC each report through a `Resinfo` (method, result, reason,
properties); `header` joins them under our authserv-id into one field, one
result per folded line. Values are written as RFC 2045 tokens, as `local@domain`
where RFC 8601 allows that, and as quoted strings otherwise, so text a client
chose (MAIL FROM, HELO, DNS answers) cannot break the field's syntax.
`strip_forged` deletes every `Authentication-Results:` field that claims our
authserv-id (compared case-insensitively, comments skipped), since only this
server may write those; fields of other services are left alone.

Standards: RFC 8601 §2.2 (syntax), §2.3 (authserv-id), §2.7 (result values),
§5 (removing fields that claim our authserv-id), RFC 6008 §4 (header.b),
RFC 2045 §5.1 (value: token or quoted-string), RFC 5322 §2.2.3 (folding).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

FIELD_NAME = "Authentication-Results"
_MAX_REASON = 200  # characters of a reason kept; the rest is not worth a long header line
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")  # RFC 2045 §5.1: no tspecials
_ADDRESS = re.compile(  # RFC 8601 §2.2 pvalue: [local-part "@"] domain-name, dot-atom local part
    r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*@[A-Za-z0-9.\-]+"
)
_FIELD = re.compile(rb"authentication-results[ \t]*:", re.IGNORECASE)


class Result(StrEnum):
    """Result values of the RFC 8601 registry used by SPF, DKIM and DMARC (§2.7)."""

    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"  # SPF only
    NEUTRAL = "neutral"
    NONE = "none"
    POLICY = "policy"  # DKIM: valid, but refused by local policy
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True, slots=True)
class Resinfo:
    """One method's result: `dkim=pass header.d=a.test`, with an optional reason."""

    method: str
    result: Result
    properties: tuple[tuple[str, str], ...] = ()  # ("smtp.mailfrom", "a@b.test"), …
    reason: str = ""
    comment: str = ""  # free text shown in parentheses after the result

    def __str__(self) -> str:
        # RFC 8601 §2.2: methodspec [CFWS reasonspec] [CFWS 1*propspec]
        words = [f"{self.method}={self.result}"]
        if self.comment:
            words.append(f"({_comment(self.comment)})")
        if self.reason:
            words.append(f"reason={_quoted(self.reason[:_MAX_REASON])}")
        words.extend(f"{name}={_pvalue(value)}" for name, value in self.properties)
        return " ".join(words)


def header(authserv_id: str, results: Iterable[Resinfo]) -> bytes:
    """The whole field, CRLF-terminated, ready to prepend to a message."""
    lines = [str(info) for info in results]
    # RFC 8601 §2.2: "authserv-id; none" when no method produced a result.
    body = ";\r\n\t".join([_value(authserv_id), *lines]) if lines else f"{authserv_id}; none"
    return f"{FIELD_NAME}: {body}\r\n".encode()


def strip_forged(message: bytes, authserv_id: str) -> bytes:
    """`message` without the Authentication-Results fields that claim `authserv_id`."""
    if message.startswith(b"\r\n"):
        return message  # no header section at all
    end = message.find(b"\r\n\r\n")
    head, rest = (message, b"") if end < 0 else (message[: end + 2], message[end + 2 :])
    ours = authserv_id.lower()
    kept = [
        field
        for field in _fields(head)
        if not (_FIELD.match(field) and _authserv_id(field) == ours)  # RFC 8601 §5
    ]
    return b"".join(kept) + rest


def _fields(head: bytes) -> list[bytes]:
    """The header fields of `head`, each with its continuation lines and line ends."""
    fields: list[bytes] = []
    for line in re.split(rb"(?<=\n)", head):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:  # RFC 5322 §2.2.3: a folded continuation
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _authserv_id(field: bytes) -> str | None:
    """The lower-cased authserv-id of an Authentication-Results field (None if unreadable)."""
    match = _FIELD.match(field)
    if match is None:
        return None
    text = field[match.end() :].decode("utf-8", "replace")
    text = re.sub(r"\r?\n", "", text)  # unfold
    position = _skip_cfws(text, 0)
    if text.startswith('"', position):  # RFC 2045 quoted-string
        quoted = re.match(r'"((?:[^"\\]|\\.)*)"', text[position:])
        return re.sub(r"\\(.)", r"\1", quoted.group(1)).lower() if quoted else None
    token = re.match(r"[^\s;()]+", text[position:])
    return token.group(0).lower() if token else None


def _skip_cfws(text: str, position: int) -> int:
    """The index after any white space and (nested) comments from `position` (RFC 5322 §3.2.2)."""
    depth = 0
    while position < len(text):
        char = text[position]
        if char == "\\" and depth:
            position += 1
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif not depth and char not in " \t":
            break
        position += 1
    return position


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)


def _quoted(text: str) -> str:
    escaped = _printable(text).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _value(text: str) -> str:
    """RFC 2045 value: a token when possible, else a quoted-string."""
    return text if _TOKEN.fullmatch(text) else _quoted(text)


def _pvalue(text: str) -> str:
    """RFC 8601 §2.2 pvalue: a value, or an address/domain written as it is."""
    return text if _TOKEN.fullmatch(text) or _ADDRESS.fullmatch(text) else _quoted(text)


def _comment(text: str) -> str:
    return re.sub(r"[()\\]", "", _printable(text))
