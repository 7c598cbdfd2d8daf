"""ENVELOPE, BODYSTRUCTURE and body sections of real-world-like messages (RFC 9051 §6.4.5,
§7.5.2), checked on the wire form a client would read."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.protocols.imap.fetch import Section
from postoffice.protocols.imap.sections import UnknownEncoding, binary, section
from postoffice.protocols.imap.serializer import write
from postoffice.protocols.imap.structure import bodystructure, envelope


def wire(value: object, utf8: bool = False) -> bytes:
    return write(value, utf8)  # type: ignore[arg-type]


MIXED = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
    b"Subject: afternoon meeting\r\n"
    b"To: mooch@owatagu.siam.example\r\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n'
    b"\r\n"
    b"This is a multi-part message in MIME format.\r\n"
    b"--XX\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Caf=C3=A9 at 3?\r\n"
    b"See the agenda.\r\n"
    b"--XX\r\n"
    b'Content-Type: application/pdf; name="agenda.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b'Content-Disposition: attachment; filename="agenda.pdf"\r\n'
    b"Content-ID: <agenda@Blurdybloop.example>\r\n"
    b"Content-Description: the agenda\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--XX--\r\n"
    b"epilogue\r\n"
)

ALTERNATIVE = (
    b"From: a@example.org\r\n"
    b"To: b@example.org\r\n"
    b"Subject: alt\r\n"
    b"Content-Type: multipart/alternative;\r\n"
    b'\tboundary="=_alt (1)"\r\n'
    b"\r\n"
    b"--=_alt (1)\r\n"
    b'Content-Type: text/plain; charset="us-ascii"; format=flowed\r\n'
    b"\r\n"
    b"plain\r\n"
    b"--=_alt (1)\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Language: en, de\r\n"
    b"Content-Location: http://example.org/x\r\n"
    b"\r\n"
    b"<p>html</p>\r\n"
    b"<p>two</p>\r\n"
    b"--=_alt (1)--\r\n"
)

FORWARDED = (
    b"From: Joe <joe@example.org>\r\n"
    b"To: Undisclosed recipients:;\r\n"
    b'Cc: "Smith, Ann" <ann@example.com>, bob@example.com\r\n'
    b"Subject: Fwd: report\r\n"
    b"In-Reply-To: <1@example.org>\r\n"
    b"Content-Type: multipart/mixed; boundary=b1\r\n"
    b"\r\n"
    b"--b1\r\n"
    b"\r\n"
    b"see below\r\n"
    b"--b1\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: boss@example.net\r\n"
    b"Subject: report\r\n"
    b"Content-Type: multipart/alternative; boundary=b2\r\n"
    b"\r\n"
    b"--b2\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"numbers\r\n"
    b"--b2\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<b>numbers</b>\r\n"
    b"--b2--\r\n"
    b"\r\n"
    b"--b1--\r\n"
)

NON_ASCII = (
    "From: =?UTF-8?Q?Jos=C3=A9?= <jose@example.org>\r\n"
    "To: Zoë Müller <zoe@example.org>\r\n"
    "Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= und Küsse\r\n"
    "Reply-To:\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Grüße\r\n"
).encode()

BARE = b"Subject: no MIME\n\nline one\nline two\n"


def test_envelope_of_a_multipart_message() -> None:
    assert wire(envelope(MIXED)) == (
        b'("Mon, 7 Feb 1994 21:52:25 -0800 (PST)" "afternoon meeting" '
        b'(("Fred Foobar" NIL "foobar" "Blurdybloop.example")) '
        b'(("Fred Foobar" NIL "foobar" "Blurdybloop.example")) '
        b'(("Fred Foobar" NIL "foobar" "Blurdybloop.example")) '
        b'((NIL NIL "mooch" "owatagu.siam.example")) NIL NIL NIL '
        b'"<B27397-0100000@Blurdybloop.example>")'
    )


def test_envelope_groups_and_quoted_names() -> None:
    value = envelope(FORWARDED)
    assert isinstance(value, tuple)
    assert wire(value[5]) == b'((NIL NIL "Undisclosed recipients" NIL) (NIL NIL NIL NIL))'
    assert wire(value[6]) == (
        b'(("Smith, Ann" NIL "ann" "example.com") (NIL NIL "bob" "example.com"))'
    )
    assert value[8] == b"<1@example.org>"


def test_envelope_keeps_header_text_raw() -> None:
    """Encoded words are the client's to decode; 8-bit text goes as a literal in rev1 and
    as a quoted UTF-8 string in UTF-8 mode."""
    value = envelope(NON_ASCII)
    assert isinstance(value, tuple)
    assert value[1] == "=?ISO-8859-1?Q?Gr=FC=DFe?= und Küsse".encode()
    assert wire(value[1]).startswith(b"{")
    assert wire(value[1], utf8=True) == '"=?ISO-8859-1?Q?Gr=FC=DFe?= und Küsse"'.encode()
    assert value[2] == ((b"=?UTF-8?Q?Jos=C3=A9?=", None, b"jose", b"example.org"),)
    assert value[5] == (("Zoë Müller".encode(), None, b"zoe", b"example.org"),)
    assert value[4] == value[2]  # an empty Reply-To defaults to From


def test_envelope_of_a_message_without_headers() -> None:
    assert envelope(b"\r\nbody") == (None,) * 10
    assert envelope(b"") == (None,) * 10


def test_bodystructure_of_multipart_mixed_with_attachment() -> None:
    assert wire(bodystructure(MIXED)) == (
        b'(("TEXT" "PLAIN" ("charset" "utf-8") NIL NIL "QUOTED-PRINTABLE" 32 2 NIL NIL NIL NIL)'
        b' ("APPLICATION" "PDF" ("name" "agenda.pdf") "<agenda@Blurdybloop.example>"'
        b' "the agenda" "BASE64" 12 NIL ("ATTACHMENT" ("filename" "agenda.pdf")) NIL NIL)'
        b' "MIXED" ("boundary" "XX") NIL NIL NIL)'
    )
    assert wire(bodystructure(MIXED, extensible=False)) == (
        b'(("TEXT" "PLAIN" ("charset" "utf-8") NIL NIL "QUOTED-PRINTABLE" 32 2)'
        b' ("APPLICATION" "PDF" ("name" "agenda.pdf") "<agenda@Blurdybloop.example>"'
        b' "the agenda" "BASE64" 12) "MIXED")'
    )


def test_bodystructure_of_multipart_alternative() -> None:
    assert wire(bodystructure(ALTERNATIVE)) == (
        b'(("TEXT" "PLAIN" ("charset" "us-ascii" "format" "flowed") NIL NIL "7BIT" 5 1'
        b" NIL NIL NIL NIL)"
        b' ("TEXT" "HTML" ("charset" "utf-8") NIL NIL "7BIT" 23 2 NIL NIL ("en" "de")'
        b' "http://example.org/x")'
        b' "ALTERNATIVE" ("boundary" "=_alt (1)") NIL NIL NIL)'
    )


def test_bodystructure_with_a_message_inside() -> None:
    structure = bodystructure(FORWARDED, extensible=False)
    assert wire(structure) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 9 1)'
        b' ("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 193'
        b' (NIL "report" ((NIL NIL "boss" "example.net")) ((NIL NIL "boss" "example.net"))'
        b' ((NIL NIL "boss" "example.net")) NIL NIL NIL NIL NIL)'
        b' (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 7 1)'
        b' ("TEXT" "HTML" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 14 1) "ALTERNATIVE") 13)'
        b' "MIXED")'
    )


def test_bodystructure_of_a_plain_message() -> None:
    # RFC 2045 §5.2: no Content-Type is text/plain; charset=us-ascii; LF line ends count too
    assert wire(bodystructure(BARE, extensible=False)) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 18 2)'
    )
    assert wire(bodystructure(NON_ASCII, extensible=False)) == (
        b'("TEXT" "PLAIN" ("charset" "utf-8") NIL NIL "8BIT" 9 1)'
    )


def test_multipart_digest_parts_default_to_messages() -> None:
    digest = (
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n"
        b"--d\r\n\r\nSubject: one\r\n\r\nfirst\r\n--d--\r\n"
    )
    structure = bodystructure(digest, extensible=False)
    assert isinstance(structure, tuple) and structure[-1] == "DIGEST"
    assert structure[0][:2] == ("MESSAGE", "RFC822")  # type: ignore[index]


def test_broken_multiparts_still_have_a_structure() -> None:
    no_boundary = b"Content-Type: multipart/mixed\r\n\r\nbody\r\n"
    assert wire(bodystructure(no_boundary, extensible=False)) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 6 1)'
    )
    no_parts = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nno delimiter here\r\n"
    assert wire(bodystructure(no_parts, extensible=False)) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0) "MIXED")'
    )


def test_nesting_is_bounded() -> None:
    message = b""
    for depth in range(200):
        message = (
            b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (depth, depth)
            + message
            + b"\r\n--b%d--\r\n" % depth
        )
    assert wire(bodystructure(message)).count(b"APPLICATION") == 1


# -- sections -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "spec", "expected"),
    [
        (MIXED, Section(), MIXED),
        (MIXED, Section((), "HEADER"), MIXED[: MIXED.index(b"\r\n\r\n") + 4]),
        (MIXED, Section((), "TEXT"), MIXED[MIXED.index(b"\r\n\r\n") + 4 :]),
        (MIXED, Section((1,)), b"Caf=C3=A9 at 3?\r\nSee the agenda."),
        (
            MIXED,
            Section((1,), "MIME"),
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        ),
        (MIXED, Section((2,)), b"JVBERi0xLjQK"),
        (MIXED, Section((3,)), None),
        (MIXED, Section((1, 1)), None),
        (MIXED, Section((1,), "HEADER"), None),  # HEADER needs a message/rfc822 part
        (
            MIXED,
            Section((), "HEADER.FIELDS", ("from", "SUBJECT")),
            b"From: Fred Foobar <foobar@Blurdybloop.example>\r\nSubject: afternoon meeting\r\n\r\n",
        ),
        (
            ALTERNATIVE,
            Section((), "HEADER.FIELDS.NOT", ("From", "To", "Subject")),
            b'Content-Type: multipart/alternative;\r\n\tboundary="=_alt (1)"\r\n\r\n',
        ),
        (ALTERNATIVE, Section((), "HEADER.FIELDS", ("X-None",)), b"\r\n"),
        (ALTERNATIVE, Section((2,)), b"<p>html</p>\r\n<p>two</p>"),
        (
            FORWARDED,
            Section((2,), "HEADER"),
            b"From: boss@example.net\r\nSubject: report\r\n"
            b"Content-Type: multipart/alternative; boundary=b2\r\n\r\n",
        ),
        (FORWARDED, Section((2, 1)), b"numbers"),
        (FORWARDED, Section((2, 2), "MIME"), b"Content-Type: text/html\r\n\r\n"),
        (
            FORWARDED,
            Section((2,), "TEXT"),
            FORWARDED[FORWARDED.index(b"--b2\r\n") : FORWARDED.index(b"\r\n--b1--")],
        ),
        (FORWARDED, Section((2, 3)), None),
        (BARE, Section((1,)), b"line one\nline two\n"),  # a single part is part 1
        (BARE, Section((2,)), None),
        (BARE, Section((1,), "MIME"), b"Subject: no MIME\n\n"),
    ],
)
def test_sections(message: bytes, spec: Section, expected: bytes | None) -> None:
    assert section(message, spec) == expected


def test_partial_ranges() -> None:
    assert section(MIXED, Section((1,)), (0, 3)) == b"Caf"
    assert section(MIXED, Section((1,)), (4, 5)) == b"C3=A9"
    assert section(MIXED, Section((1,)), (1000, 5)) == b""
    assert section(MIXED, Section((9,)), (0, 5)) is None


def test_binary_undoes_transfer_encodings() -> None:
    assert binary(MIXED, (1,)) == "Café at 3?\r\nSee the agenda.".encode()
    assert binary(MIXED, (2,)) == b"%PDF-1.4\n"
    assert binary(MIXED, (2,), (1, 3)) == b"PDF"
    assert binary(BARE, (1,)) == b"line one\nline two\n"
    assert binary(MIXED, ()) == MIXED
    assert binary(MIXED, (4,)) is None
    odd = b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n"
    with pytest.raises(UnknownEncoding):
        binary(odd, (1,))


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from(
            [
                b"Content-Type: multipart/mixed; boundary=q\r\n",
                b"Content-Type: message/rfc822\r\n",
                b"\r\n",
                b"--q\r\n",
                b"--q--\r\n",
                b"From: a <b@c>, (x) d:;\r\n",
                b"Subject: \xff\r\n",
                b"body\r\n",
                b"\n",
                b'Content-Type: text/plain; a="b\\"; c\r\n',
                b" folded\r\n",
                b"Content-Disposition: inline; filename*=utf-8''%C3%A9\r\n",
                b"To: <>\r\n",
            ]
        )
        | st.binary(max_size=10),
        max_size=30,
    ),
    st.lists(st.integers(1, 4), max_size=3),
)
def test_any_message_gives_writable_structures(pieces: list[bytes], part: list[int]) -> None:
    message = b"".join(pieces)
    for value in (
        envelope(message),
        bodystructure(message),
        bodystructure(message, extensible=False),
    ):
        write(value, False)
        write(value, True)
    for text in (None, "HEADER", "TEXT", "MIME"):
        if text == "MIME" and not part:
            continue
        result = section(message, Section(tuple(part), text))
        assert result is None or isinstance(result, bytes)
    with contextlib.suppress(UnknownEncoding):
        binary(message, tuple(part))
