"""SPF check_host() against the loopback DNS server: RFC 7208 Appendix A, limits, errors."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator

import pytest

from postoffice.dns import DnsPythonResolver
from postoffice.policy.authres import Result
from postoffice.policy.spf import SpfResult, check, expand_macros
from postoffice.testing.dns import DnsServer

# RFC 7208 Appendix A: the example.com and example.org zones.
APPENDIX_A = {
    "example.com": [
        "MX 10 mail-a.example.com.",
        "MX 20 mail-b.example.com.",
        "A 192.0.2.10",
        "A 192.0.2.11",
    ],
    "amy.example.com": ["A 192.0.2.65"],
    "bob.example.com": ["A 192.0.2.66"],
    "mail-a.example.com": ["A 192.0.2.129"],
    "mail-b.example.com": ["A 192.0.2.130"],
    "www.example.com": ["CNAME example.com."],
    "example.org": ["MX 10 mail-c.example.org."],
    "mail-c.example.org": ["A 192.0.2.140"],
    "10.2.0.192.in-addr.arpa": ["PTR example.com."],
    "11.2.0.192.in-addr.arpa": ["PTR example.com."],
    "65.2.0.192.in-addr.arpa": ["PTR amy.example.com."],
    "66.2.0.192.in-addr.arpa": ["PTR bob.example.com."],
    "129.2.0.192.in-addr.arpa": ["PTR mail-a.example.com."],
    "130.2.0.192.in-addr.arpa": ["PTR mail-b.example.com."],
    "140.2.0.192.in-addr.arpa": ["PTR mail-c.example.org."],
    "10.0.0.10.in-addr.arpa": ["PTR bob.example.com."],
}


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer(APPENDIX_A) as dns_server:
        yield dns_server


@pytest.fixture
def resolver(server: DnsServer) -> DnsPythonResolver:
    return DnsPythonResolver([server.address], timeout=0.5)


def spf_record(server: DnsServer, name: str, record: str) -> None:
    """Replace the TXT records of `name`, keeping its other records."""
    kept = [entry for entry in APPENDIX_A.get(name, []) if not entry.startswith("TXT")]
    server.set_records(name, [*kept, f'TXT "{record}"'])


def run_check(
    resolver: DnsPythonResolver,
    ip: str,
    mail_from: str = "user@example.com",
    helo: str = "mx.example.net",
    **kwargs: float,
) -> SpfResult:
    return asyncio.run(check(resolver, ip, mail_from, helo, **kwargs))


APPENDIX_A_1 = [  # RFC 7208 A.1: record, addresses that pass, addresses that fail
    ("v=spf1 +all", ["192.0.2.10", "10.0.0.4"], []),
    ("v=spf1 a -all", ["192.0.2.10", "192.0.2.11"], ["192.0.2.65", "192.0.2.129"]),
    ("v=spf1 a:example.org -all", [], ["192.0.2.10", "192.0.2.140"]),
    ("v=spf1 mx -all", ["192.0.2.129", "192.0.2.130"], ["192.0.2.10", "192.0.2.140"]),
    ("v=spf1 mx:example.org -all", ["192.0.2.140"], ["192.0.2.129"]),
    ("v=spf1 mx mx:example.org -all", ["192.0.2.129", "192.0.2.130", "192.0.2.140"], []),
    (
        "v=spf1 mx/30 mx:example.org/30 -all",
        ["192.0.2.128", "192.0.2.131", "192.0.2.141", "192.0.2.143"],
        ["192.0.2.132", "192.0.2.10"],
    ),
    (
        "v=spf1 ptr -all",
        ["192.0.2.10", "192.0.2.11", "192.0.2.65", "192.0.2.66", "192.0.2.129"],
        # mail-c is in example.org; bob.example.com does not lead back to 10.0.0.10
        ["192.0.2.140", "10.0.0.10", "10.0.0.4"],
    ),
    ("v=spf1 ip4:192.0.2.128/28 -all", ["192.0.2.128", "192.0.2.143"], ["192.0.2.65"]),
]


@pytest.mark.parametrize(("record", "passing", "failing"), APPENDIX_A_1)
def test_appendix_a_1_simple_examples(
    server: DnsServer,
    resolver: DnsPythonResolver,
    record: str,
    passing: list[str],
    failing: list[str],
) -> None:
    spf_record(server, "example.com", record)
    for ip in passing:
        assert run_check(resolver, ip).result is Result.PASS, ip
    for ip in failing:
        assert run_check(resolver, ip).result is Result.FAIL, ip


def test_appendix_a_2_multiple_domains(server: DnsServer, resolver: DnsPythonResolver) -> None:
    spf_record(server, "example.com", "v=spf1 mx -all")
    spf_record(server, "example.org", "v=spf1 mx -all")
    server.add({"la.example.org": ['TXT "v=spf1 redirect=example.org"']})
    server.add({"example.net": ['TXT "v=spf1 include:example.com include:example.org -all"']})
    for ip in ("192.0.2.129", "192.0.2.140"):
        assert run_check(resolver, ip, "user@example.net").result is Result.PASS
    assert run_check(resolver, "192.0.2.10", "user@example.net").result is Result.FAIL
    assert run_check(resolver, "192.0.2.140", "user@la.example.org").result is Result.PASS
    assert run_check(resolver, "192.0.2.129", "user@la.example.org").result is Result.FAIL


def test_appendix_a_3_dnsbl_style(server: DnsServer, resolver: DnsPythonResolver) -> None:
    spf_record(server, "example.com", "v=spf1 -exists:%{ir}.%{l1r+-}._spf.%{d} +all")
    server.add({"10.2.0.192.joe._spf.example.com": ["A 127.0.0.2"]})  # joe is blocked
    assert run_check(resolver, "192.0.2.10", "joe+lists@example.com").result is Result.FAIL
    assert run_check(resolver, "192.0.2.10", "ann-x@example.com").result is Result.PASS
    asked = list(
        dict.fromkeys(q.name for q in server.queries if q.name.endswith("_spf.example.com"))
    )
    assert asked == ["10.2.0.192.joe._spf.example.com", "10.2.0.192.ann._spf.example.com"]


def test_appendix_a_4_multiple_requirements(server: DnsServer, resolver: DnsPythonResolver) -> None:
    spf_record(server, "example.com", "v=spf1 -include:ip4._spf.%{d} -include:ptr._spf.%{d} +all")
    server.add(
        {
            "ip4._spf.example.com": ['TXT "v=spf1 -ip4:192.0.2.0/24 +all"'],
            # As corrected by erratum 6216: a bare "-ptr" would check ptr._spf.example.com.
            "ptr._spf.example.com": ['TXT "v=spf1 -ptr:example.com +all"'],
        }
    )
    assert run_check(resolver, "192.0.2.65").result is Result.PASS  # in the net, and amy.
    assert run_check(resolver, "192.0.2.140").result is Result.FAIL  # in the net, not ours
    assert run_check(resolver, "10.0.0.4").result is Result.FAIL  # outside the net


@pytest.mark.parametrize(
    ("macro", "expansion"),
    [  # RFC 7208 §7.4
        ("%{s}", "strong-bad@email.example.com"),
        ("%{o}", "email.example.com"),
        ("%{d}", "email.example.com"),
        ("%{d4}", "email.example.com"),
        ("%{d3}", "email.example.com"),
        ("%{d2}", "example.com"),
        ("%{d1}", "com"),
        ("%{dr}", "com.example.email"),
        ("%{d2r}", "example.email"),
        ("%{l}", "strong-bad"),
        ("%{l-}", "strong.bad"),
        ("%{lr}", "strong-bad"),
        ("%{lr-}", "bad.strong"),
        ("%{l1r-}", "strong"),
        ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
        ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
        ("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"),
        ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
        ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
        ("%{S}", "strong-bad%40email.example.com"),
        ("a%%b%_c%-d", "a%b c%20d"),
    ],
)
def test_macro_examples(macro: str, expansion: str) -> None:
    values = {
        "sender": "strong-bad@email.example.com",
        "domain": "email.example.com",
        "helo": "mx.example.org",
    }
    assert expand_macros(macro, ip=ipaddress.ip_address("192.0.2.3"), **values) == expansion


def test_macro_ipv6() -> None:
    expanded = expand_macros(
        "%{ir}.%{v}._spf.%{d2}",
        sender="strong-bad@email.example.com",
        domain="email.example.com",
        ip=ipaddress.ip_address("2001:db8::cb01"),
        helo="mx.example.org",
    )
    nibbles = "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
    assert expanded == f"{nibbles}.ip6._spf.example.com"


def test_ipv6_client_and_ip6_mechanism(server: DnsServer, resolver: DnsPythonResolver) -> None:
    spf_record(server, "example.com", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all")
    assert run_check(resolver, "2001:db8::25").result is Result.PASS
    assert run_check(resolver, "2001:db9::25").result is Result.FAIL
    assert run_check(resolver, "::ffff:192.0.2.7").result is Result.PASS  # IPv4-mapped


def test_a_with_dual_cidr_for_ipv6(server: DnsServer, resolver: DnsPythonResolver) -> None:
    server.add({"v6.example.com": ["AAAA 2001:db8::1"]})
    spf_record(server, "example.com", "v=spf1 a:v6.example.com/24//64 -all")
    assert run_check(resolver, "2001:db8::ffff").result is Result.PASS
    assert run_check(resolver, "2001:db8:0:1::1").result is Result.FAIL


def test_no_record_is_none_and_nxdomain_is_none(
    server: DnsServer, resolver: DnsPythonResolver
) -> None:
    assert run_check(resolver, "192.0.2.10").result is Result.NONE
    result = run_check(resolver, "192.0.2.10", "user@nowhere.example")
    assert result.result is Result.NONE and result.domain == "nowhere.example"


def test_two_records_are_a_permerror(server: DnsServer, resolver: DnsPythonResolver) -> None:
    server.set_records("example.com", ['TXT "v=spf1 +all"', 'TXT "v=spf1 -all"'])
    assert run_check(resolver, "192.0.2.10").result is Result.PERMERROR


def test_other_txt_records_are_ignored(server: DnsServer, resolver: DnsPythonResolver) -> None:
    server.set_records("example.com", ['TXT "v=spf10 +all"', 'TXT "hello"', 'TXT "v=spf1 -all"'])
    assert run_check(resolver, "192.0.2.10").result is Result.FAIL


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 a:foo.123 -all",  # domain-spec without a top-level label
        "v=spf1 ip4:192.0.2.300 -all",
        "v=spf1 ip4:192.0.2.0/33 -all",
        "v=spf1 ip6:192.0.2.1 -all",
        "v=spf1 mx/024 -all",  # leading zero in a prefix length
        "v=spf1 foo:bar -all",  # unknown mechanism
        "v=spf1 exists:%{x}.example.com -all",  # unknown macro letter
        "v=spf1 exists:%{l0}.example.com -all",  # zero parts
        "v=spf1 include -all",
        "v=spf1 redirect=a.example.com redirect=b.example.com",
        "v=spf1 -all exp=%{t}.example.com exp=x.example.com",
        "v=spf1 ptr/24 -all",
        "v=spf1 -all foo=%",  # an unknown modifier still needs a valid macro-string
    ],
)
def test_syntax_errors_anywhere_are_permerror(
    server: DnsServer, resolver: DnsPythonResolver, record: str
) -> None:
    spf_record(server, "example.com", record)
    assert run_check(resolver, "192.0.2.10").result is Result.PERMERROR


def test_modifiers_parse(server: DnsServer, resolver: DnsPythonResolver) -> None:
    spf_record(server, "example.com", "v=spf1 -ip4:10.0.0.0/8 exp=explain.%{d} other=%{l} +all")
    assert run_check(resolver, "192.0.2.10").result is Result.PASS
    assert run_check(resolver, "10.1.2.3").result is Result.FAIL


def test_qualifiers(server: DnsServer, resolver: DnsPythonResolver) -> None:
    for record, expected in [
        ("v=spf1 ~all", Result.SOFTFAIL),
        ("v=spf1 ?all", Result.NEUTRAL),
        ("v=spf1 ip4:10.0.0.0/8", Result.NEUTRAL),  # nothing matched, no redirect
        ("v=spf1 ip4:10.0.0.0/8 -all", Result.FAIL),
        ("V=SPF1 IP4:192.0.2.0/24 -ALL", Result.PASS),  # names are case-insensitive
    ]:
        spf_record(server, "example.com", record)
        assert run_check(resolver, "192.0.2.10").result is expected, record


def test_redirect_to_a_domain_without_record_is_permerror(
    server: DnsServer, resolver: DnsPythonResolver
) -> None:
    spf_record(server, "example.com", "v=spf1 redirect=nothing.example.org")
    assert run_check(resolver, "192.0.2.10").result is Result.PERMERROR


def test_include_results(server: DnsServer, resolver: DnsPythonResolver) -> None:
    server.add({"inc.example.org": ['TXT "v=spf1 ip4:192.0.2.10 ~all"']})
    spf_record(server, "example.com", "v=spf1 include:inc.example.org -all")
    assert run_check(resolver, "192.0.2.10").result is Result.PASS
    assert run_check(resolver, "192.0.2.11").result is Result.FAIL  # softfail inside: no match
    spf_record(server, "example.com", "v=spf1 include:none.example.org -all")
    assert run_check(resolver, "192.0.2.10").result is Result.PERMERROR  # §5.2: none


def test_more_than_ten_lookups_is_permerror(server: DnsServer, resolver: DnsPythonResolver) -> None:
    ten = " ".join(f"a:h{n}.example.com" for n in range(10))
    server.add({f"h{n}.example.com": ["A 198.51.100.1"] for n in range(11)})
    spf_record(server, "example.com", f"v=spf1 {ten} ip4:192.0.2.10 -all")
    assert run_check(resolver, "192.0.2.10").result is Result.PASS  # ten lookups are allowed
    spf_record(server, "example.com", f"v=spf1 {ten} a:h10.example.com ip4:192.0.2.10 -all")
    result = run_check(resolver, "192.0.2.10")
    assert result.result is Result.PERMERROR and "10 DNS lookups" in result.reason


def test_include_loop_hits_the_limit(server: DnsServer, resolver: DnsPythonResolver) -> None:
    spf_record(server, "example.com", "v=spf1 include:example.com -all")
    assert run_check(resolver, "192.0.2.10").result is Result.PERMERROR


def test_more_than_two_void_lookups_is_permerror(
    server: DnsServer, resolver: DnsPythonResolver
) -> None:
    two = "a:void1.example.com a:void2.example.com"
    spf_record(server, "example.com", f"v=spf1 {two} ip4:192.0.2.10 -all")
    assert run_check(resolver, "192.0.2.10").result is Result.PASS
    spf_record(server, "example.com", f"v=spf1 {two} mx:void3.example.com ip4:192.0.2.10 -all")
    result = run_check(resolver, "192.0.2.10")
    assert result.result is Result.PERMERROR and "void" in result.reason


def test_more_than_ten_mx_hosts_is_permerror(
    server: DnsServer, resolver: DnsPythonResolver
) -> None:
    server.add({"many.example.org": [f"MX {n} mx{n}.example.org." for n in range(11)]})
    spf_record(server, "example.com", "v=spf1 mx:many.example.org -all")
    assert run_check(resolver, "192.0.2.10").result is Result.PERMERROR


def test_null_mx_matches_nothing(server: DnsServer, resolver: DnsPythonResolver) -> None:
    server.add({"nullmx.example.org": ["MX 0 ."]})
    spf_record(server, "example.com", "v=spf1 mx:nullmx.example.org -all")
    assert run_check(resolver, "192.0.2.10").result is Result.FAIL


def test_dns_timeout_is_temperror_not_fail(server: DnsServer, resolver: DnsPythonResolver) -> None:
    spf_record(server, "example.com", "v=spf1 a:slow.example.org -all")
    server.timeout("slow.example.org")
    result = run_check(resolver, "192.0.2.10")
    assert result.result is Result.TEMPERROR
    server.timeout("example.com")
    assert run_check(resolver, "192.0.2.10").result is Result.TEMPERROR


def test_servfail_is_temperror(server: DnsServer, resolver: DnsPythonResolver) -> None:
    spf_record(server, "example.com", "v=spf1 include:broken.example.org -all")
    server.servfail("broken.example.org")
    assert run_check(resolver, "192.0.2.10").result is Result.TEMPERROR


def test_time_limit_is_temperror(server: DnsServer, resolver: DnsPythonResolver) -> None:
    spf_record(server, "example.com", "v=spf1 a:slow.example.org -all")
    server.timeout("slow.example.org")
    result = run_check(resolver, "192.0.2.10", time_limit=0.1)
    assert result.result is Result.TEMPERROR and "0.1 seconds" in result.reason


def test_null_sender_checks_helo(server: DnsServer, resolver: DnsPythonResolver) -> None:
    spf_record(server, "example.com", "v=spf1 a -all")
    result = run_check(resolver, "192.0.2.10", "", "example.com")
    assert (result.result, result.identity, result.domain) == (Result.PASS, "helo", "example.com")
    assert result.sender == "postmaster@example.com"
    assert str(result.resinfo()) == 'spf=pass reason="example.com: matched a" smtp.helo=example.com'


def test_address_literal_helo_is_none(resolver: DnsPythonResolver) -> None:
    assert run_check(resolver, "192.0.2.10", "", "[192.0.2.10]").result is Result.NONE
    assert run_check(resolver, "192.0.2.10", "", "localhost").result is Result.NONE


def test_resinfo_names_the_mail_from(server: DnsServer, resolver: DnsPythonResolver) -> None:
    spf_record(server, "example.com", "v=spf1 -all")
    info = str(run_check(resolver, "192.0.2.10", 'Odd"User@example.com').resinfo())
    assert info.startswith("spf=fail ")
    assert info.endswith('smtp.mailfrom="Odd\\"User@example.com"')
