"""Logins for every protocol server: lockouts, the SASL exchange and the delay after a failure.

SMTP AUTH, POP3 USER/PASS and AUTH, and IMAP LOGIN and AUTHENTICATE all go through one
`LoginGate`, so brute-force defenses are the same everywhere. The gate wraps the directory's
`Authenticator` to learn which account an exchange is trying (the guard counts failures per
client address and per account) and to refuse a locked account without revealing whether it
exists: a locked account fails exactly like a wrong password, only the reply differs. After a
failure the adapter waits `delay_after_failure` before answering, a delay that grows with
recent failures; unknown users and wrong passwords cost the same (the directory checks a
dummy hash for unknown users).

Standards: RFC 4954 §4 and §6 (535, 454), RFC 5034 §4, RFC 9051 §6.2.2, RFC 4422 §3
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from postoffice.clock import Clock
from postoffice.policy.auth_guard import AuthGuard, Scope
from postoffice.protocols import sasl


@dataclass(slots=True)
class _Watch:
    """The account an exchange tried and whether the guard refused it."""

    account: str = ""
    locked: bool = False


class _GuardedAuthenticator:
    """An Authenticator that notes the account tried and fails locked accounts."""

    def __init__(self, inner: sasl.Authenticator, guard: AuthGuard, ip: str, watch: _Watch):
        self.inner, self.guard, self.ip, self.watch = inner, guard, ip, watch

    def _note(self, username: str) -> bool:
        self.watch.account = username.lower()
        self.watch.locked = self.guard.locked(self.ip, self.watch.account) is not None
        return self.watch.locked

    def check_password(self, username: str, password: str) -> str | None:
        if self._note(username):
            return None
        return self.inner.check_password(username, password)

    def scram_credentials(self, username: str) -> tuple[str, sasl.ScramCredentials] | None:
        if self._note(username):
            return None
        return self.inner.scram_credentials(username)

    def scram_decoy(self, username: str) -> sasl.ScramCredentials:
        return self.inner.scram_decoy(username)


class Login:
    """One authentication attempt by one client (one AUTH command or one USER/PASS pair)."""

    def __init__(self, gate: LoginGate, ip: str, exchange: sasl.ServerExchange, watch: _Watch):
        self.gate, self.ip, self.exchange, self.watch = gate, ip, exchange, watch

    async def start(self, initial_response: str | None) -> sasl.Step:
        # argon2 and PBKDF2 cost ~0.1 s: in a thread, so other sessions are not stalled
        return await asyncio.to_thread(self.exchange.start, initial_response)

    async def respond(self, line: str) -> sasl.Step:
        return await asyncio.to_thread(self.exchange.respond, line)

    @property
    def locked(self) -> bool:
        """The account tried is locked out (answer 454 / [LOGIN-DELAY]-style, not 535)."""
        return self.watch.locked

    async def failed(self) -> None:
        """Count the failure and wait the growing delay before the adapter answers."""
        guard = self.gate.guard
        guard.record_failure(self.ip, self.watch.account)
        await self.gate.clock.sleep(guard.delay_after_failure(self.ip, self.watch.account))

    def succeeded(self, user: str) -> None:
        self.gate.guard.record_success(self.ip, user)


class LoginGate:
    """Hands out `Login`s; one per server, shared by all its sessions."""

    def __init__(self, authenticator: sasl.Authenticator, guard: AuthGuard, clock: Clock):
        self.authenticator = authenticator
        self.guard = guard
        self.clock = clock

    def ip_locked(self, ip: str) -> bool:
        """The client address is locked out before any account is named."""
        lock = self.guard.locked(ip, "")
        return lock is not None and lock.scope is Scope.IP

    def begin(self, ip: str, mechanism: str) -> Login | None:
        """A login with SASL `mechanism`; None when we do not offer it."""
        watch = _Watch()
        guarded = _GuardedAuthenticator(self.authenticator, self.guard, ip, watch)
        exchange = sasl.new_exchange(mechanism, guarded)
        return None if exchange is None else Login(self, ip, exchange, watch)

    def password(self, ip: str) -> Login:
        """A plain user/password login (POP3 USER/PASS, IMAP LOGIN) as a PLAIN exchange."""
        login = self.begin(ip, "PLAIN")
        assert login is not None
        return login
