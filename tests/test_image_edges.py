"""Sources at the edges (issue 17, section 4), against the real cloud: an empty image is
copied, and a source whose data is not what its Glance record says is reported as exactly
that, before anything is made when Swift's own ETag tells, else after two agreeing readings."""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.conftest import MiB, keystone_settings, running_service
from tests.keystone_users import new_user
from tests.test_cloud_keystone_glance import replace_with_slo, swift_url, upload
from tests.test_image_copy import SOURCE, TARGET, copy_image, glance_image, token
from tests.test_image_faults import copies_of, nothing_left
from xfer.dev import devcloud
from xfer.settings import Settings

pytestmark = pytest.mark.integration
EMPTY_SHA512 = hashlib.sha512(b"").hexdigest()


@pytest.fixture
def image_settings(settings: Settings, cloud: devcloud.CloudInfo) -> Settings:
    return keystone_settings(settings, cloud, TARGET, duty_poll_seconds=0.5)


async def test_an_empty_image_is_copied_through_the_target_glance(
        image_settings: Settings, cloud: devcloud.CloudInfo) -> None:
    user = new_user(cloud)
    source = upload(user, SOURCE, b"")
    assert (source["size"], source["checksum"]) == (0, hashlib.md5(b"").hexdigest())
    async with running_service(image_settings) as xfer:
        job = await copy_image(xfer, user, source["id"])
        again = await copy_image(xfer, user, source["id"])
    assert job["state"] == "succeeded", job["error"]
    copy = glance_image(user, TARGET, job["image"]["target_image_id"])
    assert (copy["status"], copy["size"], copy["checksum"], copy["os_hash_value"]) == (
        "active", 0, source["checksum"], EMPTY_SHA512)
    assert again["deduplicated"] is True  # and it counts as the project's copy
    assert again["image"]["target_image_id"] == copy["id"]


async def test_a_plain_source_not_as_recorded_is_refused_before_anything_is_made(
        image_settings: Settings, cloud: devcloud.CloudInfo) -> None:
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(1 * MiB), chunked=False)
    # the same size, other bytes: only a hash can tell (glance-download would take them)
    put = user.put(swift_url(user, SOURCE, source["id"]), data=os.urandom(1 * MiB))
    assert put.status_code == 201
    async with running_service(image_settings) as xfer:
        job = await copy_image(xfer, user, source["id"])
    assert job["state"] == "failed"
    assert job["error"]["code"] == "source_not_as_recorded", job["error"]
    assert source["checksum"] in job["error"]["message"]
    assert job["image"]["target_image_id"] is None and job["bytes_done"] == 0
    assert copies_of(user, source["id"]) == []


async def test_an_slo_source_not_as_recorded_is_reported_after_two_agreeing_readings(
        image_settings: Settings, cloud: devcloud.CloudInfo) -> None:
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(3 * MiB + 5), chunked=False)
    other = os.urandom(3 * MiB + 5)  # the same size: Glance's size check cannot tell
    replace_with_slo(user, SOURCE, source["id"], other, MiB)
    async with running_service(image_settings) as xfer:
        job = await copy_image(xfer, user, source["id"])
        cleanup = await xfer.cleaned_up(job["id"], headers=token(user))
    assert job["state"] == "failed"
    assert job["error"]["code"] == "source_not_as_recorded", job["error"]
    message = job["error"]["message"]
    assert "two readings" in message and hashlib.md5(other).hexdigest() in message
    assert all(duty["state"] == "done" for duty in cleanup), cleanup
    nothing_left(user, source["id"], [job["image"]["target_image_id"]])
