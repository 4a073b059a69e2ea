"""One project never learns anything about another (issue 16, section 2): idempotency keys are
per project, a deduplicated copy is always the caller's project's own image, and images the
project hid from listings still count as its own."""

from __future__ import annotations

import os
import uuid

import pytest
from keystoneauth1 import session as ksa_session

from tests.conftest import Service, keystone_settings, running_service
from tests.keystone_users import new_user
from tests.test_cloud_keystone_glance import image_api, share, upload
from tests.test_image_copy import SOURCE, TARGET, call, copy_image, glance_image
from tests.test_trusts import post_copy
from xfer.dev import devcloud
from xfer.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def image_settings(settings: Settings, cloud: devcloud.CloudInfo) -> Settings:
    return keystone_settings(settings, cloud, TARGET)


def hide(session: ksa_session.Session, region: str, image_id: str, hidden: bool = True) -> None:
    response = session.patch(
        f"{image_api(session, region)}/v2/images/{image_id}",
        json=[{"op": "replace", "path": "/os_hidden", "value": hidden}],
        headers={"Content-Type": "application/openstack-images-v2.1-json-patch"})
    assert response.status_code == 200, response.text


async def found_in(xfer: Service, session: ksa_session.Session, checksum: str
                   ) -> dict[str, dict]:
    status, found = await call(xfer, "GET", f"/v1/images?checksum={checksum}", session)
    assert status == 200, found
    return {match["region"]: match for match in found["images"]}


async def test_an_idempotency_key_is_per_project(
        image_settings: Settings, cloud: devcloud.CloudInfo) -> None:
    alice, bob = new_user(cloud, "alpha"), new_user(cloud, "beta")
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    async with running_service(image_settings.with_overrides(max_concurrent_copies=1)) as xfer:
        status, alices = await post_copy(xfer, alice, mine, key="the-same-key")
        assert status == 201, alices
        # another project's request with the same key and another body: its own new job
        status, bobs = await post_copy(xfer, bob, theirs, key="the-same-key")
        assert status == 201, bobs
        assert bobs["id"] != alices["id"]
        assert alices["id"] not in str(bobs)
        # each replay finds its own project's job; a conflict names only the caller's job
        for session, job, image in ((alice, alices, mine), (bob, bobs, theirs)):
            status, replay = await post_copy(xfer, session, image, key="the-same-key")
            assert (status, replay["id"]) == (200, job["id"])
            status, conflict = await post_copy(xfer, session, image, key="the-same-key",
                                               name="another body")
            assert status == 409
            other = bobs if job is alices else alices
            assert job["id"] in conflict["error"]["message"]
            assert other["id"] not in conflict["error"]["message"]
        # a user of the same project shares the project's keys
        colleague = new_user(cloud, "alpha")
        status, replay = await post_copy(xfer, colleague, mine, key="the-same-key")
        assert (status, replay["id"]) == (200, alices["id"])


async def test_a_copy_is_deduplicated_only_to_the_projects_own_images_hidden_ones_too(
        image_settings: Settings, cloud: devcloud.CloudInfo) -> None:
    alice, bob = new_user(cloud, "alpha"), new_user(cloud, "beta")
    data = os.urandom(400_000)
    source = upload(alice, SOURCE, data)
    # bob holds the same bytes in the target region, shared with alice's project
    bobs = upload(bob, TARGET, data)
    share(bob, alice, TARGET, bobs["id"])
    async with running_service(image_settings) as xfer:
        first = await copy_image(xfer, alice, source["id"])
        assert first["state"] == "succeeded", first["error"]
        assert first["deduplicated"] is False  # bob's image is not alice's to keep
        copy_id = first["image"]["target_image_id"]
        assert copy_id != bobs["id"]
        assert glance_image(alice, TARGET, copy_id)["owner"] == alice.get_project_id()

        # alice hides her copy from listings: it still is her project's copy
        hide(alice, TARGET, copy_id)
        again = await copy_image(xfer, alice, source["id"])
        assert again["deduplicated"] is True, again
        assert again["image"]["target_image_id"] == copy_id

        # and the search finds it, with bob's shared one (Glance shows it to alice)
        found = await found_in(xfer, alice, source["checksum"])
        assert found[TARGET]["count"] == 2
        # the oldest: Glance's created_at is in seconds, and a copy made within bob's second
        # ties with his image (then the lower id comes first, as Glance lists them)
        both = [glance_image(alice, TARGET, image_id) for image_id in (bobs["id"], copy_id)]
        oldest = min(both, key=lambda image: (image["created_at"], image["id"]))
        assert found[TARGET]["image"]["id"] == oldest["id"]
        # bob hides his: alice's search no longer lists it, bob's own still finds it
        hide(bob, TARGET, bobs["id"])
        found = await found_in(xfer, alice, source["checksum"])
        assert (found[TARGET]["count"], found[TARGET]["image"]["id"]) == (1, copy_id)
        assert SOURCE in found
        bobs_view = await found_in(xfer, bob, source["checksum"])
        assert (bobs_view[TARGET]["count"], bobs_view[TARGET]["image"]["id"]) == (1, bobs["id"])
        assert SOURCE not in bobs_view  # alice's private source is not bob's to know of


async def test_another_projects_image_is_answered_as_no_image_at_all(
        image_settings: Settings, cloud: devcloud.CloudInfo) -> None:
    """Whether bob names alice's private image or an id that does not exist, he is told the
    same, in the same words: nothing says the image exists."""
    alice, bob = new_user(cloud, "alpha"), new_user(cloud, "beta")
    private = upload(alice, SOURCE, os.urandom(50_000))
    nonexistent = str(uuid.uuid4())
    async with running_service(image_settings) as xfer:
        jobs = {image: await copy_image(xfer, bob, image) for image in (private["id"],
                                                                        nonexistent)}
        for path in ("", "/file"):
            answers = [await call_status(xfer, bob, f"/v2/images/{image}{path}")
                       for image in (private["id"], nonexistent)]
            assert answers[0][0] == answers[1][0] == 404, answers
    errors = [job["error"] for job in jobs.values()]
    assert [error["code"] for error in errors] == ["source_image_not_found"] * 2
    assert (errors[0]["message"].replace(private["id"], "ID")
            == errors[1]["message"].replace(nonexistent, "ID"))


async def call_status(xfer: Service, session: ksa_session.Session, path: str
                      ) -> tuple[int, str]:
    async with xfer.http.get(f"{xfer.url}{path}",
                             headers={"X-Auth-Token": session.get_token()}) as response:
        body = await response.read()
        return response.status, body.decode("utf-8", "replace")[:200]
