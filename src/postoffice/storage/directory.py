"""The embedded directory: local domains, users with argon2id passwords, and aliases in SQLite.

One SQLite file (`storage.sqlite`: WAL, versioned schema created on first
open, one connection shared by threads behind a lock) with `synchronous=FULL`,
since writes are rare: an administrator adding a user. Password hashing runs
outside the lock so logins do not queue behind each other. Names follow
the rules in `storage.base` (lower-case, a safe charset for users). `resolve`
tries, in order: the exact address, the address without its `+tag`
(subaddressing), the built-in `postmaster` mailbox, then the domain's catch-all
alias `@domain`; alias targets are expanded again while they are local, at most
10 levels deep and never twice, so loops end. `verify_password` spends one
argon2 verification whether or not the user exists (against a dummy hash), so
its timing does not reveal which addresses are users.

Setting a password also stores SCRAM-SHA-256 keys (salt, iteration count, StoredKey,
ServerKey; schema version 2), never the password. Users from before version 2 have no keys:
SCRAM fails for them like a wrong password until a PLAIN or LOGIN login, which proves the
password and backfills the keys. Unknown addresses get decoy keys derived from a random
secret created with the schema (SQLite's `randomblob`), so they stay the same across restarts.

Standards: RFC 5321 §4.5.1 (postmaster), RFC 5233 (subaddress), RFC 9106 (argon2id),
RFC 5802 §3 + RFC 7677 (SCRAM stored keys).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import sqlite3
import time
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from postoffice.protocols.sasl import MIN_ITERATIONS, SaslError, ScramCredentials
from postoffice.storage.base import (
    Alias,
    DirectoryError,
    Resolution,
    User,
    normalize_domain,
    normalize_user,
)
from postoffice.storage.sqlite import SqliteFile

__all__ = ["DirectoryError", "SqliteDirectory"]

log = logging.getLogger(__name__)

MAX_ALIAS_DEPTH = 10
POSTMASTER = "postmaster"  # RFC 5321 §4.5.1: every domain must accept it

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"  # RFC 5322 §3.2.3 atext
_DOT_ATOM = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")

# Each entry upgrades the schema by one version; user_version counts the applied entries.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE domains (name TEXT PRIMARY KEY, created REAL NOT NULL)",
        "CREATE TABLE users (address TEXT PRIMARY KEY,"
        " domain TEXT NOT NULL REFERENCES domains(name),"
        " password_hash TEXT NOT NULL, created REAL NOT NULL)",
        "CREATE INDEX users_domain ON users(domain)",
        "CREATE TABLE aliases (source TEXT NOT NULL, position INTEGER NOT NULL,"
        " target TEXT NOT NULL, domain TEXT NOT NULL REFERENCES domains(name),"
        " PRIMARY KEY (source, position))",
        "CREATE INDEX aliases_domain ON aliases(domain)",
    ),
    (  # RFC 5802 §3: SCRAM-SHA-256 stored keys; NULL until the password is next proven
        "ALTER TABLE users ADD COLUMN scram_salt BLOB",
        "ALTER TABLE users ADD COLUMN scram_iterations INTEGER",
        "ALTER TABLE users ADD COLUMN scram_stored_key BLOB",
        "ALTER TABLE users ADD COLUMN scram_server_key BLOB",
        "CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
        "INSERT INTO secrets (name, value) VALUES ('scram-decoy', randomblob(32))",
    ),
)

_SET_CREDENTIALS = (
    "UPDATE users SET password_hash = ?, scram_salt = ?, scram_iterations = ?,"
    " scram_stored_key = ?, scram_server_key = ? WHERE address = ?"
)


def _alias_source(source: str) -> str:
    """``name@domain`` (user naming rules) or ``@domain`` for a catch-all, lower-cased."""
    if source.startswith("@"):
        return "@" + normalize_domain(source[1:])
    return normalize_user(source)


def _alias_target(target: str) -> str:
    """Any dot-atom address; the domain is lower-cased, a remote local part kept as given."""
    local, at, domain = target.rpartition("@")
    if not at or len(local) > 64 or not _DOT_ATOM.fullmatch(local):
        raise DirectoryError(f"{target!r} is not a valid alias target")
    return f"{local}@{normalize_domain(domain)}"


class SqliteDirectory:
    """`Directory` backed by one SQLite file; `hasher` is injectable (cheap ones for tests).

    `scram_iterations` applies to passwords set from now on (RFC 7677 §4: at least 4096).
    """

    def __init__(
        self,
        path: Path,
        *,
        hasher: PasswordHasher | None = None,
        scram_iterations: int = MIN_ITERATIONS,
    ) -> None:
        if scram_iterations < MIN_ITERATIONS:
            raise DirectoryError(f"SCRAM needs at least {MIN_ITERATIONS} iterations")
        self._hasher = hasher or PasswordHasher()
        self._scram_iterations = scram_iterations
        # Verified against when the user does not exist, so both paths cost one verification.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = SqliteFile(path, _MIGRATIONS, synchronous="FULL")
        self._files = (str(path), f"{path}-wal")  # what `version` looks at
        with self._file.transaction() as db:
            (self._decoy_secret,) = db.execute(
                "SELECT value FROM secrets WHERE name = 'scram-decoy'"
            ).fetchone()

    def close(self) -> None:
        self._file.close()

    # -- lookups -------------------------------------------------------------

    @staticmethod
    def _has(db: sqlite3.Connection, table: str, column: str, value: str) -> bool:
        query = f"SELECT 1 FROM {table} WHERE {column} = ? LIMIT 1"
        return db.execute(query, (value,)).fetchone() is not None

    @staticmethod
    def _targets(db: sqlite3.Connection, source: str) -> tuple[str, ...]:
        rows = db.execute(
            "SELECT target FROM aliases WHERE source = ? ORDER BY position", (source,)
        ).fetchall()
        return tuple(target for (target,) in rows)

    def _require_domain(self, db: sqlite3.Connection, domain: str) -> None:
        if not self._has(db, "domains", "name", domain):
            raise DirectoryError(f"domain {domain} is not a local domain")

    def version(self) -> tuple[tuple[int, int, int] | None, ...]:
        """The database's and its write-ahead log's size, time stamp and inode: a commit by
        any process (the CLI) grows the log or rewrites it, a checkpoint the database."""
        stamps: list[tuple[int, int, int] | None] = []
        for name in self._files:
            try:
                st = os.stat(name)
            except FileNotFoundError:
                stamps.append(None)
            else:
                stamps.append((st.st_size, st.st_mtime_ns, st.st_ino))
        return tuple(stamps)

    def is_local_domain(self, domain: str) -> bool:
        with self._file.transaction() as db:
            return self._has(db, "domains", "name", domain.lower())

    def _match(
        self, db: sqlite3.Connection, local: str, domain: str
    ) -> tuple[str, tuple[str, ...] | None] | None:
        """(mailbox, None) or (alias source, targets) for a local address; None if unknown."""
        base = local.partition("+")[0]  # RFC 5233: user+detail
        for name in dict.fromkeys(n for n in (local, base) if n):
            address = f"{name}@{domain}"
            if self._has(db, "users", "address", address):
                return address, None
            if targets := self._targets(db, address):
                return address, targets
        if base == POSTMASTER:  # RFC 5321 §4.5.1: a mailbox even without a user
            return f"{POSTMASTER}@{domain}", None
        if targets := self._targets(db, f"@{domain}"):
            return f"@{domain}", targets
        return None

    def _expand(
        self,
        db: sqlite3.Connection,
        address: str,
        depth: int,
        seen: set[str],
        found: Resolution,
    ) -> Resolution:
        local, _, domain = address.rpartition("@")
        domain = domain.lower()
        if not self._has(db, "domains", "name", domain):
            return Resolution(found.local, (*found.remote, f"{local}@{domain}"))
        match = self._match(db, local.lower(), domain)
        if match is None:
            return found
        name, targets = match
        if targets is None:
            return Resolution((*found.local, name), found.remote)
        if name in seen:  # a loop, or a second path to an alias already expanded
            return found
        if depth >= MAX_ALIAS_DEPTH:
            log.warning("alias %s: nested deeper than %d, not expanded", name, MAX_ALIAS_DEPTH)
            return found
        seen.add(name)
        for target in targets:
            found = self._expand(db, target, depth + 1, seen, found)
        return found

    def resolve(self, address: str) -> Resolution | None:
        local, at, domain = address.rpartition("@")
        with self._file.transaction() as db:
            if not at or not local or not self._has(db, "domains", "name", domain.lower()):
                return None
            found = self._expand(db, address, 0, set(), Resolution())
        if not found.local and not found.remote:
            return None
        return Resolution(tuple(dict.fromkeys(found.local)), tuple(dict.fromkeys(found.remote)))

    def owns(self, user_address: str, mail_from: str) -> bool:
        """True when mail to `mail_from` reaches `user_address`.

        That covers the user's own address, its subaddresses, aliases that
        include the user and, when it points at the user, the domain's catch-all.
        """
        resolution = self.resolve(mail_from)
        return resolution is not None and user_address.lower() in resolution.local

    def verify_password(self, address: str, password: str) -> bool:
        try:
            user = normalize_user(address)
        except DirectoryError:
            user = ""
        row = None
        if user:
            with self._file.transaction() as db:
                row = db.execute(
                    "SELECT password_hash, scram_salt IS NULL FROM users WHERE address = ?",
                    (user,),
                ).fetchone()
        stored = self._dummy_hash if row is None else row[0]
        if not self._password_matches(stored, password):
            return False
        if row is None:
            return False
        if row[1] or self._hasher.check_needs_rehash(stored):
            # Upgrade the hash, backfill SCRAM keys; a password SASLprep refuses stays as is.
            with contextlib.suppress(DirectoryError):
                credentials = self._credentials(password)
                with self._file.transaction(write=True) as db:
                    db.execute(
                        _SET_CREDENTIALS + " AND password_hash = ?", (*credentials, user, stored)
                    )
        return True

    def _password_matches(self, stored: str, password: str) -> bool:
        """The argon2 check. argon2id goes through libsodium (what Dovecot uses): the same
        check as argon2-cffi's for about half the CPU (one thread instead of one per lane).
        Hashes libsodium cannot take (other types, over 127 octets) go to argon2-cffi."""
        if stored.startswith("$argon2id$"):
            try:
                return bool(nacl.pwhash.argon2id.verify(stored.encode(), password.encode()))
            except nacl.exceptions.InvalidkeyError:
                return False
            except nacl.exceptions.CryptoError:
                pass
        try:
            return bool(self._hasher.verify(stored, password))
        except (VerificationError, InvalidHashError):
            return False

    def scram_credentials(self, address: str) -> ScramCredentials | None:
        try:
            user = normalize_user(address)
        except DirectoryError:
            return None
        with self._file.transaction() as db:
            row = db.execute(
                "SELECT scram_salt, scram_iterations, scram_stored_key, scram_server_key"
                " FROM users WHERE address = ?",
                (user,),
            ).fetchone()
        return None if row is None or row[0] is None else ScramCredentials(*row)

    def scram_decoy(self, address: str) -> ScramCredentials:
        return ScramCredentials.decoy(self._decoy_secret, address.lower(), self._scram_iterations)

    # -- domains -------------------------------------------------------------

    def add_domain(self, domain: str) -> None:
        name = normalize_domain(domain)
        with self._file.transaction(write=True) as db:
            if self._has(db, "domains", "name", name):
                raise DirectoryError(f"domain {name} already exists")
            db.execute("INSERT INTO domains (name, created) VALUES (?, ?)", (name, time.time()))

    def remove_domain(self, domain: str) -> None:
        name = normalize_domain(domain)
        with self._file.transaction(write=True) as db:
            self._require_domain(db, name)
            (users,) = db.execute("SELECT count(*) FROM users WHERE domain = ?", (name,)).fetchone()
            (aliases,) = db.execute(
                "SELECT count(DISTINCT source) FROM aliases WHERE domain = ?", (name,)
            ).fetchone()
            if users or aliases:
                raise DirectoryError(
                    f"domain {name} still has {users} user(s) and {aliases} alias(es)"
                )
            db.execute("DELETE FROM domains WHERE name = ?", (name,))

    def list_domains(self) -> list[str]:
        with self._file.transaction() as db:
            return [name for (name,) in db.execute("SELECT name FROM domains ORDER BY name")]

    # -- users ---------------------------------------------------------------

    def _credentials(self, password: str) -> tuple[str, bytes, int, bytes, bytes]:
        """The argon2id hash and the SCRAM keys, in `_SET_CREDENTIALS` column order."""
        if not password:
            raise DirectoryError("password must not be empty")
        try:
            scram = ScramCredentials.from_password(password, self._scram_iterations)
        except SaslError as error:  # RFC 4013 §2.3: the message never quotes the password
            raise DirectoryError(f"password refused: it {error}") from None
        password_hash = self._hasher.hash(password)
        return password_hash, scram.salt, scram.iterations, scram.stored_key, scram.server_key

    def add_user(self, address: str, password: str) -> None:
        user = normalize_user(address)
        credentials = self._credentials(password)
        domain = user.partition("@")[2]
        with self._file.transaction(write=True) as db:
            self._require_domain(db, domain)
            if self._has(db, "users", "address", user):
                raise DirectoryError(f"user {user} already exists")
            if self._has(db, "aliases", "source", user):
                raise DirectoryError(f"{user} is already an alias")
            db.execute(
                "INSERT INTO users (address, domain, created, password_hash, scram_salt,"
                " scram_iterations, scram_stored_key, scram_server_key)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (user, domain, time.time(), *credentials),
            )

    def remove_user(self, address: str) -> None:
        user = normalize_user(address)
        with self._file.transaction(write=True) as db:
            if not db.execute("DELETE FROM users WHERE address = ?", (user,)).rowcount:
                raise DirectoryError(f"user {user} does not exist")

    def set_password(self, address: str, password: str) -> None:
        user = normalize_user(address)
        credentials = self._credentials(password)
        with self._file.transaction(write=True) as db:
            if not db.execute(_SET_CREDENTIALS, (*credentials, user)).rowcount:
                raise DirectoryError(f"user {user} does not exist")

    def list_users(self, domain: str | None = None) -> list[User]:
        with self._file.transaction() as db:
            if domain is None:
                rows = db.execute("SELECT address, created FROM users ORDER BY address")
            else:
                rows = db.execute(
                    "SELECT address, created FROM users WHERE domain = ? ORDER BY address",
                    (normalize_domain(domain),),
                )
            return [User(address, created) for address, created in rows]

    # -- aliases -------------------------------------------------------------

    def add_alias(self, source: str, targets: list[str]) -> None:
        name = _alias_source(source)
        wanted = list(dict.fromkeys(_alias_target(target) for target in targets))
        if not wanted:
            raise DirectoryError(f"alias {name} needs at least one target")
        if name in (target.lower() for target in wanted):
            raise DirectoryError(f"alias {name} cannot point to itself")
        domain = name.partition("@")[2]
        with self._file.transaction(write=True) as db:
            self._require_domain(db, domain)
            if self._has(db, "aliases", "source", name):
                raise DirectoryError(f"alias {name} already exists")
            if self._has(db, "users", "address", name):
                raise DirectoryError(f"{name} is already a user")
            db.executemany(
                "INSERT INTO aliases (source, position, target, domain) VALUES (?, ?, ?, ?)",
                [(name, position, target, domain) for position, target in enumerate(wanted)],
            )

    def remove_alias(self, source: str) -> None:
        name = _alias_source(source)
        with self._file.transaction(write=True) as db:
            if not db.execute("DELETE FROM aliases WHERE source = ?", (name,)).rowcount:
                raise DirectoryError(f"alias {name} does not exist")

    def list_aliases(self, domain: str | None = None) -> list[Alias]:
        query = "SELECT source, target FROM aliases"
        params: tuple[str, ...] = ()
        if domain is not None:
            query += " WHERE domain = ?"
            params = (normalize_domain(domain),)
        with self._file.transaction() as db:
            rows = db.execute(query + " ORDER BY source, position", params).fetchall()
        grouped: dict[str, list[str]] = {}
        for source, target in rows:
            grouped.setdefault(source, []).append(target)
        return [Alias(source, tuple(targets)) for source, targets in grouped.items()]
