"""Server TLS: the generated certificate, protocol floor, reload and file errors, over loopback."""

from __future__ import annotations

import asyncio
import ssl
import stat
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from postoffice.testing.clock import FakeClock
from postoffice.tls import ServerTls, TlsError, describe

T = TypeVar("T")
DAY = 86_400.0


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 20)

    return asyncio.run(bounded())


async def echo_server(
    context: ssl.SSLContext | Callable[[], ssl.SSLContext], seen: list[str] | None = None
) -> asyncio.Server:
    """An echo server on loopback: a fixed context, or one fetched per connection (as after
    STARTTLS or in an implicit-TLS listener that upgrades each accepted socket)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if callable(context):
                await writer.start_tls(context())
            if seen is not None:
                seen.append(describe(writer.get_extra_info("ssl_object")))
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except ssl.SSLError as error:
            if seen is not None:
                seen.append(f"refused: {error.reason}")
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(
        handle, "127.0.0.1", 0, ssl=None if callable(context) else context
    )


def port_of(server: asyncio.Server) -> int:
    return server.sockets[0].getsockname()[1]


async def open_tls(
    port: int, client: ssl.SSLContext, hostname: str = "localhost"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname=hostname)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, text: bytes) -> bytes:
    writer.write(text + b"\n")
    await writer.drain()
    return (await reader.readline()).rstrip(b"\n")


def install(cert: trustme.LeafCert, directory: Path) -> tuple[Path, Path]:
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_path))
    return cert_path, key_path


# --- the generated self-signed certificate ---------------------------------------------------


def test_self_signed_is_generated_once_and_reused(tmp_path: Path) -> None:
    first = ServerTls(None, None, tmp_path, "localhost")
    assert first.cert_path == tmp_path / "tls" / "cert.pem"
    assert stat.S_IMODE(first.key_path.stat().st_mode) == 0o600
    cert_pem, key_pem = first.cert_path.read_bytes(), first.key_path.read_bytes()

    second = ServerTls(None, None, tmp_path, "localhost")
    assert second.cert_path.read_bytes() == cert_pem
    assert second.key_path.read_bytes() == key_pem


def test_self_signed_names_local_host_and_loopback(tmp_path: Path) -> None:
    tls = ServerTls(None, None, tmp_path, "localhost")
    cert = x509.load_pem_x509_certificate(tls.cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 824 <= lifetime.days <= 826
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


def test_self_signed_is_replaced_for_a_new_hostname_or_near_expiry(tmp_path: Path) -> None:
    clock = FakeClock()
    original = ServerTls(None, None, tmp_path, "localhost", clock=clock).cert_path.read_bytes()

    renamed = ServerTls(None, None, tmp_path, "mail.example.test", clock=clock)
    renamed_pem = renamed.cert_path.read_bytes()
    assert renamed_pem != original
    cert = x509.load_pem_x509_certificate(renamed_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.example.test"]

    clock.advance(780 * DAY)
    assert (
        ServerTls(None, None, tmp_path, "mail.example.test", clock=clock).cert_path.read_bytes()
        == renamed_pem
    )
    clock.advance(20 * DAY)  # within a month of expiry
    assert (
        ServerTls(None, None, tmp_path, "mail.example.test", clock=clock).cert_path.read_bytes()
        != renamed_pem
    )


def test_data_dir_from_before_the_record_keeps_its_certificate(tmp_path: Path) -> None:
    first = ServerTls(None, None, tmp_path, "localhost")
    record = first.cert_path.parent / "selfsigned.json"
    cert_pem = first.cert_path.read_bytes()
    record.unlink()

    again = ServerTls(None, None, tmp_path, "localhost")
    assert again.cert_path.read_bytes() == cert_pem
    assert record.exists()


def test_the_record_vouches_only_for_the_file_it_was_written_for(tmp_path: Path) -> None:
    first = ServerTls(None, None, tmp_path, "localhost")
    # Another certificate in its place: it names localhost but not the loopback addresses,
    # which a generated one for a local name must; only a fresh check finds that out.
    install(trustme.CA().issue_cert("localhost"), first.cert_path.parent)
    replaced = first.cert_path.read_bytes()

    again = ServerTls(None, None, tmp_path, "localhost")
    cert = x509.load_pem_x509_certificate(again.cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert again.cert_path.read_bytes() != replaced
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}


@pytest.mark.parametrize("hostname", ["localhost", "mail.example.test"])
def test_generated_certificate_verifies_for_the_hostname(tmp_path: Path, hostname: str) -> None:
    tls = ServerTls(None, None, tmp_path, hostname)
    client = ssl.create_default_context(cafile=str(tls.cert_path))
    seen: list[str] = []

    async def main() -> bytes:
        server = await echo_server(tls.context(), seen)
        async with server:
            reader, writer = await open_tls(port_of(server), client, hostname)
            reply = await echo(reader, writer, b"hello")
            writer.close()
            return reply

    assert run(main()) == b"hello"
    assert seen[0].startswith("TLSv1.3 TLS_")


def test_generated_certificate_does_not_verify_for_another_name(tmp_path: Path) -> None:
    tls = ServerTls(None, None, tmp_path, "mail.example.test")
    client = ssl.create_default_context(cafile=str(tls.cert_path))

    async def main() -> None:
        server = await echo_server(tls.context())
        async with server:
            await open_tls(port_of(server), client, "other.example.test")

    with pytest.raises(ssl.SSLCertVerificationError):
        run(main())


# --- protocol floor ---------------------------------------------------------------------------


def client_up_to(maximum: ssl.TLSVersion) -> ssl.SSLContext:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    if maximum >= ssl.TLSVersion.TLSv1_2:
        client.maximum_version = maximum
        return client
    # A deliberately obsolete client: Python warns about TLS 1.0/1.1, and OpenSSL's
    # security level would otherwise stop it before it sends its hello.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.minimum_version = ssl.TLSVersion.TLSv1
        client.maximum_version = maximum
    client.set_ciphers("DEFAULT:@SECLEVEL=0")
    return client


@pytest.mark.parametrize("per_connection", [False, True], ids=["ssl=context", "start_tls"])
def test_tls_1_1_client_is_refused_by_the_server(tmp_path: Path, per_connection: bool) -> None:
    tls = ServerTls(None, None, tmp_path, "localhost")
    seen: list[str] = []

    async def main() -> None:
        server = await echo_server(tls.context if per_connection else tls.context(), seen)
        async with server:
            await open_tls(port_of(server), client_up_to(ssl.TLSVersion.TLSv1_1))

    # asyncio may drop the server's alert when it aborts, so the client sees a reset or the
    # alert; never its own "no protocols available", which would mean it never said hello.
    with pytest.raises((ssl.SSLError, ConnectionResetError)) as refused:
        run(main())
    assert getattr(refused.value, "reason", None) in (None, "TLSV1_ALERT_PROTOCOL_VERSION")
    if per_connection:
        assert seen == ["refused: UNSUPPORTED_PROTOCOL"]


def test_tls_1_2_client_is_accepted(tmp_path: Path) -> None:
    tls = ServerTls(None, None, tmp_path, "localhost")
    seen: list[str] = []

    async def main() -> bytes:
        server = await echo_server(tls.context(), seen)
        async with server:
            reader, writer = await open_tls(port_of(server), client_up_to(ssl.TLSVersion.TLSv1_2))
            reply = await echo(reader, writer, b"ok")
            writer.close()
            return reply

    assert run(main()) == b"ok"
    assert seen[0].startswith("TLSv1.2 ECDHE-ECDSA-")
    assert "GCM" in seen[0] or "CHACHA20" in seen[0]


def test_context_options(tmp_path: Path) -> None:
    context = ServerTls(None, None, tmp_path, "localhost").context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert all(c["aead"] for c in context.get_ciphers())


def test_describe_without_tls() -> None:
    assert describe(None) == ""


# --- configured files and reload --------------------------------------------------------------


def test_reload_serves_the_new_certificate_while_old_sessions_go_on(tmp_path: Path) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    cert_path, key_path = install(old_ca.issue_cert("localhost"), tmp_path)
    tls = ServerTls(cert_path, key_path, tmp_path / "data", "localhost")
    trusts_old, trusts_new = ssl.create_default_context(), ssl.create_default_context()
    old_ca.configure_trust(trusts_old)
    new_ca.configure_trust(trusts_new)

    async def main() -> None:
        server = await echo_server(tls.context)
        async with server:
            port = port_of(server)
            reader, writer = await open_tls(port, trusts_old)
            assert await echo(reader, writer, b"before") == b"before"

            before = tls.context()
            install(new_ca.issue_cert("localhost"), tmp_path)
            tls.reload()
            assert tls.context() is not before

            assert await echo(reader, writer, b"still here") == b"still here"
            with pytest.raises(ssl.SSLCertVerificationError):
                await open_tls(port, trusts_old)
            new_reader, new_writer = await open_tls(port, trusts_new)
            assert await echo(new_reader, new_writer, b"after") == b"after"
            writer.close()
            new_writer.close()

    run(main())


def test_failed_reload_keeps_the_old_context(tmp_path: Path) -> None:
    cert_path, key_path = install(trustme.CA().issue_cert("localhost"), tmp_path)
    tls = ServerTls(cert_path, key_path, tmp_path / "data", "localhost")
    before = tls.context()
    key_path.write_text("not a key\n")
    with pytest.raises(TlsError, match=str(key_path)):
        tls.reload()
    assert tls.context() is before


def one_line_error(cert: Path | None, key: Path | None, data_dir: Path) -> str:
    with pytest.raises(TlsError) as error:
        ServerTls(cert, key, data_dir, "localhost")
    message = str(error.value)
    assert "\n" not in message
    return message


def test_broken_key_names_the_file(tmp_path: Path) -> None:
    cert_path, key_path = install(trustme.CA().issue_cert("localhost"), tmp_path)
    key_path.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    message = one_line_error(cert_path, key_path, tmp_path)
    assert str(key_path) in message
    assert "no usable PEM private key" in message


def test_broken_certificate_names_the_file(tmp_path: Path) -> None:
    cert_path, key_path = install(trustme.CA().issue_cert("localhost"), tmp_path)
    cert_path.write_text("hello\n")
    assert str(cert_path) in one_line_error(cert_path, key_path, tmp_path)


def test_missing_and_unreadable_files_are_named(tmp_path: Path) -> None:
    cert_path, key_path = install(trustme.CA().issue_cert("localhost"), tmp_path)
    missing = tmp_path / "nope.pem"
    assert f"TLS key file {missing} does not exist" in one_line_error(cert_path, missing, tmp_path)
    assert f"TLS certificate file {missing} does not exist" in one_line_error(
        missing, key_path, tmp_path
    )
    directory = tmp_path / "a-directory"
    directory.mkdir()
    assert f"cannot read TLS key file {directory}" in one_line_error(cert_path, directory, tmp_path)


def test_certificate_and_key_in_one_file_with_text_around_them(tmp_path: Path) -> None:
    cert_path, key_path = install(trustme.CA().issue_cert("localhost"), tmp_path)
    both = tmp_path / "both.pem"
    both.write_bytes(
        "Subject: Grüße, a bundle's comment\n".encode()
        + key_path.read_bytes()
        + cert_path.read_bytes()
    )
    assert ServerTls(both, both, tmp_path / "data", "localhost").context() is not None


def test_mismatched_key_names_both_files(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert_path, _ = install(ca.issue_cert("localhost"), tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = install(ca.issue_cert("localhost"), other)
    message = one_line_error(cert_path, other_key, tmp_path)
    assert message == f"TLS key file {other_key} does not match certificate {cert_path}"


def test_encrypted_key_is_refused_with_a_reason(tmp_path: Path) -> None:
    cert_path, key_path = install(trustme.CA().issue_cert("localhost"), tmp_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    assert "is encrypted" in one_line_error(cert_path, key_path, tmp_path)


def test_cert_without_key_is_a_configuration_error(tmp_path: Path) -> None:
    cert_path, _ = install(trustme.CA().issue_cert("localhost"), tmp_path)
    assert "together" in one_line_error(cert_path, None, tmp_path)


def test_unwritable_data_dir_is_named(tmp_path: Path) -> None:
    data_dir = tmp_path / "a-file"
    data_dir.write_text("")
    message = one_line_error(None, None, data_dir)
    assert message.startswith(f"cannot write the generated TLS certificate to {data_dir}")
