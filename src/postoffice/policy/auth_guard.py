"""Brute-force defense for AUTH (SMTP, POP3 and IMAP alike): delays and lockouts.

Failures are remembered per client (IPv4 address or IPv6 /64, see
`policy.limits.client_key`) and per account name, each as the times of its
recent failures within `window`. Every failure is answered after a delay that
doubles with the larger of the two counts (`base_delay * 2**(n-1)`, at most
`max_delay`); reaching `max_failures_per_ip` or `max_failures_per_account`
locks that client or account out for `lockout` seconds, during which the
adapter refuses AUTH without checking the password (a threshold of 0 turns
that lockout off). A success forgives only
the failures this client made for this account (a mistyped password), so a
client cannot launder its count by logging in to an account of its own.
Account names are lower-cased, and a name is tracked whether or not it exists,
so neither delays nor lockouts reveal which accounts exist. Both tables are
`RecentTable`s: entries expire once stale and the least recently used are
dropped beyond `max_entries`, so cycling addresses or names cannot exhaust
memory. The trade-off of any account lockout stands: many clients failing on
one account lock its owner out for `lockout` seconds too.

The adapter's order: `locked()` first (454 4.7.0; close with 421 4.7.0 when a
session keeps trying while locked); after a failed check `record_failure()`,
then sleep `delay_after_failure()` and answer 535 5.7.8; after a good one
`record_success()`.

Standards: RFC 4954 §6 (535 5.7.8, 454 4.7.0), RFC 5321 §4.2.2 (421), RFC 3463.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from enum import Enum

from postoffice.clock import Clock
from postoffice.policy.limits import RecentTable, client_key

# Per table; an entry keeps at most a few dozen failure times: some 70 MB at the very worst.
DEFAULT_MAX_ENTRIES = 10_000
_MAX_EXPONENT = 30  # keeps 2**(n-1) a small float whatever the thresholds are


class Scope(Enum):
    IP = "ip"
    ACCOUNT = "account"


@dataclass(frozen=True, slots=True)
class Lock:
    """A lockout in force: who is locked and until when (clock seconds)."""

    scope: Scope
    until: float


@dataclass(slots=True)
class _Failures:
    """Recent failure times of one client or account, each with the other party's key."""

    recent: deque[tuple[float, str]]
    locked_until: float = 0.0


class AuthGuard:
    """Delays and lockouts after failed authentication, per client and per account."""

    def __init__(
        self,
        clock: Clock,
        *,
        max_failures_per_ip: int = 10,
        max_failures_per_account: int = 20,
        window: float = 900.0,
        lockout: float = 900.0,
        base_delay: float = 1.0,
        max_delay: float = 15.0,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self._clock = clock
        self._max_ip = max_failures_per_ip
        self._max_account = max_failures_per_account
        self._window = window
        self._lockout = lockout
        self._base_delay = base_delay
        self._max_delay = max_delay
        # Enough failure times to reach either threshold and the longest delay, no more.
        self._keep = max(
            max_failures_per_ip, max_failures_per_account, _failures_to_cap(base_delay, max_delay)
        )
        idle = max(window, lockout)  # after that an entry neither counts nor locks
        self._ips: RecentTable[_Failures] = RecentTable(clock, idle=idle, max_entries=max_entries)
        self._accounts: RecentTable[_Failures] = RecentTable(
            clock, idle=idle, max_entries=max_entries
        )
        # SASL exchanges run in worker threads (the password hash is slow) and consult
        # `locked` from there, while the event loop records outcomes: one lock for all.
        self._lock = threading.Lock()

    @property
    def entries(self) -> int:
        """How many clients and accounts are tracked (for tests and metrics)."""
        return len(self._ips) + len(self._accounts)

    def locked(self, ip: str, account: str) -> Lock | None:
        """The lockout that applies to this client or account, the longer one if both."""
        with self._lock:
            return self._locked_unlocked(ip, account)

    def record_failure(self, ip: str, account: str) -> None:
        with self._lock:
            self._record_failure_unlocked(ip, account)

    def record_success(self, ip: str, account: str) -> None:
        """Forget the failures this client made for this account, and only those."""
        with self._lock:
            self._record_success_unlocked(ip, account)

    def delay_after_failure(self, ip: str, account: str) -> float:
        """Seconds to wait before answering the failure just recorded."""
        with self._lock:
            return self._delay_after_failure_unlocked(ip, account)

    def _locked_unlocked(self, ip: str, account: str) -> Lock | None:
        """The lockout that applies to this client or account, the longer one if both."""
        now = self._clock.time()
        locks = [
            Lock(scope, entry.locked_until)
            for scope, entry in (
                (Scope.IP, self._ips.get(client_key(ip))),
                (Scope.ACCOUNT, self._accounts.get(_account_key(account))),
            )
            if entry is not None and entry.locked_until > now
        ]
        return max(locks, key=lambda lock: lock.until, default=None)

    def _record_failure_unlocked(self, ip: str, account: str) -> None:
        client, name = client_key(ip), _account_key(account)
        self._fail(self._ips, client, name, self._max_ip)
        self._fail(self._accounts, name, client, self._max_account)

    def _record_success_unlocked(self, ip: str, account: str) -> None:
        """Forget the failures this client made for this account, and only those."""
        client, name = client_key(ip), _account_key(account)
        self._forgive(self._ips, client, name)
        self._forgive(self._accounts, name, client)

    def _delay_after_failure_unlocked(self, ip: str, account: str) -> float:
        """Seconds to wait before answering the failure just recorded."""
        failures = max(
            self._count(self._ips.get(client_key(ip))),
            self._count(self._accounts.get(_account_key(account))),
        )
        if failures == 0:
            return 0.0
        return min(self._max_delay, self._base_delay * 2.0 ** min(failures - 1, _MAX_EXPONENT))

    def _fail(self, table: RecentTable[_Failures], key: str, other: str, limit: int) -> None:
        now = self._clock.time()
        entry = table.use(key, lambda: _Failures(deque(maxlen=self._keep)))
        entry.recent.append((now, other))
        if limit > 0 and self._count(entry) >= limit:
            entry.locked_until = now + self._lockout

    def _forgive(self, table: RecentTable[_Failures], key: str, other: str) -> None:
        entry = table.get(key)
        if entry is None:
            return
        entry.recent = deque((item for item in entry.recent if item[1] != other), self._keep)
        if not entry.recent and entry.locked_until <= self._clock.time():
            table.discard(key)

    def _count(self, entry: _Failures | None) -> int:
        """Failures within the window (older ones are dropped on the way)."""
        if entry is None:
            return 0
        horizon = self._clock.time() - self._window
        while entry.recent and entry.recent[0][0] <= horizon:
            entry.recent.popleft()
        return len(entry.recent)


def _failures_to_cap(base_delay: float, max_delay: float) -> int:
    """How many failures it takes for `base_delay * 2**(n-1)` to reach `max_delay`."""
    if base_delay <= 0 or max_delay <= base_delay:
        return 1
    return min(_MAX_EXPONENT, math.ceil(math.log2(max_delay / base_delay))) + 1


def _account_key(account: str) -> str:
    """Account names compare case-insensitively, like the directory's addresses."""
    return account.lower()
