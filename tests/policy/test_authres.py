"""Authentication-Results: building our field, quoting, and removing forged ones."""

from __future__ import annotations

import pytest

from postoffice.policy.authres import Resinfo, Result, header, strip_forged


def test_header_one_result_per_line() -> None:
    field = header(
        "mx.b.test",
        [
            Resinfo("spf", Result.PASS, (("smtp.mailfrom", "alice@a.test"),)),
            Resinfo("dkim", Result.FAIL, (("header.d", "a.test"),), reason="body hash mismatch"),
            Resinfo("dmarc", Result.PASS, (("header.from", "a.test"),), comment="p=reject"),
        ],
    )
    assert field == (
        b"Authentication-Results: mx.b.test;\r\n"
        b"\tspf=pass smtp.mailfrom=alice@a.test;\r\n"
        b'\tdkim=fail reason="body hash mismatch" header.d=a.test;\r\n'
        b"\tdmarc=pass (p=reject) header.from=a.test\r\n"
    )


def test_header_without_results_says_none() -> None:
    assert header("mx.b.test", []) == b"Authentication-Results: mx.b.test; none\r\n"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("a.test", "a.test"),
        ("user+tag@a.test", "user+tag@a.test"),
        ('"odd user"@a.test', '"\\"odd user\\"@a.test"'),
        ("x;y=z", '"x;y=z"'),
        ("line\r\nbreak", '"line  break"'),  # no CR or LF ever reaches the header
        ("abc/def+", '"abc/def+"'),
    ],
)
def test_values_are_quoted_when_needed(value: str, written: str) -> None:
    info = Resinfo("spf", Result.NONE, (("smtp.mailfrom", value),))
    assert str(info) == f"spf=none smtp.mailfrom={written}"


def test_comments_cannot_close_early() -> None:
    assert str(Resinfo("dmarc", Result.FAIL, comment="a) b (c\\")) == "dmarc=fail (a b c)"


MESSAGE = (
    b"Received: from x\r\n"
    b"Authentication-Results: mx.b.test; spf=pass smtp.mailfrom=forged@a.test\r\n"
    b"authentication-results :  (comment (nested)) MX.B.TEST 1;\r\n"
    b"\tdkim=pass header.d=a.test\r\n"
    b'Authentication-Results: "mx.b.test"; dmarc=pass\r\n'
    b"Authentication-Results: other.example; spf=fail\r\n"
    b"Authentication-Results: mx.b.test.evil; spf=pass\r\n"
    b"Subject: hi\r\n"
    b"\r\n"
    b"Authentication-Results: mx.b.test; in the body stays\r\n"
)


def test_strip_forged_removes_only_our_authserv_id() -> None:
    assert strip_forged(MESSAGE, "mx.b.test") == (
        b"Received: from x\r\n"
        b"Authentication-Results: other.example; spf=fail\r\n"
        b"Authentication-Results: mx.b.test.evil; spf=pass\r\n"
        b"Subject: hi\r\n"
        b"\r\n"
        b"Authentication-Results: mx.b.test; in the body stays\r\n"
    )


def test_strip_forged_without_body_or_headers() -> None:
    only_headers = b"Authentication-Results: mx.b.test; none\r\nSubject: x\r\n"
    assert strip_forged(only_headers, "mx.b.test") == b"Subject: x\r\n"
    no_headers = b"\r\nAuthentication-Results: mx.b.test; none\r\n"
    assert strip_forged(no_headers, "mx.b.test") == no_headers


def test_strip_forged_leaves_a_clean_message_alone() -> None:
    clean = b"From: a@a.test\r\nSubject: x\r\n\r\nbody\r\n"
    assert strip_forged(clean, "mx.b.test") == clean
