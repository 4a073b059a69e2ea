"""xfer's Keystone and Glance clients against the session's real Keystone, Glance and Swift
(tests/conftest.py): token validation and its cache, trusts, and a whole image registration
as issue 9's copy flow does it, acting as alice through a trust only."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import aiohttp
import pytest

from tests.conftest import unique
from tests.test_cloud_keystone_glance import (
    create_image,
    image_api,
    upload,
    user_session,
    wait_active,
)
from xfer.clients.glance import GlanceClient
from xfer.clients.keystone import Keystone, KeystoneSettings, KeystoneSwiftAuth, TrustTokens
from xfer.clients.swift import SwiftClient
from xfer.dev import devcloud
from xfer.dev.devcloud.keystone_server import issue_token, via_xfer
from xfer.errors import (
    ImageNotFound,
    RegistrationFailed,
    RemoteError,
    TargetForbidden,
    TokenInvalid,
    TrustInvalid,
    TrustRefused,
)
from xfer.proto import glance
from xfer.proto.glance import Image, SwiftLocation
from xfer.settings import RegionConfig

pytestmark = pytest.mark.integration

REGIONS = ("RegionOne", "RegionTwo")
ACTIVE_TIMEOUT_S = 60.0


def keystone_info(cloud: devcloud.CloudInfo) -> devcloud.KeystoneInfo:
    assert cloud.keystone is not None
    return cloud.keystone


def token_of(cloud: devcloud.CloudInfo, name: str) -> str:
    issued = issue_token(keystone_info(cloud), keystone_info(cloud).user(name))
    assert not isinstance(issued, str), issued
    return issued.token


class CountingSession:
    """An aiohttp session that counts the requests sent to each host:port."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(self._count)
        self.http = aiohttp.ClientSession(trace_configs=[trace])

    async def _count(self, session: aiohttp.ClientSession, context: SimpleNamespace,
                     params: aiohttp.TraceRequestStartParams) -> None:
        self.sent[f"{params.url.host}:{params.url.port}"] += 1


@pytest.fixture(scope="module")
async def counting() -> AsyncIterator[CountingSession]:
    session = CountingSession()
    yield session
    await session.http.close()


@pytest.fixture(scope="module")
def keystone(cloud: devcloud.CloudInfo, counting: CountingSession) -> Keystone:
    info = keystone_info(cloud)
    xfer = info.user("xfer")
    return Keystone(counting.http, KeystoneSettings(info.auth_url, xfer.name, xfer.password,
                                                    xfer.project), cache_size=4)


def keystone_requests(cloud: devcloud.CloudInfo, counting: CountingSession) -> int:
    return counting.sent[f"127.0.0.1:{keystone_info(cloud).port}"]


async def test_validate_alices_token_gives_her_roles_project_and_both_regions(
    cloud: devcloud.CloudInfo, keystone: Keystone
) -> None:
    info = await keystone.validate(token_of(cloud, "alice"))
    assert (info.user_name, info.project_name) == ("alice", "alpha")
    assert {"member", "reader"} <= info.roles
    assert info.trust_id is None
    assert info.expires_at > datetime.now(UTC) + timedelta(minutes=30)
    assert info.storage_regions() == info.regions("object-store") == REGIONS
    # each region's xfer also fronts its images, in a region with an image endpoint only
    assert info.regions("image") == tuple(sorted((*REGIONS, *map(via_xfer, REGIONS))))
    for region in REGIONS:
        assert info.endpoint("image", region) == cloud.glances[region].url
        assert info.endpoint("image", via_xfer(region)) == cloud.xfer_urls[region]
        storage = info.endpoint("object-store", region)
        assert storage == cloud.clusters[region].keystone_storage_url.replace(
            "$(project_id)s", info.project_id)
    assert info.user_id != await keystone.service_user_id()


async def test_a_bad_or_missing_token_is_token_invalid(keystone: Keystone) -> None:
    for token in ("garbage", "gAAAAAB" + "x" * 180, "", "  "):
        with pytest.raises(TokenInvalid) as caught:
            await keystone.validate(token)
        assert token.strip() == "" or token not in str(caught.value)


async def test_a_validated_token_is_cached_and_the_cache_is_bounded(
    cloud: devcloud.CloudInfo, keystone: Keystone, counting: CountingSession
) -> None:
    alice = token_of(cloud, "alice")
    await keystone.service_token()  # issued before counting
    before = keystone_requests(cloud, counting)
    first = await keystone.validate(alice)
    assert keystone_requests(cloud, counting) == before + 1
    for _ in range(3):
        assert await keystone.validate(alice) == first
    assert keystone_requests(cloud, counting) == before + 1
    # cache_size=4: four other tokens push alice's out, and she is asked for again
    for _ in range(4):
        await keystone.validate(token_of(cloud, "bob"))
    assert alice not in repr(keystone.__dict__)  # keyed by a hash, never the token
    counted = keystone_requests(cloud, counting)
    await keystone.validate(alice)
    assert keystone_requests(cloud, counting) == counted + 1
    # cache_seconds caps the life of an entry, so that a revoked token stops working soon
    uncached = Keystone(counting.http, keystone.config, cache_seconds=0)
    await uncached.validate(alice)
    counted = keystone_requests(cloud, counting)
    await uncached.validate(alice)
    assert keystone_requests(cloud, counting) == counted + 1


@pytest.fixture(scope="module")
async def alices_trust(cloud: devcloud.CloudInfo, keystone: Keystone) -> TrustTokens:
    alice = token_of(cloud, "alice")
    info = await keystone.validate(alice)
    trust_id = await keystone.create_trust(alice, info, datetime.now(UTC) + timedelta(hours=1))
    return keystone.trust_tokens(trust_id)


async def test_trust_tokens_act_as_alice_and_are_renewed_when_refused(
    cloud: devcloud.CloudInfo, keystone: Keystone, alices_trust: TrustTokens
) -> None:
    alice = await keystone.validate(token_of(cloud, "alice"))
    info = await alices_trust.info()
    assert (info.user_id, info.project_id, info.trust_id) == (
        alice.user_id, alice.project_id, alices_trust.trust_id)
    assert info.roles == alice.roles and info.storage_regions() == REGIONS
    token = await alices_trust.token()
    assert await alices_trust.token() == token  # cached
    renewed = await alices_trust.token(stale=token)
    assert renewed != token
    # Keystone itself vouches for the trust-scoped token, as alice
    validated = await keystone.validate(renewed)
    assert validated.user_id == alice.user_id and validated.trust_id == alices_trust.trust_id


def swift_client(http: aiohttp.ClientSession, tokens: TrustTokens, region: str,
                 account: str | None = None) -> SwiftClient:
    # The RegionConfig only names the region: the Authenticator gives the credentials.
    return SwiftClient(http, RegionConfig(region, "", "", ""),
                       auth=KeystoneSwiftAuth(tokens, region, account))


async def glance_client(http: aiohttp.ClientSession, tokens: TrustTokens, keystone: Keystone,
                        region: str) -> GlanceClient:
    url = (await tokens.info()).endpoint("image", region)
    assert url is not None
    return GlanceClient(http, url, tokens.token, keystone.service_token)


async def register_copy(http: aiohttp.ClientSession, tokens: TrustTokens, keystone: Keystone,
                        source: Image, data: bytes) -> Image:
    """What the copy flow does in the target region, as alice through the trust: create the
    image, write its bytes to glance_<id> in her account, register the location with xfer's
    service token, wait until Glance verified it."""
    target = await glance_client(http, tokens, keystone, "RegionTwo")
    created = await target.create_image(glance.propagated_body(source, source_region="RegionOne"))
    assert created.status == "queued"
    swift = swift_client(http, tokens, "RegionTwo")
    container = f"glance_{created.id}"
    await swift.put_container(container)
    await swift.put_object(container, created.id, data, hashlib.md5(data).hexdigest())
    location = SwiftLocation((await swift.credentials()).storage_url, container, created.id)
    assert source.os_hash_algo == "sha512" and source.os_hash_value is not None
    await target.add_location(created.id, location, source.os_hash_algo, source.os_hash_value)
    return await target.wait_active(created.id, timeout=ACTIVE_TIMEOUT_S, stall_after=60,
                                    poll=0.2)


async def test_an_image_copied_and_registered_through_a_trust_only(
    cloud: devcloud.CloudInfo, keystone: Keystone, alices_trust: TrustTokens,
    swift_http: aiohttp.ClientSession
) -> None:
    alice = user_session(cloud, "alice")
    data = os.urandom(150_000)
    uploaded = upload(alice, "RegionOne", data)
    alice.session.close()
    http, tokens = swift_http, alices_trust

    source_glance = await glance_client(http, tokens, keystone, "RegionOne")
    source = glance.require_active(await source_glance.image(uploaded["id"]), "RegionOne")
    info = await tokens.info()
    storage_url = info.endpoint("object-store", "RegionOne")
    assert storage_url is not None
    location = glance.swift_location(source, storage_url)
    assert location == SwiftLocation(storage_url, f"glance_{source.id}", source.id)
    head = await swift_client(http, tokens, "RegionOne").head_object(location.container,
                                                                     location.object)
    assert (head.size, head.etag) == (len(data), hashlib.md5(data).hexdigest())

    copy = await register_copy(http, tokens, keystone, source, data)
    assert copy.checksum == source.checksum == hashlib.md5(data).hexdigest()
    assert copy.os_hash_value == hashlib.sha512(data).hexdigest()
    assert copy.owner == info.project_id and copy.size == len(data)
    assert copy.properties["source_region"] == "RegionOne"
    assert copy.properties["source_image_id"] == source.id
    assert copy.direct_url == glance.location_url(SwiftLocation(
        info.endpoint("object-store", "RegionTwo") or "", f"glance_{copy.id}", copy.id))

    # the same bytes once more: images_with finds both, oldest first, over pages of one
    second = await register_copy(http, tokens, keystone, source, data)
    target = await glance_client(http, tokens, keystone, "RegionTwo")
    found = await target.images_with(checksum=copy.checksum, page_size=1)
    assert [image.id for image in found] == [copy.id, second.id]
    assert [i.id for i in await target.images_with(os_hash_value=copy.os_hash_value)] == [
        copy.id, second.id]

    assert await target.delete_image(second.id) is True
    assert await target.delete_image(second.id) is False
    with pytest.raises(ImageNotFound):
        await target.image(second.id)
    assert [image.id for image in await target.images_with(checksum=copy.checksum)] == [copy.id]


async def test_a_wrong_hash_is_registration_failed_with_glances_task_message(
    keystone: Keystone, alices_trust: TrustTokens, swift_http: aiohttp.ClientSession
) -> None:
    target = await glance_client(swift_http, alices_trust, keystone, "RegionTwo")
    created = await target.create_image({"name": unique("wrong-hash"), "disk_format": "raw",
                                         "container_format": "bare"})
    swift = swift_client(swift_http, alices_trust, "RegionTwo")
    data = os.urandom(20_000)
    await swift.put_container(f"glance_{created.id}")
    await swift.put_object(f"glance_{created.id}", created.id, data, hashlib.md5(data).hexdigest())
    location = SwiftLocation((await swift.credentials()).storage_url, f"glance_{created.id}",
                             created.id)
    await target.add_location(created.id, location, "sha512", "0" * 128)
    with pytest.raises(RegistrationFailed, match="Internal Error") as caught:
        await target.wait_active(created.id, timeout=ACTIVE_TIMEOUT_S, stall_after=60, poll=0.2)
    assert caught.value.code == "registration_failed"
    assert await target.delete_image(created.id) is True


async def test_bob_cannot_see_alices_private_image_and_carol_may_not_create_one(
    cloud: devcloud.CloudInfo, swift_http: aiohttp.ClientSession
) -> None:
    alice = user_session(cloud, "alice")
    image = upload(alice, "RegionOne", b"alice's private bytes")
    alice.session.close()
    bob_token, carol_token = token_of(cloud, "bob"), token_of(cloud, "carol")

    async def bob() -> str:
        return bob_token

    async def carol() -> str:
        return carol_token

    as_bob = GlanceClient(swift_http, cloud.glances["RegionOne"].url, bob)
    with pytest.raises(ImageNotFound, match=image["id"]) as hidden:
        await as_bob.image(image["id"])
    assert hidden.value.code == "source_image_not_found"
    assert image["id"] not in {i.id for i in await as_bob.images_with(checksum=image["checksum"])}

    as_carol = GlanceClient(swift_http, cloud.glances["RegionTwo"].url, carol)
    with pytest.raises(TargetForbidden, match="add_image") as refused:
        await as_carol.create_image({"name": unique("carol"), "disk_format": "raw",
                                     "container_format": "bare"})
    assert refused.value.code == "target_forbidden"
    assert bob_token not in str(hidden.value) and carol_token not in str(refused.value)


async def test_a_shared_image_is_read_through_the_members_trust_in_the_owners_account(
    cloud: devcloud.CloudInfo, keystone: Keystone, swift_http: aiohttp.ClientSession
) -> None:
    """alice shares an image with bob's project; xfer, acting for bob through his trust,
    reads its bytes from alice's account: KeystoneSwiftAuth with account=image.owner."""
    alice, bob = user_session(cloud, "alice"), user_session(cloud, "bob")
    data = os.urandom(30_000)
    image_id = create_image(alice, "RegionOne", visibility="shared")
    api = image_api(alice, "RegionOne")
    alice.put(f"{api}/v2/images/{image_id}/file", data=data,
              headers={"Content-Type": "application/octet-stream"})
    wait_active(alice, "RegionOne", image_id)
    bob_project = bob.get_project_id()
    alice.post(f"{api}/v2/images/{image_id}/members", json={"member": bob_project})
    bob.put(f"{api}/v2/images/{image_id}/members/{bob_project}", json={"status": "accepted"})
    alice.session.close()
    bob.session.close()

    bob_token = token_of(cloud, "bob")
    bob_info = await keystone.validate(bob_token)
    tokens = keystone.trust_tokens(await keystone.create_trust(
        bob_token, bob_info, datetime.now(UTC) + timedelta(hours=1)))
    image = await (await glance_client(swift_http, tokens, keystone, "RegionOne")).image(image_id)
    assert image.owner != bob_info.project_id
    location = glance.swift_location(image, bob_info.endpoint("object-store", "RegionOne") or "")
    assert location.storage_url.endswith(f"/AUTH_{image.owner}")
    swift = swift_client(swift_http, tokens, "RegionOne", account=image.owner)
    assert (await swift.credentials()).storage_url == location.storage_url
    head = await swift.head_object(location.container, location.object)
    assert (head.size, head.etag) == (len(data), hashlib.md5(data).hexdigest())
    # bob's own account, without the override, has no such object
    with pytest.raises(RemoteError) as missing:
        await swift_client(swift_http, tokens, "RegionOne").head_object(location.container,
                                                                        location.object)
    assert missing.value.status == 404


async def test_a_trust_outlives_the_users_token_and_dies_with_its_deletion(
    cloud: devcloud.CloudInfo, keystone: Keystone, counting: CountingSession
) -> None:
    """What the copy flow relies on: once the trust exists, the user's token may go."""
    http, auth_url = counting.http, keystone_info(cloud).auth_url
    alice = token_of(cloud, "alice")
    info = await keystone.validate(alice)
    trust_id = await keystone.create_trust(alice, info, datetime.now(UTC) + timedelta(hours=1))
    async with http.delete(f"{auth_url}/auth/tokens", headers={
            "X-Auth-Token": alice, "X-Subject-Token": alice}) as revoked:
        assert revoked.status == 204
    tokens = keystone.trust_tokens(trust_id)
    url = (await tokens.info()).endpoint("image", "RegionTwo")
    assert url is not None
    created = await GlanceClient(http, url, tokens.token).create_image(
        {"name": unique("after-revocation"), "disk_format": "raw", "container_format": "bare"})
    assert created.owner == info.project_id

    async with http.delete(f"{auth_url}/OS-TRUST/trusts/{trust_id}",
                           headers={"X-Auth-Token": token_of(cloud, "alice")}) as deleted:
        assert deleted.status == 204
    with pytest.raises(TokenInvalid):
        await keystone.validate(await tokens.token())
    with pytest.raises(TrustInvalid, match=f"no token for trust {trust_id}") as gone:
        await tokens.token(stale=await tokens.token())
    assert gone.value.code == "trust_invalid"
    fresh = token_of(cloud, "alice")

    async def alice_again() -> str:
        return fresh

    assert await GlanceClient(http, url, alice_again).delete_image(created.id) is True


async def test_an_application_credential_token_cannot_create_a_trust(
    cloud: devcloud.CloudInfo, keystone: Keystone, counting: CountingSession
) -> None:
    http, auth_url = counting.http, keystone_info(cloud).auth_url
    alice = token_of(cloud, "alice")
    info = await keystone.validate(alice)
    async with http.post(f"{auth_url}/users/{info.user_id}/application_credentials",
                         headers={"X-Auth-Token": alice}, json={"application_credential": {
                             "name": unique("no-trusts"), "unrestricted": True}}) as created:
        credential = (await created.json())["application_credential"]
    async with http.post(f"{auth_url}/auth/tokens", json={"auth": {"identity": {
            "methods": ["application_credential"], "application_credential": {
                "id": credential["id"], "secret": credential["secret"]}}}}) as issued:
        assert issued.status == 201
        delegated = issued.headers["X-Subject-Token"]
    delegated_info = await keystone.validate(delegated)
    with pytest.raises(TrustRefused, match="Delegated tokens cannot manage trusts") as refused:
        await keystone.create_trust(delegated, delegated_info,
                                    datetime.now(UTC) + timedelta(hours=1))
    assert refused.value.status == 403 and "application credential" in refused.value.detail
    assert delegated not in str(refused.value) and credential["secret"] not in str(refused.value)
