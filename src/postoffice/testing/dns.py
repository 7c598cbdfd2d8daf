"""A small authoritative DNS server on loopback, for tests and the demo.

Records are held as dnslib RRs keyed by lower-case owner name and answered by
two socketserver servers (UDP and TCP on the same free port), each in its own
thread; one lock guards the data, the faults and the query log, so tests may
change any of them while queries are in flight. The server answers for the
whole namespace: a name with no records and nothing below it is NXDOMAIN, a
name that exists without the asked type is NOERROR with no answer (NODATA).
CNAMEs are chased within the data. UDP answers over 512 bytes come back
truncated (TC set, no records) so that clients retry over TCP. Faults are per
query name: `servfail(name)` answers SERVFAIL, `timeout(name)` never answers.

    with DnsServer({"b.test": ["MX 10 mx.b.test."], "mx.b.test": ["A 127.0.0.5"]}) as server:
        resolver = DnsPythonResolver([server.address])

Standards: RFC 1034 §4.3.2 (answering, CNAME restart), RFC 1035 §4.2.1 (UDP
512 bytes, TC) and §4.2.2 (TCP length prefix), RFC 2308 §2 (NXDOMAIN vs
NODATA), RFC 8020 (empty non-terminals exist), RFC 7766 (TCP)
"""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass
from types import TracebackType

from dnslib import QTYPE, RCODE, RR, DNSError, DNSRecord

# Zone-file text, or owner name -> ["[ttl] [class] TYPE RDATA", …]; every name is taken
# as absolute (the final dot is optional), in zone text too unless $ORIGIN says otherwise.
Zones = dict[str, list[str]] | str

_DEFAULT_TTL = 300
_UDP_LIMIT = 512  # RFC 1035 §4.2.1; EDNS (RFC 6891) is not offered, so no larger size applies
_CNAME_CHAIN_LIMIT = 8
_TCP_IDLE_TIMEOUT = 10.0
_BIND_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class Query:
    """One question the server received."""

    name: str  # lower case, no final dot
    rtype: str  # "MX", "A", …
    transport: str  # "udp" or "tcp"


def _key(name: object) -> str:
    return str(name).lower().rstrip(".")


def _parse(zones: Zones) -> list[RR]:
    if isinstance(zones, str):
        text = zones
    else:
        text = "\n".join(f"{name.rstrip('.')}. {entry}" for name in zones for entry in zones[name])
    return list(RR.fromZone(text, origin=".", ttl=_DEFAULT_TTL))


class DnsServer:
    """An authoritative server for `zones` on `host`:`port` (0: a free port)."""

    def __init__(self, zones: Zones = "", host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._records: dict[str, list[RR]] = {}
        self._servfail: set[str] = set()
        self._timeout: set[str] = set()
        self._queries: list[Query] = []
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self.add(zones)

    # --- data and faults -------------------------------------------------------------------

    def add(self, zones: Zones) -> None:
        """Add records (zone text or the dict form) to those already served."""
        records = _parse(zones)
        with self._lock:
            for rr in records:
                self._records.setdefault(_key(rr.rname), []).append(rr)

    def set_records(self, name: str, entries: list[str]) -> None:
        """Replace every record of `name` ([] removes the name)."""
        records = _parse({name: entries})
        with self._lock:
            if records:
                self._records[_key(name)] = records
            else:
                self._records.pop(_key(name), None)

    def servfail(self, name: str) -> None:
        """Answer SERVFAIL to every question about `name`."""
        with self._lock:
            self._servfail.add(_key(name))

    def timeout(self, name: str) -> None:
        """Never answer questions about `name`."""
        with self._lock:
            self._timeout.add(_key(name))

    def clear_faults(self) -> None:
        with self._lock:
            self._servfail.clear()
            self._timeout.clear()

    @property
    def queries(self) -> list[Query]:
        """Every question received so far, in order."""
        with self._lock:
            return list(self._queries)

    # --- answering ---------------------------------------------------------------------------

    def respond(self, data: bytes, transport: str) -> bytes | None:
        """The wire reply to the wire query `data`, or None to stay silent."""
        try:
            request = DNSRecord.parse(data)
        except DNSError:
            return None  # not a DNS message: drop it quietly
        with self._lock:
            reply = self._answer(request, transport)
        if reply is None:
            return None
        wire = reply.pack()
        if transport == "udp" and len(wire) > _UDP_LIMIT:
            # RFC 1035 §4.2.1: too big for UDP, so say so (TC) and let the client use TCP.
            truncated = request.reply()
            truncated.header.tc = 1
            wire = truncated.pack()
        return wire

    def _answer(self, request: DNSRecord, transport: str) -> DNSRecord | None:
        name, qtype = _key(request.q.qname), request.q.qtype
        self._queries.append(Query(name, QTYPE[qtype], transport))
        if name in self._timeout:
            return None
        reply = request.reply()
        if name in self._servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        for _ in range(_CNAME_CHAIN_LIMIT):
            records = self._records.get(name, [])
            matching = [rr for rr in records if rr.rtype == qtype]
            if matching:
                reply.add_answer(*matching)
                return reply
            cnames = [rr for rr in records if rr.rtype == QTYPE.CNAME]
            if not cnames:
                break
            # RFC 1034 §4.3.2 step 3a: add the CNAME and restart at its target.
            reply.add_answer(cnames[0])
            name = _key(cnames[0].rdata.label)
        if not self._exists(name):
            reply.header.rcode = RCODE.NXDOMAIN  # RFC 2308 §2.1; otherwise NODATA (§2.2)
        return reply

    def _exists(self, name: str) -> bool:
        # RFC 8020: a name with records below it exists even without records of its own.
        suffix = "." + name
        return any(owner == name or owner.endswith(suffix) for owner in self._records)

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The "127.0.0.1:PORT" that `[dns] nameservers` takes."""
        if not self.port:
            raise RuntimeError("DnsServer is not started")
        return f"{self.host}:{self.port}"

    def start(self) -> DnsServer:
        """Bind UDP and TCP and serve from background threads; a restart reuses the port."""
        udp, tcp = self._bind()
        self.port = udp.server_address[1]
        self._servers = [udp, tcp]
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving and close both sockets (questions then go unanswered)."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join()
        self._servers, self._threads = [], []

    def _bind(self) -> tuple[_UdpServer, _TcpServer]:
        """UDP and TCP on one port: `self.port`, or a free one when it is 0."""
        for _ in range(_BIND_ATTEMPTS):
            udp = _UdpServer((self.host, self.port), self)
            try:
                tcp = _TcpServer((self.host, udp.server_address[1]), self)
            except OSError:
                udp.server_close()
                if self.port:
                    raise
                continue  # the free UDP port is taken for TCP: draw another
            return udp, tcp
        raise OSError(f"no port on {self.host} is free for both UDP and TCP")

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _UdpServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: DnsServer) -> None:
        self.owner = owner
        super().__init__(address, _UdpHandler)


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: DnsServer) -> None:
        self.owner = owner
        super().__init__(address, _TcpHandler)


class _UdpHandler(socketserver.BaseRequestHandler):
    server: _UdpServer

    def handle(self) -> None:
        data, sock = self.request
        wire = self.server.owner.respond(data, "udp")
        if wire is not None:
            sock.sendto(wire, self.client_address)


class _TcpHandler(socketserver.StreamRequestHandler):
    server: _TcpServer
    timeout = _TCP_IDLE_TIMEOUT

    def handle(self) -> None:
        # RFC 1035 §4.2.2: each message is preceded by its two-byte length; RFC 7766 §6.2.1
        # lets a client send several queries on one connection.
        try:
            while len(prefix := self.rfile.read(2)) == 2:
                data = self.rfile.read(int.from_bytes(prefix, "big"))
                wire = self.server.owner.respond(data, "tcp")
                if wire is not None:
                    self.wfile.write(len(wire).to_bytes(2, "big") + wire)
        except OSError:
            return  # idle timeout or the client went away
