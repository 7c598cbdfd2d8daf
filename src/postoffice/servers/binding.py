"""Binding listening sockets ourselves: for the worker processes and implicit-TLS listeners.

asyncio binds a host:port for `start_server`, but two callers need the sockets in their
own hands: workers.py binds SMTP ports before it forks (every process its own socket on
the same port), and an implicit-TLS listener accepts connections itself so that the
handshake runs on a socket nothing has read from (listener.py says why). Both bind as
asyncio would: every address family the host resolves to, SO_REUSEADDR, IPv6 sockets
IPv6-only.
"""

from __future__ import annotations

import socket
from typing import Any

from postoffice.config import parse_hostport

BACKLOG = 1024  # the kernel's queue of connections not yet accepted

Endpoint = tuple[int, int, int, Any]  # family, type, protocol, socket address


def endpoints(addresses: tuple[str, ...]) -> list[Endpoint]:
    """What to bind for every address, as asyncio would bind it (all families)."""
    found: list[Endpoint] = []
    for text in addresses:
        host, port = parse_hostport(text)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        found += [(family, kind, proto, address) for family, kind, proto, _, address in infos]
    return list(dict.fromkeys(found))


def bind(points: list[Endpoint], *, shared: bool = False) -> list[socket.socket]:
    """Bound sockets, not yet listening; `shared`: with SO_REUSEPORT, the port shared."""
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, address in points:
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if shared:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets
