"""`postoffice domain|user|alias …`: manage the directory of domains, users and aliases.

Passwords come from a hidden prompt or, with --password-stdin, from the first
line of standard input — never from argv, where `ps` would show them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from postoffice.cli.common import CliError, config_options, load_config, user_errors
from postoffice.datadir import StartupError, open_directory
from postoffice.storage.directory import DirectoryError, SqliteDirectory

_errors = user_errors(DirectoryError, StartupError)


def _directory(config_path: Path | None, data_dir: Path | None) -> SqliteDirectory:
    return open_directory(load_config(config_path, data_dir, create=True))


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CliError("no password on standard input")
        return line
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@click.group()
def domain() -> None:
    """Local domains (mail for them is delivered here)."""


@domain.command("add")
@click.argument("name")
@config_options
@_errors
def domain_add(name: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Add a local domain and make its DKIM keys (RSA 2048 and Ed25519)."""
    from postoffice.policy.dkim import KeyStore  # dkimpy and cryptography: only here

    config = load_config(config_path, data_dir, create=True)
    open_directory(config).add_domain(name)
    KeyStore(config.data_dir).ensure(name.lower(), config.dkim.selector_prefix)
    click.echo(f"domain {name.lower()} added")
    click.echo(f"publish its DNS records: postoffice dns-records {name.lower()}")


@domain.command("list")
@config_options
@_errors
def domain_list(config_path: Path | None, data_dir: Path | None) -> None:
    """List local domains."""
    for name in _directory(config_path, data_dir).list_domains():
        click.echo(name)


@domain.command("del")
@click.argument("name")
@config_options
@_errors
def domain_del(name: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Remove a local domain (mailboxes on disk are kept)."""
    _directory(config_path, data_dir).remove_domain(name)
    click.echo(f"domain {name.lower()} removed")


@click.group()
def user() -> None:
    """Users: a login and a mailbox."""


@user.command("add")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@config_options
@_errors
def user_add(
    address: str, password_stdin: bool, config_path: Path | None, data_dir: Path | None
) -> None:
    """Add a user (its domain must be local)."""
    directory = _directory(config_path, data_dir)
    directory.add_user(address, _password(password_stdin))
    click.echo(f"user {address.lower()} added")


@user.command("list")
@click.argument("domain_name", required=False)
@config_options
@_errors
def user_list(domain_name: str | None, config_path: Path | None, data_dir: Path | None) -> None:
    """List users, optionally of one domain."""
    for entry in _directory(config_path, data_dir).list_users(domain_name):
        click.echo(entry.address)


@user.command("del")
@click.argument("address")
@config_options
@_errors
def user_del(address: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Remove a user (the mailbox on disk is kept)."""
    _directory(config_path, data_dir).remove_user(address)
    click.echo(f"user {address.lower()} removed")


@user.command("passwd")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@config_options
@_errors
def user_passwd(
    address: str, password_stdin: bool, config_path: Path | None, data_dir: Path | None
) -> None:
    """Change a user's password."""
    directory = _directory(config_path, data_dir)
    directory.set_password(address, _password(password_stdin))
    click.echo(f"password of {address.lower()} changed")


@click.group()
def alias() -> None:
    """Aliases: an address that delivers to one or more others (`@domain` = catch-all)."""


@alias.command("add")
@click.argument("source")
@click.argument("targets", nargs=-1, required=True)
@config_options
@_errors
def alias_add(
    source: str, targets: tuple[str, ...], config_path: Path | None, data_dir: Path | None
) -> None:
    """Add an alias SOURCE → TARGET…"""
    _directory(config_path, data_dir).add_alias(source, list(targets))
    click.echo(f"alias {source.lower()} → {', '.join(targets)} added")


@alias.command("list")
@click.argument("domain_name", required=False)
@config_options
@_errors
def alias_list(domain_name: str | None, config_path: Path | None, data_dir: Path | None) -> None:
    """List aliases, optionally of one domain."""
    for entry in _directory(config_path, data_dir).list_aliases(domain_name):
        click.echo(f"{entry.source} → {', '.join(entry.targets)}")


@alias.command("del")
@click.argument("source")
@config_options
@_errors
def alias_del(source: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Remove an alias."""
    _directory(config_path, data_dir).remove_alias(source)
    click.echo(f"alias {source.lower()} removed")
