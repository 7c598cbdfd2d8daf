"""RFC 5321 §4.1.2 paths: relay tricks, quoting, source routes, literals, UTF-8, limits."""

from __future__ import annotations

import pytest

from postoffice.mail.address import Address, AddressError, parse_address, parse_path

VALID = [
    # (path, local, domain, printed)
    ("<user@Example.COM>", "user", "example.com", "user@example.com"),
    ("<First.Last@a.test>", "First.Last", "a.test", "First.Last@a.test"),
    ("<a+tag@sub.a-b.test>", "a+tag", "sub.a-b.test", "a+tag@sub.a-b.test"),
    # relay tricks are only local-part characters (RFC 5321 §3.6.1, Appendix C)
    ("<user%b.test@a.test>", "user%b.test", "a.test", "user%b.test@a.test"),
    ("<b.test!user@a.test>", "b.test!user", "a.test", "b.test!user@a.test"),
    ('<"user@b.test"@a.test>', "user@b.test", "a.test", '"user@b.test"@a.test'),
    # source routes are accepted and discarded
    ("<@a.test:user@c.test>", "user", "c.test", "user@c.test"),
    ("<@a.test,@b.test:user@c.test>", "user", "c.test", "user@c.test"),
    # quoted local parts, with escapes; a quoted dot-string prints unquoted
    ('<"john"@x.test>', "john", "x.test", "john@x.test"),
    ('<"a b"@x.test>', "a b", "x.test", '"a b"@x.test'),
    ('<"a\\"b"@x.test>', 'a"b', "x.test", '"a\\"b"@x.test'),
    ('<"a\\\\b"@x.test>', "a\\b", "x.test", '"a\\\\b"@x.test'),
    ('<"a>b"@x.test>', "a>b", "x.test", '"a>b"@x.test'),
    ('<".a"@x.test>', ".a", "x.test", '".a"@x.test'),
    ('<""@x.test>', "", "x.test", '""@x.test'),
    # address literals, canonicalised
    ("<a@[192.0.2.1]>", "a", "[192.0.2.1]", "a@[192.0.2.1]"),
    ("<a@[IPv6:2001:DB8:0:0:0:0:0:1]>", "a", "[IPv6:2001:db8::1]", "a@[IPv6:2001:db8::1]"),
    ("<a@[ipv6:::1]>", "a", "[IPv6:::1]", "a@[IPv6:::1]"),
]


@pytest.mark.parametrize(("path", "local", "domain", "printed"), VALID)
def test_valid_paths(path: str, local: str, domain: str, printed: str) -> None:
    address = parse_path(path, utf8=False)
    assert address == Address(local, domain)
    assert str(address) == printed
    assert parse_path(f"<{address}>", utf8=False) == address  # printing round-trips


def test_null_path() -> None:
    assert parse_path("<>", utf8=False) is None


@pytest.mark.parametrize(
    "path",
    [
        "",
        "user@a.test",  # brackets are required
        "<user@a.test",
        "user@a.test>",
        "<<user@a.test>>",
        "<user>",
        "<@a.test>",
        "<user@>",
        "<user@a.test> ",
        "< user@a.test>",
        "<a b@x.test>",
        "<a..b@x.test>",
        "<.a@x.test>",
        "<a.@x.test>",
        "<a@b..test>",
        "<a@.b.test>",
        "<a@b.test.>",
        "<a@-b.test>",
        "<a@b-.test>",
        "<a@b_c.test>",
        "<a@b@c.test>",
        '<"a"b@x.test>',
        '<"a@x.test>',
        '<"a\x01"@x.test>',
        "<a\x00@x.test>",
        "<@a.test,user@c.test>",  # route without ":"
        "<@[1.2.3.4]:user@c.test>",  # route hops are domains, never literals
        "<a@[1.2.3]>",
        "<a@[01.2.3.4]>",
        "<a@[256.0.0.1]>",
        "<a@[IPv6:1.2.3.4]>",
        "<a@[IPv6:fe80::1%eth0]>",
        "<a@[IPv6:1::2::3]>",
        "<a@[tag:content]>",
        "<a@[1.2.3.4>",
        "<\udcff@x.test>",  # a lone surrogate (from surrogateescape) is not UTF-8
    ],
)
def test_invalid_paths(path: str) -> None:
    with pytest.raises(AddressError):
        parse_path(path, utf8=True)


def test_utf8_needs_utf8_mode() -> None:
    for path in ["<jörg@example.test>", "<user@bücher.test>", '<"jö rg"@x.test>']:
        with pytest.raises(AddressError):
            parse_path(path, utf8=False)
    assert parse_path("<jörg@Bücher.TEST>", utf8=True) == Address("jörg", "bücher.test")
    assert str(parse_path('<"jö rg"@x.test>', utf8=True)) == '"jö rg"@x.test'
    assert str(Address("jörg", "x.test")) == "jörg@x.test"


def test_local_part_keeps_case() -> None:
    assert parse_path("<John.Doe@EXAMPLE.test>", utf8=False) == Address("John.Doe", "example.test")


def test_length_limits() -> None:
    assert parse_path(f"<{'a' * 64}@x.test>", utf8=False) is not None
    with pytest.raises(AddressError, match="local part"):
        parse_path(f"<{'a' * 65}@x.test>", utf8=False)
    # octets, not characters: 32 two-octet characters are 64 octets
    assert parse_path(f"<{'é' * 32}@x.test>", utf8=True) is not None
    with pytest.raises(AddressError, match="local part"):
        parse_path(f"<{'é' * 33}@x.test>", utf8=True)
    label = "b" * 63
    assert parse_path(f"<a@{label}.test>", utf8=False) is not None
    with pytest.raises(AddressError, match="label"):
        parse_path(f"<a@{label}b.test>", utf8=False)
    domain = ".".join(["c" * 63] * 3) + "." + "d" * 60  # the longest a path can hold
    assert len(domain) == 252
    assert parse_path(f"<a@{domain}>", utf8=False) is not None  # 256 octets
    with pytest.raises(AddressError, match="path"):
        parse_path(f"<ab@{domain}>", utf8=False)  # 257 octets
    with pytest.raises(AddressError, match="path"):
        parse_path(f"<a@{'x' * 5000}>", utf8=False)


def test_parse_address() -> None:
    assert parse_address("User@Example.test") == Address("User", "example.test")
    assert parse_address("jörg@bücher.test") == Address("jörg", "bücher.test")
    assert parse_address('"a b"@x.test') == Address("a b", "x.test")
    for text in ["", "<a@b.test>", "@a.test:u@b.test", "a", "a@", "a@b.test extra"]:
        with pytest.raises(AddressError):
            parse_address(text)


def test_postmaster_without_domain_prints_bare() -> None:
    assert str(Address("postmaster", "")) == "postmaster"


def test_address_is_frozen() -> None:
    address = Address("a", "b.test")
    with pytest.raises(AttributeError):
        address.local = "c"  # type: ignore[misc]
