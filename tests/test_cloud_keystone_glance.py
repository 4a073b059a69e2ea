"""The local cloud's Keystone, Glance and Keystone-authenticated Swift, against the real services
of the test session's cloud (tests/conftest.py): what issue 9's copy flow will build on."""

from __future__ import annotations

import hashlib
import os
import shlex
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from keystoneauth1 import service_token
from keystoneauth1 import session as ksa_session
from keystoneauth1.identity import v3

from tests.conftest import is_running, unique
from xfer.dev import devcloud

pytestmark = pytest.mark.integration

REGIONS = ("RegionOne", "RegionTwo")
ACTIVE_DEADLINE_S = 60.0
# Every token and secret these tests see: none may appear in any log of the cloud.
_seen_secrets: set[str] = set()


def keystone_of(cloud: devcloud.CloudInfo) -> devcloud.KeystoneInfo:
    assert cloud.keystone is not None, "the session's cloud starts Keystone"
    return cloud.keystone


def password_auth(cloud: devcloud.CloudInfo, name: str) -> v3.Password:
    keystone = keystone_of(cloud)
    user = keystone.user(name)
    return v3.Password(auth_url=keystone.auth_url, username=user.name, password=user.password,
                       project_name=user.project, user_domain_name="Default",
                       project_domain_name="Default")


def user_session(cloud: devcloud.CloudInfo, name: str) -> ksa_session.Session:
    return ksa_session.Session(auth=password_auth(cloud, name))


@pytest.fixture(scope="module")
def alice(cloud: devcloud.CloudInfo) -> Iterator[ksa_session.Session]:
    session = user_session(cloud, "alice")
    _seen_secrets.add(session.get_token())
    yield session
    session.session.close()


@pytest.fixture(scope="module")
def bob(cloud: devcloud.CloudInfo) -> Iterator[ksa_session.Session]:
    session = user_session(cloud, "bob")
    _seen_secrets.add(session.get_token())
    yield session
    session.session.close()


def object_store(session: ksa_session.Session, region: str) -> str:
    url = session.get_endpoint(service_type="object-store", interface="public", region_name=region)
    assert isinstance(url, str)
    return url


def swift_url(session: ksa_session.Session, region: str, image_id: str, name: str = "") -> str:
    """An object of an image's container in the user's account (Glance's multi-tenant store:
    `glance_<id>`); the image's own object by default."""
    return f"{object_store(session, region)}/glance_{image_id}/{name or image_id}"


def replace_with_slo(session: ksa_session.Session, region: str, image_id: str, data: bytes,
                     segment_size: int) -> list[str]:
    """Replace an image's plain object by an SLO of the same bytes, its segments in the
    image's own container (as xfer's copies are stored); the segments' names."""
    manifest, names = [], []
    for index, offset in enumerate(range(0, len(data), segment_size)):
        piece = data[offset:offset + segment_size]
        name = f"{image_id}-seg{index}"
        assert session.put(swift_url(session, region, image_id, name), data=piece).ok
        manifest.append({"path": f"/glance_{image_id}/{name}",
                         "etag": hashlib.md5(piece).hexdigest(), "size_bytes": len(piece)})
        names.append(name)
    put = session.put(swift_url(session, region, image_id), json=manifest,
                      params={"multipart-manifest": "put"})
    assert put.status_code == 201, put.text
    return names


def image_api(session: ksa_session.Session, region: str) -> str:
    url = session.get_endpoint(service_type="image", interface="public", region_name=region)
    assert isinstance(url, str)
    return url.rstrip("/")


def create_image(session: ksa_session.Session, region: str, **properties: str) -> str:
    body = {"name": unique("image"), "disk_format": "raw", "container_format": "bare",
            "visibility": "private", **properties}
    response = session.post(f"{image_api(session, region)}/v2/images", json=body)
    assert response.status_code == 201, response.text
    image_id: str = response.json()["id"]
    return image_id


def wait_active(session: ksa_session.Session, region: str, image_id: str) -> dict:
    deadline = time.monotonic() + ACTIVE_DEADLINE_S
    while True:
        image: dict = session.get(f"{image_api(session, region)}/v2/images/{image_id}").json()
        if image["status"] == "active":
            return image
        assert image["status"] in ("queued", "saving", "importing"), image
        assert time.monotonic() < deadline, f"image {image_id} still {image['status']}"
        time.sleep(0.2)


def upload(session: ksa_session.Session, region: str, data: bytes, *, chunked: bool = False,
           through: str = "", image_id: str = "") -> dict:
    """PUT /v2/images/{id}/file; chunked: no Content-Length (a generator body); ``through``
    another API of the region than the catalog's (its file-store API); ``image_id`` the id
    the image is created with (Glance's own otherwise)."""
    image_id = create_image(session, region, **({"id": image_id} if image_id else {}))
    body: object = iter([data[: len(data) // 2], data[len(data) // 2 :]]) if chunked else data
    api = through or image_api(session, region)
    response = session.put(f"{api}/v2/images/{image_id}/file", data=body,
                           headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 204, response.text
    return wait_active(session, region, image_id)


def share(owner: ksa_session.Session, member: ksa_session.Session, region: str,
          image_id: str) -> None:
    """The owner makes the image shared with the member's project, which accepts it."""
    images = f"{image_api(owner, region)}/v2/images/{image_id}"
    shared = owner.patch(images, json=[{"op": "replace", "path": "/visibility",
                                        "value": "shared"}],
                         headers={"Content-Type": "application/openstack-images-v2.1-json-patch"})
    assert shared.status_code == 200, shared.text
    project = member.get_project_id()
    added = owner.post(f"{images}/members", json={"member": project})
    assert added.status_code == 200, added.text
    accepted = member.put(f"{images}/members/{project}", json={"status": "accepted"})
    assert accepted.status_code == 200, accepted.text


def test_alice_gets_a_catalog_with_image_and_object_store_in_both_regions(
    cloud: devcloud.CloudInfo, alice: ksa_session.Session
) -> None:
    project_id = alice.get_project_id()
    for region in REGIONS:
        template = cloud.clusters[region].keystone_storage_url
        assert object_store(alice, region) == template.replace("$(project_id)s", project_id)
        assert image_api(alice, region) == cloud.glances[region].url
        identity = alice.get_endpoint(service_type="identity", interface="public",
                                      region_name=region)
        assert identity.rstrip("/") == keystone_of(cloud).auth_url
    assert object_store(alice, "RegionOne") != object_store(alice, "RegionTwo")


def test_image_uploaded_through_glance_lands_in_the_owners_swift_account(
    alice: ksa_session.Session,
) -> None:
    data = os.urandom(300_000)
    image = upload(alice, "RegionOne", data)

    assert image["size"] == len(data)
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_algo"] == "sha512"
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    account = object_store(alice, "RegionOne")
    location = f"{account}/glance_{image['id']}/{image['id']}"
    assert image["direct_url"] == "swift+" + location
    stored = alice.get(location)
    assert stored.status_code == 200 and stored.content == data
    assert stored.headers["Etag"].strip('"') == image["checksum"]  # a plain object
    # Not in the other region's Swift.
    other = alice.head(f"{object_store(alice, 'RegionTwo')}/glance_{image['id']}/{image['id']}",
                       raise_exc=False)
    assert other.status_code == 404


def test_bob_cannot_see_alices_private_image(
    alice: ksa_session.Session, bob: ksa_session.Session
) -> None:
    image = upload(alice, "RegionOne", b"alice's bytes")
    images = image_api(bob, "RegionOne")

    assert bob.get(f"{images}/v2/images/{image['id']}", raise_exc=False).status_code == 404
    assert image["id"] not in {i["id"] for i in bob.get(f"{images}/v2/images").json()["images"]}
    # Nor its bytes in Swift: the container is in alice's account.
    swift_path = image["direct_url"].removeprefix("swift+")
    assert bob.get(swift_path, raise_exc=False).status_code == 403


def test_upload_without_content_length_becomes_a_dlo(alice: ksa_session.Session) -> None:
    data = os.urandom(200_000)
    image = upload(alice, "RegionOne", data, chunked=True)

    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    container = f"{object_store(alice, 'RegionOne')}/glance_{image['id']}"
    manifest = alice.head(f"{container}/{image['id']}")
    assert manifest.headers["X-Object-Manifest"] == f"glance_{image['id']}/{image['id']}-"
    listing = alice.get(container, params={"format": "json"}).json()
    segments = [entry["name"] for entry in listing if entry["name"] != image["id"]]
    assert segments == [f"{image['id']}-00001"]
    assert alice.get(f"{container}/{image['id']}").content == data


def test_glance_download_imports_an_image_of_the_other_region(alice: ksa_session.Session) -> None:
    """Glance's own cross-region pull: loopback imports pass the import filter, the remote
    endpoint comes from alice's catalog."""
    source = upload(alice, "RegionOne", os.urandom(100_000))
    target = create_image(alice, "RegionTwo")
    response = alice.post(f"{image_api(alice, 'RegionTwo')}/v2/images/{target}/import", json={
        "method": {"name": "glance-download", "glance_image_id": source["id"],
                   "glance_region": "RegionOne"}})
    assert response.status_code == 202, response.text
    imported = wait_active(alice, "RegionTwo", target)
    assert imported["checksum"] == source["checksum"]
    assert imported["direct_url"].startswith("swift+" + object_store(alice, "RegionTwo"))


def test_a_location_in_swift_is_registered_with_the_xfer_service_token_only(
    cloud: devcloud.CloudInfo, alice: ksa_session.Session
) -> None:
    """API 2.17 add-location, as issue 9 registers a copy: alice's token plus an X-Service-Token
    of xfer (role service); Glance reads the object and checks the sha512 given."""
    data = os.urandom(120_000)
    image_id = create_image(alice, "RegionTwo")
    container = f"{object_store(alice, 'RegionTwo')}/glance_{image_id}"
    alice.put(container)
    alice.put(f"{container}/{image_id}", data=data)
    request = {"url": f"swift+{container}/{image_id}", "validation_data": {
        "os_hash_algo": "sha512", "os_hash_value": hashlib.sha512(data).hexdigest()}}
    locations = f"{image_api(alice, 'RegionTwo')}/v2/images/{image_id}/locations"
    version = {"OpenStack-API-Version": "image 2.17"}

    assert alice.post(locations, json=request, headers=version, raise_exc=False).status_code == 403
    with_service_token = ksa_session.Session(auth=service_token.ServiceTokenAuthWrapper(
        password_auth(cloud, "alice"), password_auth(cloud, "xfer")))
    try:
        response = with_service_token.post(locations, json=request, headers=version)
        assert response.status_code == 202, response.text
    finally:
        with_service_token.session.close()
    image = wait_active(alice, "RegionTwo", image_id)
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["owner"] == alice.get_project_id()


def test_an_upload_through_the_file_store_api_is_an_image_of_the_regions_glance_in_its_file_store(
    cloud: devcloud.CloudInfo, alice: ksa_session.Session
) -> None:
    glance = cloud.glances["RegionOne"]
    data = os.urandom(150_000)
    image = upload(alice, "RegionOne", data, through=glance.file_store_url)

    assert image["direct_url"] == f"file://{glance.file_store_dir}/{image['id']}"
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    downloaded = alice.get(f"{image_api(alice, 'RegionOne')}/v2/images/{image['id']}/file")
    assert downloaded.content == data
    swift = alice.head(f"{object_store(alice, 'RegionOne')}/glance_{image['id']}", raise_exc=False)
    assert swift.status_code == 404  # not in Swift


def test_tempauth_and_keystone_share_the_clusters_storage_each_with_its_own_accounts(
    cloud: devcloud.CloudInfo, alice: ksa_session.Session
) -> None:
    """Each cluster has a tempauth proxy (XFER_REGIONS) and a Keystone proxy (the catalog's) on
    the same account, container and object servers."""
    cluster = cloud.clusters["RegionOne"]
    tempauth = alice.session.get(cluster.auth_url, headers={
        "X-Auth-User": cluster.user, "X-Auth-Key": cluster.key})
    tempauth_account = tempauth.headers["X-Storage-Url"]
    tempauth_token = tempauth.headers["X-Auth-Token"]
    _seen_secrets.add(tempauth_token)
    keystone_account = object_store(alice, "RegionOne")
    keystone_proxy = keystone_account.rsplit("/v1/", 1)[0]
    assert tempauth_account == f"{cluster.proxy_url}/v1/TEMPAUTH_test"

    def status(method: str, url: str, token: str) -> int:
        return alice.session.request(method, url, headers={"X-Auth-Token": token}).status_code

    container = unique("shared-storage")
    assert status("PUT", f"{keystone_account}/{container}", alice.get_token()) == 201
    assert status("HEAD", keystone_account, alice.get_token()) == 204
    assert status("HEAD", tempauth_account, tempauth_token) in (200, 204)
    # alice's account, written through the Keystone proxy, is there for the tempauth proxy too,
    # but its tempauth users may not open it; nor may Keystone users open tempauth's.
    alice_via_tempauth_proxy = keystone_account.replace(keystone_proxy, cluster.proxy_url)
    assert status("HEAD", f"{alice_via_tempauth_proxy}/{container}", tempauth_token) == 403
    assert status("HEAD", tempauth_account.replace(cluster.proxy_url, keystone_proxy),
                  alice.get_token()) == 403
    assert status("HEAD", keystone_account, tempauth_token) == 401


def test_expired_user_token_is_accepted_by_swift_with_a_valid_service_token(
    cloud: devcloud.CloudInfo, alice: ksa_session.Session
) -> None:
    """Keystone caps a token's expiry at its application credential's: a credential that
    expires in a few seconds gives a really expired token without touching keystone.conf."""
    keystone = keystone_of(cloud)
    lifetime = timedelta(seconds=3)
    expires = datetime.now(UTC) + lifetime
    created = alice.post(f"{keystone.auth_url}/users/{alice.get_user_id()}/application_credentials",
                         json={"application_credential": {
                             "name": unique("short-lived"),
                             "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}})
    credential = created.json()["application_credential"]
    _seen_secrets.add(credential["secret"])
    short_lived = ksa_session.Session(auth=v3.ApplicationCredential(
        auth_url=keystone.auth_url, application_credential_id=credential["id"],
        application_credential_secret=credential["secret"]))
    user_token = short_lived.get_token()
    assert isinstance(user_token, str)
    _seen_secrets.add(user_token)
    service_token = user_session(cloud, "xfer").get_token()
    assert isinstance(service_token, str)
    _seen_secrets.add(service_token)
    account = object_store(alice, "RegionOne")
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 1.0)

    def head(headers: dict[str, str]) -> int:
        return alice.session.head(account, headers=headers).status_code

    assert head({"X-Auth-Token": user_token}) == 401
    assert head({"X-Auth-Token": user_token, "X-Service-Token": service_token}) == 204
    # A user's token is no service token: the service role is what lets the expired one through.
    assert head({"X-Auth-Token": user_token, "X-Service-Token": alice.get_token()}) == 401
    short_lived.session.close()


# The cloud as a whole. These run before tests/test_database_outage.py, which restarts the
# session's Postgres under a new PID: from then on `load` calls the cloud stopped.

def test_full_cloud_records_every_service_and_load_finds_it(cloud: devcloud.CloudInfo) -> None:
    # what the state file holds now: a fault test may have restarted a service (recorded
    # there, tests/database_faults.py and devcloud.services), not in the session's object
    current = devcloud.load(cloud.state_dir)
    assert current.clusters == cloud.clusters and current.keystone == cloud.keystone
    names = {process.name for process in current.processes}
    assert names == {process.name for process in cloud.processes}
    for region in ("RegionOne", "RegionTwo"):
        assert {f"{region}/proxy-server", f"{region}/keystone-proxy-server",
                f"{region}/glance-api"} <= names
    assert {"keystone", "postgres", "RegionOne/glance-file-store-api"} <= names
    assert all(is_running(process) for process in current.processes)
    with pytest.raises(devcloud.DevcloudError, match="already runs"):
        devcloud.up(cloud.state_dir)
    assert devcloud.load(cloud.state_dir) == current


def test_files_with_passwords_or_keys_are_owner_only(cloud: devcloud.CloudInfo) -> None:
    assert cloud.keystone is not None
    secret_files = [
        cloud.state_dir / "devcloud.json",
        cloud.keystone.directory / "seed.json",
        *(glance.directory / "glance-api.conf" for glance in cloud.glances.values()),
        *(cluster.swift_dir / name for cluster in cloud.clusters.values()
          for name in ("proxy-server.conf", "keystone-proxy-server.conf", "swift.conf")),
        *(cloud.keystone.directory / "keys").glob("*/*"),
    ]
    assert len(secret_files) > 10
    for path in secret_files:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    assert (cloud.keystone.directory / "keys" / "fernet-tokens").stat().st_mode & 0o777 == 0o700


def test_env_exports_openstack_variables_that_get_a_token(
    cloud: devcloud.CloudInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    from xfer.cli import main

    assert main(["devcloud", "env", "--state-dir", str(cloud.state_dir), "--region", "RegionTwo"]) == 0
    exported = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1)
                    for line in capsys.readouterr().out.splitlines())
    assert cloud.keystone is not None
    alice = cloud.keystone.user("alice")
    assert exported["OS_AUTH_URL"] == cloud.keystone.auth_url
    assert (exported["OS_USERNAME"], exported["OS_PASSWORD"]) == ("alice", alice.password)
    assert exported["OS_PROJECT_NAME"] == "alpha"
    assert exported["OS_USER_DOMAIN_NAME"] == exported["OS_PROJECT_DOMAIN_NAME"] == "Default"
    assert exported["OS_REGION_NAME"] == "RegionTwo"
    assert exported["XFER_REGIONS"] == cloud.environ()["XFER_REGIONS"]

    auth = v3.Password(auth_url=exported["OS_AUTH_URL"], username=exported["OS_USERNAME"],
                       password=exported["OS_PASSWORD"], project_name=exported["OS_PROJECT_NAME"],
                       user_domain_name=exported["OS_USER_DOMAIN_NAME"],
                       project_domain_name=exported["OS_PROJECT_DOMAIN_NAME"])
    session = ksa_session.Session(auth=auth)
    try:
        image = session.get_endpoint(service_type="image", region_name=exported["OS_REGION_NAME"])
        assert image == cloud.glances["RegionTwo"].url
    finally:
        session.session.close()


def test_no_log_of_the_cloud_holds_a_token_or_password(cloud: devcloud.CloudInfo) -> None:
    """Runs last in this module: scans every log the cloud wrote for what the tests above used."""
    keystone = keystone_of(cloud)
    secrets = _seen_secrets | {user.password for user in keystone.users.values()}
    assert len(_seen_secrets) >= 3
    logs = [path for path in cloud.state_dir.rglob("*.log") if path.is_file()]
    logs += [Path(p.log_path) for p in cloud.processes]
    assert any("glance" in str(path) for path in logs)
    for path in set(logs):
        text = path.read_text(errors="replace")
        leaked = [secret[:6] + "..." for secret in secrets if secret in text]
        assert not leaked, f"{path} holds {leaked}"
