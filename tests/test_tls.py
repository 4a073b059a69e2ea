"""HTTPS (issue 19, section 3): the CA bundle every client path of xfer verifies with, checked
at start-up; `xfer serve` listening with TLS; real TLS in front of the session cloud's real
services (xfer.dev.devcloud.tls: a CA made here, a TLS-terminating proxy)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from keystoneauth1 import session as ksa_session

from tests.conftest import running_service, unique
from tests.test_cloud_keystone_glance import (
    object_store,
    user_session,
)
from xfer import cli
from xfer.clients.transport import bulk_http, exchange, http_session
from xfer.dev import devcloud
from xfer.dev.devcloud import tls as devtls
from xfer.dev.devcloud.tls_proxy import tls_proxy
from xfer.errors import ConfigError, ErrorCode, TransportError, UntrustedCertificate
from xfer.proto.http import Request
from xfer.settings import Settings
from xfer.tls import client_context, server_context
from xfer.web.errors import reply_of


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> devtls.CertificateFiles:
    return devtls.make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def server_cert(ca: devtls.CertificateFiles, tmp_path_factory: pytest.TempPathFactory
                ) -> devtls.CertificateFiles:
    return devtls.issue(ca, tmp_path_factory.mktemp("server"))


def cert_files(files: devtls.CertificateFiles) -> tuple[Path, Path]:
    return files.cert_file, files.key_file


# --- the settings, checked at start-up


def serve_exit(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
               **variables: str) -> tuple[int, str]:
    """`xfer serve`'s exit code and stderr with these XFER_* variables (no database needed:
    TLS settings are checked before it is reached)."""
    for name in [n for n in os.environ if n.startswith("XFER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XFER_DATABASE_URL", "postgresql://xfer@127.0.0.1:1/nowhere")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    code = cli.main(["serve"])
    return code, capsys.readouterr().err


def test_a_ca_file_that_is_not_there_stops_start_up_naming_the_setting(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    code, err = serve_exit(monkeypatch, capsys, XFER_CA_FILE=str(missing))
    assert code == 2
    assert f"XFER_CA_FILE={missing}: cannot load it as a PEM CA bundle" in err
    assert "Traceback" not in err


def test_a_ca_file_without_a_certificate_is_refused(
        tmp_path: Path, ca: devtls.CertificateFiles) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"XFER_CA_FILE=.*garbage.pem: cannot load"):
        client_context(Settings(ca_file=str(garbage)))
    with pytest.raises(ConfigError, match=r"XFER_CA_FILE=.*ca.key"):  # a key, not a CA
        client_context(Settings(ca_file=str(ca.key_file)))
    assert client_context(Settings(ca_file=str(ca.cert_file))).get_ca_certs()


def test_the_listening_certificate_and_key_are_checked_at_start_up(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        ca: devtls.CertificateFiles, server_cert: devtls.CertificateFiles) -> None:
    code, err = serve_exit(monkeypatch, capsys, XFER_TLS_CERT_FILE=str(server_cert.cert_file),
                           XFER_TLS_KEY_FILE=str(ca.key_file))  # not this certificate's key
    assert code == 2
    assert "XFER_TLS_CERT_FILE=" in err and "cannot load the certificate chain" in err
    code, err = serve_exit(monkeypatch, capsys, XFER_TLS_KEY_FILE=str(server_cert.key_file))
    assert code == 2 and "XFER_TLS_KEY_FILE is set without XFER_TLS_CERT_FILE" in err
    listening = Settings(tls_cert_file=str(server_cert.cert_file),
                         tls_key_file=str(server_cert.key_file))
    assert isinstance(server_context(listening), ssl.SSLContext)
    assert listening.listen_scheme == "https" and Settings().listen_scheme == "http"


def test_an_untrusted_certificate_is_the_operators_to_fix_not_a_retry() -> None:
    refused = UntrustedCertificate("keystone", "POST", "/v3/auth/tokens", "the TLS certificate "
                                   "of 127.0.0.1:5000 is not trusted (...)")
    answered = reply_of(refused, "req-1")
    assert (answered.status, answered.code) == (503, ErrorCode.SERVICE_MISCONFIGURED)
    assert "127.0.0.1:5000 is not trusted" in answered.message
    assert isinstance(refused, TransportError) and not refused.retryable


# --- every client path through one verified context, against the real cloud behind TLS


@pytest.fixture(scope="module")
def alice(cloud: devcloud.CloudInfo) -> Iterator[ksa_session.Session]:
    session = user_session(cloud, "alice")
    yield session
    session.session.close()


@pytest.fixture(scope="module")
def swift_object(alice: ksa_session.Session) -> tuple[str, bytes]:
    """(path below the storage URL, bytes) of an object in alice's RegionOne account."""
    container, data = unique("tls"), os.urandom(3 * 1024 * 1024 + 7)
    base = object_store(alice, "RegionOne")
    assert alice.put(f"{base}/{container}").status_code in (201, 202)
    assert alice.put(f"{base}/{container}/blob", data=data).status_code == 201
    return f"{container}/blob", data


async def read_both_ways(settings: Settings, url: str, token: str) -> tuple[int, bytes]:
    """HEAD through aiohttp (tokens, JSON, manifests) and a ranged GET through the bulk data
    path, on one xfer session: (HEAD's status, the GET's bytes)."""
    headers = {"X-Auth-Token": token}
    async with http_session(settings) as http:
        head = await exchange(http, "swift", Request("HEAD", url, headers))
        request = Request("GET", url, {**headers, "Range": "bytes=0-1048575"})
        async with bulk_http(http).get("swift", request) as reply:
            body = await reply.read()
    return head.status, body


async def test_xfer_reads_over_https_with_the_configured_ca_and_refuses_any_other(
        cloud: devcloud.CloudInfo, alice: ksa_session.Session, swift_object: tuple[str, bytes],
        ca: devtls.CertificateFiles, server_cert: devtls.CertificateFiles,
        tmp_path: Path) -> None:
    path, data = swift_object
    cluster = cloud.clusters["RegionOne"]
    account = object_store(alice, "RegionOne").rsplit("/v1/", 1)[1]
    token = alice.get_token()
    assert token is not None
    async with tls_proxy(cluster.ports.keystone_proxy, *cert_files(server_cert)) as port:
        url = f"https://127.0.0.1:{port}/v1/{account}/{path}"
        status, body = await read_both_ways(Settings(ca_file=str(ca.cert_file)), url, token)
        assert status == 200 and body == data[:1024 * 1024]

        # The system's CAs (no XFER_CA_FILE) do not include this one: aiohttp's path...
        with pytest.raises(UntrustedCertificate, match=r"is not trusted.*XFER_CA_FILE"):
            await read_both_ways(Settings(), url, token)
        async with http_session(Settings()) as http:  # ...and the bulk path's
            with pytest.raises(UntrustedCertificate, match=r"is not trusted.*XFER_CA_FILE"):
                async with bulk_http(http).get("swift", Request("GET", url, {})):
                    pass

    # The hostname is checked too: a certificate of the right CA for another name is refused.
    other = devtls.issue(ca, tmp_path, "other", hosts=("other.example",))
    async with tls_proxy(cluster.ports.keystone_proxy, *cert_files(other)) as port:
        url = f"https://127.0.0.1:{port}/v1/{account}/{path}"
        async with http_session(Settings(ca_file=str(ca.cert_file))) as http:
            with pytest.raises(UntrustedCertificate, match="IP address mismatch"):
                await exchange(http, "swift", Request("HEAD", url, {"X-Auth-Token": token}))
            with pytest.raises(UntrustedCertificate, match="IP address mismatch"):
                async with bulk_http(http).get("swift", Request("GET", url, {})):
                    pass


# --- `xfer serve` with TLS


async def test_xfer_serve_listens_with_tls_and_its_locations_are_relative(
        settings: Settings, ca: devtls.CertificateFiles,
        server_cert: devtls.CertificateFiles) -> None:
    tls_settings = settings.with_overrides(tls_cert_file=str(server_cert.cert_file),
                                           tls_key_file=str(server_cert.key_file))
    async with running_service(tls_settings) as service:
        https = service.url.replace("http://", "https://")
        trusted = ssl.create_default_context(cafile=str(ca.cert_file))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted)) as http:
            async with http.get(f"{https}/readyz") as response:
                assert response.status == 200, await response.text()
            async with http.post(f"{https}/v1/jobs", json={
                    "source": {"region": "RegionOne", "container": "c", "object": "o"},
                    "target": {"region": "RegionTwo", "container": "c", "object": "o"}}
                    ) as response:
                assert response.status == 201, await response.text()
                job = await response.json()
                # relative: right behind a TLS proxy and when xfer terminates TLS itself
                assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
            async with http.get(f"{https}/v1/openapi.json") as response:
                document = await response.json()
                servers = [server["url"] for server in document.get("servers", [])]
                assert not any(url.startswith("http://") for url in servers), servers
        with pytest.raises(aiohttp.ClientConnectorCertificateError):  # the system's CAs
            async with aiohttp.ClientSession() as http, http.get(f"{https}/readyz"):
                pass
