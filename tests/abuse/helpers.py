"""Shared by the abuse suite and the TLS interop tests: a raw SMTP client, CAs, servers, mail.

`RawClient` writes exactly the bytes a test gives it (several commands in one packet, a
line of any length, one byte at a time) over a socket bound to a chosen loopback source
address, so that tests sharing a server never share per-client limits or lockouts: each
test takes its own address from 127.0.0.0/8. It reads replies as (code, lines) and can
switch to TLS in place, refusing to when the server sent anything after its 220.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

from postoffice.protocols.sasl import client_plain, encode_b64
from postoffice.testing.server import ServerProcess

HOST = "127.0.0.1"
CERT_NAMES = ("mx.test", "localhost", HOST)  # what test certificates are issued for
_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -])([^\r\n]*)\r\n")


class ServerClosed(Exception):
    """The server closed the connection before a whole reply arrived."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply as the client saw it."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The first line after the code, e.g. "5.7.8 Authentication credentials invalid"."""
        return self.lines[0]

    def __str__(self) -> str:
        return "\n".join(f"{self.code} {line}" for line in self.lines)


def parse_replies(wire: bytes) -> list[Reply]:
    """Every complete reply in `wire`; AssertionError when anything else is in it."""
    found: list[Reply] = []
    lines: list[str] = []
    end = 0
    for match in _REPLY_LINE.finditer(wire):
        assert match.start() == end, f"not a reply line: {wire[end : match.start()]!r}"
        end = match.end()
        lines.append(match[3].decode("utf-8", "replace"))
        if match[2] == b" ":
            found.append(Reply(int(match[1]), tuple(lines)))
            lines = []
    assert end == len(wire) and not lines, f"incomplete reply: {wire[end:]!r}"
    return found


class RawClient:
    """One SMTP connection from `source` (a loopback address) to `port`."""

    def __init__(
        self,
        port: int,
        *,
        source: str = HOST,
        tls: ssl.SSLContext | None = None,
        server_hostname: str = "mx.test",
        timeout: float = 10.0,
        greeting: bool = True,
    ) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            (HOST, port), timeout=timeout, source_address=(source, 0)
        )
        self.local = "{}:{}".format(*self.sock.getsockname())  # as the server logs it
        self.buffer = b""
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=server_hostname)
        if greeting:
            assert self.reply().code == 220

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> Reply:
        """The next reply; ServerClosed if the connection ends first."""
        while True:
            end = _final_line_end(self.buffer)
            if end is not None:
                (reply,) = parse_replies(self.buffer[:end])
                self.buffer = self.buffer[end:]
                return reply
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ServerClosed(f"connection closed; unparsed {self.buffer[:200]!r}")
            self.buffer += chunk

    def command(self, line: str | bytes) -> Reply:
        """Send one command line (CRLF added) and read its reply."""
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def ehlo(self, name: str = "client.test") -> Reply:
        reply = self.command(f"EHLO {name}")
        assert reply.code == 250, reply
        return reply

    def starttls(
        self, context: ssl.SSLContext, *, injected: bytes = b"", server_hostname: str = "mx.test"
    ) -> None:
        """STARTTLS (with `injected` bytes in the same packet), then the handshake.

        The server must have sent nothing in plaintext after its 220.
        """
        self.send(b"STARTTLS\r\n" + injected)
        reply = self.reply()
        assert reply.code == 220, reply
        assert self.buffer == b"", f"sent after 220 in plaintext: {self.buffer!r}"
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)

    def auth_plain(self, user: str, password: str) -> Reply:
        """AUTH PLAIN with an initial response (RFC 4954 §4)."""
        return self.command("AUTH PLAIN " + encode_b64(client_plain(user, password)))

    def pending(self, wait: float) -> bytes:
        """Whatever arrives within `wait` seconds (b"" for nothing; stops at EOF)."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            chunk = b""
        data, self.buffer = self.buffer + chunk, b""
        return data

    def until_closed(self, timeout: float) -> tuple[bytes, float]:
        """Everything the server sends until it closes (or resets), and how long that took."""
        started = time.monotonic()
        self.sock.settimeout(timeout)
        data, self.buffer = self.buffer, b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := self.sock.recv(65536):
                data += chunk
        return data, time.monotonic() - started


def _final_line_end(buffer: bytes) -> int | None:
    """Where the first complete reply in `buffer` ends, if one does."""
    start = 0
    while (end := buffer.find(b"\r\n", start)) >= 0:
        if buffer[start + 3 : start + 4] == b" ":
            return end + 2
        start = end + 2
    return None


# -- servers, certificates and mail ---------------------------------------------------


def sources(first: int) -> Iterator[str]:
    """Distinct loopback client addresses 127.0.<first>.1, 127.0.<first>.2, …"""
    host = 0
    while True:
        host += 1
        yield f"127.0.{first}.{host}"


def add_user(proc: ServerProcess, address: str, password: str) -> None:
    proc.cli("user", "add", address, "--password-stdin", stdin=f"{password}\n")


@dataclass(frozen=True, slots=True)
class CaFiles:
    """A trustme CA on disk, and the server certificate it issued for the test hosts."""

    ca_file: Path
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        """A client context that trusts only this CA and checks host names."""
        return ssl.create_default_context(cafile=self.ca_file)

    def reissue(self, ca: trustme.CA) -> None:
        """Write a new server certificate from `ca` over the old files (reload tests)."""
        issued = ca.issue_cert(*CERT_NAMES)
        issued.private_key_pem.write_to_path(self.key)
        self.cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))


def make_ca(directory: Path) -> tuple[trustme.CA, CaFiles]:
    """A new CA in `directory`, and a server certificate from it for `CERT_NAMES`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    files = CaFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(files.ca_file)
    files.reissue(ca)
    return ca, files


def self_signed_context(proc: ServerProcess) -> ssl.SSLContext:
    """A client context that trusts the certificate the server generated for itself."""
    return ssl.create_default_context(cafile=proc.data_dir / "tls" / "cert.pem")


@contextlib.contextmanager
def running(proc: ServerProcess) -> Iterator[ServerProcess]:
    """Start `proc`, stop it at the end of the block, and check it stopped cleanly: exit
    status 0, and no traceback or task left hanging ("Task was destroyed") in its log."""
    proc.start()
    try:
        yield proc
    finally:
        status = proc.stop()
    log = proc.log_path.read_text()
    assert status == 0, log[-2000:]
    for trouble in ("Traceback", "Task was destroyed", "Exception ignored"):
        assert trouble not in log, log[log.index(trouble) - 500 :][:3000]


def sighup(proc: ServerProcess) -> None:
    """SIGHUP (reload the config and certificate), and wait until the server says it did."""
    assert proc.process is not None
    done = proc.log_path.read_text().count(" reloaded ") + 1
    proc.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while proc.log_path.read_text().count(" reloaded ") < done:
        assert time.monotonic() < deadline, "no reload logged"
        time.sleep(0.05)


def delivered(proc: ServerProcess, address: str) -> list[bytes]:
    """Messages in the user's Maildir now (new/ and cur/)."""
    box = proc.maildir(address)
    return [
        p.read_bytes()
        for sub in ("new", "cur")
        if (box / sub).is_dir()
        for p in (box / sub).iterdir()
    ]


def wait_for_message(
    proc: ServerProcess, address: str, marker: bytes, timeout: float = 15.0
) -> bytes:
    """The delivered message to `address` that contains `marker`, once it is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in delivered(proc, address):
            if marker in message:
                return message
        time.sleep(0.05)
    raise AssertionError(f"no message with {marker!r} for {address} after {timeout}s")


def logged(proc: ServerProcess, event: str, client: RawClient, wait: float = 0.0) -> bool:
    """The server logged `event` for this client's connection (within `wait` seconds)."""
    deadline = time.monotonic() + wait
    while True:
        if any(
            words[1:2] == [event] and f"client={client.local}" in words
            for words in map(str.split, proc.log_path.read_text().splitlines())
        ):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def header_section(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[0] + b"\r\n"
