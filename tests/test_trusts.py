"""A trust lives exactly as long as its job (issue 16, section 1), checked in Keystone: the
trusts a user has given xfer are, within seconds, as many as that user's unfinished jobs,
whatever mix of copies, failures, cancels, replays, refusals and kills came before."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from keystoneauth1 import session as ksa_session

from tests.conftest import MiB, Service, keystone_settings, running_service
from tests.keystone_users import application_credential_session, live_trusts, new_user
from tests.test_cloud_keystone_glance import upload
from tests.test_image_copy import SOURCE, TARGET, call, copy_image, wait_job
from tests.test_workers import stop_process
from xfer.clients.openstack import OpenStackClients
from xfer.clients.transport import http_session
from xfer.dev import devcloud
from xfer.jobs.duty_store import DutyStore
from xfer.jobs.records import Duty, DutyState, ImageCopyRequest
from xfer.jobs.store import JobStore
from xfer.jobs.trusts import JobTrusts
from xfer.settings import Settings, regions_variable

pytestmark = pytest.mark.integration
TRUSTS_SETTLE_SECONDS = 30.0  # "within minutes": the duty runs at once in the same process


@pytest.fixture
def image_settings(settings: Settings, cloud: devcloud.CloudInfo) -> Settings:
    return keystone_settings(settings, cloud, TARGET, duty_poll_seconds=1.0,
                             duty_backoff_base=0.5, duty_backoff_max=2.0)


async def settled_trusts(cloud: devcloud.CloudInfo, user: ksa_session.Session,
                         expected: int) -> list[dict[str, Any]]:
    """The user's live trusts once they number `expected`; the last listing if they never
    do within TRUSTS_SETTLE_SECONDS (the caller's assertion then shows them)."""
    trusts = live_trusts(cloud, user)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(TRUSTS_SETTLE_SECONDS):
            while len(trusts) != expected:
                await asyncio.sleep(0.2)
                trusts = await asyncio.to_thread(live_trusts, cloud, user)
    return trusts


async def unfinished(service: Service, user: ksa_session.Session) -> list[dict]:
    status, page = await call(service, "GET", "/v1/jobs", user)
    assert status == 200, page
    return [job for job in page["jobs"] if job["state"] not in ("succeeded", "failed",
                                                                 "cancelled")]


async def post_copy(service: Service, user: ksa_session.Session, image_id: str,
                    key: str | None = None, **fields: Any) -> tuple[int, dict]:
    headers = {"X-Auth-Token": user.get_token()}
    if key is not None:
        headers["Idempotency-Key"] = key
    async with service.http.post(f"{service.url}/v1/images/{image_id}/copies",
                                 json={"source_region": SOURCE, **fields},
                                 headers=headers) as response:
        return response.status, await response.json()


async def wait_for(predicate: Callable[[dict], bool], service: Service,
                   user: ksa_session.Session, job_id: str, seconds: float = 60.0) -> dict:
    async with asyncio.timeout(seconds):
        while True:
            status, job = await call(service, "GET", f"/v1/jobs/{job_id}", user)
            assert status == 200, job
            if predicate(job):
                return job
            await asyncio.sleep(0.1)


async def test_live_trusts_equal_unfinished_jobs_after_a_mixed_run(
        image_settings: Settings, cloud: devcloud.CloudInfo) -> None:
    user = new_user(cloud)
    small = upload(user, SOURCE, os.urandom(300_000))
    big = upload(user, SOURCE, os.urandom(12 * MiB), chunked=True)
    one_at_a_time = image_settings.with_overrides(max_concurrent_copies=1, max_rate_mb=3.0)
    async with running_service(one_at_a_time) as xfer:
        assert (await copy_image(xfer, user, small["id"]))["state"] == "succeeded"
        deduplicated = await copy_image(xfer, user, small["id"])
        assert deduplicated["deduplicated"] is True
        missing = await copy_image(xfer, user, str(uuid.uuid4()))
        assert missing["error"]["code"] == "source_image_not_found"

        # replays and conflicting reuses of a key, invalid requests, a refused trust
        status, first = await post_copy(xfer, user, small["id"], key="mixed-1", force=True)
        assert status == 201, first
        for _ in range(3):
            status, replay = await post_copy(xfer, user, small["id"], key="mixed-1",
                                             force=True)
            assert (status, replay["id"]) == (200, first["id"])
        status, conflict = await post_copy(xfer, user, small["id"], key="mixed-1")
        assert status == 409 and conflict["error"]["code"] == "idempotency_conflict"
        status, invalid = await post_copy(xfer, user, small["id"], source_region="Atlantis")
        assert status == 400 and invalid["error"]["field"] == "source_region", invalid
        status, invalid = await post_copy(xfer, user, "not-an-image-id")
        assert status == 400 and invalid["error"]["field"] == "image_id"
        refused_session = application_credential_session(cloud, user)
        status, refused = await post_copy(xfer, refused_session, small["id"])
        assert status == 403 and refused["error"]["code"] == "trust_refused", refused
        assert (await wait_job(xfer, user, first["id"]))["state"] == "succeeded"

        # one copy running slowly, one waiting behind it: two jobs, two trusts
        status, running = await post_copy(xfer, user, big["id"], force=True)
        assert status == 201
        await wait_for(lambda job: job["bytes_done"] > 0, xfer, user, running["id"])
        status, waiting = await post_copy(xfer, user, big["id"], force=True)
        assert status == 201 and waiting["state"] == "queued"
        assert len(await unfinished(xfer, user)) == 2
        assert len(await settled_trusts(cloud, user, 2)) == 2

        for job in (waiting, running):  # the queued one ends at once, the running one soon
            status, cancelled = await call(xfer, "POST", f"/v1/jobs/{job['id']}/cancel", user)
            assert status == 202, cancelled
        for job in (waiting, running):
            assert (await wait_job(xfer, user, job["id"]))["state"] == "cancelled"

        assert await unfinished(xfer, user) == []
        assert await settled_trusts(cloud, user, 0) == []
        status, page = await call(xfer, "GET", "/v1/jobs", user)
    # every job that was made: no job for the refused trust, none for the invalid requests
    assert len(page["jobs"]) == 6, [job["state"] for job in page["jobs"]]


async def test_a_replay_a_conflict_and_an_invalid_request_create_no_trust(
        image_settings: Settings, cloud: devcloud.CloudInfo) -> None:
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(200_000))
    paused = image_settings.with_overrides(max_concurrent_copies=1)
    async with running_service(paused) as xfer:
        status, job = await post_copy(xfer, user, source["id"], key="only-one")
        assert status == 201
        trusts = await settled_trusts(cloud, user, 1)
        assert len(trusts) <= 1
        for _ in range(5):
            assert (await post_copy(xfer, user, source["id"], key="only-one"))[0] in (200, 201)
            assert (await post_copy(xfer, user, source["id"], key="only-one",
                                    name="other"))[0] == 409
            assert (await post_copy(xfer, user, source["id"], key="only-one",
                                    properties={"": "empty key"}))[0] == 400
        assert len(live_trusts(cloud, user)) <= 1
        await wait_job(xfer, user, job["id"])
        assert await settled_trusts(cloud, user, 0) == []


async def test_a_trust_created_by_a_process_that_died_before_recording_it_is_adopted(
        image_settings: Settings, cloud: devcloud.CloudInfo) -> None:
    """The API records the job, Keystone creates its trust, the process dies before the job
    gets it: the duty adopt_trust finds the trust by its expiry, and the job runs."""
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(500_000))
    info, token = await _caller(image_settings, user)
    async with _trusts(image_settings) as (trusts, store):
        made, created = await store.create_image_job(
            ImageCopyRequest(SOURCE, TARGET, source["id"], info.project_id, info.user_id),
            None, 3600, adopt_after=0.5)
        assert created and made.image is not None and made.image.trust_expires_at
        trust_id = await trusts.keystone.create_trust(token, info, made.image.trust_expires_at)
        # ... and here the process that recorded the job died
    async with running_service(image_settings) as xfer:
        job = await wait_job(xfer, user, str(made.id))
        assert job["state"] == "succeeded", job["error"]
        assert await settled_trusts(cloud, user, 0) == []
    async with _trusts(image_settings) as (trusts, store):
        duties = {duty.duty: duty for duty in await trusts.duties.duties(made.id)}
    assert duties[Duty.ADOPT_TRUST].outcome == f"trust {trust_id} found and attached"
    assert (duties[Duty.END_TRUST].state, duties[Duty.END_TRUST].outcome) == (
        DutyState.DONE, f"trust {trust_id} deleted")


async def test_a_job_whose_trust_was_never_created_fails_saying_so(
        image_settings: Settings, cloud: devcloud.CloudInfo) -> None:
    user = new_user(cloud)
    info, _ = await _caller(image_settings, user)
    async with _trusts(image_settings) as (_, store):
        made, _ = await store.create_image_job(
            ImageCopyRequest(SOURCE, TARGET, str(uuid.uuid4()), info.project_id, info.user_id),
            "died-before-keystone", 3600, adopt_after=0.5)
    async with running_service(image_settings) as xfer:
        job = await wait_job(xfer, user, str(made.id))
        # the key now names that failed job: a replay says so, and creates nothing
        status, replay = await post_copy(xfer, user, job["image"]["source_image_id"],
                                         key="died-before-keystone")
    assert job["state"] == "failed"
    assert job["error"]["code"] == "request_interrupted", job["error"]
    assert status == 200 and replay["id"] == job["id"]
    assert live_trusts(cloud, user) == []


async def test_keystone_holding_a_trust_with_the_jobs_expiry_is_handled(
        image_settings: Settings, cloud: devcloud.CloudInfo) -> None:
    """Keystone keeps one trust per trustor, trustee, project and expiry. One no job uses is
    the request's own (its POST sent again after a closed connection) and is taken; one that
    another job uses makes the job ask for an earlier second."""
    user = new_user(cloud)
    info, token = await _caller(image_settings, user)
    async with _trusts(image_settings) as (trusts, store):
        request = ImageCopyRequest(SOURCE, TARGET, str(uuid.uuid4()), info.project_id,
                                   info.user_id)
        first, _ = await store.create_image_job(request, "first", 3600, 60)
        assert first.image is not None and first.image.trust_expires_at is not None
        orphan = await trusts.keystone.create_trust(token, info, first.image.trust_expires_at)
        granted = await trusts.grant(first, token, info)
        assert granted.image is not None and granted.image.trust_id == orphan

        second, _ = await store.create_image_job(request, "second", 3600, 60)
        third, _ = await store.create_image_job(request, "third", 3600, 60)
        assert second.image is not None and second.image.trust_expires_at is not None
        # Keystone holds a trust with the second job's expiry, which another job acts through
        taken = await trusts.keystone.create_trust(token, info, second.image.trust_expires_at)
        await _use_trust(image_settings, third.id, taken)
        regranted = await trusts.grant(second, token, info)
    assert regranted.image is not None and regranted.image.trust_id not in (None, taken)
    assert regranted.image.trust_expires_at is not None
    assert regranted.image.trust_expires_at < second.image.trust_expires_at
    assert {trust["id"] for trust in live_trusts(cloud, user)} == {
        orphan, taken, regranted.image.trust_id}
    async with _trusts(image_settings) as (trusts, _):
        for trust_id in (orphan, taken, regranted.image.trust_id):
            assert await trusts.keystone.delete_trust(trust_id)
    assert live_trusts(cloud, user) == []


async def test_a_killed_process_leaves_no_trust_once_another_finishes_its_job(
        image_settings: Settings, cloud: devcloud.CloudInfo, tmp_path: Path) -> None:
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(16 * MiB), chunked=True)
    async with serve_process(image_settings, "doomed", tmp_path) as (doomed, url):
        async with aiohttp.ClientSession() as http:
            xfer = Service(url, http)
            status, job = await post_copy(xfer, user, source["id"])
            assert status == 201, job
            await wait_for(lambda job: job["bytes_done"] > 0, xfer, user, job["id"])
            doomed.send_signal(signal.SIGKILL)
            await doomed.wait()
    assert len(live_trusts(cloud, user)) == 1  # the job is not over: its trust lives
    async with running_service(image_settings.with_overrides(lease_seconds=2)) as heir:
        ended = await wait_job(heir, user, job["id"])
        assert ended["state"] == "succeeded", ended["error"]
        assert ended["attempts"] == 2
        assert await settled_trusts(cloud, user, 0) == []


# --- helpers --------------------------------------------------------------------------------

async def _caller(settings: Settings, user: ksa_session.Session) -> tuple[Any, str]:
    token = user.get_token()
    assert isinstance(token, str)
    async with http_session(settings) as http:
        openstack = OpenStackClients.from_settings(settings, http)
        assert openstack is not None
        return await openstack.keystone.validate(token), token


@contextlib.asynccontextmanager
async def _trusts(settings: Settings) -> AsyncIterator[tuple[JobTrusts, JobStore]]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        async with http_session(settings) as http:
            openstack = OpenStackClients.from_settings(settings, http)
            assert openstack is not None
            store = JobStore(pool)
            yield JobTrusts(settings, openstack.keystone, store, DutyStore(pool)), store
    finally:
        await pool.close()


async def _use_trust(settings: Settings, job_id: uuid.UUID, trust_id: str) -> None:
    connection = await asyncpg.connect(settings.database_url)
    try:
        await connection.execute("UPDATE jobs SET trust_id = $2 WHERE id = $1", job_id,
                                 trust_id)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def serve_process(settings: Settings, worker_id: str, log_dir: Path, **extra: str
                        ) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`xfer serve` in a process of its own, with Keystone, on a free port: (it, its URL);
    `extra`: XFER_* variables over these. Stopped by its PID when the block ends, if still
    running."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XFER_")}
    environ.update({
        "XFER_DATABASE_URL": settings.database_url,
        "XFER_REGIONS": regions_variable(settings.regions.values()),
        "XFER_KEYSTONE_URL": settings.keystone_url, "XFER_KEYSTONE_USER": settings.keystone_user,
        "XFER_KEYSTONE_PASSWORD": settings.keystone_password,
        "XFER_KEYSTONE_PROJECT": settings.keystone_project,
        "XFER_HOME_REGION": settings.home_region, "XFER_WORKER_ID": worker_id,
        "XFER_LEASE_SECONDS": "2", "XFER_POLL_INTERVAL": "0.5", "XFER_MAX_RATE_MB": "4",
        "XFER_SEGMENT_SIZE": str(MiB), **extra})
    log = await asyncio.to_thread((log_dir / f"{worker_id}.log").open, "wb")
    with log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xfer.cli", "serve", "--port", "0", env=environ,
            stdout=subprocess.PIPE, stderr=log)
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            line = await process.stdout.readline()
        url = json.loads(line)["listening"]
        yield process, url
    finally:
        await stop_process(process)
