"""RecipientPolicy: the RCPT decision and its short-lived cache of directory answers."""

from __future__ import annotations

from dataclasses import dataclass, field

from postoffice.mail.address import Address
from postoffice.policy.recipients import (
    ACCEPT_LOCAL,
    ACCEPT_RELAY,
    NO_SUCH_USER,
    RELAY_DENIED,
    RecipientPolicy,
)
from postoffice.storage.lookup_cache import CACHE_TTL


@dataclass
class FakeDirectory:
    users: set[str] = field(default_factory=set)
    queries: int = 0
    changes: int = 0  # what `version` says: bumped by `add`, not by editing `users`

    def version(self) -> int:
        return self.changes

    def add(self, user: str) -> None:
        self.users.add(user)
        self.changes += 1

    def is_local_domain(self, domain: str) -> bool:
        self.queries += 1
        return domain == "example.test"

    def resolve(self, address: str) -> object | None:
        self.queries += 1
        return object() if address in self.users else None


class Ticker:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def policy(directory: FakeDirectory, ticker: Ticker) -> RecipientPolicy:
    return RecipientPolicy(
        directory,  # type: ignore[arg-type]
        ["192.0.2.0/24"],
        "example.test",
        monotonic=ticker,
    )


def test_decisions() -> None:
    rules = policy(FakeDirectory({"bob@example.test"}), Ticker())
    assert rules.check(Address("bob", "example.test"), "198.51.100.1").reply == ACCEPT_LOCAL
    assert rules.check(Address("eve", "example.test"), "198.51.100.1").reply == NO_SUCH_USER
    assert rules.check(Address("x", "elsewhere.test"), "192.0.2.9").reply == ACCEPT_RELAY
    assert rules.check(Address("x", "elsewhere.test"), "198.51.100.1").reply == RELAY_DENIED


def test_answers_are_reused_within_the_ttl_only() -> None:
    directory, ticker = FakeDirectory({"bob@example.test"}), Ticker()
    rules = policy(directory, ticker)
    bob = Address("bob", "example.test")
    rules.check(bob, "198.51.100.1")
    queries = directory.queries
    for _ in range(5):
        assert rules.check(bob, "198.51.100.1").accepted
    assert directory.queries == queries
    ticker.now += CACHE_TTL
    assert rules.check(bob, "198.51.100.1").accepted
    assert directory.queries > queries


def test_a_new_user_is_accepted_once_the_refusal_expires() -> None:
    directory, ticker = FakeDirectory(), Ticker()
    rules = policy(directory, ticker)
    carol = Address("carol", "example.test")
    assert rules.check(carol, "198.51.100.1").reply == NO_SUCH_USER
    directory.users.add("carol@example.test")
    ticker.now += CACHE_TTL - 0.1
    assert rules.check(carol, "198.51.100.1").reply == NO_SUCH_USER
    ticker.now += 0.1
    assert rules.check(carol, "198.51.100.1").reply == ACCEPT_LOCAL


def test_a_change_to_the_directory_is_seen_by_the_next_rcpt() -> None:
    directory, ticker = FakeDirectory(), Ticker()
    rules = policy(directory, ticker)
    carol = Address("carol", "example.test")
    assert rules.check(carol, "198.51.100.1").reply == NO_SUCH_USER
    directory.add("carol@example.test")
    assert rules.check(carol, "198.51.100.1").reply == ACCEPT_LOCAL


def test_relay_is_decided_per_client_even_when_cached() -> None:
    rules = policy(FakeDirectory(), Ticker())
    other = Address("x", "elsewhere.test")
    assert rules.check(other, "192.0.2.9").accepted
    assert not rules.check(other, "198.51.100.1").accepted
