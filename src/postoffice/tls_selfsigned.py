"""The self-signed certificate made on first start, in a process of its own.

Run by tls.py as ``python -m postoffice.tls_selfsigned CERT KEY HOSTNAME NOW`` when the
record of the generated certificate (`tls.RECORD`, beside it) is missing or says the
certificate is stale, names another host or is not the file on disk. It keeps a usable
certificate (one that expires more than a month after NOW and names HOSTNAME: the files of
a data directory older than the record), makes a new one otherwise (EC P-256, SAN = the host
name, plus `localhost`, 127.0.0.1 and ::1 for a local name), and writes the record. An error
is one line on stderr and exit status 1.

Why a process of its own: cryptography is needed only here, and loading it cost every
server process ~2 MiB (~6 MiB of the three a two-core machine runs), for the whole of its
life, to check a file once at start.

Standards: RFC 5280 §4.2.1.6 (SAN), RFC 6761 §6.3 (localhost), RFC 9525 §6 (the SAN is
what clients check).
"""

from __future__ import annotations

import ipaddress
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from postoffice.fileio import replace_file
from postoffice.tls import RECORD, RENEW_BEFORE, TlsError, record_of

VALIDITY = timedelta(days=825)  # the longest lifetime clients (Apple, CA/B Forum) still accept
CLOCK_SKEW = timedelta(hours=1)  # not_valid_before is back-dated by this much
_LOCAL_NAMES = ("localhost", "localhost.localdomain")
_LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def ensure(cert_path: Path, key_path: Path, hostname: str, now: datetime) -> None:
    """Keep or make the certificate for `hostname`, then record what it is."""
    cert = _usable(cert_path, key_path, hostname, now)
    if cert is None:
        cert = _generate(cert_path, key_path, hostname, now)
    record = {
        **record_of(cert_path.read_bytes(), hostname),
        "not_after": cert.not_valid_after_utc.timestamp(),
    }
    replace_file(cert_path.parent / RECORD, json.dumps(record).encode(), mode=0o644)


def _usable(
    cert_path: Path, key_path: Path, hostname: str, now: datetime
) -> x509.Certificate | None:
    """The certificate on disk if it is fresh and names `hostname`; None to make one."""
    if not (cert_path.exists() and key_path.exists()):
        return None
    try:
        cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    except ValueError:
        raise TlsError(f"TLS certificate file {cert_path} holds no PEM certificate") from None
    fresh = cert.not_valid_after_utc - RENEW_BEFORE > now
    return cert if fresh and _alt_names_of(cert) == set(_alt_names(hostname)) else None


def _generate(cert_path: Path, key_path: Path, hostname: str, now: datetime) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, hostname, now)
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key first: a crash in between leaves no certificate, so the next start regenerates.
    cert_path.unlink(missing_ok=True)
    replace_file(key_path, pem_key, mode=0o600)
    replace_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert


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


def main(argv: list[str]) -> int:
    cert, key, hostname, now = argv
    try:
        cert_path = Path(cert)
        cert_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        ensure(cert_path, Path(key), hostname, datetime.fromtimestamp(float(now), UTC))
    except TlsError as error:
        print(error, file=sys.stderr)
        return 1
    except OSError as error:
        print(
            f"cannot write the generated TLS certificate to {error.filename or cert}:"
            f" {error.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
