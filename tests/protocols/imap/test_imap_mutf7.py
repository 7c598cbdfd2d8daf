"""Modified UTF-7 (RFC 3501 §5.1.3): the RFC's examples, round trips, and strict decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.protocols.imap import mutf7

# text without lone surrogates, which no mailbox name can hold
NAMES = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 §5.1.3
        ("Entwürfe", "Entw&APw-rfe"),
        ("&", "&-"),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("Ω&Ω", "&A6k-&-&A6k-"),
        ("😀", "&2D3eAA-"),  # a surrogate pair in UTF-16
        ("", ""),
        ("INBOX", "INBOX"),
    ],
)
def test_examples(text: str, encoded: str) -> None:
    assert mutf7.encode(text) == encoded
    assert mutf7.decode(encoded) == text


@given(NAMES)
def test_round_trip(text: str) -> None:
    encoded = mutf7.encode(text)
    assert encoded.isascii()
    assert mutf7.decode(encoded) == text


@given(NAMES)
def test_encoding_is_canonical(text: str) -> None:
    """What decodes, encodes back to the same spelling: one name, one spelling."""
    encoded = mutf7.encode(text)
    assert mutf7.encode(mutf7.decode(encoded)) == encoded


@given(st.text(alphabet="&-+,AGEUZazé09/~ \t", max_size=20))
def test_decode_either_refuses_or_is_canonical(text: str) -> None:
    try:
        decoded = mutf7.decode(text)
    except ValueError:
        return
    assert mutf7.encode(decoded) == text


@pytest.mark.parametrize(
    "bad",
    [
        "&",  # unterminated
        "&Jjo",  # unterminated
        "&AGE-",  # encodes "a", which stands for itself
        "&ACY-",  # encodes "&", which is written "&-"
        "&U,BTFw-&ZeVnLIqe-",  # two shifts in a row are one run
        "&U,BTFx-",  # non-zero padding bits
        "&AA-",  # half a code unit
        "&2D0-",  # a lone high surrogate
        "&A6k/-",  # "/" is "," in modified base64
        "é",  # 8-bit must be encoded
        "tab\there",  # so must controls
    ],
)
def test_decode_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        mutf7.decode(bad)


def test_encode_refuses_lone_surrogate() -> None:
    with pytest.raises(ValueError):
        mutf7.encode("\ud800")
