"""The user agent's accounts: where they are kept, how they are read and written, passwords.

Accounts live in `accounts.toml` in the config directory (`$XDG_CONFIG_HOME/postoffice`,
else `~/.config/postoffice`), one table per account keyed by its address, written whole to
a temporary file created 0600, fsync'ed and renamed over the old one (the directory is
0700). Each account's mail lives in `$XDG_DATA_HOME/postoffice/<address>/` (else
`~/.local/share/postoffice/<address>/`): a Maildir whose Maildir++ folders `.Sent` and
`.Drafts` hold what was sent and what could not be.

An account reads its mail over IMAP (online: the messages stay on the server) or POP3
(downloaded into that Maildir by `fetch`); `read` in its table says which. Files written
before IMAP was known have no `imap` table and no `read` key: they read over POP3, as before.

Passwords go into the system keyring (service "postoffice", user = the account address)
when the optional `keyring` package is installed and its backend is a real one (not the
"fail" or "null" backends that it picks when there is nothing to talk to); otherwise they
are stored in `accounts.toml` itself, and `add` reports that so the CLI can warn.
`PYTHON_KEYRING_BACKEND` selects or disables a backend, as keyring documents.

Standards: XDG Base Directory Specification
"""

from __future__ import annotations

import enum
import json
import os
import tomllib
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from postoffice.client.network import ClientError, Endpoint, Security
from postoffice.fileio import replace_file
from postoffice.mail.address import AddressError, parse_address

KEYRING_SERVICE = "postoffice"
ACCOUNTS_FILE = "accounts.toml"
ENDPOINTS = ("submission", "imap", "pop3")  # the server tables of an account


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "postoffice"


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "postoffice"


class Access(enum.Enum):
    """How an account reads its mail."""

    IMAP = "imap"  # online, on the server
    POP3 = "pop3"  # downloaded into the local Maildir

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Account:
    """One mailbox the user reads and sends from."""

    address: str  # also the account's name
    login: str
    submission: Endpoint
    pop3: Endpoint | None
    display_name: str = ""
    ca: Path | None = None
    insecure: bool = False
    imap: Endpoint | None = None
    read: Access = Access.POP3

    def server(self, access: Access) -> Endpoint:
        """The account's IMAP or POP3 server; ClientError when it has none."""
        endpoint = self.imap if access is Access.IMAP else self.pop3
        if endpoint is None:
            raise ClientError(
                f"{self.address} has no {access.label} server"
                f" (add the account again with --{access.value} HOST[:PORT])"
            )
        return endpoint

    @property
    def maildir(self) -> Path:
        return data_dir() / self.address

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


def check_address(address: str) -> str:
    """`address` if it can name an account (and its directory); ClientError otherwise."""
    try:
        parsed = parse_address(address)
    except AddressError as exc:
        raise ClientError(f"{address!r} is not an email address: {exc}") from None
    if not parsed.domain or "/" in parsed.local or parsed.local.startswith("."):
        raise ClientError(f"{address!r} cannot name an account")
    return f"{parsed.local}@{parsed.domain}"


# -- the file --------------------------------------------------------------------------


def _endpoint(raw: dict[str, Any]) -> Endpoint:
    return Endpoint(str(raw["host"]), int(raw["port"]), Security(raw["security"]))


def _from_toml(address: str, raw: dict[str, Any]) -> Account:
    account = Account(
        address=address,
        login=str(raw.get("login", address)),
        submission=_endpoint(raw["submission"]),
        pop3=_endpoint(raw["pop3"]) if "pop3" in raw else None,
        display_name=str(raw.get("display_name", "")),
        ca=Path(raw["ca"]) if raw.get("ca") else None,
        insecure=bool(raw.get("insecure", False)),
        imap=_endpoint(raw["imap"]) if "imap" in raw else None,
        read=Access(raw.get("read", Access.POP3.value)),
    )
    if (account.imap if account.read is Access.IMAP else account.pop3) is None:
        raise KeyError(account.read.value)
    return account


def accounts_file() -> Path:
    return config_dir() / ACCOUNTS_FILE


def _read() -> dict[str, dict[str, Any]]:
    path = accounts_file()
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ClientError(f"{path}: cannot read: {exc}") from None
    accounts = raw.get("accounts", {})
    if not isinstance(accounts, dict):
        raise ClientError(f"{path}: [accounts] must be a table")
    return accounts


def load() -> list[Account]:
    """Every account, in the order they were added (the first is the default)."""
    path = accounts_file()
    accounts = []
    for address, raw in _read().items():
        try:
            accounts.append(_from_toml(address, raw))
        except (KeyError, ValueError, TypeError) as exc:
            raise ClientError(f"{path}: account {address!r} is incomplete ({exc})") from None
    return accounts


def find(name: str | None) -> Account:
    """The account named `name`, or the default one; ClientError when there is none."""
    accounts = load()
    if not accounts:
        raise ClientError("no account yet: add one with `postoffice account add ADDRESS`")
    if name is None:
        return accounts[0]
    for account in accounts:
        if account.address.lower() == name.lower():
            return account
    raise ClientError(f"no account {name!r} (see `postoffice account list`)")


def _toml(value: str | int | bool) -> str:
    return json.dumps(value)  # JSON strings, numbers and booleans are valid TOML too


def _table(name: str, values: dict[str, Any]) -> list[str]:
    return [f"[{name}]", *(f"{key} = {_toml(value)}" for key, value in values.items())]


def _serialize(accounts: dict[str, dict[str, Any]]) -> str:
    lines = ["# postoffice user agent accounts (written by `postoffice account`)"]
    for address, raw in accounts.items():
        name = f"accounts.{_toml(address)}"
        top = {k: v for k, v in raw.items() if not isinstance(v, dict)}
        lines += ["", *_table(name, top)]
        for key in ENDPOINTS:
            if key in raw:
                lines += _table(f"{name}.{key}", raw[key])
    return "\n".join(lines) + "\n"


def _write(accounts: dict[str, dict[str, Any]]) -> None:
    config_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    replace_file(accounts_file(), _serialize(accounts).encode("utf-8"), mode=0o600)


def _raw(account: Account) -> dict[str, Any]:
    raw: dict[str, Any] = {"login": account.login, "read": account.read.value}
    if account.display_name:
        raw["display_name"] = account.display_name
    if account.ca is not None:
        raw["ca"] = str(account.ca)
    if account.insecure:
        raw["insecure"] = True
    for key in ENDPOINTS:
        endpoint = getattr(account, key)
        if endpoint is not None:
            security = endpoint.security.value
            raw[key] = {"host": endpoint.host, "port": endpoint.port, "security": security}
    return raw


def check_new(address: str) -> None:
    """ClientError when an account for `address` exists already."""
    if any(name.lower() == address.lower() for name in _read()):
        raise ClientError(f"account {address} exists (remove it with `account del`)")


def add(account: Account, password: str) -> bool:
    """Store `account` and its password; True if the password went into the keyring."""
    check_new(account.address)
    accounts = _read()
    raw = _raw(account)
    in_keyring = _keyring_set(account.address, password)
    if not in_keyring:
        raw["password"] = password
    accounts[account.address] = raw
    _write(accounts)
    return in_keyring


def remove(name: str) -> Account:
    """Forget the account `name` and its password (its local mail stays on disk)."""
    account = find(name)
    accounts = _read()
    del accounts[account.address]
    _write(accounts)
    _keyring_delete(account.address)
    return account


def password(account: Account) -> str:
    """The account's password, from the file or the keyring."""
    stored = _read().get(account.address, {}).get("password")
    if stored:
        return str(stored)
    backend = _keyring()
    secret = backend.get_password(KEYRING_SERVICE, account.address) if backend else None
    if not secret:
        raise ClientError(f"no password stored for {account.address}: add the account again")
    return str(secret)


# -- the keyring (optional) ------------------------------------------------------------


def _keyring() -> Any | None:
    """The keyring module when it has a usable backend, else None."""
    try:
        import keyring
    except ImportError:
        return None
    backend = keyring.get_keyring()
    module = type(backend).__module__
    if module.endswith((".fail", ".null")) or getattr(backend, "priority", 1) <= 0:
        return None
    return keyring


def _keyring_set(address: str, secret: str) -> bool:
    backend = _keyring()
    if backend is None:
        return False
    try:
        backend.set_password(KEYRING_SERVICE, address, secret)
    except Exception:  # a locked or broken keyring: fall back to the 0600 file
        return False
    return True


def _keyring_delete(address: str) -> None:
    backend = _keyring()
    if backend is not None:
        with suppress(Exception):  # nothing stored there, or the keyring is unavailable
            backend.delete_password(KEYRING_SERVICE, address)
