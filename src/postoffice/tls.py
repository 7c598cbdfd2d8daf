"""Server-side TLS: the certificate, the `ssl.SSLContext` built from it, and SIGHUP reloads.

When no certificate is configured, one is generated on first start (EC P-256,
self-signed, SAN = the host name, plus `localhost`, 127.0.0.1 and ::1 for a
local name) and kept in `<data dir>/tls/`; later starts reuse it, and make a new
one only when it expires within a month or no longer names the host. Making and checking
it needs cryptography, which the serving processes never load (it would cost each ~2 MiB
for good): tls_selfsigned.py does that in a process of its own, run only when the record
beside the files (`RECORD`) does not vouch for them. Files are checked as OpenSSL loads
them, so each failure is one line naming the file: missing, unreadable, not PEM, an
encrypted key, or a key that does not belong to the certificate. `reload()` builds a *new*
context and swaps it in only when it loaded cleanly: sessions already running keep the
context they started with. The context allows TLS 1.2 and 1.3 only, AEAD ciphers with
forward secrecy, no compression and no renegotiation.

Standards: RFC 8996 (TLS 1.0/1.1 deprecated), RFC 9325 §3.1.1, §3.3, §3.5, §4.2
(versions, no compression, renegotiation, recommended cipher suites), RFC 5280
§4.2.1.6 (SAN), RFC 9525 §6 (host name checked against the SAN), RFC 6761 §6.3.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from postoffice.clock import Clock, SystemClock

RENEW_BEFORE = timedelta(days=30)
RECORD = "selfsigned.json"  # beside the generated certificate: host, expiry, SHA-256 of the file
# RFC 9325 §4.2: ECDHE with AES-GCM or ChaCha20-Poly1305 for TLS 1.2 (TLS 1.3 suites
# are all AEAD and are configured by OpenSSL separately).
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"


class TlsError(Exception):
    """A certificate or key cannot be used; the message is one line naming the file."""


class ServerTls:
    """The server's current TLS context, built from configured or generated files."""

    def __init__(
        self,
        cert: Path | None,
        key: Path | None,
        data_dir: Path,
        hostname: str,
        *,
        clock: Clock | None = None,
    ) -> None:
        if (cert is None) != (key is None):
            raise TlsError("[tls] cert and key must be configured together")
        self.generated = cert is None or key is None
        if cert is None or key is None:
            cert, key = data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem"
        self.cert_path: Path = cert
        self.key_path: Path = key
        self._hostname = hostname
        self._clock = clock or SystemClock()
        self._context = self._load()

    def context(self) -> ssl.SSLContext:
        """The context new sessions should wrap their connection with."""
        return self._context

    def reload(self) -> None:
        """Load the files again (SIGHUP); on error keep the old context and raise TlsError."""
        self._context = self._load()

    def _load(self) -> ssl.SSLContext:
        if self.generated:
            _ensure_self_signed(self.cert_path, self.key_path, self._hostname, self._clock.time())
        context = _server_context()
        _load_pair(context, self.cert_path, self.key_path)
        return context


def describe(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    """Protocol and cipher, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384", or "" without TLS."""
    if ssl_object is None:
        return ""
    cipher = ssl_object.cipher()
    version = ssl_object.version()
    if cipher is None or version is None:
        return ""
    return f"{version} {cipher[0]}"


def _server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996
    context.set_ciphers(_TLS12_CIPHERS)
    context.options |= (
        ssl.OP_NO_COMPRESSION  # RFC 9325 §3.3 (CRIME)
        | ssl.OP_NO_RENEGOTIATION  # RFC 9325 §3.5: none at all, so no RFC 5746 to get right
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_SINGLE_ECDH_USE
    )
    return context


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsError(f"TLS {what} file {path} does not exist") from None
    except OSError as error:
        raise TlsError(f"cannot read TLS {what} file {path}: {error.strerror}") from None


class _Encrypted(Exception):
    """Raised by the password callback: OpenSSL found the key encrypted."""


def _refuse_passphrase() -> bytes:
    raise _Encrypted


def _load_pair(context: ssl.SSLContext, cert_path: Path, key_path: Path) -> None:
    """Load the files into `context`; TlsError naming the file when one is unusable."""
    cert_pem = _read(cert_path, "certificate")
    _read(key_path, "key")
    try:  # the certificate alone first, so that what load_cert_chain says is about the key
        # PEM blocks are ASCII; text around them (a bundle's comments) may not be
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(
            cadata=cert_pem.decode("ascii", "ignore")
        )
    except ssl.SSLError:
        raise TlsError(f"TLS certificate file {cert_path} holds no PEM certificate") from None
    try:
        context.load_cert_chain(cert_path, key_path, password=_refuse_passphrase)
    except _Encrypted:
        raise TlsError(
            f"TLS key file {key_path} is encrypted; give a key without passphrase"
        ) from None
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise TlsError(
                f"TLS key file {key_path} does not match certificate {cert_path}"
            ) from None
        if error.reason is None:  # "PEM lib": the certificate read, so the key did not
            raise TlsError(f"TLS key file {key_path} holds no usable PEM private key") from None
        raise TlsError(
            f"cannot use TLS certificate {cert_path} with key {key_path}: {error.reason}"
        ) from None


def record_of(cert_pem: bytes, hostname: str) -> dict[str, str]:
    """What `RECORD` says a generated certificate is, but for its expiry ("not_after",
    which tls_selfsigned.py adds): the host it names and the SHA-256 of its file."""
    return {"hostname": hostname.lower(), "sha256": hashlib.sha256(cert_pem).hexdigest()}


def _recorded_fresh(cert_path: Path, key_path: Path, hostname: str, now: float) -> bool:
    """Whether the record says the generated files serve `hostname` past the renewal date."""
    try:
        record = json.loads((cert_path.parent / RECORD).read_bytes())
        return (
            key_path.exists()
            and record_of(cert_path.read_bytes(), hostname).items() <= record.items()
            and float(record["not_after"]) - RENEW_BEFORE.total_seconds() > now
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return False


def _ensure_self_signed(cert_path: Path, key_path: Path, hostname: str, now: float) -> None:
    """Keep or make the generated certificate (tls_selfsigned.py, in a process of its own)."""
    if _recorded_fresh(cert_path, key_path, hostname, now):
        return
    command = [sys.executable, "-m", "postoffice.tls_selfsigned"]
    result = subprocess.run(
        [*command, str(cert_path), str(key_path), hostname, repr(now)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise TlsError(lines[-1])
