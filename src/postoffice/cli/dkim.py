"""`postoffice dkim list|rotate|retire`: the DKIM keys each local domain signs with.

`rotate` makes a new selector with fresh RSA and Ed25519 keys and signs with it
from then on; it prints the new records, to be published at once, while the
old selectors stay published (signatures already sent still verify) until
`retire` removes one, once mail signed with it is no longer in transit.
A domain without keys gets its first selector from `rotate` too.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from postoffice.cli.common import CliError, config_options, load_config, user_errors
from postoffice.datadir import StartupError, open_directory
from postoffice.dnsrecords import key_records, zone_text
from postoffice.policy.dkim import DEFAULT_SELECTOR_PREFIX, DkimKeyError, KeyStore

_errors = user_errors(DkimKeyError, StartupError, OSError)


def _store(config_path: Path | None, data_dir: Path | None, domain: str | None) -> KeyStore:
    config = load_config(config_path, data_dir)
    if domain is not None and not open_directory(config).is_local_domain(domain):
        raise CliError(f"{domain} is not a local domain (postoffice domain add {domain})")
    return KeyStore(config.data_dir)


@click.group()
def dkim() -> None:
    """DKIM signing keys of local domains."""


@dkim.command("list")
@click.argument("domain", required=False)
@config_options
@_errors
def dkim_list(domain: str | None, config_path: Path | None, data_dir: Path | None) -> None:
    """List the selectors of every domain (or of DOMAIN); '*' marks the active one."""
    store = _store(config_path, data_dir, domain)
    for name in [domain.lower()] if domain else store.domains():
        active = store.active(name)
        for key_set in store.published(name):
            mark = "*" if active is not None and key_set.selector == active.selector else " "
            created = time.strftime("%Y-%m-%d", time.gmtime(key_set.created))
            algorithms = ",".join(key.algorithm for key in key_set.keys)
            click.echo(f"{mark} {name} {key_set.selector} {algorithms} created {created}")


@dkim.command("rotate")
@click.argument("domain")
@click.option(
    "--prefix",
    default=DEFAULT_SELECTOR_PREFIX,
    show_default=True,
    help="Selector names are PREFIX + the date.",
)
@config_options
@_errors
def dkim_rotate(domain: str, prefix: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Make a new selector for DOMAIN and sign with it; older ones stay published."""
    store = _store(config_path, data_dir, domain)
    key_set = store.rotate(domain, prefix)
    click.echo(f"; {key_set.domain}: now signing with selector {key_set.selector}")
    click.echo("; publish these records now; retire the old selector later with")
    click.echo(f";   postoffice dkim retire {key_set.domain} OLD-SELECTOR")
    click.echo(zone_text(key_records(key_set)), nl=False)


@dkim.command("retire")
@click.argument("domain")
@click.argument("selector")
@config_options
@_errors
def dkim_retire(
    domain: str, selector: str, config_path: Path | None, data_dir: Path | None
) -> None:
    """Delete SELECTOR's keys; remove its records from DNS too."""
    store = _store(config_path, data_dir, domain)
    key_set = store.retire(domain, selector)
    names = ", ".join(record.name for record in key_records(key_set))
    click.echo(f"selector {selector} of {key_set.domain} retired; delete the TXT records {names}")
