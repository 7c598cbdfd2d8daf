"""The user agent's IMAP client: the standard library's `imaplib`, made safe and asynchronous.

imaplib speaks the protocol (tags, literals, untagged responses); this module adds what the
user agent needs around it. Every connection is encrypted: TLS from the first byte
(port 993) or STARTTLS, which the server must offer (no plaintext fallback). The socket is
opened to a resolved address while the certificate is checked against the host name, and
every read and write has a timeout. After STARTTLS imaplib reads through a new file object,
so plaintext that followed the OK is never taken for a response (RFC 9051 §11.1). The login
is AUTHENTICATE PLAIN when offered (UTF-8 passwords), else LOGIN. Mailbox names go out in
modified UTF-7, quoted; messages are addressed by UID only, so a number the user saw in a
listing names the same message later. imaplib's exceptions become `ImapError` (a NO or BAD,
with its response code) or `ConnectionResetError`, which the callers turn into one line.

imaplib blocks: each command runs in a worker thread, so the caller's event loop stays free.

Standards: RFC 9051 §6.2 (STARTTLS, AUTHENTICATE, LOGIN), §6.3.2 (SELECT), §6.3.9-§6.3.11
(LIST, STATUS), §6.4.4-§6.4.9 (SEARCH, FETCH, STORE, COPY, MOVE, UID); RFC 3501 §5.1.3
(modified UTF-7); RFC 4315 §2.1 (UID EXPUNGE); RFC 6851 (MOVE); RFC 6154 (special-use);
RFC 4616 (PLAIN); RFC 8314 §3 (implicit TLS)
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import re
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from postoffice.protocols.imap import mutf7
from postoffice.protocols.sasl import client_plain

T = TypeVar("T")
SEEN = "\\Seen"
DELETED = "\\Deleted"
SUMMARY_ITEMS = "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SUBJECT)])"
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_NEW_FETCH = re.compile(rb"\d+ \(")  # "12 (UID ...": a FETCH response, not the rest of one
_LIST = re.compile(rb'\((?P<attributes>[^)]*)\) (?:NIL|"(?:[^"\\]|\\.)*") ?(?P<name>.*)')
_STATUS = re.compile(rb"\(([^()]*)\)\s*$")
_LITERAL_END = re.compile(rb"~?\{\d+\}$")


class ImapError(Exception):
    """The server answered NO or BAD; `code` is its response code ("AUTHENTICATIONFAILED")."""

    def __init__(self, command: str, text: str) -> None:
        super().__init__(f"{command} refused: {text}".rstrip())
        self.command = command
        self.code = text[1:].partition("]")[0].split(" ")[0].upper() if text[:1] == "[" else ""


@dataclass(frozen=True, slots=True)
class Fetched:
    """One message's FETCH data: what the summary or the message needs."""

    uid: int
    flags: frozenset[str]
    size: int
    body: bytes  # the fetched header fields or the whole message


@dataclass(frozen=True, slots=True)
class Folder:
    name: str
    attributes: frozenset[str]  # \Noselect, \HasChildren, and the special uses (\Sent ...)
    messages: int | None  # None for a folder that cannot be selected
    unseen: int | None


def uid_set(uids: Iterable[int]) -> str:
    """`uids` as an IMAP sequence set of ranges ("3:5,9")."""
    ranges: list[list[int]] = []
    for uid in sorted(set(uids)):
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1][1] = uid
        else:
            ranges.append([uid, uid])
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in ranges)


def mailbox(name: str) -> str:
    """`name` as a quoted mailbox argument in modified UTF-7 (RFC 3501 §5.1.3)."""
    if any(c in name for c in "\r\n\0"):
        raise ValueError("CR, LF or NUL in a folder name")
    encoded = mutf7.encode(name).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{encoded}"'


def _text(data: list[Any]) -> str:
    last = data[-1] if data else b""
    if isinstance(last, tuple):
        last = last[0]
    return last.decode("utf-8", "replace") if isinstance(last, bytes) else str(last or "")


def _unquote(name: bytes) -> str:
    text = name.decode("ascii", "replace").strip()
    if text.startswith('"') and text.endswith('"') and len(text) > 1:
        text = re.sub(r"\\(.)", r"\1", text[1:-1])
    try:
        return mutf7.decode(text)
    except ValueError:  # not valid modified UTF-7: show it as the server spells it
        return text


def _flat(item: Any) -> bytes:
    """A response line with its literal (a name sent as one) put back as a quoted string."""
    if not isinstance(item, tuple):
        return bytes(item or b"")
    quoted = item[1].replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return _LITERAL_END.sub(b"", item[0]) + b'"' + quoted + b'"'


def parse_fetch(data: list[Any]) -> list[Fetched]:
    """The FETCH responses in `data` that carry a UID and a literal, in order."""
    responses: list[tuple[bytearray, bytes]] = []
    for item in data:
        if isinstance(item, tuple):
            responses.append((bytearray(item[0]), item[1]))
        elif isinstance(item, bytes) and responses and not _NEW_FETCH.match(item):
            responses[-1][0].extend(item)  # what followed the literal: ") " or " UID 5)"
        # a response without a literal (an unsolicited flag change) carries no body: skipped
    found = []
    for text, body in responses:
        uid, size, flags = _UID.search(text), _SIZE.search(text), _FLAGS.search(text)
        if uid is None:
            continue
        names = flags.group(1).decode("ascii", "replace").split() if flags else []
        found.append(
            Fetched(int(uid.group(1)), frozenset(names), int(size.group(1)) if size else 0, body)
        )
    return found


class _Connection(imaplib.IMAP4):
    """imaplib's IMAP4 connected to `address`, in TLS from the first byte when `tls` is set."""

    def __init__(
        self, host: str, port: int, *, address: str, tls: ssl.SSLContext | None, timeout: float
    ) -> None:
        self._address = address
        self._tls = tls
        super().__init__(host, port, timeout)

    def open(self, host: str = "", port: int = 143, timeout: float | None = None) -> None:
        self.host, self.port = host, port
        sock = socket.create_connection((self._address, port), timeout)
        if self._tls is not None:
            try:
                sock = self._tls.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self.file = sock.makefile("rb")


class ImapClient:
    """One IMAP connection; `connect()` opens it encrypted and ready for `login()`."""

    def __init__(self, connection: _Connection) -> None:
        self._imap = connection
        self.capabilities: frozenset[str] = frozenset(connection.capabilities)

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext,
        implicit_tls: bool,
        address: str | None = None,
        timeout: float = 30.0,
    ) -> ImapClient:
        """Connect to `address` (default `host`), with TLS checked against `host`."""

        def start() -> ImapClient:
            connection = _translate(
                "greeting",
                lambda: _Connection(
                    host,
                    port,
                    address=address or host,
                    tls=tls if implicit_tls else None,
                    timeout=timeout,
                ),
            )
            client = cls(connection)
            if not implicit_tls:
                if "STARTTLS" not in client.capabilities:
                    client.close()
                    raise ImapError("STARTTLS", "not offered by the server")
                try:
                    _translate("STARTTLS", lambda: connection.starttls(tls))
                except BaseException:
                    client.close()
                    raise
                client.capabilities = frozenset(connection.capabilities)
            return client

        return await asyncio.to_thread(start)

    # -- commands ----------------------------------------------------------------------

    async def login(self, user: str, password: str) -> None:
        """AUTHENTICATE PLAIN when offered, else LOGIN; ImapError if refused."""
        if "AUTH=PLAIN" in self.capabilities:
            message = client_plain(user, password)
            await self._call("AUTHENTICATE", self._imap.authenticate, "PLAIN", lambda _: message)
        elif "LOGINDISABLED" in self.capabilities:
            raise ImapError("LOGIN", "[PRIVACYREQUIRED] the server allows no login here")
        else:
            await self._call("LOGIN", self._imap.login, user, password)
        # RFC 9051 §6.2.2: the capabilities may change once logged in
        data = await self._call("CAPABILITY", self._imap.capability)
        self.capabilities = frozenset(_text(data).upper().split())

    async def select(self, name: str, *, readonly: bool = False) -> int:
        """SELECT (or EXAMINE) folder `name`; its UIDVALIDITY."""
        command = "EXAMINE" if readonly else "SELECT"
        await self._call(command, self._imap.select, mailbox(name), readonly)
        _, data = self._imap.response("UIDVALIDITY")
        try:
            return int(_text(data))
        except ValueError:
            raise ImapError(command, "no UIDVALIDITY in the answer") from None

    async def uids(self, criteria: str = "ALL") -> list[int]:
        """The UIDs of the selected folder's messages matching `criteria`, ascending."""
        data = await self._call("UID SEARCH", self._imap.uid, "SEARCH", criteria)
        return sorted(int(uid) for uid in _text(data).split() if uid.isdigit())

    async def summaries(self, uids: Iterable[int]) -> list[Fetched]:
        """Flags, size and the Date, From and Subject fields of `uids` (nothing set \\Seen)."""
        data = await self._call("UID FETCH", self._imap.uid, "FETCH", uid_set(uids), SUMMARY_ITEMS)
        return parse_fetch(data)

    async def message(self, uid: int, *, peek: bool = True) -> bytes | None:
        """Message `uid` whole, or None if there is none; unless `peek`, it becomes \\Seen."""
        items = "(UID BODY.PEEK[])" if peek else "(UID BODY[])"
        data = await self._call("UID FETCH", self._imap.uid, "FETCH", str(uid), items)
        return next((found.body for found in parse_fetch(data) if found.uid == uid), None)

    async def store(self, uids: Iterable[int], flag: str, *, add: bool) -> None:
        """Add or remove `flag` on `uids`."""
        change = "+FLAGS.SILENT" if add else "-FLAGS.SILENT"
        await self._call("UID STORE", self._imap.uid, "STORE", uid_set(uids), change, f"({flag})")

    async def expunge(self, uids: Iterable[int]) -> None:
        """Remove `uids` once flagged \\Deleted: UID EXPUNGE (RFC 4315), else EXPUNGE."""
        if "UIDPLUS" in self.capabilities:
            await self._call("UID EXPUNGE", self._imap.uid, "EXPUNGE", uid_set(uids))
        else:
            await self._call("EXPUNGE", self._imap.expunge)

    async def move(self, uids: list[int], target: str) -> None:
        """Move `uids` to folder `target`: UID MOVE (RFC 6851), else COPY, \\Deleted, EXPUNGE."""
        if "MOVE" in self.capabilities:
            await self._call("UID MOVE", self._imap.uid, "MOVE", uid_set(uids), mailbox(target))
            return
        await self._call("UID COPY", self._imap.uid, "COPY", uid_set(uids), mailbox(target))
        await self.store(uids, DELETED, add=True)
        await self.expunge(uids)

    async def folders(self) -> list[Folder]:
        """Every folder with its attributes, and its counts when it can be selected."""
        found = []
        for line in await self._call("LIST", self._imap.list, '""', "*"):
            if line is None or not (match := _LIST.match(_flat(line))):
                continue
            attributes = frozenset(match.group("attributes").decode("ascii", "replace").split())
            name = _unquote(match.group("name"))
            messages = unseen = None
            if not {"\\NOSELECT", "\\NONEXISTENT"} & {a.upper() for a in attributes}:
                messages, unseen = await self._status(name)
            found.append(Folder(name, attributes, messages, unseen))
        return found

    async def _status(self, name: str) -> tuple[int, int]:
        data = await self._call("STATUS", self._imap.status, mailbox(name), "(MESSAGES UNSEEN)")
        match = _STATUS.search(_flat(data[-1]))
        words = match.group(1).decode("ascii", "replace").upper().split() if match else []
        counts = dict(zip(words[::2], words[1::2], strict=False))
        try:
            return int(counts.get("MESSAGES", 0)), int(counts.get("UNSEEN", 0))
        except ValueError:
            raise ImapError("STATUS", f"unreadable answer {words!r}") from None

    async def logout(self) -> None:
        await self._call("LOGOUT", self._imap.logout)

    def close(self) -> None:
        """Drop the connection (after LOGOUT, or instead of it)."""
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            self._imap.shutdown()

    async def _call(self, command: str, method: Callable[..., Any], *args: Any) -> list[Any]:
        """Run one imaplib command in a worker thread; its data, or ImapError on NO."""

        def run() -> list[Any]:
            status, data = method(*args)
            if status not in ("OK", "BYE"):  # LOGOUT answers BYE, then OK
                raise ImapError(command, _text(data))
            return list(data)

        return await asyncio.to_thread(_translate, command, run)


def _translate(command: str, call: Callable[[], T]) -> T:
    """`call()`, with imaplib's exceptions turned into ours."""
    try:
        return call()
    except imaplib.IMAP4.abort as exc:  # the connection is gone or out of step
        raise ConnectionResetError(f"{command}: {exc}") from None
    except imaplib.IMAP4.error as exc:  # NO or BAD (login, BAD answers), or a misuse
        reason = exc.args[0] if exc.args else ""
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise ImapError(command, text) from None
