"""AUTH brute-force defense: growing delays, lockouts per client and per account (fake clock)."""

from __future__ import annotations

from postoffice.policy.auth_guard import DEFAULT_MAX_ENTRIES, AuthGuard, Lock, Scope
from postoffice.testing.clock import FakeClock

IP = "192.0.2.10"


def guard(
    clock: FakeClock,
    *,
    max_failures_per_ip: int = 5,
    max_failures_per_account: int = 8,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> AuthGuard:
    return AuthGuard(
        clock,
        max_failures_per_ip=max_failures_per_ip,
        max_failures_per_account=max_failures_per_account,
        window=600.0,
        lockout=300.0,
        base_delay=1.0,
        max_delay=8.0,
        max_entries=max_entries,
    )


def fail(g: AuthGuard, ip: str, account: str) -> float:
    """What the adapter does after a wrong password: record, then the delay to sleep."""
    g.record_failure(ip, account)
    return g.delay_after_failure(ip, account)


def test_no_delay_and_no_lock_before_any_failure() -> None:
    g = guard(FakeClock())
    assert g.delay_after_failure(IP, "alice@example.test") == 0.0
    assert g.locked(IP, "alice@example.test") is None


def test_delays_double_and_cap() -> None:
    g = guard(FakeClock(), max_failures_per_ip=100, max_failures_per_account=100)
    delays = [fail(g, IP, "alice@example.test") for _ in range(7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]


def test_delays_fade_with_the_window() -> None:
    clock = FakeClock()
    g = guard(clock)
    fail(g, IP, "alice@example.test")
    clock.advance(300.0)
    assert fail(g, IP, "alice@example.test") == 2.0
    clock.advance(301.0)  # the first failure is now out of the 600 s window
    assert g.delay_after_failure(IP, "alice@example.test") == 1.0


def test_lockout_per_ip_engages_after_n_failures_and_expires() -> None:
    clock = FakeClock()
    g = guard(clock)
    for n in range(5):
        assert g.locked(IP, f"user{n}@example.test") is None
        fail(g, IP, f"user{n}@example.test")  # a different account each time
    lock = g.locked(IP, "anyone@example.test")
    assert lock == Lock(Scope.IP, clock.time() + 300.0)
    assert g.locked("192.0.2.11", "anyone@example.test") is None
    clock.advance(299.0)
    assert g.locked(IP, "user0@example.test") is not None
    clock.advance(1.0)
    assert g.locked(IP, "user0@example.test") is None


def test_lockout_per_account_engages_across_clients_and_expires() -> None:
    clock = FakeClock()
    g = guard(clock)
    for n in range(8):
        fail(g, f"198.51.100.{n}", "alice@example.test")  # a botnet: one try per address
    lock = g.locked("203.0.113.1", "alice@example.test")
    assert lock is not None
    assert lock.scope is Scope.ACCOUNT
    assert g.locked("203.0.113.1", "bob@example.test") is None
    clock.advance(300.0)
    assert g.locked("203.0.113.1", "alice@example.test") is None


def test_the_longer_lock_is_reported() -> None:
    clock = FakeClock()
    g = guard(clock, max_failures_per_ip=3, max_failures_per_account=3)
    for _ in range(3):
        fail(g, IP, "alice@example.test")
    clock.advance(10.0)
    fail(g, "192.0.2.99", "alice@example.test")  # extends the account lock only
    lock = g.locked(IP, "alice@example.test")
    assert lock == Lock(Scope.ACCOUNT, clock.time() + 300.0)


def test_account_names_are_case_insensitive() -> None:
    g = guard(FakeClock())
    for n in range(8):
        fail(g, f"198.51.100.{n}", "Alice@Example.TEST" if n % 2 else "alice@example.test")
    assert g.locked("203.0.113.1", "ALICE@example.test") is not None


def test_unknown_and_existing_accounts_are_treated_alike() -> None:
    """The guard never asks the directory: the same failures give the same answers."""
    clocks = FakeClock(), FakeClock()
    guards = guard(clocks[0]), guard(clocks[1])
    trails = [
        [(fail(g, f"198.51.100.{n}", name), g.locked(IP, name)) for n in range(10)]
        for g, name in zip(guards, ("alice@example.test", "nobody@example.test"), strict=True)
    ]
    assert trails[0] == trails[1]


def test_success_forgives_only_this_clients_failures_for_this_account() -> None:
    clock = FakeClock()
    g = guard(clock)
    for _ in range(3):
        fail(g, IP, "alice@example.test")  # alice mistypes three times
    g.record_success(IP, "alice@example.test")
    assert g.delay_after_failure(IP, "alice@example.test") == 0.0
    assert g.entries == 0
    assert [fail(g, IP, "alice@example.test") for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]


def test_success_on_an_own_account_does_not_launder_an_attack() -> None:
    clock = FakeClock()
    g = guard(clock)
    for n in range(4):
        fail(g, IP, f"victim{n}@example.test")
    g.record_success(IP, "attacker@example.test")
    fail(g, IP, "victim4@example.test")
    assert g.locked(IP, "victim5@example.test") == Lock(Scope.IP, clock.time() + 300.0)


def test_success_keeps_other_clients_failures_on_the_account() -> None:
    g = guard(FakeClock())
    for n in range(7):
        fail(g, f"198.51.100.{n}", "alice@example.test")
    g.record_success(IP, "alice@example.test")
    fail(g, "198.51.100.7", "alice@example.test")
    assert g.locked(IP, "alice@example.test") is not None


def test_ipv6_failures_count_per_slash_64() -> None:
    g = guard(FakeClock())
    for n in range(5):
        fail(g, f"2001:db8:0:1::{n + 1:x}", f"user{n}@example.test")
    assert g.locked("2001:db8:0:1:ffff::1", "someone@example.test") is not None
    assert g.locked("2001:db8:0:2::1", "someone@example.test") is None


def test_zero_threshold_turns_that_lockout_off() -> None:
    g = guard(FakeClock(), max_failures_per_ip=0, max_failures_per_account=0)
    for _ in range(50):
        fail(g, IP, "alice@example.test")
    assert g.locked(IP, "alice@example.test") is None
    assert g.delay_after_failure(IP, "alice@example.test") == 8.0


def test_stale_entries_expire() -> None:
    clock = FakeClock()
    g = guard(clock)
    for n in range(100):
        fail(g, f"198.51.100.{n}", f"user{n}@example.test")
    assert g.entries == 200
    clock.advance(600.0)  # max(window, lockout)
    fail(g, IP, "alice@example.test")
    assert g.entries == 2


def test_memory_is_bounded_under_100k_distinct_clients_and_accounts() -> None:
    clock = FakeClock()
    g = guard(clock, max_entries=1000)
    for n in range(100_000):
        fail(g, f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}", f"user{n}@example.test")
    assert g.entries <= 2 * 1000
