"""POP3 against a running server: poplib and hand-driven sessions, maildrop semantics, crashes.

Most tests share one server (`pop`, with alice's maildrop emptied before each test) and put
messages in place with the store's own `deliver`, so they cost a connection, not a start-up.
Tests that change the configuration, restart or SIGKILL the server start their own. Byte-level
checks (dot-stuffing, octet counts, pipelining, STLS injection, overlong lines) go through
`Wire`, a raw socket, because poplib hides the bytes. One test binds the embedded default
ports (2110 and the rest) and is the only one that does.

Standards: RFC 1939, RFC 2449, RFC 2595, RFC 3206, RFC 5034, RFC 8314
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import io
import os
import poplib
import secrets
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from postoffice import config as configuration
from postoffice.app import Server
from postoffice.logs import EventLog
from postoffice.storage.maildir import INDEX_NAME
from postoffice.storage.maildir_store import MaildirStore
from postoffice.testing.server import ServerProcess, with_user

USER, PASSWORD = "alice@localhost", "secret-alice"
CAPABILITIES = {
    "TOP",
    "UIDL",
    "USER",
    "SASL",
    "RESP-CODES",
    "AUTH-RESP-CODE",
    "PIPELINING",
    "STLS",
    "IMPLEMENTATION",
}


# -- helpers -------------------------------------------------------------------------------


class Wire:
    """A hand-driven POP3 connection: raw lines out and in, nothing interpreted."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None, hostname: str = "mx.test"):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock: socket.socket = tls.wrap_socket(sock, server_hostname=hostname) if tls else sock
        self.buffer = b""
        self.greeting = self.line()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def line(self) -> bytes:
        """The next line, without its CRLF; EOFError when the server closed first."""
        while b"\r\n" not in self.buffer:
            if not self._fill():
                raise EOFError(f"connection closed; unterminated: {self.buffer!r}")
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def block(self) -> list[bytes]:
        """The lines of a multi-line answer up to the terminating ".", still byte-stuffed."""
        lines = []
        while (line := self.line()) != b".":
            lines.append(line)
        return lines

    def cmd(self, command: str | bytes) -> bytes:
        self.send((command.encode() if isinstance(command, str) else command) + b"\r\n")
        return self.line()

    def multi(self, command: str) -> tuple[bytes, list[bytes]]:
        status = self.cmd(command)
        return status, self.block() if status.startswith(b"+OK") else []

    def login(self, user: str = USER, password: str = PASSWORD) -> bytes:
        assert self.cmd(f"USER {user}").startswith(b"+OK")
        return self.cmd(f"PASS {password}")

    def rest(self) -> bytes:
        """Everything until the server closes the connection."""
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data

    def starttls(self, context: ssl.SSLContext, hostname: str = "mx.test") -> None:
        assert not self.buffer, "plaintext left over before the handshake"
        self.sock = context.wrap_socket(self.sock, server_hostname=hostname)


def unstuff(lines: list[bytes]) -> bytes:
    """A multi-line answer as the message it carries (RFC 1939 §3), in CRLF form."""
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


def put(proc: ServerProcess, *messages: bytes, user: str = USER) -> list[str]:
    """Deliver `messages` into the user's INBOX the way local delivery does; their keys."""
    with MaildirStore(proc.data_dir / "mail", hostname="mx.test").mailbox(user) as box:
        return [box.deliver(data) for data in messages]


def files(proc: ServerProcess, user: str = USER) -> dict[str, bytes]:
    """The user's messages on disk now, by key (file name without the info part)."""
    box = proc.maildir(user)
    return {
        path.name.partition(":")[0]: path.read_bytes()
        for sub in ("new", "cur")
        if (box / sub).is_dir()
        for path in (box / sub).iterdir()
    }


def message(n: int, body: bytes = b"") -> bytes:
    return b"From: bob@example.org\r\nSubject: message %d\r\n\r\nbody of %d\r\n%s" % (n, n, body)


def self_signed(proc: ServerProcess) -> ssl.SSLContext:
    """A client context that trusts only the certificate the server made for itself (it
    names mx.test); host names are checked."""
    return ssl.create_default_context(cafile=proc.data_dir / "tls" / "cert.pem")


class Pop3(poplib.POP3):
    """poplib's POP3 for host "mx.test" that connects to 127.0.0.1, so that STLS checks
    the certificate for that name."""

    def _create_socket(self, timeout: float) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout)


class Pop3Ssl(poplib.POP3_SSL):
    """poplib's POP3_SSL (implicit TLS) to 127.0.0.1, certificate checked for self.host."""

    def _create_socket(self, timeout: float) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout)
        return self.context.wrap_socket(sock, server_hostname=self.host)


def add_user(proc: ServerProcess, user: str = USER, password: str = PASSWORD) -> None:
    proc.cli("user", "add", user, "--password-stdin", stdin=f"{password}\n")


def new_server(tmp_path: Path, **sections: dict[str, object]) -> ServerProcess:
    """A server (not started) with alice and the given config sections set."""
    return with_user(tmp_path / "data", USER, PASSWORD, **sections)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # every test talks from 127.0.0.1: the per-address command rate is not under test here
    proc = new_server(tmp_path_factory.mktemp("pop3"), limits={"commands_per_minute": 100_000})
    proc.start()
    yield proc
    proc.stop()


def emptied(proc: ServerProcess) -> ServerProcess:
    """`proc` with alice's maildrop emptied (its lock is free: every test QUITs)."""
    box = proc.maildir(USER)
    for sub in ("new", "cur"):
        if (box / sub).is_dir():
            for path in (box / sub).iterdir():
                path.unlink()
    return proc


@pytest.fixture
def pop(shared: ServerProcess) -> ServerProcess:
    """The shared server, alice's maildrop empty."""
    return emptied(shared)


def login_with_poplib(proc: ServerProcess) -> poplib.POP3:
    client = poplib.POP3(proc.host, proc.pop3_port, timeout=10)
    client.user(USER)
    client.pass_(PASSWORD)
    return client


# -- what is offered ------------------------------------------------------------------------


def test_greeting_and_capa_offer_every_extension(pop: ServerProcess) -> None:
    client = poplib.POP3(pop.host, pop.pop3_port, timeout=10)
    try:
        assert client.getwelcome().startswith(b"+OK")
        assert b"<" not in client.getwelcome()  # no APOP timestamp: APOP is not offered
        capa = client.capa()
        assert set(capa) == CAPABILITIES
        assert set(capa["SASL"]) == {"PLAIN", "LOGIN", "SCRAM-SHA-256"}
        assert capa["IMPLEMENTATION"] == ["postoffice"]
        with pytest.raises(poplib.error_proto, match="APOP"):
            client._shortcmd(f"APOP {USER} {'0' * 32}")  # poplib.apop() would not send it
        client.user(USER)
        client.pass_(PASSWORD)
        assert client.capa() == capa  # RFC 2449 §5: announced in both states alike
    finally:
        client.quit()


def test_poplib_reads_every_message_exactly(pop: ServerProcess) -> None:
    keys = put(
        pop,
        message(1),
        message(2, b".leading dot\r\n..two dots\r\n.\r\nend\r\n"),
        message(3, b"x" * 998 + b"\r\n" + b"line\r\n" * 5000),  # long lines, 30 kB
        message(4, b".dot\r\n" + (b"y" * 998 + b"\r\n") * 100),  # 100 kB: read off the loop
    )
    stored = files(pop)
    client = login_with_poplib(pop)
    try:
        count, octets = client.stat()
        assert (count, octets) == (4, sum(len(stored[k]) for k in keys))
        _, scan, _ = client.list()
        assert scan == [b"%d %d" % (n, len(stored[k])) for n, k in enumerate(keys, 1)]
        _, uidls, _ = client.uidl()
        assert uidls == [b"%d %s" % (n, k.encode()) for n, k in enumerate(keys, 1)]
        assert client.uidl(2) == b"+OK 2 " + keys[1].encode()
        assert client.list(3) == b"+OK 3 %d" % len(stored[keys[2]])
        for n, key in enumerate(keys, 1):
            status, lines, _ = client.retr(n)
            assert status == b"+OK %d octets" % len(stored[key])
            assert b"\r\n".join(lines) + b"\r\n" == stored[key]  # poplib undoes the stuffing
            header = stored[key].partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
            _, top0, _ = client.top(n, 0)
            assert b"\r\n".join(top0) + b"\r\n" == header
            _, top1, _ = client.top(n, 1)
            assert b"\r\n".join(top1) + b"\r\n" == header + b"body of %d\r\n" % n
            _, top_all, _ = client.top(n, 100_000)  # more lines than the body has
            assert top_all == lines
        assert client.noop() == b"+OK"
    finally:
        client.quit()


def test_retr_and_top_are_dot_stuffed_and_counted_in_crlf(pop: ServerProcess) -> None:
    body = b".starts with a dot\r\n.\r\n..\r\nplain\r\n"
    (key,) = put(pop, message(1, body))
    stored = files(pop)[key]
    with Wire(pop.pop3_port) as wire:
        assert wire.login().startswith(b"+OK")
        status, lines = wire.multi("RETR 1")
        assert status == b"+OK %d octets" % len(stored)
        assert lines[-4:] == [b"..starts with a dot", b"..", b"...", b"plain"]  # RFC 1939 §3
        assert unstuff(lines) == stored  # LIST/STAT octets = the CRLF form RETR sends
        assert wire.cmd("LIST 1") == b"+OK 1 %d" % len(stored)
        assert wire.cmd("STAT") == b"+OK 1 %d" % len(stored)
        _, top = wire.multi("TOP 1 2")
        assert top[-2:] == [b"body of 1", b"..starts with a dot"]
        assert wire.cmd("QUIT").startswith(b"+OK")


def test_messages_in_new_and_cur_are_both_visible(pop: ServerProcess) -> None:
    """A message read by another client (cur/, with flags) and a foreign-named file count."""
    fresh, seen = put(pop, message(1), message(2))
    box = pop.maildir(USER)
    (box / "new" / seen).rename(box / "cur" / f"{seen}:2,S")
    foreign = message(3, b"written by another tool\r\n")
    (box / "cur" / "1700000000.foreign-tool.example:2,RS").write_bytes(foreign)
    client = login_with_poplib(pop)
    try:
        assert client.stat() == (3, sum(len(data) for data in files(pop).values()))
        _, uidls, _ = client.uidl()
        assert {line.split()[1] for line in uidls} == {
            fresh.encode(),
            seen.encode(),
            b"1700000000.foreign-tool.example",
        }
        texts = [b"\r\n".join(client.retr(n)[1]) + b"\r\n" for n in (1, 2, 3)]
        assert sorted(texts) == sorted([message(1), message(2), foreign])
    finally:
        client.quit()


def test_octets_of_a_foreign_lf_only_message_are_those_retr_sends(pop: ServerProcess) -> None:
    """Tools such as procmail write Maildir files with bare LF line ends."""
    box = pop.maildir(USER)
    (box / "new").mkdir(parents=True, exist_ok=True)
    (box / "new" / "1700000000.procmail.example").write_bytes(b"Subject: lf\n\nline\n")
    with Wire(pop.pop3_port) as wire:
        assert wire.login().startswith(b"+OK")
        status, lines = wire.multi("RETR 1")
        sent = len(unstuff(lines))
        assert wire.multi("RETR 1") == (status, lines)  # again, once sizes are known to differ
        listed = wire.cmd("LIST 1")
        assert wire.cmd("QUIT").startswith(b"+OK")
    assert sent == len(b"Subject: lf\r\n\r\nline\r\n")
    assert (listed, status) == (b"+OK 1 %d" % sent, b"+OK %d octets" % sent)


# -- logging in -----------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def scram_login(wire: Wire, user: str, password: str) -> bytes:
    """A SCRAM-SHA-256 client (RFC 5802, RFC 7677) over AUTH (RFC 5034); the final answer."""
    nonce = secrets.token_urlsafe(18)
    first_bare = f"n={user},r={nonce}"
    challenge = wire.cmd(f"AUTH SCRAM-SHA-256 {b64(b'n,,' + first_bare.encode())}")
    assert challenge.startswith(b"+ "), challenge
    server_first = base64.b64decode(challenge[2:]).decode()
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    assert fields["r"].startswith(nonce)
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    final = wire.cmd(b64(f"{without_proof},p={b64(proof)}".encode()))
    assert final.startswith(b"+ "), final
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    expected = b"v=" + base64.b64encode(hmac.digest(server_key, auth_message, "sha256"))
    assert base64.b64decode(final[2:]) == expected  # the server proved it knows the key
    return wire.cmd("")


def plain(user: str, password: str) -> str:
    return b64(f"\0{user}\0{password}".encode())


@pytest.mark.parametrize(
    "mechanism", ["PLAIN", "PLAIN-CHALLENGE", "LOGIN", "LOGIN-INITIAL", "SCRAM-SHA-256"]
)
def test_auth_mechanisms_log_in(pop: ServerProcess, mechanism: str) -> None:
    put(pop, message(1))
    with Wire(pop.pop3_port) as wire:
        if mechanism == "PLAIN":  # RFC 5034 §4: initial response on the AUTH line
            answer = wire.cmd(f"AUTH PLAIN {plain(USER, PASSWORD)}")
        elif mechanism == "PLAIN-CHALLENGE":
            assert wire.cmd("AUTH PLAIN") == b"+ "
            answer = wire.cmd(plain(USER, PASSWORD))
        elif mechanism == "LOGIN":
            assert wire.cmd("AUTH LOGIN").startswith(b"+ ")
            assert wire.cmd(b64(USER.encode())).startswith(b"+ ")
            answer = wire.cmd(b64(PASSWORD.encode()))
        elif mechanism == "LOGIN-INITIAL":
            assert wire.cmd(f"AUTH LOGIN {b64(USER.encode())}").startswith(b"+ ")
            answer = wire.cmd(b64(PASSWORD.encode()))
        else:
            answer = scram_login(wire, USER, PASSWORD)
        assert answer.startswith(b"+OK"), answer
        assert wire.cmd("STAT").startswith(b"+OK 1 ")
        assert wire.cmd("QUIT").startswith(b"+OK")


def test_failed_logins_answer_with_the_auth_code(pop: ServerProcess) -> None:
    with Wire(pop.pop3_port) as wire:
        _, mechanisms = wire.multi("AUTH")  # RFC 1734 clients ask for the list this way
        assert set(mechanisms) == {b"PLAIN", b"LOGIN", b"SCRAM-SHA-256"}
        assert wire.login(password="wrong").startswith(b"-ERR [AUTH] ")  # RFC 3206 §5
        assert wire.cmd("AUTH PLAIN").startswith(b"+ ")
        assert wire.cmd("*").startswith(b"-ERR")  # RFC 5034 §4: the client cancels
        assert wire.cmd("AUTH CRAM-MD5").startswith(b"-ERR")
        assert wire.cmd("AUTH PLAIN !!!").startswith(b"-ERR")  # not base64
        assert wire.cmd("STAT").startswith(b"-ERR")  # still not logged in
        assert wire.login().startswith(b"+OK")
        assert wire.cmd("QUIT").startswith(b"+OK")


# -- TLS ------------------------------------------------------------------------------------


def test_stls_with_poplib_then_login(pop: ServerProcess) -> None:
    put(pop, message(1))
    client = Pop3("mx.test", pop.pop3_port, timeout=10)
    try:
        assert client.stls(context=self_signed(pop)).startswith(b"+OK")
        capa = client.capa()
        assert "STLS" not in capa and "USER" in capa  # RFC 2595 §4: only once
        with pytest.raises(poplib.error_proto):
            client._shortcmd("STLS")  # the server refuses a second one
        client.user(USER)
        client.pass_(PASSWORD)
        assert client.stat()[0] == 1
    finally:
        client.quit()


def test_stls_discards_plaintext_sent_after_it(pop: ServerProcess) -> None:
    """RFC 2595 §4, CVE-2011-0411: a command pipelined behind STLS is not run after TLS."""
    with Wire(pop.pop3_port) as wire:
        wire.send(b"STLS\r\nCAPA\r\n")
        assert wire.line().startswith(b"+OK")
        wire.starttls(self_signed(pop))
        wire.send(b"QUIT\r\n")
        assert wire.rest().startswith(b"+OK postoffice POP3 server signing off")


def test_pop3_ssl_implicit_tls_verifies_and_logs_in(pop: ServerProcess) -> None:
    put(pop, message(1))
    client = Pop3Ssl("mx.test", pop.pop3s_port, context=self_signed(pop), timeout=10)
    try:
        capa = client.capa()
        assert "STLS" not in capa and "USER" in capa
        with pytest.raises(poplib.error_proto):
            client._shortcmd("STLS")  # RFC 2595 §4: not once TLS is on
        client.user(USER)
        client.pass_(PASSWORD)
        assert client.retr(1)[1][-1] == b"body of 1"
    finally:
        client.quit()


def test_a_configured_certificate_from_a_trusted_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("mx.test")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(key)
    proc = new_server(tmp_path, tls={"cert": str(cert), "key": str(key)})
    context = ssl.create_default_context()  # the system store, plus only this CA
    ca.configure_trust(context)
    proc.start()
    try:
        put(proc, message(1))
        client = Pop3Ssl("mx.test", proc.pop3s_port, context=context, timeout=10)
        client.user(USER)
        client.pass_(PASSWORD)
        assert client.stat()[0] == 1
        client.quit()
        with Wire(proc.pop3_port) as wire:
            assert wire.cmd("STLS").startswith(b"+OK")
            wire.starttls(context)
            assert wire.login().startswith(b"+OK")
            assert wire.cmd("QUIT").startswith(b"+OK")
        with pytest.raises(ssl.SSLCertVerificationError):  # the name is checked
            Pop3Ssl("other.test", proc.pop3s_port, context=context, timeout=10)
    finally:
        proc.stop()


def test_plaintext_logins_need_tls_when_loopback_is_not_exempt(tmp_path: Path) -> None:
    proc = new_server(tmp_path, pop3={"allow_plaintext_loopback": False})
    proc.start()
    try:
        with Wire(proc.pop3_port) as wire:
            _, capa = wire.multi("CAPA")
            assert b"STLS" in capa
            assert not any(line.startswith((b"USER", b"SASL")) for line in capa)
            assert wire.cmd(f"USER {USER}").startswith(b"-ERR [AUTH] ")
            assert wire.cmd(f"AUTH PLAIN {plain(USER, PASSWORD)}").startswith(b"-ERR [AUTH] ")
            assert wire.cmd("STLS").startswith(b"+OK")
            wire.starttls(self_signed(proc))
            _, capa = wire.multi("CAPA")
            assert b"USER" in capa and any(line.startswith(b"SASL ") for line in capa)
            assert wire.cmd(f"AUTH PLAIN {plain(USER, PASSWORD)}").startswith(b"+OK")
            assert wire.cmd("QUIT").startswith(b"+OK")
        client = Pop3Ssl("mx.test", proc.pop3s_port, context=self_signed(proc), timeout=10)
        client.user(USER)
        client.pass_(PASSWORD)
        client.quit()
    finally:
        proc.stop()


# -- maildrop semantics ---------------------------------------------------------------------


def test_a_second_session_is_refused_while_the_first_holds_the_lock(pop: ServerProcess) -> None:
    put(pop, message(1))
    first = login_with_poplib(pop)
    with Wire(pop.pop3_port) as second:
        assert second.login().startswith(b"-ERR [IN-USE] ")  # RFC 2449 §8.1.1
        assert second.cmd(f"AUTH PLAIN {plain(USER, PASSWORD)}").startswith(b"-ERR [IN-USE] ")
        first.quit()
        assert second.login().startswith(b"+OK")  # the lock went with the first session
        assert second.cmd("QUIT").startswith(b"+OK")


def test_a_dropped_connection_releases_the_lock_and_deletes_nothing(pop: ServerProcess) -> None:
    put(pop, message(1), message(2))
    before = files(pop)
    with Wire(pop.pop3_port) as wire:
        assert wire.login().startswith(b"+OK")
        assert wire.cmd("DELE 1").startswith(b"+OK")
        assert wire.cmd("DELE 2").startswith(b"+OK")
    # closed without QUIT: no UPDATE state (RFC 1939 §6)
    deadline = time.monotonic() + 10
    while True:
        with Wire(pop.pop3_port) as wire:
            answer = wire.login()
            if answer.startswith(b"+OK"):
                assert wire.cmd("STAT").startswith(b"+OK 2 ")
                assert wire.cmd("QUIT").startswith(b"+OK")
                break
            assert answer.startswith(b"-ERR [IN-USE]") and time.monotonic() < deadline
        time.sleep(0.05)
    assert files(pop) == before


def test_the_message_list_is_frozen_at_login(pop: ServerProcess) -> None:
    put(pop, message(1))
    with Wire(pop.pop3_port) as wire:
        assert wire.login().startswith(b"+OK")
        with smtplib.SMTP(pop.host, pop.smtp_port, timeout=10) as smtp:
            smtp.sendmail("bob@example.org", [USER], message(2))
        pop.wait_for_mail(USER, 2)
        assert wire.cmd("STAT").startswith(b"+OK 1 ")
        assert wire.cmd("LIST 2").startswith(b"-ERR")
        assert wire.cmd("RETR 2").startswith(b"-ERR")
        _, listing = wire.multi("UIDL")
        assert len(listing) == 1
        assert wire.cmd("QUIT").startswith(b"+OK")
    client = login_with_poplib(pop)
    try:
        assert client.stat()[0] == 2  # the next session sees it
        assert client.retr(2)[1][-1] == b"body of 2"
    finally:
        client.quit()


def test_dele_marks_rset_unmarks_and_quit_removes(pop: ServerProcess) -> None:
    keys = put(pop, message(1), message(2), message(3))
    sizes = {key: len(data) for key, data in files(pop).items()}
    with Wire(pop.pop3_port) as wire:
        assert wire.login().startswith(b"+OK")
        uidl_2 = wire.cmd("UIDL 2")
        assert wire.cmd("DELE 2").startswith(b"+OK")
        assert wire.cmd("STAT") == b"+OK 2 %d" % (sizes[keys[0]] + sizes[keys[2]])
        _, scan = wire.multi("LIST")
        assert [line.split()[0] for line in scan] == [b"1", b"3"]  # numbers do not shift
        _, uidls = wire.multi("UIDL")
        assert [line.split()[0] for line in uidls] == [b"1", b"3"]
        for command in ("LIST 2", "UIDL 2", "RETR 2", "TOP 2 0", "DELE 2"):
            assert wire.cmd(command).startswith(b"-ERR"), command  # RFC 1939 §5
        assert len(files(pop)) == 3  # only marked
        assert wire.cmd("RSET").startswith(b"+OK")
        assert wire.cmd("STAT") == b"+OK 3 %d" % sum(sizes.values())
        assert wire.cmd("UIDL 2") == uidl_2
        assert wire.cmd("DELE 1").startswith(b"+OK")
        assert wire.cmd("DELE 3").startswith(b"+OK")
        assert wire.cmd("NOOP") == b"+OK"
        assert wire.cmd("QUIT").startswith(b"+OK")
        assert wire.rest() == b""  # and the server hangs up
    assert list(files(pop)) == [keys[1]]
    with Wire(pop.pop3_port) as wire:
        assert wire.login().startswith(b"+OK")
        assert wire.cmd("UIDL 1") == b"+OK 1 " + uidl_2.split()[-1]  # the same UIDL
        assert wire.cmd("QUIT").startswith(b"+OK")


def test_the_message_read_ahead_after_a_retr_is_served_only_as_asked(pop: ServerProcess) -> None:
    """After RETR n the server reads n + 1 ahead: a DELE of it still counts, and a client
    that asks for another message gets that one."""
    keys = put(pop, message(1), message(2, b".dot\r\n"), message(3), message(4))
    stored = files(pop)
    with Wire(pop.pop3_port) as wire:
        assert wire.login().startswith(b"+OK")
        assert wire.multi("RETR 1")[1] == stored[keys[0]].split(b"\r\n")[:-1]
        assert wire.cmd("DELE 2").startswith(b"+OK")
        assert wire.cmd("RETR 2").startswith(b"-ERR")  # RFC 1939 §5: deleted, read ahead or not
        assert wire.multi("RETR 4")[1] == stored[keys[3]].split(b"\r\n")[:-1]
        assert wire.cmd("RSET").startswith(b"+OK")
        _, stuffed = wire.multi("RETR 2")
        assert stuffed == b"..dot".join(stored[keys[1]].split(b".dot")).split(b"\r\n")[:-1]
        assert wire.multi("RETR 3")[1] == stored[keys[2]].split(b"\r\n")[:-1]
        assert wire.cmd("RETR 5").startswith(b"-ERR")  # nothing after the last to read ahead
        assert wire.cmd("QUIT").startswith(b"+OK")


def test_a_vanished_message_is_a_permanent_error(pop: ServerProcess) -> None:
    """Another program removed a file during the session: [SYS/PERM] (RFC 3206 §4)."""
    (key,) = put(pop, message(1))
    with Wire(pop.pop3_port) as wire:
        assert wire.login().startswith(b"+OK")
        (pop.maildir(USER) / "new" / key).unlink()
        assert wire.cmd("RETR 1").startswith(b"-ERR [SYS/PERM] ")
        assert wire.cmd("DELE 1").startswith(b"+OK")
        assert wire.cmd("QUIT").startswith(b"+OK")  # removing what is gone is fine


def test_a_maildrop_that_cannot_be_read_is_a_temporary_error(pop: ServerProcess) -> None:
    """[SYS/TEMP] (RFC 3206 §4), and the failed attempt leaves the maildrop unlocked."""
    put(pop, message(1))
    cur = pop.maildir(USER) / "cur"
    cur.rmdir()
    cur.write_bytes(b"not a directory")
    try:
        with Wire(pop.pop3_port) as wire:
            assert wire.login().startswith(b"-ERR [SYS/TEMP] ")
            assert wire.cmd("STAT").startswith(b"-ERR")  # still in AUTHORIZATION
    finally:
        cur.unlink()
        cur.mkdir()
    with Wire(pop.pop3_port) as wire:
        assert wire.login().startswith(b"+OK")  # not [IN-USE]: the lock was given back
        assert wire.cmd("QUIT").startswith(b"+OK")


def test_pipelined_commands_are_answered_in_order(pop: ServerProcess) -> None:
    put(pop, message(1), message(2))
    with Wire(pop.pop3_port) as wire:
        wire.send(
            f"USER {USER}\r\nPASS {PASSWORD}\r\nSTAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\n"
            "UIDL\r\nBOGUS\r\nQUIT\r\n".encode()
        )
        assert wire.line().startswith(b"+OK")
        assert wire.line().startswith(b"+OK")
        assert wire.line().startswith(b"+OK 2 ")
        assert wire.line().startswith(b"+OK") and len(wire.block()) == 2
        assert wire.line().startswith(b"+OK") and wire.block()[-1] == b"body of 1"
        assert wire.line().startswith(b"+OK")
        assert wire.line().startswith(b"+OK") and wire.block()[0].startswith(b"2 ")
        assert wire.line().startswith(b"-ERR")
        assert wire.line().startswith(b"+OK")
    assert len(files(pop)) == 1


def test_a_burst_after_login_mixing_quick_and_slow_answers_keeps_its_order(
    pop: ServerProcess,
) -> None:
    """Logged in, the session answers from the transport what needs no waiting; CAPA and a
    message too big for that path go through the session's task, and the answers still come
    in the order asked, each against the state its predecessors left (RFC 2449 §6.6)."""
    big = b"".join(b"line %05d of a big message\r\n" % n for n in range(4000))  # > 64 KiB
    put(pop, message(1), message(2, big))
    with Wire(pop.pop3_port) as wire:
        assert wire.login().startswith(b"+OK")
        wire.send(
            b"STAT\r\nRETR 1\r\nDELE 1\r\nRETR 1\r\nRETR 2\r\nCAPA\r\nTOP 2 1\r\n"
            b"STAT\r\nRSET\r\nLIST 1\r\nNOOP\r\nQUIT\r\n"
        )
        assert wire.line().startswith(b"+OK 2 ")
        assert wire.line().startswith(b"+OK") and wire.block()[-1] == b"body of 1"
        assert wire.line() == b"+OK message 1 deleted"
        assert wire.line().startswith(b"-ERR")  # RETR of a deleted message
        status, lines = wire.line(), wire.block()
        assert status == b"+OK %d octets" % len(message(2, big))
        assert b"\r\n".join(lines) + b"\r\n" == message(2, big)
        assert wire.line().startswith(b"+OK") and b"UIDL" in wire.block()
        assert wire.line().startswith(b"+OK") and wire.block()[-1] == b"body of 2"
        assert wire.line() == b"+OK 1 %d" % len(message(2, big))
        assert wire.line().startswith(b"+OK maildrop has 2 messages")
        assert wire.line() == b"+OK 1 %d" % len(message(1))
        assert wire.line() == b"+OK"
        assert wire.line().startswith(b"+OK")
        assert wire.rest() == b""
    assert len(files(pop)) == 2  # RSET unmarked message 1


def test_thousands_of_messages(pop: ServerProcess) -> None:
    """Correctness only at a few thousand messages; the benchmark measures the time."""
    box = pop.maildir(USER)
    for sub in ("new", "cur"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    expected = {}
    for n in range(3000):  # names as local delivery writes them, half of them seen
        data = message(n, b"padding %d\r\n" % n * (n % 7))
        key = f"1700000000.M{n:06d}P1Q{n}.gen.example,S={len(data)}"
        name = f"cur/{key}:2,S" if n % 2 else f"new/{key}"
        (box / name).write_bytes(data)
        expected[key] = data
    with Wire(pop.pop3_port) as wire:
        assert wire.login().startswith(b"+OK")
        assert wire.cmd("STAT") == b"+OK 3000 %d" % sum(len(data) for data in expected.values())
        _, uidls = wire.multi("UIDL")
        keys = [line.split()[1].decode() for line in uidls]
        assert len(set(keys)) == 3000 and set(keys) == set(expected)
        _, scan = wire.multi("LIST")
        assert [int(line.split()[1]) for line in scan] == [len(expected[k]) for k in keys]
        for n in (1, 1500, 3000):
            _, lines = wire.multi(f"RETR {n}")
            assert unstuff(lines) == expected[keys[n - 1]]
        for n in range(1, 3001, 2):
            wire.send(b"DELE %d\r\n" % n)
        for _ in range(1500):
            assert wire.line().startswith(b"+OK")
        assert wire.cmd("STAT").startswith(b"+OK 1500 ")
        assert wire.cmd("QUIT").startswith(b"+OK")
    assert set(files(pop)) == set(keys[1::2])


def test_sessions_share_one_open_maildrop_index(pop: ServerProcess) -> None:
    """Sessions leave the folder's index open once for the next login, never once each (a
    re-index is still seen: test_uidls_stay_across_sessions_restarts_and_reindexing)."""
    assert pop.process is not None
    for _ in range(3):
        login_with_poplib(pop).quit()
    fd_dir = Path(f"/proc/{pop.process.pid}/fd")
    if not fd_dir.is_dir():
        pytest.skip("needs /proc")
    held = []
    for fd in fd_dir.iterdir():
        try:
            held.append(os.readlink(fd))
        except OSError:
            continue
    open_index = [path for path in held if INDEX_NAME in path]
    assert len(open_index) <= 3  # the database, its -wal and its -shm


# -- crashes, restarts, re-indexing ----------------------------------------------------------


def test_sigkill_during_a_session_deletes_nothing(tmp_path: Path) -> None:
    proc = new_server(tmp_path)
    proc.start()
    try:
        put(proc, message(1), message(2), message(3))
        before = files(proc)
        with Wire(proc.pop3_port) as wire:
            assert wire.login().startswith(b"+OK")
            for n in (1, 2, 3):
                assert wire.cmd(f"DELE {n}").startswith(b"+OK")
            proc.kill()
            assert wire.rest() == b""
        assert files(proc) == before
        proc.start()
        with Wire(proc.pop3_port) as again:  # the lock died with the process
            assert again.login().startswith(b"+OK")
            assert again.cmd("STAT").startswith(b"+OK 3 ")
            assert again.cmd("QUIT").startswith(b"+OK")
    finally:
        proc.stop()


def uidl_listing(proc: ServerProcess) -> list[bytes]:
    client = login_with_poplib(proc)
    try:
        return [line.split()[1] for line in client.uidl()[1]]
    finally:
        client.quit()


def remove_index(proc: ServerProcess) -> None:
    for path in proc.maildir(USER).glob(INDEX_NAME + "*"):  # with -wal and -shm
        path.unlink()


def test_uidls_stay_across_sessions_restarts_and_reindexing(tmp_path: Path) -> None:
    proc = new_server(tmp_path)
    proc.start()
    try:
        put(proc, message(1), message(2))
        box = proc.maildir(USER)
        (box / "cur" / "legacy message name with spaces:2,S").write_bytes(message(3))
        first = uidl_listing(proc)
        assert len(set(first)) == 3
        assert all(0 < len(u) <= 70 and all(0x21 <= c <= 0x7E for c in u) for u in first)
        assert uidl_listing(proc) == first
        remove_index(proc)  # re-indexing while running
        assert uidl_listing(proc) == first
        proc.stop()
        remove_index(proc)  # and while stopped
        proc.start()
        assert uidl_listing(proc) == first
        put(proc, message(4))
        with Wire(proc.pop3_port) as wire:
            assert wire.login().startswith(b"+OK")
            assert wire.cmd("DELE 1").startswith(b"+OK")
            assert wire.cmd("QUIT").startswith(b"+OK")
        after = uidl_listing(proc)
        assert set(after) >= set(first[1:]) and len(after) == 3
        assert first[0] not in after  # a deleted message's UIDL is not reused
    finally:
        proc.stop()


# -- bad input, limits, timeouts -------------------------------------------------------------


def test_bad_commands_get_clear_errors_and_the_session_goes_on(pop: ServerProcess) -> None:
    put(pop, message(1))
    before_login = [
        "FROBNICATE",
        "NOOP",  # TRANSACTION only
        "STAT",
        "RETR 1",
        "PASS secret",  # without USER
        "USER",
        "APOP alice 0123456789abcdef0123456789abcdef",
    ]
    after_login = [
        "RETR 0",
        "RETR 2",
        "RETR x",
        "RETR",
        "RETR 99999999999",
        "LIST 1 2",
        "TOP 1",
        "TOP 1 -1",
        "TOP 1 x",
        "DELE 7",
        "USER bob@localhost",
        "PASS again",
        "AUTH PLAIN",
        "STLS",
        "UIDL 0",
    ]
    with Wire(pop.pop3_port) as wire:
        for command in before_login:
            assert wire.cmd(command).startswith(b"-ERR "), command
        assert wire.cmd(b"CAPA \xff\xfe").startswith(b"-ERR")  # not UTF-8
        assert wire.cmd(b"NOOP\x00").startswith(b"-ERR")
        assert wire.cmd(b"X" * 300) == b"-ERR Line too long"  # RFC 2449 §4: 255 octets
        wire.send(b"Y" * 200_000 + b"\r\n")  # far past any buffer: refused, then skipped
        assert wire.line().startswith(b"-ERR")
        assert wire.multi("CAPA")[0].startswith(b"+OK")  # still talking
        assert wire.cmd("QUIT").startswith(b"+OK")
    with Wire(pop.pop3_port) as wire:  # a new session: a new error budget (default 20)
        assert wire.login().startswith(b"+OK")
        for command in after_login:
            assert wire.cmd(command).startswith(b"-ERR "), command
        assert wire.cmd("DELE 1").startswith(b"+OK")
        assert wire.cmd("DELE 1").startswith(b"-ERR ")  # already deleted
        assert wire.cmd("noop") == b"+OK"  # commands are case-insensitive
        assert wire.cmd("RSET").startswith(b"+OK")
        assert wire.cmd("QUIT").startswith(b"+OK")
    assert len(files(pop)) == 1


def test_limits_end_sessions_with_response_codes(tmp_path: Path) -> None:
    """The error budget (then a hang-up, no UPDATE), [SYS/TEMP] for too many connections,
    [LOGIN-DELAY] once an address is locked out: one server, in this order."""
    proc = new_server(
        tmp_path,
        limits={"errors_per_session": 4, "max_connections_per_ip": 2},
        auth={"max_failures_per_ip": 2, "base_delay": 0.01},
    )
    proc.start()
    try:
        put(proc, message(1))
        with Wire(proc.pop3_port) as wire:
            assert wire.login().startswith(b"+OK")
            assert wire.cmd("DELE 1").startswith(b"+OK")
            for _ in range(3):
                assert wire.cmd("BOGUS").startswith(b"-ERR")
            assert wire.cmd("BOGUS").startswith(b"-ERR")  # the fourth: answered, then
            assert wire.line() == b"-ERR too many errors, closing connection"
            assert wire.rest() == b""
        assert len(files(proc)) == 1
        login_with_poplib(proc).quit()  # the lock is free again

        with Wire(proc.pop3_port) as one, Wire(proc.pop3s_port, self_signed(proc)) as two:
            assert one.greeting.startswith(b"+OK") and two.greeting.startswith(b"+OK")
            with Wire(proc.pop3_port) as three:
                assert three.greeting.startswith(b"-ERR [SYS/TEMP] ")
                assert three.rest() == b""

        with Wire(proc.pop3_port) as wire:
            assert wire.login(password="wrong-1").startswith(b"-ERR [AUTH] ")
            second = wire.login(password="wrong-2")
            assert second.startswith((b"-ERR [AUTH] ", b"-ERR [LOGIN-DELAY] ")), second
            answer = wire.login()  # the right password, but the address is locked out
            assert answer.startswith(b"-ERR [LOGIN-DELAY] "), answer
    finally:
        proc.stop()


def test_check_config_refuses_an_idle_timeout_below_ten_minutes(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data")
    proc.configure("pop3", idle_timeout=599)
    result = subprocess.run(
        [sys.executable, "-m", "postoffice", "check-config", "--data-dir", str(proc.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "[pop3] idle_timeout" in result.stderr and "600" in result.stderr
    proc.configure("pop3", idle_timeout=600)
    assert proc.cli("check-config").strip().endswith(": ok")


def test_an_idle_session_is_logged_out_without_update(tmp_path: Path) -> None:
    """The idle timeout, in-process: RFC 1939 §3 forbids less than 600 s in the config, so
    the loaded config is altered past validation to 0.5 s."""
    proc = new_server(tmp_path)
    put(proc, message(1))
    loaded = configuration.load(proc.config_path)
    config = dataclasses.replace(loaded, pop3=dataclasses.replace(loaded.pop3, idle_timeout=0.5))

    async def scenario() -> list[bytes]:
        server = Server(config, EventLog(stream=io.StringIO()))
        await server.start()
        try:
            reader, writer = await asyncio.open_connection(proc.host, proc.pop3_port)
            writer.write(f"USER {USER}\r\nPASS {PASSWORD}\r\nDELE 1\r\n".encode())
            started = time.monotonic()
            lines = [await asyncio.wait_for(reader.readline(), 10) for _ in range(5)]
            waited = time.monotonic() - started
            assert await asyncio.wait_for(reader.read(), 10) == b""  # then it hangs up
            writer.close()
            await writer.wait_closed()
            assert waited > 0.5  # the idle time, past the login's own
            reader, writer = await asyncio.open_connection(proc.host, proc.pop3_port)
            writer.write(f"USER {USER}\r\nPASS {PASSWORD}\r\nSTAT\r\nQUIT\r\n".encode())
            lines += [await asyncio.wait_for(reader.readline(), 10) for _ in range(5)]
            writer.close()
            await writer.wait_closed()
            return lines
        finally:
            await server.stop()

    lines = asyncio.run(scenario())
    assert lines[0].startswith(b"+OK") and lines[1].startswith(b"+OK")
    assert lines[2].startswith(b"+OK alice@localhost has 1 messages")
    assert lines[3].startswith(b"+OK")  # DELE 1
    assert lines[4] == b"-ERR idle too long, closing connection\r\n"
    assert lines[8].startswith(b"+OK 1 ")  # autologout is not UPDATE: nothing deleted
    assert len(files(proc)) == 1


def test_a_shutdown_ends_a_logged_in_session_waiting_for_its_client(tmp_path: Path) -> None:
    """A session in TRANSACTION waiting for a command is idle: the server's stop says so with
    [SYS/TEMP] and hangs up at once, and without QUIT nothing marked is deleted."""
    proc = new_server(tmp_path)
    put(proc, message(1))
    config = configuration.load(proc.config_path)

    async def scenario() -> list[bytes]:
        server = Server(config, EventLog(stream=io.StringIO()))
        await server.start()
        stopped = False
        try:
            reader, writer = await asyncio.open_connection(proc.host, proc.pop3_port)
            writer.write(f"USER {USER}\r\nPASS {PASSWORD}\r\nDELE 1\r\n".encode())
            lines = [await asyncio.wait_for(reader.readline(), 10) for _ in range(4)]
            await asyncio.wait_for(server.stop(), 10)
            stopped = True
            lines.append(await asyncio.wait_for(reader.read(), 10))
            writer.close()
            return lines
        finally:
            if not stopped:
                await server.stop()

    lines = asyncio.run(scenario())
    assert lines[3] == b"+OK message 1 deleted\r\n"
    assert lines[4] == b"-ERR [SYS/TEMP] server shutting down\r\n"
    assert len(files(proc)) == 1


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_embedded_default_listens_on_2110(tmp_path: Path) -> None:
    """`postoffice serve` in an empty directory, default config: POP3 on 2110, POP3S on 2995.

    The only test that binds the default ports."""
    defaults = configuration.Config()
    ports = [
        int(address.rpartition(":")[2])
        for section in (defaults.smtp, defaults.submission, defaults.pop3)
        for address in (*section.listen, *getattr(section, "listen_tls", ()))
    ]
    assert 2110 in ports and 2995 in ports
    if busy := [port for port in ports if not _free(port)]:
        pytest.skip(f"default ports in use on this machine: {busy}")
    process = subprocess.Popen(
        [sys.executable, "-m", "postoffice", "serve"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                error = process.communicate()[1].decode()
                if "in use" in error:  # a concurrent run took a port after the check
                    pytest.skip(f"default ports in use: {error}")
                pytest.fail(f"postoffice serve exited: {error}")
            try:
                wire = Wire(2110)
                break
            except OSError:
                assert time.monotonic() < deadline, "nothing listens on 2110"
                time.sleep(0.05)
        with wire:
            assert wire.greeting.startswith(b"+OK")
            _, capa = wire.multi("CAPA")
            assert b"STLS" in capa
        tls = ssl.create_default_context(cafile=tmp_path / "postoffice-data" / "tls" / "cert.pem")
        tls.check_hostname = False  # the default host name is the machine's own
        with Wire(2995, tls) as secure:
            assert secure.greeting.startswith(b"+OK")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            assert process.stderr is not None
            process.stderr.close()
    assert process.returncode == 0
