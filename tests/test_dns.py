"""DnsPythonResolver against the loopback DnsServer fixture: answers, errors, faults, TCP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from postoffice.dns import (
    DnsError,
    DnsPythonResolver,
    DnsTemporaryError,
    NoRecords,
    NoSuchDomain,
)
from postoffice.testing.dns import DnsServer, Query

RECORDS = {
    "b.test": ["MX 10 mx1.b.test.", "MX 20 mx2.b.test.", 'TXT "v=spf1 " "-all"', "A 127.0.0.2"],
    "mx1.b.test": ["A 127.0.0.5", "AAAA ::1"],
    "mx2.b.test": ["CNAME real.c.test."],
    "real.c.test": ["A 127.0.0.6"],
    "v6.b.test": ["AAAA 2001:db8::25"],
    "null.test": ["MX 0 ."],
    "_imaps._tcp.b.test": ["SRV 0 5 993 mx1.b.test."],
    "5.0.0.127.in-addr.arpa": ["PTR mx1.b.test."],
    "deep.under.e.test": ["A 127.0.0.9"],
    "big.test": [f"A 127.0.1.{n}" for n in range(60)],  # ~1 KB: over UDP's 512 bytes
}


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer(RECORDS) as dns_server:
        yield dns_server


@pytest.fixture
def resolver(server: DnsServer) -> DnsPythonResolver:
    return DnsPythonResolver([server.address], timeout=0.5)


def test_mx_in_answer_order(resolver: DnsPythonResolver) -> None:
    assert sorted(asyncio.run(resolver.mx("b.test"))) == [(10, "mx1.b.test"), (20, "mx2.b.test")]


def test_null_mx_host_is_a_dot(resolver: DnsPythonResolver) -> None:
    assert asyncio.run(resolver.mx("null.test")) == [(0, ".")]


def test_addresses_a_then_aaaa(resolver: DnsPythonResolver) -> None:
    assert asyncio.run(resolver.addresses("mx1.b.test")) == ["127.0.0.5", "::1"]


def test_addresses_ipv6_only(resolver: DnsPythonResolver) -> None:
    assert asyncio.run(resolver.addresses("v6.b.test")) == ["2001:db8::25"]


def test_addresses_follow_cname(resolver: DnsPythonResolver) -> None:
    assert asyncio.run(resolver.addresses("mx2.b.test")) == ["127.0.0.6"]


def test_txt_strings_joined(resolver: DnsPythonResolver) -> None:
    assert asyncio.run(resolver.txt("b.test")) == ["v=spf1 -all"]


def test_srv(resolver: DnsPythonResolver) -> None:
    assert asyncio.run(resolver.srv("_imaps._tcp.b.test")) == [(0, 5, 993, "mx1.b.test")]


def test_ptr(resolver: DnsPythonResolver) -> None:
    assert asyncio.run(resolver.ptr("127.0.0.5")) == ["mx1.b.test"]
    with pytest.raises(ValueError):
        asyncio.run(resolver.ptr("not-an-ip"))


def test_nxdomain_is_no_such_domain(resolver: DnsPythonResolver) -> None:
    with pytest.raises(NoSuchDomain) as info:
        asyncio.run(resolver.mx("nowhere.test"))
    assert str(info.value) == "nowhere.test: domain does not exist (NXDOMAIN)"
    with pytest.raises(NoSuchDomain):
        asyncio.run(resolver.addresses("nowhere.test"))


def test_nodata_is_no_records(resolver: DnsPythonResolver) -> None:
    with pytest.raises(NoRecords, match="no MX records"):
        asyncio.run(resolver.mx("mx1.b.test"))
    with pytest.raises(NoRecords, match="no A or AAAA records"):
        asyncio.run(resolver.addresses("null.test"))


def test_empty_non_terminal_exists(resolver: DnsPythonResolver) -> None:
    with pytest.raises(NoRecords):
        asyncio.run(resolver.addresses("under.e.test"))


def test_invalid_name_is_no_such_domain(resolver: DnsPythonResolver) -> None:
    with pytest.raises(NoSuchDomain, match="not a valid domain name"):
        asyncio.run(resolver.mx("a..b.test"))


def test_servfail_is_temporary(server: DnsServer, resolver: DnsPythonResolver) -> None:
    server.servfail("b.test")
    with pytest.raises(DnsTemporaryError, match=r"SERVFAIL"):
        asyncio.run(resolver.mx("b.test"))
    server.clear_faults()
    assert asyncio.run(resolver.mx("b.test"))


def test_timeout_is_temporary_and_bounded(server: DnsServer, resolver: DnsPythonResolver) -> None:
    server.timeout("b.test")
    started = time.monotonic()
    with pytest.raises(DnsTemporaryError, match="timed out"):
        asyncio.run(resolver.mx("b.test"))
    assert time.monotonic() - started < 2.0


def test_addresses_temporary_failure_wins_over_nodata(
    server: DnsServer, resolver: DnsPythonResolver
) -> None:
    server.servfail("mx1.b.test")
    with pytest.raises(DnsTemporaryError):
        asyncio.run(resolver.addresses("mx1.b.test"))


def test_truncated_answer_retried_over_tcp(server: DnsServer, resolver: DnsPythonResolver) -> None:
    addresses = asyncio.run(resolver.addresses("big.test"))
    assert addresses == [f"127.0.1.{n}" for n in range(60)]
    assert Query("big.test", "A", "udp") in server.queries
    assert Query("big.test", "A", "tcp") in server.queries


def test_nameserver_port_honoured() -> None:
    with (
        DnsServer({"b.test": ["A 127.0.0.7"]}) as one,
        DnsServer({"b.test": ["A 127.0.0.8"]}) as two,
    ):
        assert one.port != 53
        assert one.port != two.port
        assert asyncio.run(DnsPythonResolver([one.address]).addresses("b.test")) == ["127.0.0.7"]
        assert asyncio.run(DnsPythonResolver([two.address]).addresses("b.test")) == ["127.0.0.8"]


def test_silent_nameserver_is_temporary_and_next_one_is_asked(server: DnsServer) -> None:
    down = DnsServer().start()
    down.stop()
    with pytest.raises(DnsTemporaryError):
        asyncio.run(DnsPythonResolver([down.address], timeout=0.5).mx("b.test"))
    both = DnsPythonResolver([down.address, server.address], timeout=1.0)
    assert sorted(asyncio.run(both.mx("b.test")))[0] == (10, "mx1.b.test")


def test_dns_errors_share_a_base() -> None:
    for kind in (NoSuchDomain, NoRecords, DnsTemporaryError):
        error = kind("b.test", "reason")
        assert isinstance(error, DnsError)
        assert (error.name, error.reason, str(error)) == ("b.test", "reason", "b.test: reason")


# --- the DnsServer fixture itself -------------------------------------------------------------


def test_zone_text_with_origin_and_relative_names() -> None:
    zone = """
$ORIGIN z.test.
$TTL 60
@      IN MX 5 mail
mail   IN A  127.0.0.11
www    IN CNAME mail
"""
    with DnsServer(zone) as dns_server:
        resolver = DnsPythonResolver([dns_server.address])
        assert asyncio.run(resolver.mx("z.test")) == [(5, "mail.z.test")]
        assert asyncio.run(resolver.addresses("WWW.Z.TEST")) == ["127.0.0.11"]


def test_data_changes_on_the_fly(server: DnsServer, resolver: DnsPythonResolver) -> None:
    server.set_records("b.test", ["MX 1 other.b.test."])
    assert asyncio.run(resolver.mx("b.test")) == [(1, "other.b.test")]
    server.add("new.test. A 127.0.0.12")
    assert asyncio.run(resolver.addresses("new.test")) == ["127.0.0.12"]
    server.set_records("new.test", [])
    with pytest.raises(NoSuchDomain):
        asyncio.run(resolver.addresses("new.test"))


def test_restart_keeps_the_port(server: DnsServer, resolver: DnsPythonResolver) -> None:
    address = server.address
    server.stop()
    with pytest.raises(DnsTemporaryError):
        asyncio.run(resolver.mx("b.test"))
    server.start()
    assert server.address == address
    assert asyncio.run(resolver.mx("b.test"))


def test_address_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = DnsServer().address


def test_garbage_is_ignored(server: DnsServer, resolver: DnsPythonResolver) -> None:
    assert server.respond(b"\x00garbage", "udp") is None
    assert asyncio.run(resolver.mx("null.test")) == [(0, ".")]
