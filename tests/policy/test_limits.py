"""Per-client connection caps and command/message rates, on a fake clock."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from postoffice.policy.limits import DEFAULT_MAX_ENTRIES, ClientLimits, RecentTable, client_key
from postoffice.testing.clock import FakeClock


def limits(
    clock: FakeClock,
    *,
    max_per_ip: int = 3,
    commands_per_minute: int = 60,
    messages_per_minute: int = 6,
    exempt: Iterable[str] = (),
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> ClientLimits:
    return ClientLimits(
        clock,
        max_per_ip=max_per_ip,
        commands_per_minute=commands_per_minute,
        messages_per_minute=messages_per_minute,
        exempt=exempt,
        max_entries=max_entries,
    )


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("unix:/run/postoffice.sock", "unix:/run/postoffice.sock"),
    ],
)
def test_client_key(ip: str, key: str) -> None:
    assert client_key(ip) == key


def test_connections_are_capped_per_ip() -> None:
    guard = limits(FakeClock())
    assert [guard.connection_opened("192.0.2.1") for _ in range(4)] == [True, True, True, False]
    assert guard.connection_opened("192.0.2.2")  # another client is not affected
    guard.connection_closed("192.0.2.1")
    assert guard.connection_opened("192.0.2.1")
    assert not guard.connection_opened("192.0.2.1")


def test_closing_every_connection_forgets_the_client() -> None:
    guard = limits(FakeClock())
    for _ in range(3):
        guard.connection_opened("192.0.2.1")
    for _ in range(3):
        guard.connection_closed("192.0.2.1")
    guard.connection_closed("192.0.2.1")  # one close too many does no harm
    assert guard.entries == 0
    assert [guard.connection_opened("192.0.2.1") for _ in range(4)] == [True, True, True, False]


def test_ipv6_clients_count_per_slash_64() -> None:
    guard = limits(FakeClock())
    opened = [guard.connection_opened(f"2001:db8:0:1::{n:x}") for n in range(1, 5)]
    assert opened == [True, True, True, False]
    assert guard.connection_opened("2001:db8:0:2::1")  # the next /64 is another client
    guard.connection_closed("2001:db8:0:1::ffff")  # any address of the /64 releases a slot
    assert guard.connection_opened("2001:db8:0:1::9")


def test_ipv4_mapped_address_is_the_ipv4_client() -> None:
    guard = limits(FakeClock(), max_per_ip=1)
    assert guard.connection_opened("192.0.2.9")
    assert not guard.connection_opened("::ffff:192.0.2.9")


def test_commands_are_rate_limited_and_refill_over_time() -> None:
    clock = FakeClock()
    guard = limits(clock)
    assert all(guard.command("192.0.2.1") for _ in range(60))  # a minute's burst
    assert not guard.command("192.0.2.1")
    assert guard.command("192.0.2.2")
    clock.advance(1.0)  # 60 a minute: one more a second
    assert guard.command("192.0.2.1")
    assert not guard.command("192.0.2.1")
    clock.advance(30.0)
    assert sum(guard.command("192.0.2.1") for _ in range(60)) == 30
    clock.advance(3600.0)  # never more than the burst
    assert sum(guard.command("192.0.2.1") for _ in range(100)) == 60


def test_messages_are_rate_limited_separately_from_commands() -> None:
    clock = FakeClock()
    guard = limits(clock)
    assert [guard.message("192.0.2.1") for _ in range(7)] == [True] * 6 + [False]
    assert guard.command("192.0.2.1")
    clock.advance(10.0)  # 6 a minute: one every 10 seconds
    assert guard.message("192.0.2.1")
    assert not guard.message("192.0.2.1")


def test_exempt_networks_are_never_limited() -> None:
    guard = limits(FakeClock(), max_per_ip=1, exempt=["127.0.0.0/8", "2001:db8::/32"])
    assert all(guard.connection_opened("127.0.0.1") for _ in range(10))
    assert all(guard.command("2001:db8::1") for _ in range(1000))
    assert all(guard.message("::ffff:127.0.0.1") for _ in range(100))
    guard.connection_closed("127.0.0.1")
    assert guard.entries == 0


def test_loopback_is_limited_unless_exempt() -> None:
    guard = limits(FakeClock(), max_per_ip=1)
    assert guard.connection_opened("127.0.0.1")
    assert not guard.connection_opened("127.0.0.1")


def test_exempt_address_does_not_release_its_slash_64_neighbours() -> None:
    guard = limits(FakeClock(), max_per_ip=1, exempt=["2001:db8::1/128"])
    assert guard.connection_opened("2001:db8::2")
    guard.connection_closed("2001:db8::1")  # exempt: never counted, so releases nothing
    assert not guard.connection_opened("2001:db8::3")


def test_zero_turns_a_limit_off() -> None:
    guard = limits(FakeClock(), max_per_ip=0, commands_per_minute=0, messages_per_minute=0)
    assert all(guard.connection_opened("192.0.2.1") for _ in range(1000))
    assert all(guard.command("192.0.2.1") and guard.message("192.0.2.1") for _ in range(1000))


def test_idle_rate_entries_expire() -> None:
    clock = FakeClock()
    guard = limits(clock)
    for n in range(100):
        guard.command(f"192.0.2.{n}")
    assert guard.entries == 100
    clock.advance(61.0)
    guard.command("198.51.100.1")
    assert guard.entries == 1


def test_memory_is_bounded_under_100k_distinct_clients() -> None:
    clock = FakeClock()
    guard = limits(clock, max_entries=1000)
    for n in range(100_000):
        ip = f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"
        guard.command(ip)
        guard.message(ip)
        clock.advance(0.0001)
    assert guard.entries <= 2 * 1000


def test_memory_is_bounded_under_100k_ipv6_addresses_of_one_slash_64() -> None:
    guard = limits(FakeClock(), commands_per_minute=100_000)
    for n in range(100_000):
        guard.command(f"2001:db8::{n >> 16:x}:{n & 0xFFFF:x}")
    assert guard.entries == 1
    assert not guard.command("2001:db8::1")


def test_recent_table_drops_least_recently_used_first() -> None:
    clock = FakeClock()
    table: RecentTable[int] = RecentTable(clock, idle=60.0, max_entries=2)
    table.use("a", lambda: 1)
    table.use("b", lambda: 2)
    table.use("a", lambda: 0)  # "a" is used again: "b" is now the oldest
    table.use("c", lambda: 3)
    assert (table.get("a"), table.get("b"), table.get("c")) == (1, None, 3)
    clock.advance(60.0)
    assert table.get("a") is None
