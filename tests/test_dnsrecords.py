"""The records a domain needs, their zone-file form, and dns-check against the loopback DNS."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from postoffice.cli import cli
from postoffice.dns import DnsPythonResolver
from postoffice.dnsrecords import (
    Finding,
    Record,
    Status,
    check_records,
    mta_sts_policy,
    required_records,
    zone_text,
)
from postoffice.policy.dkim import KeySet, generate
from postoffice.testing.dns import DnsServer

HOST = "mx.a.test"
IP = "127.0.0.2"


@pytest.fixture(scope="module")
def keys() -> KeySet:
    return generate("a.test", "po20250114", 0.0)


def records_for(keys: KeySet, addresses: tuple[str, ...] = (IP,)) -> list[Record]:
    return required_records(
        "A.Test",
        hostname=HOST,
        addresses=list(addresses),
        key_sets=[keys],
        rua="postmaster@a.test",
        sts_mode="enforce",
    )


@pytest.fixture
def server(keys: KeySet) -> Iterator[DnsServer]:
    with DnsServer(zone_text(records_for(keys, (IP, "::1")))) as dns_server:
        yield dns_server


def findings(server: DnsServer, records: list[Record], *ips: str) -> dict[str, Finding]:
    resolver = DnsPythonResolver([server.address], timeout=0.3)
    found = asyncio.run(
        check_records(resolver, records, hostname=HOST, addresses=list(ips or (IP, "::1")))
    )
    return {f"{f.record.rtype} {f.record.name}": f for f in found}


def test_every_needed_record_is_listed(keys: KeySet) -> None:
    lines = zone_text(records_for(keys)).splitlines()
    records = [line for line in lines if not line.startswith(";")]
    assert "a.test. 3600 IN MX 10 mx.a.test." in records
    assert 'a.test. 3600 IN TXT "v=spf1 mx ip4:127.0.0.2 -all"' in records
    assert 'mx.a.test. 3600 IN TXT "v=spf1 a -all"' in records
    assert any(line.startswith("po20250114-rsa._domainkey.a.test. 3600 IN TXT") for line in records)
    assert any(line.startswith("po20250114-ed25519._domainkey.a.test.") for line in records)
    assert (
        '_dmarc.a.test. 3600 IN TXT "v=DMARC1; p=reject; rua=mailto:postmaster@a.test"' in records
    )
    assert any(line.startswith('_mta-sts.a.test. 3600 IN TXT "v=STSv1; id=') for line in records)
    assert '_smtp._tls.a.test. 3600 IN TXT "v=TLSRPTv1; rua=mailto:postmaster@a.test"' in records
    assert "_submissions._tcp.a.test. 3600 IN SRV 0 1 465 mx.a.test." in records
    assert "_imaps._tcp.a.test. 3600 IN SRV 0 1 993 mx.a.test." in records
    assert "_imap._tcp.a.test. 3600 IN SRV 0 0 0 ." in records
    assert "_pop3s._tcp.a.test. 3600 IN SRV 10 1 995 mx.a.test." in records
    assert "mx.a.test. 3600 IN A 127.0.0.2" in records
    assert "2.0.0.127.in-addr.arpa. 3600 IN PTR mx.a.test." in records
    assert all(len(line) < 300 or '" "' in line for line in records)  # long TXT is split


def test_long_txt_values_are_split_into_255_octet_strings(keys: KeySet) -> None:
    record = next(r for r in records_for(keys) if r.name.startswith("po20250114-rsa"))
    strings = record.zone_line().split(" IN TXT ")[1]
    parts = strings[1:-1].split('" "')
    assert [len(part) for part in parts[:-1]] == [255] * (len(parts) - 1)
    assert "".join(parts) == record.value


def test_mta_sts_policy() -> None:
    assert mta_sts_policy(HOST, "testing") == (
        "version: STSv1\nmode: testing\nmx: mx.a.test\nmax_age: 604800\n"
    )
    ids = {
        record.value
        for mode in ("enforce", "testing")
        for record in required_records(
            "a.test", hostname=HOST, addresses=[], key_sets=[], rua="p@a.test", sts_mode=mode
        )
        if record.kind == "mta-sts"
    }
    assert len(ids) == 2  # a new policy gets a new id (RFC 8461 §3.1)


def test_check_finds_everything_in_place(keys: KeySet, server: DnsServer) -> None:
    results = findings(server, records_for(keys, (IP, "::1")))
    assert {f.status for f in results.values()} == {Status.OK}, [
        f for f in results.values() if f.status is not Status.OK
    ]


def test_check_spots_a_missing_dkim_record(keys: KeySet, server: DnsServer) -> None:
    server.set_records("po20250114-ed25519._domainkey.a.test", [])
    results = findings(server, records_for(keys))
    assert results["TXT po20250114-ed25519._domainkey.a.test"].status is Status.MISSING
    assert results["TXT po20250114-rsa._domainkey.a.test"].status is Status.OK


def test_check_spots_a_wrong_dkim_key(keys: KeySet, server: DnsServer) -> None:
    other = generate("a.test", "x", 0.0).keys[1].dns_record()
    server.set_records("po20250114-ed25519._domainkey.a.test", [f'TXT "{other}"'])
    finding = findings(server, records_for(keys))["TXT po20250114-ed25519._domainkey.a.test"]
    assert finding.status is Status.WRONG and "not this server's key" in finding.detail


def test_check_evaluates_spf_for_the_server(keys: KeySet, server: DnsServer) -> None:
    server.set_records("a.test", ["MX 10 mx.a.test.", 'TXT "v=spf1 ip4:192.0.2.1 -all"'])
    finding = findings(server, records_for(keys))["TXT a.test"]
    assert finding.status is Status.WRONG and "fail for 127.0.0.2" in finding.detail


def test_check_spots_wrong_mx_srv_and_ptr(keys: KeySet, server: DnsServer) -> None:
    server.set_records("a.test", ["MX 10 elsewhere.test.", 'TXT "v=spf1 +all"'])
    server.set_records("_imaps._tcp.a.test", ["SRV 0 1 143 mx.a.test."])
    server.set_records("2.0.0.127.in-addr.arpa", ["PTR localhost."])
    results = findings(server, records_for(keys))
    assert results["MX a.test"].status is Status.WRONG
    assert "elsewhere.test" in results["MX a.test"].detail
    assert results["SRV _imaps._tcp.a.test"].status is Status.WRONG
    assert results["PTR 2.0.0.127.in-addr.arpa"].status is Status.WRONG


def test_check_spots_duplicate_and_invalid_policy_records(keys: KeySet, server: DnsServer) -> None:
    server.set_records("_dmarc.a.test", ['TXT "v=DMARC1; p=reject"', 'TXT "v=DMARC1; p=none"'])
    server.set_records("_smtp._tls.a.test", ['TXT "v=TLSRPTv1;"'])
    results = findings(server, records_for(keys))
    assert results["TXT _dmarc.a.test"].status is Status.WRONG
    assert results["TXT _smtp._tls.a.test"].status is Status.WRONG


def test_dns_failure_is_unknown_not_missing(keys: KeySet, server: DnsServer) -> None:
    server.timeout("_dmarc.a.test")
    server.servfail("_mta-sts.a.test")
    results = findings(server, records_for(keys))
    assert results["TXT _dmarc.a.test"].status is Status.UNKNOWN
    assert results["TXT _mta-sts.a.test"].status is Status.UNKNOWN


# --- the commands --------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Iterator[tuple[Path, DnsServer]]:
    with DnsServer() as dns_server:
        path = tmp_path / "postoffice.toml"
        path.write_text(
            f'hostname = "{HOST}"\ndata_dir = "data"\n'
            f'[dns]\nnameservers = ["{dns_server.address}"]\n'
        )
        yield path, dns_server


def invoke(config_path: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--config", str(config_path)])


def test_dns_records_then_dns_check(config: tuple[Path, DnsServer]) -> None:
    path, dns_server = config
    assert invoke(path, "domain", "add", "a.test").exit_code == 0
    made = invoke(path, "dns-records", "a.test")  # domain add made the DKIM keys
    assert "-ed25519._domainkey.a.test" in made.output and "pass --ip" in made.output
    assert invoke(path, "dkim", "rotate", "a.test").exit_code == 0
    printed = invoke(path, "dns-records", "a.test", "--ip", IP)
    assert printed.exit_code == 0 and "; MTA-STS policy" in printed.output
    assert ";   mode: testing" in printed.output  # self-signed certificate: not enforced
    policy = invoke(path, "dns-records", "a.test", "--mta-sts-policy").output
    assert policy.startswith("version: STSv1\n")

    dns_server.add(printed.output)  # pasted into the zone as printed
    checked = invoke(path, "dns-check", "a.test")  # addresses from the host name's A record
    assert checked.exit_code == 0, checked.output
    # two selectors stay published after the rotation: 4 DKIM records among them
    assert "all 17 records of a.test are in place" in checked.output

    selector = next(line.split()[0] for line in printed.output.splitlines() if "-rsa." in line)
    dns_server.set_records(selector, [])
    missing = invoke(path, "dns-check", "a.test")
    assert missing.exit_code == 1
    assert f"MISSING  TXT   {selector.rstrip('.')}" in missing.output
    assert "1 records of a.test are missing or not right" in str(missing.exception)


def test_dns_commands_refuse_unknown_domains(config: tuple[Path, DnsServer]) -> None:
    path, _ = config
    invoke(path, "domain", "list")
    refused = invoke(path, "dns-check", "b.test")
    assert refused.exit_code == 1 and "not a local domain" in str(refused.exception)
