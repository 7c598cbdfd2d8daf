"""Hand a message to a mail server over SMTP, the user agent's step 2 (submission).

A small, linear SMTP conversation on the shared `SmtpConnection`: greeting, EHLO, STARTTLS
when a TLS context is given (or TLS from the first byte, RFC 8314), AUTH PLAIN when
credentials are given, MAIL, RCPT for each recipient, DATA with the smuggling-safe encoder,
QUIT. `session` is that conversation up to AUTH, which the user agent also uses alone to
check a login. The transcript is kept (secrets masked) so that `postoffice demo` and the
user agent can show it.

Standards: RFC 6409 (message submission), RFC 5321 §3.3, RFC 3207, RFC 4954, RFC 8314
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from postoffice.client.connection import SmtpConnection
from postoffice.protocols.smtp import Reply
from postoffice.protocols.smtp import client as smtp


class SubmitError(Exception):
    """The server refused the message; `reply` is its answer."""

    def __init__(self, step: str, reply: Reply, transcript: list[str]):
        super().__init__(f"{step} refused: {smtp.describe(reply)}")
        self.step = step
        self.reply = reply
        self.transcript = transcript


@dataclass(slots=True)
class Submitted:
    reply: Reply  # the server's 250 to the end of data (it names the queue id)
    transcript: list[str] = field(default_factory=list)

    @property
    def queue_id(self) -> str:
        """The last word of the final reply, as "queued as ID" servers write it."""
        return self.reply.lines[-1].rsplit(" ", 1)[-1] if self.reply.lines else ""


@contextlib.asynccontextmanager
async def session(
    host: str,
    port: int,
    *,
    helo: str,
    auth: tuple[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    timeout: float = 30.0,
    address: str | None = None,
) -> AsyncIterator[SmtpConnection]:
    """A connection past greeting, EHLO, TLS and AUTH, ready for MAIL; QUIT on leaving.

    With `tls`, the session is encrypted: from the first byte when `implicit_tls`, else by
    STARTTLS, which the server must then offer (never a silent fallback to plaintext).
    `address` is where to connect when it differs from `host`, the name TLS checks.
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            address or host,
            port,
            ssl=tls if implicit_tls else None,
            server_hostname=host if implicit_tls else None,
        )
    conn = SmtpConnection(reader, writer, host, address or host, port, timeout)
    conn.tls = implicit_tls
    try:
        _expect("greeting", await conn.reply(), 220, conn)
        await _hello(conn, helo)
        if tls is not None and not conn.tls:
            if "STARTTLS" not in conn.capabilities:
                raise SubmitError(
                    "STARTTLS", Reply(502, "5.5.1", "STARTTLS not offered"), conn.transcript
                )
            _expect("STARTTLS", await conn.command(smtp.STARTTLS), 220, conn)
            await conn.start_tls(tls, host)
            await _hello(conn, helo)
        if auth is not None:
            for line, shown in smtp.auth_commands("PLAIN", *auth):
                reply = await conn.command(line, shown=shown)
            _expect("AUTH", reply, 235, conn)
        yield conn
    finally:
        await conn.close()


async def submit(
    host: str,
    port: int,
    *,
    helo: str,
    sender: str,
    recipients: list[str],
    message: bytes,
    auth: tuple[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    timeout: float = 30.0,
    address: str | None = None,
) -> Submitted:
    """Send `message` from `sender` to `recipients`; raise SubmitError when refused.

    The connection is made as `session` makes it. A refused recipient ends the transaction
    before DATA, so the message goes to all recipients or to none.
    """
    async with session(
        host,
        port,
        helo=helo,
        auth=auth,
        tls=tls,
        implicit_tls=implicit_tls,
        timeout=timeout,
        address=address,
    ) as conn:
        mail = smtp.mail_from(
            sender, conn.capabilities, size=len(message), eight_bit=False, smtputf8=False
        )
        _expect("MAIL FROM", await conn.command(mail), 250, conn)
        for rcpt in recipients:
            _expect(f"RCPT TO:<{rcpt}>", await conn.command(smtp.rcpt_to(rcpt)), 250, conn)
        _expect("DATA", await conn.command(smtp.DATA), 354, conn)
        encoder = smtp.DataEncoder()
        await conn.write(encoder.feed(message) + encoder.finish())
        conn.transcript.append(f"C: <message, {len(message)} octets>")
        conn.transcript.append("C: .")
        final = _expect("message", await conn.reply(), 250, conn)
        return Submitted(final, conn.transcript)


async def _hello(conn: SmtpConnection, helo: str) -> None:
    hello = _expect("EHLO", await conn.command(smtp.ehlo(helo)), 250, conn)
    conn.capabilities = smtp.Capabilities.from_ehlo(hello)


def _expect(step: str, reply: Reply, code: int, conn: SmtpConnection) -> Reply:
    if reply.code != code:
        raise SubmitError(step, reply, conn.transcript)
    return reply
