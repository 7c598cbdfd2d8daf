"""SqliteDirectory: domains, users, passwords, aliases and address resolution on a real file."""

from __future__ import annotations

import re
import sqlite3
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from argon2 import PasswordHasher, Type

from postoffice.policy.auth_backend import DirectoryAuthenticator
from postoffice.protocols.sasl import (
    Challenge,
    Failure,
    ScramClient,
    ScramCredentials,
    Success,
    plain_server,
    scram_sha256_server,
)
from postoffice.storage.base import Alias, Resolution
from postoffice.storage.directory import DirectoryError, SqliteDirectory

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "etc" / "directory.sqlite"


@pytest.fixture
def directory(path: Path) -> Iterator[SqliteDirectory]:
    d = SqliteDirectory(path, hasher=FAST)
    d.add_domain("a.test")
    d.add_domain("b.test")
    d.add_user("alice@a.test", "alice-secret")
    d.add_user("bob@a.test", "bob-secret")
    yield d
    d.close()


def refused(message: str) -> AbstractContextManager[pytest.ExceptionInfo[DirectoryError]]:
    """Expect a DirectoryError whose text contains `message` literally."""
    return pytest.raises(DirectoryError, match=re.escape(message))


def local(*addresses: str) -> Resolution:
    return Resolution(local=addresses)


# -- the file -----------------------------------------------------------------


def test_file_is_created_private_in_wal_mode_with_a_schema_version(
    directory: SqliteDirectory, path: Path
) -> None:
    assert path.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert raw.execute("PRAGMA user_version").fetchone() == (2,)
    raw.close()


def test_data_survives_reopening(directory: SqliteDirectory, path: Path) -> None:
    directory.close()
    again = SqliteDirectory(path, hasher=FAST)
    try:
        assert again.list_domains() == ["a.test", "b.test"]
        assert again.verify_password("alice@a.test", "alice-secret")
    finally:
        again.close()


def test_the_version_moves_with_every_change_by_any_process_and_not_with_reads(
    directory: SqliteDirectory, path: Path
) -> None:
    """What the lookup caches of a running server rely on to see the CLI's changes."""
    cli = SqliteDirectory(path, hasher=FAST)  # another connection, as the CLI's
    changes = [
        lambda: cli.add_user("carol@a.test", "carol-secret"),
        lambda: cli.add_alias("team@a.test", ["alice@a.test"]),
        lambda: cli.remove_alias("team@a.test"),
        lambda: cli.add_alias("team@a.test", ["bob@a.test"]),
        lambda: cli.remove_user("carol@a.test"),
        lambda: cli.add_domain("c.test"),
    ]
    for change in changes:
        before = directory.version()
        directory.resolve("alice@a.test")
        directory.is_local_domain("a.test")
        assert directory.version() == before
        change()
        assert directory.version() != before
    assert directory.resolve("team@a.test") == local("bob@a.test")
    cli.close()


def test_a_newer_schema_is_refused(path: Path) -> None:
    SqliteDirectory(path, hasher=FAST).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(sqlite3.DatabaseError, match="schema version 99"):
        SqliteDirectory(path, hasher=FAST)


# -- domains ------------------------------------------------------------------


def test_domains_are_stored_lower_case_and_compared_case_insensitively(
    directory: SqliteDirectory,
) -> None:
    directory.add_domain("Mixed.Example")
    assert directory.list_domains() == ["a.test", "b.test", "mixed.example"]
    assert directory.is_local_domain("MIXED.example")
    assert not directory.is_local_domain("c.test")
    with refused("domain mixed.example already exists"):
        directory.add_domain("mixed.EXAMPLE")


@pytest.mark.parametrize(
    "domain", ["", "a b.test", "-a.test", "a-.test", "a..test", "a.test.", "ä.test", "a_b.test"]
)
def test_invalid_domains_are_refused(directory: SqliteDirectory, domain: str) -> None:
    with refused("not a valid domain name"):
        directory.add_domain(domain)


def test_a_domain_with_users_is_not_removed(directory: SqliteDirectory) -> None:
    with refused("domain a.test still has 2 user(s)"):
        directory.remove_domain("a.test")
    directory.remove_domain("B.test")
    assert directory.list_domains() == ["a.test"]
    with refused("domain b.test is not a local domain"):
        directory.remove_domain("b.test")


# -- users and passwords ------------------------------------------------------


def test_users_are_stored_lower_case(directory: SqliteDirectory) -> None:
    directory.add_user("Carol.Jones@B.Test", "pw")
    assert [u.address for u in directory.list_users()] == [
        "alice@a.test",
        "bob@a.test",
        "carol.jones@b.test",
    ]
    assert [u.address for u in directory.list_users("B.TEST")] == ["carol.jones@b.test"]
    assert directory.list_users()[0].created <= time.time()
    with refused("user alice@a.test already exists"):
        directory.add_user("ALICE@a.test", "pw")


UNSAFE_USERS = ["a+b", ".a", "a.", "a..b", "a b", "a/b", "", "ü", "a@a.test", "x" * 65]


@pytest.mark.parametrize("local_part", UNSAFE_USERS)
def test_unsafe_user_names_are_refused(directory: SqliteDirectory, local_part: str) -> None:
    with refused("not a valid") as info:
        directory.add_user(f"{local_part}@a.test", "pw")
    assert "\n" not in str(info.value)


def test_a_user_name_needs_a_domain(directory: SqliteDirectory) -> None:
    with refused("'no-at-sign' is not a valid user name"):
        directory.add_user("no-at-sign", "pw")


def test_users_only_on_local_domains(directory: SqliteDirectory) -> None:
    with refused("domain c.test is not a local domain"):
        directory.add_user("carol@c.test", "pw")


def test_the_database_holds_an_argon2id_hash_never_the_password(
    directory: SqliteDirectory, path: Path
) -> None:
    directory.set_password("bob@a.test", "changed-secret")
    directory.close()
    raw = sqlite3.connect(path)
    (stored,) = raw.execute(
        "SELECT password_hash FROM users WHERE address = 'alice@a.test'"
    ).fetchone()
    raw.close()
    assert stored.startswith("$argon2id$")
    for file in path.parent.iterdir():
        assert b"alice-secret" not in file.read_bytes()
        assert b"changed-secret" not in file.read_bytes()


def test_verify_password(directory: SqliteDirectory) -> None:
    assert directory.verify_password("alice@a.test", "alice-secret")
    assert directory.verify_password("Alice@A.TEST", "alice-secret")
    assert not directory.verify_password("alice@a.test", "bob-secret")
    assert not directory.verify_password("alice@a.test", "")
    assert not directory.verify_password("nobody@a.test", "alice-secret")
    assert not directory.verify_password("not an address", "alice-secret")
    assert not directory.verify_password("alice+tag@a.test", "alice-secret")


@pytest.mark.parametrize(
    "hasher",
    [
        PasswordHasher(time_cost=1, memory_cost=64, parallelism=4),  # libsodium checks it
        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, hash_len=64),  # too long
        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.I),
        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.D),
    ],
)
def test_every_argon2_hash_is_checked(path: Path, hasher: PasswordHasher) -> None:
    directory = SqliteDirectory(path, hasher=hasher)
    directory.add_domain("a.test")
    directory.add_user("alice@a.test", "sécret")
    assert directory.verify_password("alice@a.test", "sécret")
    assert not directory.verify_password("alice@a.test", "secret")
    directory.close()


def test_set_password_and_remove_user(directory: SqliteDirectory) -> None:
    directory.set_password("alice@a.test", "new-secret")
    assert directory.verify_password("alice@a.test", "new-secret")
    assert not directory.verify_password("alice@a.test", "alice-secret")
    with refused("password must not be empty"):
        directory.set_password("alice@a.test", "")
    with refused("user carol@a.test does not exist"):
        directory.set_password("carol@a.test", "pw")
    directory.remove_user("ALICE@a.test")
    assert not directory.verify_password("alice@a.test", "new-secret")
    with refused("user alice@a.test does not exist"):
        directory.remove_user("alice@a.test")


def test_a_hash_with_old_parameters_is_upgraded_on_login(
    directory: SqliteDirectory, path: Path
) -> None:
    directory.close()
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    upgraded = SqliteDirectory(path, hasher=stronger)
    try:
        assert upgraded.verify_password("alice@a.test", "alice-secret")
    finally:
        upgraded.close()
    raw = sqlite3.connect(path)
    (stored,) = raw.execute(
        "SELECT password_hash FROM users WHERE address = 'alice@a.test'"
    ).fetchone()
    raw.close()
    assert "m=16,t=2,p=1" in stored


def test_unknown_user_costs_as_much_as_a_wrong_password(path: Path) -> None:
    # Heavy enough (about a millisecond) that the hash dominates the database lookup.
    hasher = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    directory = SqliteDirectory(path, hasher=hasher)
    try:
        directory.add_domain("a.test")
        directory.add_user("alice@a.test", "alice-secret")

        def median(address: str) -> float:
            times = []
            for _ in range(15):
                start = time.perf_counter()
                assert not directory.verify_password(address, "wrong")
                times.append(time.perf_counter() - start)
            return statistics.median(times)

        wrong, unknown = median("alice@a.test"), median("nobody@a.test")
    finally:
        directory.close()
    assert 0.5 < unknown / wrong < 2.0


# -- SCRAM-SHA-256 keys ------------------------------------------------------------

# The schema as version 1 created it, for the migration test.
SCHEMA_V1 = (
    "CREATE TABLE domains (name TEXT PRIMARY KEY, created REAL NOT NULL)",
    "CREATE TABLE users (address TEXT PRIMARY KEY,"
    " domain TEXT NOT NULL REFERENCES domains(name),"
    " password_hash TEXT NOT NULL, created REAL NOT NULL)",
    "CREATE INDEX users_domain ON users(domain)",
    "CREATE TABLE aliases (source TEXT NOT NULL, position INTEGER NOT NULL,"
    " target TEXT NOT NULL, domain TEXT NOT NULL REFERENCES domains(name),"
    " PRIMARY KEY (source, position))",
    "CREATE INDEX aliases_domain ON aliases(domain)",
)


def keys_match(credentials: ScramCredentials | None, password: str) -> bool:
    assert credentials is not None
    derived = ScramCredentials.from_password(password, credentials.iterations, credentials.salt)
    return derived == credentials


def scram_login(directory: SqliteDirectory, username: str, password: str) -> object:
    """A whole SCRAM-SHA-256 exchange against the directory; the server's last step."""
    mechanism = scram_sha256_server(DirectoryAuthenticator(directory))
    client = ScramClient(username, password)
    server_first = mechanism.start(client.first())
    assert isinstance(server_first, Challenge)
    outcome = mechanism.respond(client.final(server_first.data))
    if isinstance(outcome, Success):
        assert outcome.final is not None
        client.verify(outcome.final)
    return outcome


def test_an_old_database_is_migrated_and_keys_are_backfilled_at_login(path: Path) -> None:
    path.parent.mkdir(parents=True)
    raw = sqlite3.connect(path)
    for statement in SCHEMA_V1:
        raw.execute(statement)
    raw.execute("INSERT INTO domains VALUES ('a.test', 0)")
    old_hash = FAST.hash("alice-secret")
    raw.execute("INSERT INTO users VALUES ('alice@a.test', 'a.test', ?, 0)", (old_hash,))
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()

    directory = SqliteDirectory(path, hasher=FAST)
    try:
        assert directory.list_users()[0].address == "alice@a.test"
        assert directory.scram_credentials("alice@a.test") is None
        # No keys yet: SCRAM fails like a wrong password, PLAIN works and backfills them.
        assert scram_login(directory, "alice@a.test", "alice-secret") == Failure(
            "invalid credentials"
        )
        plain = plain_server(DirectoryAuthenticator(directory))
        assert plain.start(b"\0Alice@a.test\0alice-secret") == Success("alice@a.test")
        assert keys_match(directory.scram_credentials("alice@a.test"), "alice-secret")
        assert isinstance(scram_login(directory, "alice@a.test", "alice-secret"), Success)
    finally:
        directory.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (2,)
        (secret,) = raw.execute("SELECT value FROM secrets").fetchone()
    raw.close()
    assert len(secret) == 32


def test_new_users_get_scram_keys_and_set_password_replaces_them(
    directory: SqliteDirectory,
) -> None:
    before = directory.scram_credentials("ALICE@a.test")
    assert keys_match(before, "alice-secret")
    assert before is not None
    assert (len(before.salt), before.iterations) == (16, 4096)
    directory.set_password("alice@a.test", "new-secret")
    after = directory.scram_credentials("alice@a.test")
    assert keys_match(after, "new-secret")
    assert after is not None
    assert after.salt != before.salt
    assert directory.scram_credentials("nobody@a.test") is None
    assert directory.scram_credentials("not an address") is None


def test_scram_logins_through_the_directory(directory: SqliteDirectory) -> None:
    success = scram_login(directory, "Alice@A.test", "alice-secret")
    assert isinstance(success, Success)
    assert success.user == "alice@a.test"
    assert scram_login(directory, "alice@a.test", "bob-secret") == Failure("invalid credentials")
    assert scram_login(directory, "nobody@a.test", "x") == Failure("invalid credentials")


def test_unknown_users_get_stable_decoy_keys_shaped_like_real_ones(
    directory: SqliteDirectory, path: Path
) -> None:
    real = directory.scram_credentials("alice@a.test")
    decoy = directory.scram_decoy("Nobody@a.test")
    assert real is not None
    assert (len(decoy.salt), decoy.iterations) == (len(real.salt), real.iterations)
    assert directory.scram_decoy("nobody@a.test") == decoy
    assert directory.scram_decoy("other@a.test").salt != decoy.salt
    directory.close()
    again = SqliteDirectory(path, hasher=FAST)
    try:
        assert again.scram_decoy("nobody@a.test") == decoy  # the secret is stored
    finally:
        again.close()


def test_scram_iterations_are_configurable_but_not_below_4096(path: Path) -> None:
    with refused("SCRAM needs at least 4096 iterations"):
        SqliteDirectory(path, hasher=FAST, scram_iterations=4095)
    directory = SqliteDirectory(path, hasher=FAST, scram_iterations=5000)
    try:
        directory.add_domain("a.test")
        directory.add_user("alice@a.test", "alice-secret")
        credentials = directory.scram_credentials("alice@a.test")
        assert credentials is not None
        assert credentials.iterations == 5000
        assert directory.scram_decoy("nobody@a.test").iterations == 5000
    finally:
        directory.close()


def test_a_password_saslprep_prohibits_is_refused(directory: SqliteDirectory) -> None:
    with refused("password refused: it contains a character SASLprep prohibits") as info:
        directory.add_user("carol@a.test", "bell\x07secret")
    assert "secret" not in str(info.value)
    with refused("password refused"):
        directory.set_password("alice@a.test", "tab\tsecret")
    assert directory.verify_password("alice@a.test", "alice-secret")


# -- resolution ---------------------------------------------------------------


def test_users_resolve_to_themselves_case_insensitively(directory: SqliteDirectory) -> None:
    assert directory.resolve("alice@a.test") == local("alice@a.test")
    assert directory.resolve("ALICE@A.Test") == local("alice@a.test")
    assert directory.resolve("nobody@a.test") is None
    assert directory.resolve("alice@c.test") is None  # not a local domain
    assert directory.resolve("a.test") is None
    assert directory.resolve("@a.test") is None


def test_subaddresses_resolve_to_the_user(directory: SqliteDirectory) -> None:
    assert directory.resolve("alice+lists@a.test") == local("alice@a.test")
    assert directory.resolve("Alice+Lists+More@a.test") == local("alice@a.test")
    assert directory.resolve("+lists@a.test") is None
    assert directory.resolve("nobody+lists@a.test") is None


def test_an_exact_alias_wins_over_the_subaddress_base(directory: SqliteDirectory) -> None:
    directory.add_alias("sales@a.test", ["bob@a.test"])
    assert directory.resolve("sales+eu@a.test") == local("bob@a.test")


def test_aliases_with_several_local_and_remote_targets(directory: SqliteDirectory) -> None:
    directory.add_alias(
        "Team@A.test", ["alice@a.test", "BOB@a.test", "Carol@Remote.Example", "alice@a.test"]
    )
    assert directory.resolve("team@a.test") == Resolution(
        local=("alice@a.test", "bob@a.test"), remote=("Carol@remote.example",)
    )
    assert directory.list_aliases() == [
        Alias("team@a.test", ("alice@a.test", "BOB@a.test", "Carol@remote.example"))
    ]


def test_nested_aliases_expand_and_deduplicate(directory: SqliteDirectory) -> None:
    directory.add_user("carol@b.test", "pw")
    directory.add_alias("devs@a.test", ["alice@a.test", "ops@b.test"])
    directory.add_alias("ops@b.test", ["carol@b.test", "alice@a.test", "pager@remote.example"])
    directory.add_alias("all@a.test", ["devs@a.test", "ops@b.test", "bob@a.test"])
    assert directory.resolve("all@a.test") == Resolution(
        local=("alice@a.test", "carol@b.test", "bob@a.test"), remote=("pager@remote.example",)
    )


def test_alias_loops_end(directory: SqliteDirectory) -> None:
    directory.add_alias("ping@a.test", ["pong@a.test"])
    directory.add_alias("pong@a.test", ["ping@a.test", "alice@a.test"])
    assert directory.resolve("ping@a.test") == local("alice@a.test")
    directory.add_alias("x@b.test", ["y@b.test"])
    directory.add_alias("y@b.test", ["x@b.test"])
    assert directory.resolve("x@b.test") is None


def test_alias_chains_stop_after_ten_levels(directory: SqliteDirectory) -> None:
    for level in range(11):
        directory.add_alias(f"l{level}@a.test", [f"l{level + 1}@a.test"])
    directory.add_alias("l11@a.test", ["alice@a.test"])
    assert directory.resolve("l2@a.test") == local("alice@a.test")  # ten aliases deep
    assert directory.resolve("l1@a.test") is None  # eleven


def test_targets_that_resolve_nowhere_are_dropped(directory: SqliteDirectory) -> None:
    directory.add_alias("ghosts@a.test", ["gone@a.test"])
    directory.add_alias("mixed@a.test", ["gone@a.test", "bob@a.test"])
    assert directory.resolve("ghosts@a.test") is None
    assert directory.resolve("mixed@a.test") == local("bob@a.test")
    directory.remove_user("bob@a.test")
    assert directory.resolve("mixed@a.test") is None


def test_catch_all_is_used_only_when_nothing_else_matches(directory: SqliteDirectory) -> None:
    directory.add_alias("info@a.test", ["alice@a.test"])
    directory.add_alias("@A.Test", ["bob@a.test", "archive@remote.example"])
    catch_all = Resolution(local=("bob@a.test",), remote=("archive@remote.example",))
    assert directory.resolve("anything@a.test") == catch_all
    assert directory.resolve("Odd!Chars@a.test") == catch_all
    assert directory.resolve("alice@a.test") == local("alice@a.test")
    assert directory.resolve("alice+tag@a.test") == local("alice@a.test")
    assert directory.resolve("info@a.test") == local("alice@a.test")
    assert directory.resolve("postmaster@a.test") == local("postmaster@a.test")
    assert directory.resolve("anything@b.test") is None
    assert Alias("@a.test", ("bob@a.test", "archive@remote.example")) in (
        directory.list_aliases("a.test")
    )


def test_a_catch_all_pointing_at_unknown_local_names_ends(directory: SqliteDirectory) -> None:
    directory.add_alias("@b.test", ["missing@b.test"])
    assert directory.resolve("x@b.test") is None


def test_postmaster_always_resolves(directory: SqliteDirectory) -> None:
    assert directory.resolve("Postmaster@B.TEST") == local("postmaster@b.test")
    assert directory.resolve("postmaster+dmarc@a.test") == local("postmaster@a.test")
    directory.add_alias("postmaster@a.test", ["alice@a.test"])
    assert directory.resolve("POSTMASTER@a.test") == local("alice@a.test")
    directory.add_user("postmaster@b.test", "pw")
    assert directory.resolve("postmaster@b.test") == local("postmaster@b.test")
    assert not directory.verify_password("postmaster@a.test", "")


def test_alias_rules(directory: SqliteDirectory) -> None:
    with refused("alice@a.test is already a user"):
        directory.add_alias("alice@a.test", ["bob@a.test"])
    directory.add_alias("sales@a.test", ["bob@a.test"])
    with refused("sales@a.test is already an alias"):
        directory.add_user("sales@a.test", "pw")
    with refused("alias sales@a.test already exists"):
        directory.add_alias("Sales@a.test", ["alice@a.test"])
    with refused("alias loop@a.test cannot point to itself"):
        directory.add_alias("loop@a.test", ["LOOP@A.test"])
    with refused("domain c.test is not a local domain"):
        directory.add_alias("x@c.test", ["bob@a.test"])
    with refused("alias empty@a.test needs at least one target"):
        directory.add_alias("empty@a.test", [])
    with refused("not a valid alias target"):
        directory.add_alias("x@a.test", ["two words@remote.example"])
    with refused("not a valid user name"):
        directory.add_alias("x+y@a.test", ["bob@a.test"])
    directory.remove_alias("SALES@a.test")
    with refused("alias sales@a.test does not exist"):
        directory.remove_alias("sales@a.test")
    assert directory.list_aliases() == []


def test_owns(directory: SqliteDirectory) -> None:
    directory.add_alias("team@a.test", ["bob@a.test", "alice@a.test"])
    directory.add_alias("bobs@a.test", ["bob@a.test"])
    assert directory.owns("alice@a.test", "alice@a.test")
    assert directory.owns("Alice@a.test", "ALICE+news@a.test")
    assert directory.owns("alice@a.test", "team@a.test")
    assert not directory.owns("alice@a.test", "bobs@a.test")
    assert not directory.owns("alice@a.test", "bob@a.test")
    assert not directory.owns("alice@a.test", "nobody@a.test")
    assert not directory.owns("alice@a.test", "alice@remote.example")
    assert not directory.owns("alice@a.test", "")
    directory.add_alias("@a.test", ["alice@a.test"])
    assert directory.owns("alice@a.test", "anything@a.test")
    assert not directory.owns("alice@a.test", "bob@a.test")


def test_calls_from_many_threads(directory: SqliteDirectory) -> None:
    directory.add_alias("team@a.test", ["alice@a.test", "bob@a.test"])

    def work(n: int) -> bool:
        directory.add_user(f"user{n}@b.test", "pw")
        return (
            directory.resolve("team@a.test") == local("alice@a.test", "bob@a.test")
            and directory.verify_password(f"user{n}@b.test", "pw")
            and directory.is_local_domain("b.test")
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(work, range(40)))
    assert len(directory.list_users("b.test")) == 40
