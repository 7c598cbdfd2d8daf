"""Where the user agent connects and how: endpoints, name lookup, TLS contexts, error texts.

Every connection of the user agent is encrypted: TLS from the first byte (ports 465, 993
and 995, RFC 8314 §3) or STARTTLS / STLS, which the server must then offer. Certificates are
checked against the system trust store and the server's name; `--ca FILE` adds a private
CA, `--insecure` switches checking off (TLS stays on) and is warned about by the CLI.

Names are resolved by the system (getaddrinfo) unless `POSTOFFICE_NAMESERVERS` names DNS
servers ("127.0.0.1:5353", comma- or space-separated): then SRV, MX and address lookups all
go to those servers and the connection is made to the address found, while TLS still checks
the certificate against the host name. Tests and closed networks use this; the machine's
resolver is never asked then.

`describe` turns each of the `FAILURES` of a conversation with a server into the one line a
user reads.

Standards: RFC 8314 §3 (implicit TLS), §4.1 (certificate checks); RFC 6125 (host names)
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
import socket
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from postoffice.client.imap import ImapError
from postoffice.client.pop3 import Pop3Error, Pop3ProtocolError
from postoffice.client.submit import SubmitError
from postoffice.dns import DnsError, DnsPythonResolver, Resolver
from postoffice.protocols.smtp.client import ProtocolError

_C_co = TypeVar("_C_co", covariant=True)  # the client an opener gives

NAMESERVERS_ENV = "POSTOFFICE_NAMESERVERS"
_HOSTNAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
# Every way a conversation with a server can fail (ValueError: a line break in a credential).
FAILURES = (
    OSError,
    TimeoutError,
    ValueError,
    SubmitError,
    Pop3Error,
    Pop3ProtocolError,
    ImapError,
    ProtocolError,
)


class ClientError(Exception):
    """A user-facing failure of the user agent: one line, no traceback."""


class Security(enum.Enum):
    """How a connection is encrypted; never plaintext."""

    TLS = "tls"  # implicit TLS from the first byte (RFC 8314 §3)
    STARTTLS = "starttls"  # STARTTLS (SMTP) or STLS (POP3) after the greeting

    @property
    def label(self) -> str:
        return "TLS" if self is Security.TLS else "STARTTLS"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A server of one protocol: host name, port and how TLS starts."""

    host: str
    port: int
    security: Security

    def __str__(self) -> str:
        return f"{self.host}:{self.port} ({self.security.label})"


def nameservers() -> list[str]:
    """The DNS servers from `POSTOFFICE_NAMESERVERS`, or [] for the system's."""
    return os.environ.get(NAMESERVERS_ENV, "").replace(",", " ").split()


def resolver() -> Resolver:
    """A resolver asking `POSTOFFICE_NAMESERVERS`, or the system's configured servers."""
    try:
        return DnsPythonResolver(nameservers() or None)
    except (DnsError, ValueError) as exc:
        raise ClientError(f"DNS: {exc}") from None


async def address_of(host: str) -> str:
    """The address to connect to for `host`: itself unless our own nameservers are set."""
    servers = nameservers()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if servers:
            try:
                return (await resolver().addresses(host))[0]
            except DnsError as exc:
                raise ClientError(f"cannot find {host}: {exc.reason}") from None
    return host


def helo_name() -> str:
    """This machine's name for EHLO when it is a valid host name, else "localhost"."""
    name = socket.gethostname()
    return name if _HOSTNAME.fullmatch(name) else "localhost"


def tls_context(ca: Path | None = None, *, insecure: bool = False) -> ssl.SSLContext:
    """A client context: system trust store (plus `ca`), host names checked, TLS 1.2+."""
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
    except OSError as exc:  # ssl.SSLError included
        raise ClientError(f"cannot use CA file {ca}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def describe(exc: BaseException, where: object) -> str:
    """One line for a failed connection to `where` (an Endpoint or "host:port")."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        return f"{where}: TLS certificate not accepted: {reason} (see --ca)"
    if isinstance(exc, ssl.SSLError):
        return f"{where}: TLS failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"{where}: connection refused"
    if isinstance(exc, TimeoutError):
        return f"{where}: no answer (timed out)"
    if isinstance(exc, socket.gaierror):
        return f"{where}: cannot find the host ({exc.strerror})"
    if isinstance(exc, ConnectionError):
        return f"{where}: connection closed by the server"
    if isinstance(exc, OSError):
        return f"{where}: {exc.strerror or exc}"
    return f"{where}: {exc}"


class _Opener(Protocol[_C_co]):
    def __call__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext,
        implicit_tls: bool,
        address: str | None = None,
        timeout: float = 30.0,
    ) -> Awaitable[_C_co]: ...


async def open_endpoint(
    opener: _Opener[_C_co], endpoint: Endpoint, *, ca: Path | None, insecure: bool, timeout: float
) -> _C_co:
    """`opener` (Pop3Client.connect, ImapClient.connect) on `endpoint`, TLS as it says."""
    return await opener(
        endpoint.host,
        endpoint.port,
        tls=tls_context(ca, insecure=insecure),
        implicit_tls=endpoint.security is Security.TLS,
        address=await address_of(endpoint.host),
        timeout=timeout,
    )
