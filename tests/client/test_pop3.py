"""The POP3 client against a scripted server on loopback: framing, STLS, login, errors."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

import pytest
import trustme

from postoffice.client.pop3 import Pop3Client, Pop3Error, Pop3ProtocolError

CA = trustme.CA()
SERVER_TLS = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
CA.issue_cert("pop.test").configure_cert(SERVER_TLS)
CLIENT_TLS = ssl.create_default_context()
CA.configure_trust(CLIENT_TLS)

CAPA = b"+OK\r\nUSER\r\nUIDL\r\n.\r\n"


class Script:
    """A server that answers each command (or verb) from `answers`; it records what came."""

    def __init__(self, answers: dict[str, bytes], *, implicit: bool, chunk: int = 0) -> None:
        self.answers = {"CAPA": CAPA, "QUIT": b"+OK bye\r\n", **answers}
        self.implicit = implicit
        self.chunk = chunk  # write answers in pieces this big (0: at once)
        self.received: list[str] = []
        self.finished = asyncio.Event()

    async def write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        step = self.chunk or len(data) or 1
        for start in range(0, len(data), step):
            writer.write(data[start : start + step])
            await writer.drain()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.write(writer, b"+OK ready\r\n")
            while line := await reader.readline():
                command = line.decode().strip()
                self.received.append(command)
                verb = command.split(" ")[0]
                answer = self.answers.get(command, self.answers.get(verb, b"-ERR unknown\r\n"))
                await self.write(writer, answer)
                if verb == "STLS" and answer.startswith(b"+OK"):
                    await writer.start_tls(SERVER_TLS)
                if verb == "QUIT":
                    break
        except OSError:  # the client went away (ssl.SSLError is an OSError)
            pass
        finally:
            writer.close()
            self.finished.set()


def run(script: Script, client_does: Callable[[Pop3Client], Awaitable[object]]) -> object:
    async def main() -> object:
        server = await asyncio.start_server(
            script.handle, "127.0.0.1", 0, ssl=SERVER_TLS if script.implicit else None
        )
        port = server.sockets[0].getsockname()[1]
        try:
            client = await Pop3Client.connect(
                "pop.test",
                port,
                tls=CLIENT_TLS,
                implicit_tls=script.implicit,
                address="127.0.0.1",
                timeout=5,
            )
            try:
                return await client_does(client)
            finally:
                await client.close()
                await asyncio.wait_for(script.finished.wait(), 5)
        finally:
            server.close()

    return asyncio.run(main())


@pytest.mark.parametrize("chunk", [0, 1, 3])
def test_retr_unstuffs_whatever_the_chunking(chunk: int) -> None:
    long_line = b"z" * (3000 if chunk else 200_000)  # a line longer than any line limit
    answers = {
        "RETR 1": b"+OK\r\nline1\r\n..dot\r\n...\r\n\r\n" + long_line + b"\r\n.\r\n",
        "RETR 2": b"+OK 0 octets\r\n.\r\n",
    }
    script = Script(answers, implicit=True, chunk=chunk)

    async def retrieve(client: Pop3Client) -> list[bytes]:
        return [await client.retr(1), await client.retr(2)]

    first, empty = run(script, retrieve)  # type: ignore[misc]
    expected = b"line1\r\n.dot\r\n..\r\n\r\n" + long_line + b"\r\n"
    assert first == expected
    assert empty == b""


def test_stls_then_user_pass_and_uidl() -> None:
    script = Script(
        {
            "STLS": b"+OK go ahead\r\n+OK injected before TLS\r\n",
            "CAPA": b"+OK\r\nUSER\r\nPIPELINING\r\n.\r\n",
            "USER alice": b"+OK\r\n",
            "PASS pw": b"+OK logged in\r\n",
            "UIDL": b"+OK\r\n1 abc\r\n2 x.y\r\n.\r\n",
        },
        implicit=False,
    )

    async def session(client: Pop3Client) -> list[tuple[int, str]]:
        await client.login("alice", "pw")
        listing = await client.uidl()
        await client.quit()
        return listing

    assert run(script, session) == [(1, "abc"), (2, "x.y")]
    assert script.received == ["STLS", "CAPA", "USER alice", "PASS pw", "UIDL", "QUIT"]


def test_auth_plain_when_offered_and_the_auth_code_of_a_refusal() -> None:
    script = Script(
        {
            "CAPA": b"+OK\r\nSASL PLAIN\r\n.\r\n",
            "AUTH": b"-ERR [AUTH] invalid user name or password\r\n",
        },
        implicit=True,
    )
    with pytest.raises(Pop3Error) as refused:
        run(script, lambda client: client.login("alice", "pw"))
    assert refused.value.code == "AUTH"
    assert script.received[1] == "AUTH PLAIN AGFsaWNlAHB3"


def test_a_refused_stls_ends_the_attempt_before_any_secret() -> None:
    script = Script({"STLS": b"-ERR not here\r\n"}, implicit=False)
    with pytest.raises(Pop3Error, match="STLS refused"):
        run(script, lambda client: client.login("alice", "pw"))
    assert script.received == ["STLS"]


@pytest.mark.parametrize(
    "answer", [b"+OK\r\n1 has space\r\n.\r\n", b"+OK\r\nx abc\r\n.\r\n", b"* weird\r\n"]
)
def test_malformed_answers_are_protocol_errors(answer: bytes) -> None:
    script = Script({"UIDL": answer}, implicit=True)
    with pytest.raises(Pop3ProtocolError):
        run(script, lambda client: client.uidl())


def test_close_without_quit_sends_no_quit() -> None:
    script = Script({"DELE 1": b"+OK marked\r\n"}, implicit=True)
    run(script, lambda client: client.dele(1))
    assert script.received == ["CAPA", "DELE 1"]


def test_a_line_break_in_a_credential_is_refused_locally() -> None:
    script = Script({"USER": b"+OK\r\n"}, implicit=True)
    with pytest.raises(ValueError, match="PASS"):
        run(script, lambda client: client.login("alice", "pw\r\nDELE 1"))
    assert "DELE 1" not in script.received
