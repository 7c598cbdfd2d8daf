"""Accounts: the 0600 file under XDG_CONFIG_HOME, passwords in a keyring when there is one."""

from __future__ import annotations

import sys
import tomllib
import types
from pathlib import Path

import pytest

from postoffice.client import accounts
from postoffice.client.accounts import Access, Account
from postoffice.client.network import ClientError, Endpoint, Security


@pytest.fixture(autouse=True)
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setitem(sys.modules, "keyring", None)  # not installed, whatever the machine has
    return tmp_path


def account(address: str = "alice@a.test", **changes: object) -> Account:
    fields: dict[str, object] = {
        "address": address,
        "login": address,
        "submission": Endpoint("mx.a.test", 465, Security.TLS),
        "pop3": Endpoint("mx.a.test", 110, Security.STARTTLS),
    }
    return Account(**{**fields, **changes})  # type: ignore[arg-type]


def test_accounts_round_trip_through_a_private_file(homes: Path) -> None:
    first = account(display_name='Alïce "A" Ünder', ca=Path("/etc/ca.pem"), insecure=True)
    assert accounts.add(first, 'pa"ss\\wörd') is False  # no keyring: kept in the file
    accounts.add(account("bob@b.test"), "pw")
    path = homes / "config" / "postoffice" / "accounts.toml"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (homes / "config" / "postoffice").stat().st_mode & 0o777 == 0o700
    assert tomllib.loads(path.read_text())["accounts"]["alice@a.test"]["pop3"]["port"] == 110
    assert accounts.load() == [first, account("bob@b.test")]
    assert accounts.find(None) == first and accounts.find("BOB@b.test").address == "bob@b.test"
    assert accounts.password(first) == 'pa"ss\\wörd'
    assert first.maildir == homes / "data" / "postoffice" / "alice@a.test"
    with pytest.raises(ClientError, match="exists"):
        accounts.add(first, "again")
    accounts.remove("alice@a.test")
    assert [a.address for a in accounts.load()] == ["bob@b.test"]
    with pytest.raises(ClientError, match=r"no account 'alice@a\.test'"):
        accounts.find("alice@a.test")


class FakeKeyring:
    def __init__(self, module: str) -> None:
        self.secrets: dict[tuple[str, str], str] = {}
        self.backend = type("Keyring", (), {"__module__": module, "priority": 1})()

    def get_keyring(self) -> object:
        return self.backend

    def set_password(self, service: str, user: str, secret: str) -> None:
        self.secrets[(service, user)] = secret

    def get_password(self, service: str, user: str) -> str | None:
        return self.secrets.get((service, user))

    def delete_password(self, service: str, user: str) -> None:
        del self.secrets[(service, user)]


def install(monkeypatch: pytest.MonkeyPatch, fake: FakeKeyring) -> None:
    module = types.ModuleType("keyring")
    for name in ("get_keyring", "set_password", "get_password", "delete_password"):
        setattr(module, name, getattr(fake, name))
    monkeypatch.setitem(sys.modules, "keyring", module)


def test_a_real_keyring_keeps_the_password_out_of_the_file(
    homes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeKeyring("keyring.backends.SecretService")
    install(monkeypatch, fake)
    assert accounts.add(account(), "secret") is True
    assert "secret" not in (homes / "config" / "postoffice" / "accounts.toml").read_text()
    assert fake.secrets == {("postoffice", "alice@a.test"): "secret"}
    assert accounts.password(account()) == "secret"
    accounts.remove("alice@a.test")
    assert fake.secrets == {}


@pytest.mark.parametrize("module", ["keyring.backends.fail", "keyring.backends.null"])
def test_the_fail_and_null_backends_count_as_no_keyring(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch, FakeKeyring(module))
    assert accounts.add(account(), "secret") is False
    assert accounts.password(account()) == "secret"


@pytest.mark.parametrize("address", ["a/b@x.test", ".hidden@x.test", "nobody", "x@"])
def test_addresses_that_cannot_name_an_account(address: str) -> None:
    with pytest.raises(ClientError):
        accounts.check_address(address)


def test_a_broken_file_is_one_error(homes: Path) -> None:
    path = homes / "config" / "postoffice" / "accounts.toml"
    path.parent.mkdir(parents=True)
    path.write_text("[accounts.x\n")
    with pytest.raises(ClientError, match="cannot read"):
        accounts.load()
    path.write_text('[accounts."a@b.test"]\nlogin = "a"\n')
    with pytest.raises(ClientError, match="incomplete"):
        accounts.load()
    path.unlink()
    with pytest.raises(ClientError, match="no account yet"):
        accounts.find(None)


def test_an_imap_account_round_trips_and_an_old_file_still_reads_over_pop3(homes: Path) -> None:
    imap = account(imap=Endpoint("mx.a.test", 993, Security.TLS), read=Access.IMAP, pop3=None)
    accounts.add(imap, "pw")
    raw = tomllib.loads(accounts.accounts_file().read_text())["accounts"]["alice@a.test"]
    assert raw["read"] == "imap" and "pop3" not in raw and raw["imap"]["port"] == 993
    assert accounts.load() == [imap]
    assert imap.server(Access.IMAP).port == 993
    with pytest.raises(ClientError, match="has no POP3 server"):
        imap.server(Access.POP3)
    # a file written before IMAP: no [imap] table, no read key
    accounts.accounts_file().write_text(
        '[accounts."bob@b.test"]\nlogin = "bob@b.test"\npassword = "pw"\n'
        '[accounts."bob@b.test".submission]\nhost = "mx.b.test"\nport = 465\nsecurity = "tls"\n'
        '[accounts."bob@b.test".pop3]\nhost = "mx.b.test"\nport = 995\nsecurity = "tls"\n'
    )
    (old,) = accounts.load()
    assert (old.read, old.imap, old.pop3) == (
        Access.POP3, None, Endpoint("mx.b.test", 995, Security.TLS)
    )  # fmt: skip
    accounts.accounts_file().write_text(
        '[accounts."bob@b.test"]\nread = "imap"\n'
        '[accounts."bob@b.test".submission]\nhost = "mx.b.test"\nport = 465\nsecurity = "tls"\n'
    )
    with pytest.raises(ClientError, match="incomplete"):
        accounts.load()
