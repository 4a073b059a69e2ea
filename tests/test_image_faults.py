"""Image copies through faults, checked in Glance and Swift (issue 17): a process that stops
keeps its copies at every step and the next one finishes them with exactly one image; a failed
copy's cleanup completes even when the service it needs was down when the copy failed; a
target image its user deletes stops the copy at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from keystoneauth1 import session as ksa_session

from tests.conftest import MiB, Service, keystone_settings, running_service
from tests.keystone_users import live_trusts, new_user
from tests.test_cloud_keystone_glance import image_api, object_store, upload
from tests.test_image_copy import SOURCE, TARGET, call, token, wait_job
from tests.test_trusts import post_copy, serve_process, settled_trusts, wait_for
from xfer.dev import devcloud
from xfer.images.types import ImageStep
from xfer.jobs.job_progress import JobProgress
from xfer.settings import Settings

pytestmark = pytest.mark.integration
STEPS = ("created", "copying", "copied", "registered")


@pytest.fixture
def image_settings(settings: Settings, cloud: devcloud.CloudInfo) -> Settings:
    return keystone_settings(settings, cloud, TARGET, duty_poll_seconds=0.5,
                             duty_backoff_base=0.5, duty_backoff_max=2.0,
                             image_watch_seconds=0.5)


def copies_of(user: ksa_session.Session, source_id: str) -> list[dict]:
    """The images in the target region that say they are copies of the source (every copy
    carries source_image_id), hidden or not, in any state."""
    images = []
    for hidden in ("false", "true"):
        listing = user.get(f"{image_api(user, TARGET)}/v2/images",
                           params={"source_image_id": source_id, "os_hidden": hidden}).json()
        images += listing["images"]
    return images


def containers_of(user: ksa_session.Session, image_ids: list[str]) -> dict[str, list[str]]:
    """The objects in each image's container in the target Swift ({} when it is gone)."""
    found = {}
    for image_id in image_ids:
        response = user.get(f"{object_store(user, TARGET)}/glance_{image_id}",
                            params={"format": "json"}, raise_exc=False)
        if response.status_code != 404:
            found[image_id] = [entry["name"] for entry in response.json()]
    return found


def nothing_left(user: ksa_session.Session, source_id: str, made: list[str]) -> None:
    """No image copy of the source in the target Glance and no container of any image the
    job made in the target Swift: checked there, not in xfer's records."""
    assert copies_of(user, source_id) == []
    assert containers_of(user, made) == {}


@contextlib.contextmanager
def paused_at(step: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The first job to record `step` waits right after recording it (created: the target
    image; copying: a first segment; copied and registered: the image steps) until `release`
    is set, or the copy is cancelled, as if the process were interrupted there; yields
    (reached, release)."""
    reached, release = asyncio.Event(), asyncio.Event()

    def hold(original: Callable[..., Any], matches: Callable[..., bool]) -> Callable[..., Any]:
        async def recorded_then_held(self: JobProgress, *args: Any) -> Any:
            result = await original(self, *args)
            if matches(*args) and not reached.is_set():
                reached.set()
                await release.wait()
            return result
        return recorded_then_held

    wrapped = {"created": ("image_step", lambda s: s is ImageStep.CREATED),
               "copying": ("segment_written", lambda *_: True),
               "copied": ("image_step", lambda s: s is ImageStep.COPIED),
               "registered": ("image_step", lambda s: s is ImageStep.REGISTERED)}
    name, matches = wrapped[step]
    monkeypatch.setattr(JobProgress, name, hold(getattr(JobProgress, name), matches))
    try:
        yield reached, release
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("step", STEPS)
async def test_a_graceful_stop_at_each_step_keeps_the_copy_for_the_next_process(
        image_settings: Settings, cloud: devcloud.CloudInfo, step: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    user = new_user(cloud)
    data = os.urandom(5 * MiB + 1)  # several segments of the tests' 1 MiB
    source = upload(user, SOURCE, data, chunked=True)
    with paused_at(step, monkeypatch) as (reached, _):
        async with running_service(image_settings) as xfer:
            status, job = await post_copy(xfer, user, source["id"])
            assert status == 201, job
            await asyncio.wait_for(reached.wait(), 60)
        # stopped as SIGTERM stops it (the stop event): the job is handed back, kept
    async with running_service(image_settings) as xfer:
        status, stopped = await call(xfer, "GET", f"/v1/jobs/{job['id']}", user)
        assert stopped["state"] in ("queued", "running", "verifying", "succeeded"), stopped
        kept = [image["id"] for image in copies_of(user, source["id"])]
        assert len(kept) == 1, kept  # the image made before the stop is still there
        ended = await wait_job(xfer, user, job["id"])
        assert ended["state"] == "succeeded", ended["error"]
        cleanup = await xfer.cleaned_up(job["id"], headers=token(user))
    assert ended["attempts"] == 2
    copies = copies_of(user, source["id"])
    assert [image["id"] for image in copies] == kept == [ended["image"]["target_image_id"]]
    assert (copies[0]["status"], copies[0]["checksum"]) == ("active", source["checksum"])
    assert {duty["duty"]: duty["state"] for duty in cleanup} == {
        "remove_target_image": "dropped", "remove_image_data": "dropped",
        "end_trust": "done"}


async def test_sigterm_of_xfer_serve_mid_copy_keeps_the_copy(
        image_settings: Settings, cloud: devcloud.CloudInfo, tmp_path: Path) -> None:
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(12 * MiB), chunked=True)
    async with serve_process(image_settings, "stopping", tmp_path) as (stopping, url):
        async with aiohttp.ClientSession() as http:
            xfer = Service(url, http)
            status, job = await post_copy(xfer, user, source["id"])
            assert status == 201, job
            await wait_for(lambda job: job["bytes_done"] > 0, xfer, user, job["id"])
            stopping.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                assert await stopping.wait() == 0
    made = [image["id"] for image in copies_of(user, source["id"])]
    assert len(made) == 1
    async with running_service(image_settings) as xfer:
        ended = await wait_job(xfer, user, job["id"])
    assert ended["state"] == "succeeded", ended["error"]
    assert ended["image"]["target_image_id"] == made[0]
    assert [image["id"] for image in copies_of(user, source["id"])] == made


async def test_sigkill_before_any_byte_leaves_one_image_once_another_process_finishes(
        image_settings: Settings, cloud: devcloud.CloudInfo, tmp_path: Path) -> None:
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(20 * MiB), chunked=True)
    slow_first_segment = {"XFER_SEGMENT_SIZE": str(16 * MiB), "XFER_MAX_RATE_MB": "4"}
    async with serve_process(image_settings, "doomed", tmp_path,
                             **slow_first_segment) as (doomed, url):
        async with aiohttp.ClientSession() as http:
            xfer = Service(url, http)
            status, job = await post_copy(xfer, user, source["id"])
            assert status == 201, job
            created = await wait_for(lambda job: job["image"]["step"] is not None, xfer, user,
                                     job["id"])
            doomed.send_signal(signal.SIGKILL)
            await doomed.wait()
    # planned (the image's id recorded, created or not) or created: either way no byte yet
    assert created["image"]["step"] in ("planned", "created"), created
    assert created["bytes_done"] == 0, created
    async with running_service(image_settings.with_overrides(lease_seconds=2)) as heir:
        ended = await wait_job(heir, user, job["id"])
        assert ended["state"] == "succeeded", ended["error"]
        assert await settled_trusts(cloud, user, 0) == []
    copies = copies_of(user, source["id"])
    assert [image["id"] for image in copies] == [created["image"]["target_image_id"]]


async def test_a_target_image_deleted_mid_copy_stops_it_at_once_and_nothing_is_left(
        image_settings: Settings, cloud: devcloud.CloudInfo) -> None:
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(24 * MiB), chunked=True)
    slow = image_settings.with_overrides(max_rate_mb=2.0)  # 12 s of copying
    async with running_service(slow) as xfer:
        status, job = await post_copy(xfer, user, source["id"])
        assert status == 201, job
        copying = await wait_for(lambda job: job["bytes_done"] > 0, xfer, user, job["id"])
        image_id = copying["image"]["target_image_id"]
        deleted = user.delete(f"{image_api(user, TARGET)}/v2/images/{image_id}")
        assert deleted.status_code == 204, deleted.text
        ended = await wait_job(xfer, user, job["id"], deadline=10)
        cleanup = await xfer.cleaned_up(job["id"], headers=token(user))
    assert ended["state"] == "failed"
    assert ended["error"]["code"] == "target_image_gone", ended["error"]
    assert ended["bytes_done"] < 24 * MiB
    assert all(duty["state"] == "done" for duty in cleanup), cleanup
    nothing_left(user, source["id"], [image_id])


@contextlib.asynccontextmanager
async def frozen(cloud: devcloud.CloudInfo, name: str) -> AsyncIterator[None]:
    """One process group of the session's cloud (a service and its workers) stopped with
    SIGSTOP while inside, continued on the way out whatever happened: to its clients it
    answers nothing, as a hung host."""
    (record,) = [p for p in cloud.processes if p.name == name]
    group = os.getpgid(record.pid)
    os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(group, signal.SIGCONT)


@pytest.mark.parametrize("service, when", [
    (f"{TARGET}/keystone-proxy-server", "copying"),
    (f"{TARGET}/glance-api", "copied"),
], ids=["target-swift-mid-copy", "target-glance-after-the-copy"])
async def test_a_copy_failed_by_a_service_that_is_down_is_cleaned_up_once_it_is_back(
        image_settings: Settings, cloud: devcloud.CloudInfo, service: str, when: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The service hangs from `when` on: the copy fails, its cleanup fails too while the
    service is down, is tried again, and completes once it answers again."""
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(5 * MiB + 7), chunked=True)
    quick = image_settings.with_overrides(read_timeout=2.0, request_attempts=2)
    async with running_service(quick) as xfer:
        with paused_at(when, monkeypatch) as (reached, release):
            status, job = await post_copy(xfer, user, source["id"])
            assert status == 201, job
            await asyncio.wait_for(reached.wait(), 60)
            async with frozen(cloud, service):
                release.set()
                ended = await wait_job(xfer, user, job["id"], deadline=90)
                assert ended["state"] == "failed", ended
                # its cleanup tries meanwhile, fails, and is tried again
                await wait_for(lambda job: any(
                    duty["state"] == "pending" and duty["error"] and duty["attempts"] >= 2
                    for duty in job["cleanup"]), xfer, user, job["id"], seconds=60)
        cleanup = await xfer.cleaned_up(job["id"], headers=token(user), deadline=60)
        assert await settled_trusts(cloud, user, 0) == []
    assert "cleanup" in ended["error"]["message"], ended["error"]
    assert all(duty["state"] == "done" for duty in cleanup), cleanup
    nothing_left(user, source["id"], [ended["image"]["target_image_id"]])
    assert live_trusts(cloud, user) == []
