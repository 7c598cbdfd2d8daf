"""Per-client limits: concurrent connections, commands and messages per minute.

A client is counted by its IPv4 address, or by the /64 its IPv6 address lies
in (one subscriber or host usually holds a whole /64, so counting single IPv6
addresses would let it multiply every limit by 2**64); an IPv4-mapped IPv6
address counts as the IPv4 address. Connections are counted exactly, and an
entry disappears when its last connection closes, so that table is bounded by
the listener's open sockets. Rates are token buckets that refill a minute's
allowance per minute, so a client may burst that much at once. Buckets live in
a `RecentTable`: idle ones expire once they would be full again, and at most
`max_entries` are kept (least recently used first out), so a client cycling
addresses cannot grow memory; an evicted client merely starts with a full
bucket. Addresses in `exempt` networks are never limited, loopback included
only when listed. A limit of 0 turns that limit off.

Standards: RFC 5321 §4.5.3.2 (a server may close with 421 when overloaded),
RFC 3463 (4.7.0, 4.7.1), RFC 4291 §2.5.4 (IPv6 /64 interface identifiers).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from postoffice.clock import Clock

DEFAULT_MAX_ENTRIES = 100_000
IPV6_PREFIX = 64  # RFC 4291 §2.5.4
_HOST_BITS = 128 - IPV6_PREFIX

V = TypeVar("V")
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(ip: str) -> IpAddress | None:
    """The address, with an IPv4-mapped IPv6 address unwrapped; None if `ip` is not one."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_key(ip: str) -> str:
    """What limits count by: the IPv4 address, or the IPv6 /64 ("2001:db8::/64")."""
    address = parse_ip(ip)
    if address is None:
        return ip  # not an IP (e.g. a UNIX socket peer): counted by its name
    if isinstance(address, ipaddress.IPv6Address):
        network = ipaddress.IPv6Address(int(address) >> _HOST_BITS << _HOST_BITS)
        return f"{network}/{IPV6_PREFIX}"
    return str(address)


class RecentTable(Generic[V]):
    """Per-client state that forgets: idle entries expire, the least recently used go first."""

    def __init__(self, clock: Clock, *, idle: float, max_entries: int) -> None:
        self._clock = clock
        self._idle = idle
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> V | None:
        """The live entry for `key`, without counting this as a use."""
        item = self._entries.get(key)
        if item is None:
            return None
        if item[0] + self._idle <= self._clock.time():
            del self._entries[key]
            return None
        return item[1]

    def use(self, key: str, create: Callable[[], V]) -> V:
        """The entry for `key` (made by `create` if absent or expired), marked used now."""
        now = self._clock.time()
        self._expire(now)
        item = self._entries.pop(key, None)
        value = create() if item is None else item[1]
        self._entries[key] = (now, value)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return value

    def discard(self, key: str) -> None:
        self._entries.pop(key, None)

    def _expire(self, now: float) -> None:
        # Entries are in order of last use, so the stale ones are all at the front.
        while self._entries:
            used, _ = next(iter(self._entries.values()))
            if used + self._idle > now:
                return
            self._entries.popitem(last=False)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class _Rate:
    """A token bucket per client: `per_minute` tokens, refilled at `per_minute` a minute."""

    def __init__(self, clock: Clock, per_minute: int, max_entries: int) -> None:
        self._clock = clock
        self._per_minute = per_minute
        # A bucket idle for a minute is full again, the same as a new one: forget it.
        self._buckets: RecentTable[_Bucket] = RecentTable(clock, idle=60.0, max_entries=max_entries)

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str) -> bool:
        if self._per_minute <= 0:
            return True
        now = self._clock.time()
        bucket = self._buckets.use(key, lambda: _Bucket(float(self._per_minute), now))
        refill = (now - bucket.updated) * self._per_minute / 60.0
        bucket.tokens = min(float(self._per_minute), bucket.tokens + refill)
        bucket.updated = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True


class ClientLimits:
    """Connection and rate limits per client (IPv4 address or IPv6 /64)."""

    def __init__(
        self,
        clock: Clock,
        *,
        max_per_ip: int,
        commands_per_minute: int,
        messages_per_minute: int,
        exempt: Iterable[str] = (),
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self._max_per_ip = max_per_ip
        self._exempt = [ipaddress.ip_network(net, strict=False) for net in exempt]
        self._connections: dict[str, int] = {}
        self._commands = _Rate(clock, commands_per_minute, max_entries)
        self._messages = _Rate(clock, messages_per_minute, max_entries)
        self._keys: dict[str, str | None] = {}  # ip -> _key(ip): every command asks
        self._max_entries = max_entries

    @property
    def entries(self) -> int:
        """How many clients are tracked (for tests and metrics)."""
        return len(self._connections) + len(self._commands) + len(self._messages)

    def connection_opened(self, ip: str) -> bool:
        """Count a new connection; False (answer 421 4.7.0, do not count) when over the cap.

        Call `connection_closed` later only for a connection this accepted.
        """
        key = self._key(ip)
        if key is None:
            return True
        count = self._connections.get(key, 0)
        if self._max_per_ip > 0 and count >= self._max_per_ip:
            return False
        self._connections[key] = count + 1
        return True

    def connection_closed(self, ip: str) -> None:
        key = self._key(ip)
        if key is None or key not in self._connections:
            return
        self._connections[key] -= 1
        if self._connections[key] <= 0:
            del self._connections[key]

    def command(self, ip: str) -> bool:
        """One more command; False means too many this minute (answer 421 4.7.0 and close)."""
        key = self._key(ip)
        return key is None or self._commands.allow(key)

    def message(self, ip: str) -> bool:
        """One more message (MAIL FROM); False means too many this minute (450 4.7.1)."""
        key = self._key(ip)
        return key is None or self._messages.allow(key)

    def _key(self, ip: str) -> str | None:
        """The client key, or None for an exempt address (never counted); remembered."""
        if ip in self._keys:
            return self._keys[ip]
        address = parse_ip(ip)
        exempt = address is not None and any(address in net for net in self._exempt)
        key = None if exempt else client_key(ip)
        if len(self._keys) >= self._max_entries:
            self._keys.clear()
        self._keys[ip] = key
        return key
