"""An image copy into a Glance configured `do_secure_hash = False` (issue 21, section 2): Glance
then activates the image without reading it back and records no MD5 (`checksum` None), only
the SHA-512 xfer hands it; xfer verified both while copying, so the copy succeeds, is indexed
by its MD5 and is found again (deduplicated) by its SHA-512.

The catalog names one Glance per region: the target Glance here is RegionTwo's
no-secure-hash API (the session cloud's second API of that region, on its database and
Swift, with only `do_secure_hash = False` changed: xfer/dev/devcloud/glance_server.py), to
which this test routes xfer's calls for RegionTwo's image endpoint."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from tests.conftest import MiB, Service, keystone_settings, running_service
from tests.keystone_users import new_user
from tests.test_cloud_keystone_glance import upload
from tests.test_image_copy import SOURCE, TARGET, call, copy_image, glance_image
from xfer.dev import devcloud
from xfer.proto.keystone import TokenInfo
from xfer.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def xfer(settings: Settings, cloud: devcloud.CloudInfo) -> AsyncIterator[Service]:
    async with running_service(keystone_settings(settings, cloud, TARGET)) as running:
        yield running


@pytest.fixture
def no_secure_hash_target(cloud: devcloud.CloudInfo, monkeypatch: pytest.MonkeyPatch) -> str:
    """xfer's calls to RegionTwo's image endpoint go to its no-secure-hash API."""
    url = cloud.glances[TARGET].no_secure_hash_url
    assert url, "the session cloud gives RegionTwo a no-secure-hash API (tests/conftest.py)"
    catalog_endpoint = TokenInfo.endpoint

    def routed(info: TokenInfo, service_type: str, region: str,
               interface: str = "public") -> str | None:
        if (service_type, region) == ("image", TARGET):
            return url
        return catalog_endpoint(info, service_type, region, interface)

    monkeypatch.setattr(TokenInfo, "endpoint", routed)
    return url


async def test_a_copy_into_a_glance_without_secure_hash_is_verified_by_xfer_and_indexed(
        xfer: Service, cloud: devcloud.CloudInfo, no_secure_hash_target: str) -> None:
    user = new_user(cloud)
    data = os.urandom(3 * MiB + 12_345)  # segments of 1 MiB: an SLO in the target
    source = upload(user, SOURCE, data, chunked=False)

    job = await copy_image(xfer, user, source["id"])
    assert job["state"] == "succeeded", job["error"]
    assert job["md5"] == hashlib.md5(data).hexdigest() == source["checksum"]
    copied = glance_image(user, TARGET, job["image"]["target_image_id"])
    # Glance did not read the data back: no MD5 of its own, the SHA-512 it was handed
    assert (copied["status"], copied["checksum"]) == ("active", None)
    assert copied["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert copied["size"] == len(data)  # Glance's own: read from Swift with the location

    status, found = await call(xfer, "GET", f"/v1/images?checksum={source['checksum']}", user)
    assert status == 200, found
    by_region = {match["region"]: match for match in found["images"]}
    assert by_region[TARGET]["image"]["id"] == copied["id"]
    assert by_region[TARGET]["count"] == 1

    again = await copy_image(xfer, user, source["id"])
    assert again["state"] == "succeeded", again["error"]
    assert (again["deduplicated"], again["image"]["target_image_id"]) == (True, copied["id"])


async def test_a_copy_without_a_checksum_is_copied_on_verified_by_its_sha512(
        settings: Settings, cloud: devcloud.CloudInfo, xfer: Service,
        no_secure_hash_target: str) -> None:
    """The checksum-less copy in RegionTwo, copied back into RegionOne (whose Glance reads it
    back and computes the MD5): verified by its SHA-512, indexed by the MD5 xfer computed."""
    user = new_user(cloud)
    data = os.urandom(2 * MiB + 777)
    source = upload(user, SOURCE, data, chunked=False)
    first = await copy_image(xfer, user, source["id"])
    assert first["state"] == "succeeded", first["error"]
    middle = glance_image(user, TARGET, first["image"]["target_image_id"])
    assert middle["checksum"] is None

    async with running_service(keystone_settings(settings, cloud, SOURCE)) as back_home:
        job = await copy_image(back_home, user, middle["id"], source_region=TARGET, force=True)
    assert job["state"] == "succeeded", job["error"]
    # nothing to expect the MD5 to be (the job detail said so with a 500 before): computed
    assert job["checksum"] is None and job["md5"] == hashlib.md5(data).hexdigest()
    again = glance_image(user, SOURCE, job["image"]["target_image_id"])
    assert again["id"] not in (source["id"], middle["id"])
    assert (again["status"], again["checksum"], again["os_hash_value"]) == (
        "active", source["checksum"], source["os_hash_value"])
