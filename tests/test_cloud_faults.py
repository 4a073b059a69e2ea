"""Image copies while a service of the real cloud is stopped (its process, not frozen) and
started again, or while xfer itself is signalled at a step of the flow (issue 17, section 6).
Each ends in one verified image or in a failure that says why, with nothing left: checked in
the target Glance and Swift (xfer.dev.devcloud.holdings), not in xfer's records, and no trust
left in Keystone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from keystoneauth1 import session as ksa_session

from tests.conftest import MiB, Service, keystone_settings, running_service
from tests.database_faults import postgres_stopped
from tests.keystone_users import live_trusts, new_user
from tests.test_cloud_keystone_glance import upload
from tests.test_image_copy import SOURCE, TARGET, call, glance_image, token, wait_job
from tests.test_image_faults import paused_at
from tests.test_trusts import post_copy, serve_process, settled_trusts, wait_for
from xfer.dev import devcloud
from xfer.dev.devcloud.holdings import Holdings, holdings
from xfer.dev.devcloud.services import start_service, stop_service
from xfer.settings import Settings

pytestmark = pytest.mark.integration
NOTHING = {"images": 0, "containers": 0, "objects": 0, "bytes": 0}
KEYSTONE = "keystone"
TARGET_GLANCE = f"{TARGET}/glance-api"
TARGET_SWIFT = f"{TARGET}/keystone-proxy-server"  # the proxy of the users' accounts


@pytest.fixture
def image_settings(settings: Settings, cloud: devcloud.CloudInfo) -> Settings:
    return keystone_settings(settings, cloud, TARGET, duty_poll_seconds=0.5,
                             duty_backoff_base=0.5, duty_backoff_max=2.0,
                             image_watch_seconds=0.5)


def held_by(cloud: devcloud.CloudInfo, user: ksa_session.Session) -> Holdings:
    """What the user's project holds in the target region, as Glance and Swift list it."""
    return holdings(cloud, user.get_token(), user.get_project_id(), TARGET)


async def made_since(cloud: devcloud.CloudInfo, user: ksa_session.Session,
                     before: Holdings) -> Holdings:
    return (await asyncio.to_thread(held_by, cloud, user)).since(before)


@contextlib.asynccontextmanager
async def stopped(cloud: devcloud.CloudInfo, name: str, signum: int | None = None
                  ) -> AsyncIterator[None]:
    """The service's process stopped (its stop signal, or `signum`) while inside, started
    again on the way out, whatever happened inside."""
    await asyncio.to_thread(stop_service, cloud.state_dir, name, signum)
    try:
        yield
    finally:
        await asyncio.to_thread(start_service, cloud.state_dir, name)


async def assert_one_verified_image(cloud: devcloud.CloudInfo, user: ksa_session.Session,
                                    before: Holdings, ended: dict, source: dict) -> None:
    """The job succeeded, and all it left is its image, active with the source's checksum,
    and the image's container holding its data once (a plain object, or a manifest and
    segments adding up to the image's size)."""
    assert ended["state"] == "succeeded", ended["error"]
    image_id = ended["image"]["target_image_id"]
    made = await made_since(cloud, user, before)
    assert made.images == {image_id: "active"}, made
    assert list(made.objects) == [f"glance_{image_id}"], made.objects
    data = dict(made.objects[f"glance_{image_id}"])
    data.pop(image_id)  # the object Glance reads (a manifest when there are segments)
    assert sum(data.values()) in (0, source["size"]), data
    image = await asyncio.to_thread(glance_image, user, TARGET, image_id)
    assert (image["checksum"], image["os_hash_value"]) == (source["checksum"],
                                                           source["os_hash_value"])


async def assert_nothing_left(cloud: devcloud.CloudInfo, user: ksa_session.Session,
                              before: Holdings) -> None:
    made = await made_since(cloud, user, before)
    assert made.counts() == NOTHING, made
    assert await settled_trusts(cloud, user, 0) == []


async def failed_then_cleaned(xfer: Service, user: ksa_session.Session, job_id: str,
                              codes: set[str]) -> dict:
    """The job failed with one of `codes`, saying its cleanup removes what it made."""
    ended = await wait_job(xfer, user, job_id, deadline=120)
    assert ended["state"] == "failed", ended
    assert ended["error"]["code"] in codes, ended["error"]
    assert "cleanup" in ended["error"]["message"], ended["error"]
    return ended


async def cleanup_waiting(xfer: Service, user: ksa_session.Session, job_id: str) -> None:
    """A duty of the job failed at least twice and is still pending: the service it needs
    is down, and it is tried again."""
    await wait_for(lambda job: any(
        duty["state"] == "pending" and duty["error"] and duty["attempts"] >= 2
        for duty in job["cleanup"]), xfer, user, job_id, seconds=60)


# --- the target Glance, the target Swift proxy ----------------------------------------------

@pytest.mark.parametrize("at, signum", [("copied", signal.SIGTERM),
                                        ("registered", signal.SIGKILL)],
                         ids=["stopped-before-registration", "killed-during-registration"])
async def test_the_target_glance_stopped_then_started_again(
        image_settings: Settings, cloud: devcloud.CloudInfo, at: str, signum: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """copied: stopped (SIGTERM) before xfer adds the location; registered: killed with its
    workers the moment Glance accepted the location (202), while its import task reads the
    data back. Glance stays down until the copy has failed, and its cleanup has tried and
    waits; once Glance is back, the cleanup removes the image (queued or importing, its
    import lock held by the dead task) and the data."""
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(16 * MiB + 5), chunked=True)
    before = await asyncio.to_thread(held_by, cloud, user)
    async with running_service(image_settings) as xfer:
        with paused_at(at, monkeypatch) as (reached, release):
            status, job = await post_copy(xfer, user, source["id"])
            assert status == 201, job
            await asyncio.wait_for(reached.wait(), 60)
            async with stopped(cloud, TARGET_GLANCE, signum):
                release.set()
                ended = await failed_then_cleaned(xfer, user, job["id"], {"glance_failed"})
                await cleanup_waiting(xfer, user, job["id"])
        cleanup = await xfer.cleaned_up(job["id"], headers=token(user), deadline=90)
        await assert_nothing_left(cloud, user, before)  # the trust ends while it runs
    assert all(duty["state"] == "done" for duty in cleanup), cleanup
    assert ended["image"]["target_image_id"]


async def test_the_target_swift_proxy_stopped_mid_copy_then_started_again(
        image_settings: Settings, cloud: devcloud.CloudInfo,
        monkeypatch: pytest.MonkeyPatch) -> None:
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(6 * MiB + 3), chunked=True)
    before = await asyncio.to_thread(held_by, cloud, user)
    async with running_service(image_settings) as xfer:
        with paused_at("copying", monkeypatch) as (reached, release):
            status, job = await post_copy(xfer, user, source["id"])
            assert status == 201, job
            await asyncio.wait_for(reached.wait(), 60)
            async with stopped(cloud, TARGET_SWIFT):
                release.set()
                # the engine's code for a target Swift that does not answer
                await failed_then_cleaned(xfer, user, job["id"], {"target_unreachable"})
                await cleanup_waiting(xfer, user, job["id"])
        cleanup = await xfer.cleaned_up(job["id"], headers=token(user), deadline=90)
        await assert_nothing_left(cloud, user, before)
    assert all(duty["state"] == "done" for duty in cleanup), cleanup


# --- Keystone ----------------------------------------------------------------------------

@pytest.mark.parametrize("token_seen", [False, True], ids=["new-token", "validated-token"])
async def test_keystone_stopped_at_submission_is_a_503_and_makes_nothing(
        image_settings: Settings, cloud: devcloud.CloudInfo, token_seen: bool) -> None:
    """new-token: xfer cannot validate the caller's token; validated-token: xfer knows the
    token (its cache) but cannot create the job's trust. Either way a 503 that says to try
    again, no job, no trust, nothing in the target region."""
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(100_000))
    before = await asyncio.to_thread(held_by, cloud, user)
    async with running_service(image_settings) as xfer:
        if token_seen:
            assert (await call(xfer, "GET", "/v1/jobs", user))[0] == 200
        user.get_token()  # issued before Keystone stops, as a user holds one
        async with stopped(cloud, KEYSTONE):
            status, body = await post_copy(xfer, user, source["id"])
        assert status == 503, body
        assert body["error"]["code"] == "keystone_unavailable", body
        assert "try again" in body["error"]["message"]
        status, page = await call(xfer, "GET", "/v1/jobs", user)
        assert (status, page["jobs"]) == (200, [])
    assert live_trusts(cloud, user) == []
    assert (await made_since(cloud, user, before)).counts() == NOTHING


async def test_keystone_stopped_mid_copy(
        image_settings: Settings, cloud: devcloud.CloudInfo,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped from the first segment until the job has ended, then started again. Swift and
    Glance validate tokens through Keystone (what they cached aside): the copy ends in one
    verified image, or fails saying so and its cleanup, which needs Keystone for the job's
    trust token, removes everything once Keystone is back; either way the trust, which only
    Keystone can delete, is deleted then."""
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(6 * MiB + 1), chunked=True)
    before = await asyncio.to_thread(held_by, cloud, user)
    async with running_service(image_settings) as xfer:
        with paused_at("copying", monkeypatch) as (reached, release):
            status, job = await post_copy(xfer, user, source["id"])
            assert status == 201, job
            await asyncio.wait_for(reached.wait(), 60)
            async with stopped(cloud, KEYSTONE):
                release.set()
                ended = await wait_job(xfer, user, job["id"], deadline=120)
                waiting = (await call(xfer, "GET", f"/v1/jobs/{job['id']}", user))[1]
        cleanup = await xfer.cleaned_up(job["id"], headers=token(user), deadline=90)
        if ended["state"] == "succeeded":
            await assert_one_verified_image(cloud, user, before, ended, source)
            assert await settled_trusts(cloud, user, 0) == []
        else:
            # Seen: glance_failed (Glance's middleware timed out asking Keystone), and a 403
            # to the location (Glance could not validate xfer's service token, as if no
            # service role came with it), which xfer says is Keystone's: keystone_failed
            assert ended["error"]["code"] in {"glance_failed", "keystone_failed",
                                              "target_unreachable",
                                              "source_unreachable"}, ended["error"]
            assert "cleanup" in ended["error"]["message"], ended["error"]
            await assert_nothing_left(cloud, user, before)
    assert [duty["state"] for duty in waiting["cleanup"] if duty["duty"] == "end_trust"] == [
        "pending"]
    assert all(duty["state"] in ("done", "dropped") for duty in cleanup), cleanup


# --- PostgreSQL ----------------------------------------------------------------------------

async def test_postgres_restarted_mid_image_copy_makes_exactly_one_verified_image(
        image_settings: Settings, cloud: devcloud.CloudInfo,
        caplog: pytest.LogCaptureFixture) -> None:
    """The server that holds xfer's jobs, and Keystone's and Glance's records too, stopped
    mid-copy for longer than the lease: the copy stops keeping what it wrote, and resumes
    once the database is back."""
    caplog.set_level(logging.INFO, logger="xfer")
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(24 * MiB), chunked=True)
    before = await asyncio.to_thread(held_by, cloud, user)
    slow = image_settings.with_overrides(max_rate_mb=4.0, lease_seconds=2.0)  # 6 s of copy
    async with running_service(slow) as xfer:
        status, job = await post_copy(xfer, user, source["id"])
        assert status == 201, job
        await wait_for(lambda job: job["bytes_done"] > 0, xfer, user, job["id"])
        async with postgres_stopped(cloud):
            async with asyncio.timeout(30):
                while "job stopped, keeping what it wrote" not in caplog.text:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
        ended = await wait_job(xfer, user, job["id"], deadline=120)
        assert await settled_trusts(cloud, user, 0) == []  # ended by this service
    assert ended["attempts"] == 2
    await assert_one_verified_image(cloud, user, before, ended, source)


# --- xfer signalled at a step ----------------------------------------------------------------

@pytest.mark.parametrize("signum, at", [
    (signal.SIGKILL, "copying"), (signal.SIGKILL, "copied"), (signal.SIGKILL, "registered"),
    (signal.SIGTERM, "created"), (signal.SIGTERM, "copied"), (signal.SIGTERM, "registered"),
], ids=lambda value: value.name if isinstance(value, signal.Signals) else value)
async def test_xfer_serve_signalled_at_a_step_leaves_one_verified_image(
        image_settings: Settings, cloud: devcloud.CloudInfo, tmp_path: Path,
        signum: signal.Signals, at: str) -> None:
    """An `xfer serve` held right after recording the step (tests/step_gate.py) is signalled
    there; another process finishes the job (SIGKILL: once the lease ran out; SIGTERM: the
    job was handed back at once). SIGKILL before any byte is test_image_faults'."""
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(5 * MiB + 1), chunked=True)
    before = await asyncio.to_thread(held_by, cloud, user)
    held_file = tmp_path / "held"
    async with serve_process(image_settings, "signalled", tmp_path, ("tests.step_gate", at),
                             TEST_STEP_GATE_HELD_FILE=str(held_file)) as (signalled, url):
        async with aiohttp.ClientSession() as http:
            status, job = await post_copy(Service(url, http), user, source["id"])
            assert status == 201, job
            async with asyncio.timeout(60):
                while not held_file.exists():  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        assert held_file.read_text() == job["id"]
        signalled.send_signal(signum)
        async with asyncio.timeout(30):
            code = await signalled.wait()
    assert code == (0 if signum == signal.SIGTERM else -signal.SIGKILL)
    # the heir's own lease is the default: a 2 s one, not renewed in time at load 20, made
    # a third attempt (the dead process's 2 s lease is what must run out)
    async with running_service(image_settings) as heir:
        ended = await wait_job(heir, user, job["id"])
        assert await settled_trusts(cloud, user, 0) == []  # ended by the heir
    assert ended["attempts"] == 2
    await assert_one_verified_image(cloud, user, before, ended, source)
