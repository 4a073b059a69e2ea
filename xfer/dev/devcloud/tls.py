"""The local cloud's TLS: a CA it generates, a certificate for loopback signed by it, and a
TLS-terminating proxy that puts https in front of a service's plain port.

Real clouds serve their public endpoints over https, usually from a TLS-terminating proxy
(haproxy, nginx) in front of services that speak plain http; the proxy here is that, on
loopback: it relays bytes, so what reaches the service is exactly what the client sent.

    <state_dir>/tls/ca.pem        the CA's certificate: the bundle clients trust (XFER_CA_FILE)
    <state_dir>/tls/ca.key        its key (mode 0600)
    <state_dir>/tls/server.pem    a certificate for 127.0.0.1 and localhost, signed by the CA
    <state_dir>/tls/server.key
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from xfer.dev.devcloud.loopback import LOOPBACK, SECRET_FILE_MODE

VALID_DAYS = 30
RELAY_BUFFER = 256 * 1024  # bytes one read of a relayed connection takes


@dataclass(frozen=True)
class CertificateFiles:
    cert_file: Path
    key_file: Path


def make_ca(directory: Path, name: str = "xfer local cloud CA") -> CertificateFiles:
    """A fresh self-signed CA (EC P-256: a key in milliseconds, where RSA 2048 takes ~0.1 s)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (_builder(subject, subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return _write(directory, "ca", cert, key)


def issue(ca: CertificateFiles, directory: Path, name: str = "server",
          hosts: Sequence[str] = (LOOPBACK, "localhost")) -> CertificateFiles:
    """A server certificate for `hosts` (IP addresses as IP SANs, names as DNS SANs)."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_file.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key_file.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    cert = (_builder(subject, ca_cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return _write(directory, name, cert, key)


def _builder(subject: x509.Name, issuer: x509.Name,
             public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS)))


def _write(directory: Path, name: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> CertificateFiles:
    files = CertificateFiles(directory / f"{name}.pem", directory / f"{name}.key")
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.touch(mode=SECRET_FILE_MODE)
    files.key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return files


def server_context(certificate: CertificateFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate.cert_file, certificate.key_file)
    return context


@contextlib.asynccontextmanager
async def tls_proxy(upstream_port: int, certificate: CertificateFiles,
                    listen_port: int = 0) -> AsyncIterator[int]:
    """https on `listen_port` (0: any free port, yielded) relayed to http on `upstream_port`,
    in the running event loop; every relayed connection is closed on exit."""
    relays: set[asyncio.Task[None]] = set()

    async def accepted(client_reader: asyncio.StreamReader,
                       client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        relays.add(task)
        try:
            await _relay(client_reader, client_writer, upstream_port)
        finally:
            relays.discard(task)

    server = await asyncio.start_server(accepted, LOOPBACK, listen_port,
                                        ssl=server_context(certificate))
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(relays):
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
        await server.wait_closed()


async def _relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                 upstream_port: int) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(LOOPBACK, upstream_port)
    except OSError:
        client_writer.close()
        return
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_pipe(client_reader, upstream_writer))
            group.create_task(_pipe(upstream_reader, client_writer))
    except* (OSError, ssl.SSLError):
        pass  # either side went away: both are closed below
    finally:
        upstream_writer.close()
        client_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One direction; its end closes the other side's connection (a TLS stream has no half
    close), which ends the other direction: a server closing its connection is seen by the
    client at once, as without the proxy."""
    try:
        while data := await reader.read(RELAY_BUFFER):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
