"""`postoffice dns-records DOMAIN` and `postoffice dns-check DOMAIN`.

`dns-records` prints every record a local domain needs as zone-file lines,
with the MTA-STS policy file as comments (or alone with `--mta-sts-policy`).
`dns-check` asks DNS, through `[dns] nameservers` (the system resolver when
empty), and reports each record as ok, missing, wrong or unknown; it exits
with status 1 when anything is not ok. The server's addresses, which the
SPF evaluation, the A/AAAA and the PTR records need, come from `--ip`, else
from `[relay] bind_address`; `dns-check` falls back to the host name's
addresses in DNS. The MTA-STS mode is "enforce" with a configured
certificate and "testing" with the self-signed one, which senders that
enforce MTA-STS would refuse.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from postoffice.cli.common import CliError, config_options, load_config, user_errors
from postoffice.config import Config
from postoffice.datadir import StartupError, open_directory
from postoffice.dns import DnsError, DnsPythonResolver, Resolver
from postoffice.dnsrecords import (
    Finding,
    Record,
    Status,
    check_records,
    mta_sts_policy,
    required_records,
    zone_text,
)
from postoffice.policy.dkim import DkimKeyError, KeyStore

_errors = user_errors(DkimKeyError, StartupError, OSError, DnsError, ValueError)
_ip_option = click.option(
    "--ip",
    "ips",
    multiple=True,
    help="An address the server sends from (repeatable; default: [relay] bind_address).",
)
_rua_option = click.option(
    "--rua", default="", help="Address for DMARC and TLS reports (default: postmaster@DOMAIN)."
)


def _setup(config_path: Path | None, data_dir: Path | None, domain: str) -> tuple[Config, str]:
    config = load_config(config_path, data_dir)
    domain = domain.lower().rstrip(".")
    if not open_directory(config).is_local_domain(domain):
        raise CliError(f"{domain} is not a local domain (postoffice domain add {domain})")
    return config, domain


def _sts_mode(config: Config) -> str:
    return "enforce" if config.tls.cert else "testing"


def _records(config: Config, domain: str, ips: list[str], rua: str) -> list[Record]:
    return required_records(
        domain,
        hostname=config.hostname,
        addresses=ips,
        key_sets=KeyStore(config.data_dir).published(domain),
        rua=rua or f"postmaster@{domain}",
        sts_mode=_sts_mode(config),
    )


def _default_ips(config: Config, ips: tuple[str, ...]) -> list[str]:
    return list(ips) or ([config.relay.bind_address] if config.relay.bind_address else [])


@click.command("dns-records")
@click.argument("domain")
@_ip_option
@_rua_option
@click.option(
    "--mta-sts-policy", "policy_only", is_flag=True, help="Print only the MTA-STS policy file."
)
@config_options
@_errors
def dns_records(
    domain: str,
    *,
    ips: tuple[str, ...],
    rua: str,
    policy_only: bool,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Print the DNS records DOMAIN needs, ready for a zone file."""
    config, domain = _setup(config_path, data_dir, domain)
    policy = mta_sts_policy(config.hostname, _sts_mode(config))
    if policy_only:
        click.echo(policy, nl=False)
        return
    addresses = _default_ips(config, ips)
    records = _records(config, domain, addresses, rua)
    click.echo(f"; DNS records for {domain}, served by {config.hostname}")
    if not any(record.kind == "dkim" for record in records):
        click.echo(f"; no DKIM keys yet: postoffice dkim rotate {domain}")
    if not addresses:
        click.echo("; the server's addresses are unknown: pass --ip for its A/AAAA and PTR records")
    click.echo(zone_text(records), nl=False)
    click.echo(f"; MTA-STS policy, to serve at https://mta-sts.{domain}/.well-known/mta-sts.txt")
    click.echo(f"; (needs an address record for mta-sts.{domain} and a certificate for it)")
    for line in policy.splitlines():
        click.echo(f";   {line}")


@click.command("dns-check")
@click.argument("domain")
@_ip_option
@_rua_option
@config_options
@_errors
def dns_check(
    domain: str,
    *,
    ips: tuple[str, ...],
    rua: str,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Compare the records DOMAIN needs with what DNS answers."""
    config, domain = _setup(config_path, data_dir, domain)
    resolver = DnsPythonResolver(list(config.dns.nameservers) or None)
    addresses, findings = asyncio.run(
        _check(resolver, config, domain, _default_ips(config, ips), rua)
    )
    for finding in findings:
        click.echo(_line(finding))
    bad = sum(finding.status is not Status.OK for finding in findings)
    if not addresses:
        click.echo(f"MISSING  A     {config.hostname}\n         no address in DNS and no --ip")
        bad += 1
    if bad:
        raise CliError(f"{bad} records of {domain} are missing or not right")
    click.echo(f"all {len(findings)} records of {domain} are in place")


async def _check(
    resolver: Resolver, config: Config, domain: str, ips: list[str], rua: str
) -> tuple[list[str], list[Finding]]:
    """The server's addresses (from DNS unless given) and the findings."""
    if not ips:
        try:
            ips = await resolver.addresses(config.hostname)
        except DnsError:
            ips = []
    records = _records(config, domain, ips, rua)
    return ips, await check_records(resolver, records, hostname=config.hostname, addresses=ips)


def _line(finding: Finding) -> str:
    record = finding.record
    text = f"{finding.status.upper():8} {record.rtype:5} {record.name}"
    if finding.status is not Status.OK:
        text += f"\n         want: {record.zone_line()}"
    if finding.detail:
        text += f"\n         {finding.detail}"
    return text
