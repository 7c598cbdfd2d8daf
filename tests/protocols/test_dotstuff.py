"""The shared dot-stuffing encoder: SMTP DATA bodies and POP3 multi-line responses alike."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.protocols._dotstuff import DotEncoder, stuff_lines
from postoffice.protocols.smtp.client import DataEncoder


def encode(*chunks: bytes) -> bytes:
    encoder = DotEncoder()
    return b"".join(encoder.feed(chunk) for chunk in chunks) + encoder.finish()


def unstuff(wire: bytes) -> bytes:
    """What a client reads: lines up to the lone ".", one leading dot taken off each."""
    lines = wire.split(b"\r\n")
    assert lines[-1] == b"" and lines[-2] == b"."
    assert b"." not in lines[:-2], "the block ends before its end"
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    return b"".join(line.removeprefix(b".") + b"\r\n" for line in lines[:-2])


def normalised(body: bytes) -> bytes:
    text = re.sub(rb"\r\n|\r|\n", b"\r\n", body)
    return text if not text or text.endswith(b"\r\n") else text + b"\r\n"


def test_smtp_uses_the_shared_encoder() -> None:
    assert DataEncoder is DotEncoder


@pytest.mark.parametrize(
    ("lines", "wire"),
    [
        ((), b".\r\n"),
        (("",), b"\r\n.\r\n"),
        (("TOP", "UIDL"), b"TOP\r\nUIDL\r\n.\r\n"),
        ((".", "..", ".x", "x."), b"..\r\n...\r\n..x\r\nx.\r\n.\r\n"),
        (("grüße",), "grüße\r\n.\r\n".encode()),
    ],
)
def test_stuff_lines(lines: tuple[str, ...], wire: bytes) -> None:
    assert stuff_lines(lines) == wire


def test_stuff_lines_cannot_be_tricked_into_ending_early() -> None:
    # callers validate lines, but even a line with a line end in it stays inside the block
    assert unstuff(stuff_lines(["a\r\n.\r\nb"])) == b"a\r\n.\r\nb\r\n"


def test_as_many_bare_crs_as_bare_lfs_are_still_normalised() -> None:
    # every CR and LF is counted once in a CRLF only if none is bare: "\rx\n" has a CR
    # and an LF in that order, but no CRLF
    assert encode(b"a\rx\nb\r\n") == b"a\r\nx\r\nb\r\n.\r\n"
    assert encode(b"\n\r") == b"\r\n\r\n.\r\n"


@pytest.mark.parametrize(
    ("body", "wire"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),  # clean: the quick check passes it as it is
        (b".a\r\n", b"..a\r\n.\r\n"),  # a dot at the very start is not after an LF
        (b"\nx", b"\r\nx\r\n.\r\n"),  # a bare LF first, with nothing before it
        (b"a\r\n.b", b"a\r\n..b\r\n.\r\n"),  # a line starting with a dot
        (b"a\rb", b"a\r\nb\r\n.\r\n"),  # a bare CR
        (b"a\n\r\nb", b"a\r\n\r\nb\r\n.\r\n"),  # a bare LF right before a CRLF
    ],
)
def test_what_the_quick_check_finds(body: bytes, wire: bytes) -> None:
    assert encode(body) == wire


PIECES = [b"\r", b"\n", b"\r\n", b".", b"..", b"a", b" ", b"\xc3\xa9", b"\r\n.\r\n", b"\n.\n"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join),
    st.lists(st.integers(0, 400), max_size=6),
)
def test_any_body_any_split_gives_one_block_of_the_normalised_body(
    body: bytes, cuts: list[int]
) -> None:
    bounds = [0, *sorted(c % (len(body) + 1) for c in cuts), len(body)]
    wire = encode(*(body[a:b] for a, b in itertools.pairwise(bounds)))
    assert wire == encode(body)
    assert unstuff(wire) == normalised(body)
