"""Glance registration, watched and retried (issue 17, section 3), against the real Glance:
an import that fails is tried again with the data copied anew, its failure says truly what
became of the data, and a registration that stops moving is seen as stalled."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator

import aiohttp
import pytest
from keystoneauth1 import session as ksa_session

from tests.conftest import MiB, Service, keystone_settings, running_service
from tests.keystone_users import new_user
from tests.test_cloud_keystone_glance import create_image, image_api, object_store, upload
from tests.test_image_copy import SOURCE, TARGET, token, wait_job
from tests.test_image_faults import copies_of, nothing_left, paused_at
from tests.test_trusts import post_copy, wait_for
from xfer.clients.glance import GlanceClient
from xfer.dev import devcloud
from xfer.errors import RegistrationFailed
from xfer.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def image_settings(settings: Settings, cloud: devcloud.CloudInfo) -> Settings:
    return keystone_settings(settings, cloud, TARGET, duty_poll_seconds=0.5)


def corrupt_copy(user: ksa_session.Session, image_id: str, size: int) -> None:
    """Other bytes of the same size in place of the copied object, after xfer verified it:
    Glance's check of the data then fails (and its revert deletes it)."""
    url = f"{object_store(user, TARGET)}/glance_{image_id}/{image_id}"
    replaced = user.put(url, data=os.urandom(size))
    assert replaced.status_code == 201, replaced.text


async def test_a_failed_import_is_tried_again_with_the_data_copied_anew(
        image_settings: Settings, cloud: devcloud.CloudInfo,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    user = new_user(cloud)
    data = os.urandom(MiB // 2)  # below the segment size: one plain object
    source = upload(user, SOURCE, data, chunked=False)
    async with running_service(image_settings) as xfer:
        with paused_at("copied", monkeypatch) as (reached, release):
            status, job = await post_copy(xfer, user, source["id"])
            assert status == 201, job
            await asyncio.wait_for(reached.wait(), 60)
            image_id = (await wait_job_step(xfer, user, job["id"]))["image"]["target_image_id"]
            await asyncio.to_thread(corrupt_copy, user, image_id, len(data))
            release.set()
            ended = await wait_job(xfer, user, job["id"])
    assert ended["state"] == "succeeded", ended["error"]
    assert "registration failed (attempt 1 of 3)" in caplog.text
    (copy,) = copies_of(user, source["id"])
    assert (copy["id"], copy["status"], copy["checksum"]) == (image_id, "active",
                                                             source["checksum"])


async def test_an_import_that_keeps_failing_says_what_became_of_the_data(
        image_settings: Settings, cloud: devcloud.CloudInfo,
        monkeypatch: pytest.MonkeyPatch) -> None:
    user = new_user(cloud)
    data = os.urandom(MiB // 2)
    source = upload(user, SOURCE, data, chunked=False)
    once = image_settings.with_overrides(registration_attempts=1)
    async with running_service(once) as xfer:
        with paused_at("copied", monkeypatch) as (reached, release):
            status, job = await post_copy(xfer, user, source["id"])
            assert status == 201, job
            await asyncio.wait_for(reached.wait(), 60)
            image_id = (await wait_job_step(xfer, user, job["id"]))["image"]["target_image_id"]
            await asyncio.to_thread(corrupt_copy, user, image_id, len(data))
            release.set()
            ended = await wait_job(xfer, user, job["id"])
        cleanup = await xfer.cleaned_up(job["id"], headers=token(user))
    assert ended["state"] == "failed"
    assert ended["error"]["code"] == "registration_failed", ended["error"]
    message = ended["error"]["message"]
    assert "tried 1 times" in message
    # what Glance's revert did, as found in Swift, not as assumed
    assert "Glance deleted the copied data" in message or "still in glance_" in message
    assert all(duty["state"] == "done" for duty in cleanup), cleanup
    nothing_left(user, source["id"], [image_id])


async def wait_job_step(xfer: Service, user: ksa_session.Session, job_id: str) -> dict:
    return await wait_for(lambda job: job["image"]["step"] == "copied", xfer, user, job_id)


@contextlib.contextmanager
def stalled_upload(user: ksa_session.Session, image_id: str) -> Iterator[None]:
    """An upload of the image's data that sends a few bytes and then nothing: Glance holds the
    image `saving` with nothing moving, until the block ends and the upload is cut."""
    stop = threading.Event()

    def body() -> Iterator[bytes]:
        yield b"x" * 1024
        stop.wait(120)

    def send() -> None:
        with contextlib.suppress(Exception):
            user.put(f"{image_api(user, TARGET)}/v2/images/{image_id}/file", data=body(),
                     headers={"Content-Type": "application/octet-stream"}, raise_exc=False)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        yield
    finally:
        stop.set()
        sender.join(30)


async def test_a_registration_that_does_not_move_is_seen_as_stalled(
        cloud: devcloud.CloudInfo, image_settings: Settings) -> None:
    user = new_user(cloud)
    image_id = create_image(user, TARGET)
    with stalled_upload(user, image_id):
        async with aiohttp.ClientSession() as http:
            async def user_token() -> str:
                return str(user.get_token())

            glance = GlanceClient(http, image_api(user, TARGET), user_token)
            async with asyncio.timeout(60):
                while (await glance.image(image_id)).status == "queued":  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            started = time.monotonic()
            with pytest.raises(RegistrationFailed) as stalled:
                await glance.wait_active(image_id, timeout=60, stall_after=2, poll=0.2)
            waited = time.monotonic() - started
    assert stalled.value.code == "registration_stalled", stalled.value
    assert 2 <= waited < 20
    assert "saving" in stalled.value.message
