"""The local cloud's TLS: a CA it generates, a certificate for loopback signed by it, and the
https endpoints a TLS-terminating proxy (tls_proxy.py, one process) gives its public services.

Real clouds serve their public endpoints over https, usually from a TLS-terminating proxy
(haproxy, nginx) in front of services that speak plain http; tls_proxy.py is that, on loopback.
Keystone, each region's Swift and Glance, and the xfer serving each region (on its catalog
port) get an https port; `tls_catalog` lists them as regions of their own (`RegionOne-tls`,
and `RegionOne-tls-via-xfer` for glance-download through xfer), which a caller registers in
Keystone when it wants them (the plain catalog stays what every other test expects).
Each Glance trusts the CA: `swift_store_cacert` for the Swift locations it reads, and
SSL_CERT_FILE in its environment for glance-download, whose urllib opener reads only the
system's default CA paths (glance/common/scripts/utils.py, open_external_uri).

    <state_dir>/tls/ca.pem        the CA's certificate: the bundle clients trust (XFER_CA_FILE)
    <state_dir>/tls/ca.key        its key (mode 0600)
    <state_dir>/tls/server.pem    a certificate for 127.0.0.1 and localhost, signed by the CA
    <state_dir>/tls/server.key
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from xfer.dev.devcloud.keystone_server import XFER_SERVICE_TYPE, via_xfer
from xfer.dev.devcloud.loopback import LOOPBACK, PROBE_TIMEOUT_S, SECRET_FILE_MODE
from xfer.dev.devcloud.swift_conf import KEYSTONE_PREFIX

VALID_DAYS = 30
TLS_SUFFIX = "-tls"  # RegionOne-tls: RegionOne's services through their https endpoints


def tls_region(region: str) -> str:
    return region + TLS_SUFFIX


@dataclass(frozen=True)
class CertificateFiles:
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class TlsInfo:
    """The cloud's CA, its loopback certificate and its https ports (each relayed to a plain
    one)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    keystone_port: int
    # region -> (object-store, image, xfer) https ports
    region_ports: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    relays: tuple[tuple[int, int], ...] = ()  # (https port, plain port) pairs

    @property
    def certificate(self) -> CertificateFiles:
        return CertificateFiles(self.cert_file, self.key_file)

    @property
    def keystone_url(self) -> str:
        return f"https://{LOOPBACK}:{self.keystone_port}/v3"

    def ports(self) -> list[int]:
        return [port for port, _ in self.relays]


def prepare_tls(directory: Path, keystone: tuple[int, int],
                regions: dict[str, tuple[tuple[int, int], tuple[int, int], tuple[int, int]]]
                ) -> TlsInfo:
    """A fresh CA and certificate in `directory`; `keystone`: (https port, plain port), and
    per region the same pairs for its object store, image API and xfer."""
    ca = make_ca(directory)
    server = issue(ca, directory)
    relays = [keystone, *(pair for pairs in regions.values() for pair in pairs)]
    return TlsInfo(ca.cert_file, server.cert_file, server.key_file, keystone[0],
                   {region: (store[0], image[0], xfer[0])
                    for region, (store, image, xfer) in regions.items()}, tuple(relays))


def readiness_problem(tls: TlsInfo) -> str | None:
    """None once Keystone answers `GET /v3` through the proxy, its certificate verified with
    the CA (the proxy listens on every port before it says so)."""
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    connection = http.client.HTTPSConnection(LOOPBACK, tls.keystone_port, timeout=PROBE_TIMEOUT_S,
                                             context=context)
    try:
        connection.request("GET", "/v3")
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return f"https://{LOOPBACK}:{tls.keystone_port}/v3: {type(exc).__name__}: {exc}"
    finally:
        connection.close()
    return None if status == 200 else f"GET /v3 through the TLS proxy answered {status}"


def tls_catalog(tls: TlsInfo) -> list[tuple[str, str, str]]:
    """(region, service type, public URL) of the https regions: `<region>-tls` with identity,
    object-store, image and image-transfer, and `<region>-tls-via-xfer` whose image service is
    that region's xfer over https (the service named xfer-glance-front, as in the seed)."""

    entries = []
    for region, (store, image, xfer) in tls.region_ports.items():
        name, base = tls_region(region), f"https://{LOOPBACK}"
        entries += [(name, "identity", tls.keystone_url),
                    (name, "object-store", f"{base}:{store}/v1/{KEYSTONE_PREFIX}$(project_id)s"),
                    (name, "image", f"{base}:{image}"),
                    (name, XFER_SERVICE_TYPE, f"{base}:{xfer}"),
                    (via_xfer(name), "image", f"{base}:{xfer}")]
    return entries


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
