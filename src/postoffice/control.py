"""The control socket: how CLI commands act on a running server (flush, hold, delete …).

A Unix stream socket in the data dir, mode 0600 (set before `listen`, so no
one else can ever connect), speaks one JSON line each way per connection:
`{"command": "hold", "args": {"qid": "…"}}` is answered by
`{"ok": true, …result}` or `{"ok": false, "error": "one line"}`. Commands are
dispatched through the handler dict the composition root gives; a handler
raises `ControlError` for an answer meant for the user, anything else is
logged and answered as an internal error. Requests are bounded in size and
time. A socket file nobody listens on (left by a crash) is replaced at start;
one a live server listens on is not. The client is blocking and tells "no
server" (`ControlUnavailable`: no socket file, or connection refused) apart
from a server that answered with an error or not at all (`ControlError`), so
callers fall back to acting on the spool only when no server runs. Socket
paths longer than `sun_path` allows are reached through /proc/self/fd.

Standards: none (a local administrative interface).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

MAX_REQUEST = 64 * 1024  # octets of one request line
MAX_RESPONSE = 16 * 1024 * 1024
READ_TIMEOUT = 10.0  # seconds for a client to send its request
CONNECT_TIMEOUT = 2.0
_SUN_PATH_MAX = 107  # octets of a socket path, without the terminating NUL (Linux: 108)


class ControlError(Exception):
    """The server answered with an error, or not at all; the message is one line."""


class ControlUnavailable(Exception):
    """No server listens on the control socket."""


class ControlServer:
    """Serves `handlers` on the Unix socket `path`."""

    def __init__(
        self, path: Path, handlers: Mapping[str, Handler], *, max_request: int = MAX_REQUEST
    ) -> None:
        self.path = path
        self._handlers = dict(handlers)
        self._max_request = max_request
        self._server: asyncio.Server | None = None
        self._inode = 0

    async def start(self) -> None:
        """Bind and listen; `OSError` if the path is taken by a live server or another file."""
        _remove_stale(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _address(self.path) as address:
                sock.bind(address)
            os.chmod(self.path, 0o600)  # before listen(): until then no one can connect
            self._inode = os.stat(self.path).st_ino
            self._server = await asyncio.start_unix_server(
                self._serve, sock=sock, limit=self._max_request
            )
        except BaseException:
            sock.close()
            raise

    async def close(self) -> None:
        """Stop listening and remove the socket file (unless another server replaced it)."""
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
            except ValueError:  # the line outgrew the stream limit
                response = _error(f"request longer than {self._max_request} octets")
            else:
                response = await self._answer(line)
            writer.write(json.dumps(response, default=str).encode() + b"\n")
            await writer.drain()
        except OSError:
            pass  # the client went away, or never asked (TimeoutError is an OSError)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return _error("the request is not a JSON line")
        if not isinstance(request, dict) or not isinstance(request.get("args", {}), dict):
            return _error("the request must be an object with a command and args")
        command = request.get("command")
        handler = self._handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            return _error(f"unknown command {command!r}")
        try:
            return {"ok": True, **await handler(request.get("args", {}))}
        except ControlError as exc:
            return _error(str(exc))
        except Exception:
            logger.exception("control: %s failed", command)
            return _error(f"{command} failed on the server; see its log")


def request(path: Path, command: str, /, *, timeout: float = 60.0, **args: Any) -> dict[str, Any]:
    """Ask the server on `path` to run `command`; its result without the "ok" key.

    Raises `ControlUnavailable` when no server listens, `ControlError` when
    it answers with an error or not within `timeout` seconds.
    """
    payload = json.dumps({"command": command, "args": args}).encode() + b"\n"
    with _connect(path) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendall(payload)
            with sock.makefile("rb") as stream:
                line = stream.readline(MAX_RESPONSE)
        except TimeoutError:
            raise ControlError(f"the server did not answer {command} within {timeout:g}s") from None
        except OSError as exc:
            raise ControlError(f"{path}: {exc.strerror or exc}") from None
    try:
        response = json.loads(line)
    except ValueError:
        raise ControlError(f"{path}: the server's answer is not JSON") from None
    if not isinstance(response, dict):
        raise ControlError(f"{path}: the server's answer is not an object")
    if response.pop("ok", False) is not True:
        raise ControlError(str(response.get("error", f"{command} failed")))
    return response


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        with _address(path) as address:
            sock.connect(address)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise ControlUnavailable(f"no server is listening on {path}") from None
    except OSError as exc:
        sock.close()
        raise ControlError(f"{path}: {exc.strerror or exc}") from None
    return sock


def _remove_stale(path: Path) -> None:
    """Remove a socket file no server listens on; refuse to touch anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(errno.EEXIST, f"{path} exists and is not a socket")
    try:
        _connect(path).close()
    except ControlUnavailable:
        path.unlink(missing_ok=True)
        return
    except ControlError as exc:  # e.g. permission denied: leave it alone
        raise OSError(f"cannot use the control socket: {exc}") from None
    raise OSError(errno.EADDRINUSE, f"{path}: another server is listening there")


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """A name for `path` that fits in `sun_path`: itself, or via its directory's descriptor."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
