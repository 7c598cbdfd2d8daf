"""resolve_destination against the loopback DnsServer: order, implicit/null MX, failures."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest

from postoffice.delivery.mx import DestinationError, MxHost, resolve_destination
from postoffice.dns import DnsPythonResolver
from postoffice.testing.dns import DnsServer

RECORDS = {
    "b.test": ["MX 20 mx2.b.test.", "MX 10 mx1.b.test."],
    "mx1.b.test": ["A 127.0.0.5", "AAAA ::1"],
    "mx2.b.test": ["A 127.0.0.6"],
    "equal.test": ["MX 10 one.equal.test.", "MX 10 two.equal.test.", "MX 30 three.equal.test."],
    "one.equal.test": ["A 127.0.0.21"],
    "two.equal.test": ["A 127.0.0.22"],
    "three.equal.test": ["A 127.0.0.23"],
    "implicit.test": ["A 127.0.0.7", "AAAA ::7"],
    "null.test": ["MX 0 ."],
    "alias.test": ["CNAME b.test."],
    "via-cname.test": ["MX 10 mail.via-cname.test."],
    "mail.via-cname.test": ["CNAME host.elsewhere.test."],
    "host.elsewhere.test": ["A 127.0.0.8"],
    "partly.test": ["MX 10 broken.partly.test.", "MX 20 good.partly.test."],
    "good.partly.test": ["A 127.0.0.9"],
    "broken.partly.test": ["A 127.0.0.10"],
    "gone.test": ["MX 10 missing.gone.test.", "MX 20 bare.gone.test."],
    "bare.gone.test": ['TXT "no addresses here"'],
    "mixed.test": ["MX 10 missing.mixed.test.", "MX 20 flaky.mixed.test."],
    "flaky.mixed.test": ["A 127.0.0.11"],
    "nameonly.test": ['TXT "exists, no MX, no address"'],
    "halfnull.test": ["MX 0 .", "MX 10 mx1.b.test."],
}


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer(RECORDS) as dns_server:
        yield dns_server


@pytest.fixture
def resolver(server: DnsServer) -> DnsPythonResolver:
    return DnsPythonResolver([server.address], timeout=0.5)


def destination(resolver: DnsPythonResolver, domain: str, seed: int = 0) -> list[MxHost]:
    return asyncio.run(resolve_destination(resolver, domain, rng=random.Random(seed)))


def failure(resolver: DnsPythonResolver, domain: str) -> DestinationError:
    with pytest.raises(DestinationError) as info:
        destination(resolver, domain)
    return info.value


def test_hosts_in_preference_order_with_every_address(resolver: DnsPythonResolver) -> None:
    assert destination(resolver, "b.test") == [
        MxHost("mx1.b.test", 10, ["127.0.0.5", "::1"]),
        MxHost("mx2.b.test", 20, ["127.0.0.6"]),
    ]


def test_equal_preferences_in_random_order(resolver: DnsPythonResolver) -> None:
    orders = set()
    for seed in range(12):
        hosts = destination(resolver, "equal.test", seed)
        assert hosts == destination(resolver, "equal.test", seed)  # the rng decides
        assert hosts[-1] == MxHost("three.equal.test", 30, ["127.0.0.23"])
        orders.add(tuple(host.name for host in hosts[:2]))
    assert orders == {("one.equal.test", "two.equal.test"), ("two.equal.test", "one.equal.test")}


def test_implicit_mx_is_the_domain_itself(resolver: DnsPythonResolver) -> None:
    assert destination(resolver, "implicit.test") == [
        MxHost("implicit.test", 0, ["127.0.0.7", "::7"])
    ]


def test_null_mx_is_permanent_5_1_10(resolver: DnsPythonResolver) -> None:
    error = failure(resolver, "null.test")
    assert (error.permanent, error.status) == (True, "5.1.10")
    assert "null MX" in error.detail


def test_null_mx_beside_real_hosts_is_skipped(resolver: DnsPythonResolver) -> None:
    assert [host.name for host in destination(resolver, "halfnull.test")] == ["mx1.b.test"]


def test_nxdomain_is_permanent(resolver: DnsPythonResolver) -> None:
    error = failure(resolver, "nowhere.test")
    assert (error.permanent, error.status) == (True, "5.1.2")
    assert error.detail == "nowhere.test: domain does not exist (NXDOMAIN)"


def test_servfail_is_temporary(server: DnsServer, resolver: DnsPythonResolver) -> None:
    server.servfail("b.test")
    error = failure(resolver, "b.test")
    assert (error.permanent, error.status) == (False, "4.4.3")
    assert "SERVFAIL" in error.detail


def test_timeout_is_temporary(server: DnsServer, resolver: DnsPythonResolver) -> None:
    server.timeout("b.test")
    error = failure(resolver, "b.test")
    assert (error.permanent, error.status) == (False, "4.4.3")
    assert "timed out" in error.detail


def test_domain_cname_followed(resolver: DnsPythonResolver) -> None:
    assert [host.name for host in destination(resolver, "alias.test")] == [
        "mx1.b.test",
        "mx2.b.test",
    ]


def test_mx_host_cname_followed(resolver: DnsPythonResolver) -> None:
    assert destination(resolver, "via-cname.test") == [
        MxHost("mail.via-cname.test", 10, ["127.0.0.8"])
    ]


def test_host_with_temporary_failure_is_skipped(
    server: DnsServer, resolver: DnsPythonResolver
) -> None:
    server.servfail("broken.partly.test")
    assert destination(resolver, "partly.test") == [MxHost("good.partly.test", 20, ["127.0.0.9"])]


def test_all_hosts_temporarily_failing_is_temporary(
    server: DnsServer, resolver: DnsPythonResolver
) -> None:
    server.servfail("good.partly.test")
    server.timeout("broken.partly.test")
    error = failure(resolver, "partly.test")
    assert (error.permanent, error.status) == (False, "4.4.3")


def test_temporary_host_failure_outranks_permanent_ones(
    server: DnsServer, resolver: DnsPythonResolver
) -> None:
    server.servfail("flaky.mixed.test")
    error = failure(resolver, "mixed.test")
    assert (error.permanent, error.status) == (False, "4.4.3")
    assert "missing.mixed.test: domain does not exist" in error.detail


def test_no_usable_host_is_permanent(resolver: DnsPythonResolver) -> None:
    error = failure(resolver, "gone.test")
    assert (error.permanent, error.status) == (True, "5.4.4")
    assert error.detail == (
        "gone.test: no usable mail host (missing.gone.test: domain does not exist (NXDOMAIN); "
        "bare.gone.test: no A or AAAA records)"
    )


def test_implicit_mx_without_addresses_is_permanent(resolver: DnsPythonResolver) -> None:
    error = failure(resolver, "nameonly.test")
    assert (error.permanent, error.status) == (True, "5.4.4")


def test_address_literals_skip_dns(server: DnsServer, resolver: DnsPythonResolver) -> None:
    assert destination(resolver, "[127.0.0.3]") == [MxHost("[127.0.0.3]", 0, ["127.0.0.3"])]
    assert destination(resolver, "[IPv6:0::1]") == [MxHost("[IPv6:0::1]", 0, ["::1"])]
    assert server.queries == []


@pytest.mark.parametrize("literal", ["[127.0.0.300]", "[::1]", "[IPv6:127.0.0.1]", "[127.0.0.1"])
def test_bad_address_literal_is_permanent(resolver: DnsPythonResolver, literal: str) -> None:
    error = failure(resolver, literal)
    assert (error.permanent, error.status) == (True, "5.1.2")


def test_large_mx_answer_over_tcp(server: DnsServer, resolver: DnsPythonResolver) -> None:
    names = [f"host-with-a-long-name-{n}.big.test" for n in range(20)]
    server.set_records("big.test", [f"MX {n} {name}." for n, name in enumerate(names)])
    for name in names:
        server.set_records(name, ["A 127.0.0.30"])
    assert [host.name for host in destination(resolver, "big.test")] == names
    assert {q.transport for q in server.queries if q.name == "big.test"} == {"udp", "tcp"}
