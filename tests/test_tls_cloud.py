"""The local cloud behind TLS (issue 19, section 3): its https endpoints (the CA `xfer devcloud
up` makes, its TLS-terminating proxy in front of Keystone and each region's Swift, Glance and
xfer) registered as regions `<region>-tls` for this module; xfer calls every service over
https with that CA. An image copy both ways, glance-download through xfer, a certificate of
another CA, `xfer check` and the web view's sign-in."""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from keystoneauth1 import session as ksa_session

from tests.conftest import MiB, Service, keystone_settings, md5, running_service
from tests.test_cli import openstack
from tests.test_cloud_keystone_glance import image_api, upload, user_session, wait_active
from tests.test_glance_download import start_import
from tests.test_image_copy import container_gone, glance_image, no_image
from xfer.check import Preflight
from xfer.dev import devcloud
from xfer.dev.devcloud import tls as devtls
from xfer.dev.devcloud.keystone_server import via_xfer
from xfer.dev.devcloud.tls_proxy import tls_proxy
from xfer.settings import Settings

pytestmark = pytest.mark.integration


def catalog_ids(admin: ksa_session.Session, auth_url: str) -> dict[tuple[str, str], str]:
    """(service type, name) -> service id."""
    services = admin.get(f"{auth_url}/services").json()["services"]
    return {(service["type"], service["name"]): service["id"] for service in services}


def register(admin: ksa_session.Session, auth_url: str,
             entries: list[tuple[str, str, str]]) -> list[str]:
    """Public endpoints (region, service type, URL), their regions made first; the paths to
    delete them by, endpoints before regions."""
    ids = catalog_ids(admin, auth_url)
    by_type = {kind: service for (kind, name), service in ids.items()
               if (kind, name) != ("image", "xfer-glance-front")}
    made: list[str] = []
    for region in dict.fromkeys(region for region, _, _ in entries):
        response = admin.post(f"{auth_url}/regions", json={"region": {"id": region}})
        assert response.status_code == 201, response.text
        made.append(f"{auth_url}/regions/{region}")
    for region, kind, url in entries:
        service = (ids[("image", "xfer-glance-front")] if region.endswith("-via-xfer")
                   else by_type[kind])
        response = admin.post(f"{auth_url}/endpoints", json={"endpoint": {
            "service_id": service, "interface": "public", "region_id": region, "url": url}})
        assert response.status_code == 201, response.text
        made.insert(0, f"{auth_url}/endpoints/{response.json()['endpoint']['id']}")
    return made


@pytest.fixture(scope="module")
def https_catalog(cloud: devcloud.CloudInfo) -> Iterator[devtls.TlsInfo]:
    """The cloud's https regions (RegionOne-tls, RegionTwo-tls and their -via-xfer) in the
    catalog for this module's tests; the plain catalog as it was afterwards."""
    assert cloud.tls is not None and cloud.keystone is not None
    admin = user_session(cloud, "admin")
    made = register(admin, cloud.keystone.auth_url, devtls.tls_catalog(cloud.tls))
    try:
        yield cloud.tls
    finally:
        for path in made:
            admin.delete(path)
        admin.session.close()


def https_settings(settings: Settings, cloud: devcloud.CloudInfo, home: str,
                   tls: devtls.TlsInfo, **changes: object) -> Settings:
    """An xfer whose every call to the cloud goes through its https endpoints."""
    return keystone_settings(settings, cloud, home, keystone_url=tls.keystone_url,
                             ca_file=str(tls.ca_file), **changes)


async def copy_over(service: Service, session: ksa_session.Session, image_id: str,
                    source_region: str) -> dict:
    token = {"X-Auth-Token": session.get_token() or ""}
    async with service.http.post(f"{service.url}/v1/images/{image_id}/copies", headers=token,
                                 json={"source_region": source_region}) as response:
        job = await response.json()
        assert response.status == 201, job
    async with asyncio.timeout(90):
        while job["state"] not in ("succeeded", "failed", "cancelled"):
            await asyncio.sleep(0.2)
            async with service.http.get(f"{service.url}/v1/jobs/{job['id']}",
                                        headers=token) as response:
                job = await response.json()
    return job


async def test_an_image_copy_over_https_is_verified_end_to_end(
        settings: Settings, cloud: devcloud.CloudInfo, https_catalog: devtls.TlsInfo) -> None:
    """RegionOne -> RegionTwo, each through its https endpoints only, and back: the second
    copy reads a source whose Swift location is itself https. Each Glance reads the copy it
    registers over https with the cloud's CA."""
    alice = user_session(cloud, "alice")  # a token made after the https regions exist
    data = os.urandom(3 * MiB + 5)
    source = upload(alice, "RegionOne", data)
    image_id = source["id"]
    for home, source_region in (("RegionTwo", "RegionOne"), ("RegionOne", "RegionTwo")):
        tls_home = devtls.tls_region(home)
        async with running_service(https_settings(settings, cloud, tls_home,
                                                  https_catalog)) as xfer:
            job = await copy_over(xfer, alice, image_id, devtls.tls_region(source_region))
        assert job["state"] == "succeeded", job["error"]
        assert job["verification"] == "end_to_end" and job["md5"] == md5(data)
        copied = job["image"]["target_image_id"]
        # the source goes, or the copy back would find it and deduplicate
        assert alice.delete(f"{image_api(alice, source_region)}/v2/images/{image_id}").ok
        image_id = copied
        copy = glance_image(alice, home, image_id)  # the same Glance, over its plain endpoint
        assert copy["status"] == "active" and copy["checksum"] == md5(data)
        swift_port = https_catalog.region_ports[home][0]
        assert copy["direct_url"].startswith(f"swift+https://127.0.0.1:{swift_port}/v1/")
    downloaded = alice.get(f"{image_api(alice, 'RegionOne')}/v2/images/{image_id}/file")
    assert md5(downloaded.content) == md5(data)
    alice.session.close()


async def test_glance_download_through_xfer_behind_the_tls_proxy(
        settings: Settings, cloud: devcloud.CloudInfo, https_catalog: devtls.TlsInfo) -> None:
    """Stock Glance (RegionTwo) imports from RegionOne-tls-via-xfer: it calls xfer over https
    (the cloud's TLS proxy in front of xfer's plain catalog port), trusting the CA, and xfer
    calls RegionOne's services over https in turn."""
    alice = user_session(cloud, "alice")
    data = os.urandom(2 * MiB + 1)
    source = await asyncio.to_thread(upload, alice, "RegionOne", data)
    port = int(cloud.xfer_urls["RegionOne"].rsplit(":", 1)[1])
    front = https_settings(settings, cloud, devtls.tls_region("RegionOne"), https_catalog,
                           listen_port=port)
    async with running_service(front):
        target = await asyncio.to_thread(start_import, alice, source["id"],
                                         via_xfer(devtls.tls_region("RegionOne")))
        imported = await asyncio.to_thread(wait_active, alice, "RegionTwo", target)
    assert (imported["checksum"], imported["size"]) == (md5(data), len(data))
    alice.session.close()


async def test_a_service_whose_certificate_is_from_another_ca_fails_the_copy_cleanly(
        settings: Settings, cloud: devcloud.CloudInfo, https_catalog: devtls.TlsInfo,
        tmp_path: Path) -> None:
    """RegionTwo-badtls: RegionTwo's Keystone and Glance over the cloud's https, its Swift
    behind a certificate of a CA xfer does not trust. The copy fails saying so (a job state
    and a sentence, no traceback), and its target image and container are gone."""
    assert cloud.keystone is not None
    foreign = devtls.issue(devtls.make_ca(tmp_path, "another CA"), tmp_path, "foreign")
    region, alice = "RegionTwo-badtls", user_session(cloud, "alice")
    source = upload(alice, "RegionOne", os.urandom(MiB + 3))
    admin = user_session(cloud, "admin")
    swift_port = cloud.clusters["RegionTwo"].ports.keystone_proxy
    async with tls_proxy(swift_port, foreign.cert_file, foreign.key_file) as port:
        made = register(admin, cloud.keystone.auth_url, [
            (region, "identity", https_catalog.keystone_url),
            (region, "object-store", f"https://127.0.0.1:{port}/v1/AUTH_$(project_id)s"),
            (region, "image", f"https://127.0.0.1:{https_catalog.region_ports['RegionTwo'][1]}")])
        try:
            alice = user_session(cloud, "alice")  # a catalog with the new region
            async with running_service(https_settings(settings, cloud, region,
                                                      https_catalog)) as xfer:
                job = await copy_over(xfer, alice, source["id"], devtls.tls_region("RegionOne"))
                target = job["image"]["target_image_id"]
                assert target, job  # it got as far as the target image, in RegionTwo's Glance
                async with asyncio.timeout(60):  # xfer's cleanup deletes it (in Glance: trusted)
                    while True:
                        if await asyncio.to_thread(no_image, alice, "RegionTwo", target):
                            break
                        await asyncio.sleep(0.3)
        finally:
            for path in made:
                admin.delete(path)
    assert job["state"] == "failed", job
    message = job["error"]["message"]
    assert f"TLS certificate of 127.0.0.1:{port} is not trusted" in message, job["error"]
    assert "XFER_CA_FILE" in message and "Traceback" not in message
    assert job["error"]["code"] == "swift_failed" and "after retries" not in message  # not retried
    # no byte reached the Swift xfer refused: no container either (seen through the plain
    # endpoint; xfer's own cleanup of the data keeps failing on that certificate, and says so)
    assert container_gone(alice, "RegionTwo", target)
    alice.session.close()
    admin.session.close()


async def test_xfer_check_passes_over_https_and_names_a_plain_endpoint_for_a_tls_xfer(
        settings: Settings, cloud: devcloud.CloudInfo, https_catalog: devtls.TlsInfo,
        ) -> None:
    """`xfer check` with every call over https (Keystone, each region's Swift and Glance,
    the plain regions' and the -tls ones'), for an xfer listening with TLS where the catalog's
    https endpoint of RegionOne-tls says; the same xfer as RegionOne's, whose catalog
    endpoint is http, is told so."""
    listening = {"tls_cert_file": str(https_catalog.cert_file),
                 "tls_key_file": str(https_catalog.key_file), "listen_host": "127.0.0.1"}
    home = devtls.tls_region("RegionOne")
    right = https_settings(settings, cloud, home, https_catalog, **listening,
                           listen_port=https_catalog.region_ports["RegionOne"][2])
    outcomes = await Preflight(right, 10.0).run()
    assert all(outcome.ok for outcome in outcomes), [o for o in outcomes if not o.ok]
    assert {f"swift {home}", f"glance {home}", "catalog"} <= {o.name for o in outcomes}
    plain_port = int(cloud.xfer_urls["RegionOne"].rsplit(":", 1)[1])
    wrong = right.with_overrides(home_region="RegionOne", listen_port=plain_port)
    catalog, = [o for o in await Preflight(wrong, 10.0).run() if o.name == "catalog"]
    assert catalog.ok is False and "is not https; this xfer listens with TLS" in catalog.found


async def test_the_web_view_signs_in_over_https_with_a_secure_cookie_and_relative_redirects(
        settings: Settings, cloud: devcloud.CloudInfo, https_catalog: devtls.TlsInfo) -> None:
    """An xfer listening with TLS (the cloud's certificate) whose Keystone is https: the
    sign-in form's cookie is Secure, the sign-in reaches Keystone through the CA, and the
    redirect after it is a path."""
    assert cloud.keystone is not None
    listening = https_settings(settings, cloud, devtls.tls_region("RegionTwo"), https_catalog,
                               tls_cert_file=str(https_catalog.cert_file),
                               tls_key_file=str(https_catalog.key_file))
    alice = cloud.keystone.user("alice")
    trusted = ssl.create_default_context(cafile=str(https_catalog.ca_file))
    async with running_service(listening) as service, aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=trusted),
            cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # unsafe: an IP address host
        https = service.url.replace("http://", "https://")
        async with http.get(f"{https}/ui/login") as response:
            assert response.status == 200
            assert "Secure" in response.headers["Set-Cookie"]
            csrf = re.search(r'name="csrf" value="([^"]+)"', await response.text())
        assert csrf is not None
        async with http.post(f"{https}/ui/login", allow_redirects=False, data={
                "csrf": csrf[1], "user": alice.name, "password": alice.password,
                "project": alice.project, "domain": "Default"}) as response:
            assert response.status == 303, await response.text()
            assert response.headers["Location"] == "/ui/"
            assert "Secure" in response.headers["Set-Cookie"]


async def test_the_openstack_cli_reaches_xfer_behind_the_tls_proxy_with_its_cacert(
        settings: Settings, cloud: devcloud.CloudInfo, https_catalog: devtls.TlsInfo,
        tmp_path: Path) -> None:
    """A user's side: clouds.yaml with the https Keystone and `cacert` (keystoneauth's own
    setting), the region RegionTwo-tls, whose image-transfer endpoint is the TLS proxy in
    front of RegionTwo's xfer: `openstack xfer region list` answers through it."""
    assert cloud.keystone is not None
    user, home = cloud.keystone.user("alice"), devtls.tls_region("RegionTwo")
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(json.dumps({"clouds": {"alice": {
        "auth": {"auth_url": https_catalog.keystone_url, "username": user.name,
                 "password": user.password, "project_name": user.project,
                 "user_domain_name": "Default", "project_domain_name": "Default"},
        "region_name": home, "interface": "public", "identity_api_version": 3,
        "cacert": str(https_catalog.ca_file)}}}))
    port = int(cloud.xfer_urls["RegionTwo"].rsplit(":", 1)[1])
    async with running_service(https_settings(settings, cloud, home, https_catalog,
                                              listen_port=port)):
        ran = await openstack(clouds, "alice", "xfer", "region", "list", "-f", "json")
    assert ran.code == 0, ran.err
    assert devtls.tls_region("RegionOne") in {row["Name"] for row in json.loads(ran.out)}, ran.out
