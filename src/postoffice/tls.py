"""Server-side TLS: the certificate, the `ssl.SSLContext` built from it, and SIGHUP reloads.

When no certificate is configured, one is generated on first start (EC P-256,
self-signed, SAN = the host name, plus `localhost`, 127.0.0.1 and ::1 for a
local name) and kept in `<data dir>/tls/`; later starts reuse it, and make a new
one only when it expires within a month or no longer names the host. Files are
checked before OpenSSL sees them, so each failure is one line naming the file:
missing, unreadable, not PEM, an encrypted key, or a key that does not belong
to the certificate. `reload()` builds a *new* context and swaps it in only when
it loaded cleanly: sessions already running keep the context they started with.
The context allows TLS 1.2 and 1.3 only, AEAD ciphers with forward secrecy, no
compression and no renegotiation.

Standards: RFC 8996 (TLS 1.0/1.1 deprecated), RFC 9325 §3.1.1, §3.3, §3.5, §4.2
(versions, no compression, renegotiation, recommended cipher suites), RFC 5280
§4.2.1.6 (SAN), RFC 9525 §6 (host name checked against the SAN), RFC 6761 §6.3.
"""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from postoffice.clock import Clock, SystemClock
from postoffice.fileio import replace_file

VALIDITY = timedelta(days=825)  # the longest lifetime clients (Apple, CA/B Forum) still accept
RENEW_BEFORE = timedelta(days=30)
CLOCK_SKEW = timedelta(hours=1)  # not_valid_before is back-dated by this much
_LOCAL_NAMES = ("localhost", "localhost.localdomain")
_LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
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
            _ensure_self_signed(self.cert_path, self.key_path, self._hostname, self._now())
        _check_pair(self.cert_path, self.key_path)
        context = _server_context()
        try:
            context.load_cert_chain(self.cert_path, self.key_path)
        except ssl.SSLError as error:
            raise TlsError(
                f"cannot use TLS certificate {self.cert_path} with key {self.key_path}:"
                f" {error.reason}"
            ) from error
        return context

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.time(), UTC)


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


def _read_certificate(path: Path) -> x509.Certificate:
    """The first (leaf) certificate of a PEM chain file."""
    try:
        return x509.load_pem_x509_certificates(_read(path, "certificate"))[0]
    except ValueError:
        raise TlsError(f"TLS certificate file {path} holds no PEM certificate") from None


def _check_pair(cert_path: Path, key_path: Path) -> None:
    """Raise TlsError naming the file when the certificate or key is unusable."""
    leaf = _read_certificate(cert_path)
    try:
        key = serialization.load_pem_private_key(_read(key_path, "key"), password=None)
    except TypeError:
        raise TlsError(
            f"TLS key file {key_path} is encrypted; give a key without passphrase"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsError(f"TLS key file {key_path} holds no usable PEM private key") from None
    if key.public_key() != leaf.public_key():
        raise TlsError(f"TLS key file {key_path} does not match certificate {cert_path}")


def _ensure_self_signed(cert_path: Path, key_path: Path, hostname: str, now: datetime) -> None:
    """Generate the certificate unless a usable one for `hostname` is already there."""
    if cert_path.exists() and key_path.exists():
        cert = _read_certificate(cert_path)
        fresh = cert.not_valid_after_utc - RENEW_BEFORE > now
        if fresh and _alt_names_of(cert) == set(_alt_names(hostname)):
            return
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, hostname, now)
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        cert_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The key first: a crash in between leaves no certificate, so the next start regenerates.
        cert_path.unlink(missing_ok=True)
        replace_file(key_path, pem_key, mode=0o600)
        replace_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    except OSError as error:
        raise TlsError(
            f"cannot write the generated TLS certificate to {error.filename or cert_path}:"
            f" {error.strerror}"
        ) from None


def _self_signed(key: ec.EllipticCurvePrivateKey, hostname: str, now: datetime) -> x509.Certificate:
    # RFC 5280 appendix A: ub-common-name is 64; the CN is only shown, the SAN is checked.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_alt_names(hostname)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _alt_names(hostname: str) -> list[x509.GeneralName]:
    """RFC 5280 §4.2.1.6: an IP literal is an iPAddress entry, a name a dNSName."""
    try:
        return [x509.IPAddress(ipaddress.ip_address(hostname))]
    except ValueError:
        pass
    name = hostname.lower()
    names: list[x509.GeneralName] = [x509.DNSName(name)]
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        # RFC 6761 §6.3: a local name is reached as localhost or the loopback address too.
        if name != "localhost":
            names.append(x509.DNSName("localhost"))
        names.extend(x509.IPAddress(ip) for ip in _LOOPBACK)
    return names


def _alt_names_of(cert: x509.Certificate) -> set[x509.GeneralName]:
    try:
        return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return set()
