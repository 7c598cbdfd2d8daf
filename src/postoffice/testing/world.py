"""A loopback world: a DNS server and two mail servers, a.test on 127.0.0.2 and b.test on 127.0.0.3.

Both servers listen on the same port number on their own address and relay to
that port, so MX lookups served by the test DNS server lead each to the other
exactly as port 25 would on the internet. Used by the relay tests and by
`postoffice demo`.
"""

from __future__ import annotations

import socket
from pathlib import Path

from postoffice.testing.dns import DnsServer
from postoffice.testing.server import ServerProcess

HOSTS = {"a.test": "127.0.0.2", "b.test": "127.0.0.3"}


def common_free_port(addresses: list[str]) -> int:
    """A port number free on every address (so both servers can use it)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        try:
            for address in addresses[1:]:
                with socket.socket() as other:
                    other.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on every address")


def zone_records() -> dict[str, list[str]]:
    records: dict[str, list[str]] = {}
    for domain, address in HOSTS.items():
        records[domain] = [f"MX 10 mx.{domain}."]
        records[f"mx.{domain}"] = [f"A {address}"]
    return records


class LoopbackWorld:
    """DNS + server A (a.test) + server B (b.test), each with its own data dir and config.

    `extra_config` is TOML appended to both configs right after their `[relay]` table:
    bare keys land in `[relay]`, a table header starts another section.
    """

    def __init__(
        self,
        root: Path,
        *,
        port: int | None = None,
        submission_port: int | None = None,
        submissions_port: int | None = None,
        extra_config: str = "",
    ):
        addresses = list(HOSTS.values())
        self.port = port or common_free_port(addresses)
        self.submission_port = submission_port or common_free_port(addresses)
        self.submissions_port = submissions_port or common_free_port(addresses)
        self.dns = DnsServer(zone_records())
        self.dns.start()
        self.servers: dict[str, ServerProcess] = {}
        for domain, address in HOSTS.items():
            server = ServerProcess(
                root / domain,
                host=address,
                hostname=f"mx.{domain}",
                smtp_port=self.port,
                submission_port=self.submission_port,
                submissions_port=self.submissions_port,
                extra_config=(
                    f'[dns]\nnameservers = ["{self.dns.address}"]\n'
                    f'[relay]\nport = {self.port}\nbind_address = "{address}"\n{extra_config}'
                ),
            )
            server.cli("domain", "add", domain)
            self.servers[domain] = server

    @property
    def a(self) -> ServerProcess:
        return self.servers["a.test"]

    @property
    def b(self) -> ServerProcess:
        return self.servers["b.test"]

    def start(self) -> LoopbackWorld:
        for server in self.servers.values():
            server.start()
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.dns.stop()
