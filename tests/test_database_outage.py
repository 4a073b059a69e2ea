"""PostgreSQL outages under a running service: the real Postgres restarted, and one service's
database connections cut by a relay. No outage deletes a copy's work or stops the process."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from tests.conftest import MiB, Service, md5, running_service, unique
from tests.database_faults import DatabaseRelay, postgres_stopped
from tests.sources import payload, put_plain
from tests.test_observe import api_only, read_events
from xfer.clients.swift import SwiftClient
from xfer.dev.devcloud import CloudInfo, issue_token
from xfer.dev.devcloud.loopback import http_request, json_request
from xfer.engine.plan import Segment
from xfer.engine.types import ObjectRef
from xfer.jobs.records import JobRequest
from xfer.jobs.store import JobStore, Q
from xfer.settings import Settings

pytestmark = pytest.mark.integration
OUTAGE_DEADLINE = 30.0  # seconds any awaited condition of these tests may take


def job_body(container: str, name: str) -> dict:
    return {"source": {"region": "RegionOne", "container": container, "object": name},
            "target": {"region": "RegionTwo"}}


async def until(condition: Callable[[], Awaitable[bool]], what: str,
                deadline: float = OUTAGE_DEADLINE) -> None:
    try:
        async with asyncio.timeout(deadline):
            while not await condition():  # noqa: ASYNC110 (polling what has no event)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {deadline:g}s: {what}") from None


def logged(caplog: pytest.LogCaptureFixture, text: str) -> Callable[[], Awaitable[bool]]:
    async def seen() -> bool:
        return any(text in record.getMessage() for record in caplog.records)
    return seen


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[JobStore]:
    """The test's own look at the database, never through a relay."""
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        yield JobStore(pool)
    finally:
        await pool.close()


@pytest.fixture
async def relay(cloud: CloudInfo) -> AsyncIterator[DatabaseRelay]:
    async with DatabaseRelay(cloud.database_url) as running:
        yield running


def lease_expired(store: JobStore, job_id: str) -> Callable[[], Awaitable[bool]]:
    async def expired() -> bool:  # by the database's clock, which claims go by
        return await store.pool.fetchval(
            "SELECT lease_expires_at < now() FROM jobs WHERE id = $1", uuid.UUID(job_id))
    return expired


async def segments_on_swift(target: SwiftClient, container: str, job_id: str) -> list[str]:
    return [o.name for o in await target.list_objects(container) if job_id in o.name]


async def bytes_done(service: Service, job_id: str) -> int:
    return (await service.job(job_id))["bytes_done"] or 0


async def expect_database_unavailable(service: Service, method: str, path: str,
                                      **request: object) -> None:
    async with service.http.request(method, f"{service.url}{path}", **request) as response:
        assert response.status == 503, await response.text()
        assert int(response.headers["Retry-After"]) > 0
        error = (await response.json())["error"]
    assert error["code"] == "database_unavailable" and "database" in error["message"]


async def expect_not_ready(service: Service) -> None:
    async with service.http.get(f"{service.url}/readyz") as response:
        assert response.status == 503
        body = await response.json()
    assert not body["checks"]["database"]["ok"]
    assert all(check["ok"] for check in body["checks"]["regions"].values())


async def test_postgres_restarted_during_a_copy(
        settings: Settings, cloud: CloudInfo, store: JobStore,
        regions: dict[str, SwiftClient], caplog: pytest.LogCaptureFixture):
    """The issue's scenario on the real server: an outage longer than the lease. The copy
    stops without deleting, the worker waits, and the job resumes from its recorded
    segments once Postgres is back; the service never stops."""
    caplog.set_level(logging.INFO, logger="xfer")
    container, name, data = unique("pg-restart"), "image.raw", payload(24 * MiB)
    segment = 128 * 1024
    await put_plain(regions["RegionOne"], container, name, data)
    tuned = settings.with_overrides(segment_size=segment, segments_in_flight=2, lease_seconds=2.0)
    async with running_service(tuned) as service:
        job_id = (await service.submit(job_body(container, name)))["id"]

        async def copying() -> bool:  # early: the copy must outlast the lease by far
            return await bytes_done(service, job_id) >= len(data) // 16
        await until(copying, "the copy is under way")
        recorded = await store.recorded_segments(uuid.UUID(job_id))
        async with postgres_stopped(cloud):
            await expect_database_unavailable(service, "POST", "/v1/jobs",
                                              json=job_body(container, "other"))
            await expect_not_ready(service)
            await until(logged(caplog, "job stopped, keeping what it wrote"),
                        "the copy stops before its lease runs out")
        finished = await service.wait(job_id, deadline=OUTAGE_DEADLINE)
        assert finished["state"] == "succeeded", finished["error"]
        assert finished["md5"] == md5(data)
        assert finished["md5_checked_against"] == "the source object's ETag"
        assert finished["attempts"] == 2
        # the second attempt kept the segments the first recorded (at least those recorded
        # before the stop; the outage deleted none), and sent only the rest
        assert recorded and finished["segments_reused"] >= len(recorded)
        assert finished["bytes_uploaded"] == len(data) - finished["segments_reused"] * segment
        head = await regions["RegionTwo"].head_object(container, name)
        assert head.size == len(data)
        # the 503 left nothing behind, and the worker claims new jobs again
        async with service.http.get(f"{service.url}/v1/jobs") as response:
            assert [job["id"] for job in (await response.json())["jobs"]] == [job_id]
        await put_plain(regions["RegionOne"], container, "after", payload(1000))
        after = await service.copy(job_body(container, "after"), deadline=OUTAGE_DEADLINE)
        assert after["state"] == "succeeded", after["error"]
        async with service.http.get(f"{service.url}/readyz") as response:
            assert response.status == 200
        assert service.serving is not None and not service.serving.done()  # never stopped


def openstack_problems(cloud: CloudInfo) -> list[str]:
    """What Keystone and each Glance API fail to do with their database: issue alice a token;
    create an image (a write) and list images (a read) on every API of every region."""
    assert cloud.keystone is not None
    issued = issue_token(cloud.keystone, cloud.keystone.user("alice"))
    if isinstance(issued, str):
        return [issued]
    problems = []
    token = {"X-Auth-Token": issued.token}
    for glance in cloud.glances.values():
        for port in filter(None, (glance.port, glance.file_store_port)):
            status, _, image = json_request(port, "POST", "/v2/images", {
                "name": unique("after-restart"), "disk_format": "raw",
                "container_format": "bare"}, token)
            if status != 201:
                problems.append(f"POST /v2/images on port {port} answered {status}")
                continue
            deleted = http_request(port, "DELETE", f"/v2/images/{image['id']}", token)[0]
            listed = http_request(port, "GET", "/v2/images", token)[0]
            if (deleted, listed) != (204, 200):
                problems.append(f"DELETE, GET /v2/images on port {port}: {deleted}, {listed}")
    return problems


async def test_keystone_and_glance_recover_after_a_postgres_restart(cloud: CloudInfo):
    """Keystone and Glance keep their records in the same PostgreSQL as xfer: they fail while
    it is down and work again once it is back (oslo.db replaces the connections it lost)."""
    assert await asyncio.to_thread(openstack_problems, cloud) == []
    async with postgres_stopped(cloud):
        assert cloud.keystone is not None
        refused = await asyncio.to_thread(
            issue_token, cloud.keystone, cloud.keystone.user("alice"))
        assert refused == "Keystone answered 500 to a token request for alice"

    async def recovered() -> bool:
        return not await asyncio.to_thread(openstack_problems, cloud)
    await until(recovered, "Keystone and every Glance API work again")


async def test_a_short_outage_neither_stops_the_copy_nor_loses_its_records(
        settings: Settings, relay: DatabaseRelay, store: JobStore,
        regions: dict[str, SwiftClient]):
    """Cut shorter than the lease: the copy goes on writing segments while nothing can be
    recorded, records them all once the database is back, and keeps its only attempt. A new
    job afterwards starts at once: the LISTEN connection was opened again (polling would
    take 30 s)."""
    container, name, data = unique("pg-blip"), "image.raw", payload(24 * MiB)
    segment, window = 128 * 1024, 2
    await put_plain(regions["RegionOne"], container, name, data)
    tuned = settings.with_overrides(
        database_url=relay.url(settings.database_url), segment_size=segment,
        segments_in_flight=window, lease_seconds=10.0, poll_interval=30.0)
    target = regions["RegionTwo"]
    async with running_service(tuned) as service:
        job_id = (await service.submit(job_body(container, name)))["id"]

        async def copying() -> bool:
            return await bytes_done(service, job_id) >= len(data) // 8
        await until(copying, "the copy is an eighth done")
        relay.cut()
        recorded = len(await store.recorded_segments(uuid.UUID(job_id)))

        async def copying_unrecorded() -> bool:
            # more than the window beyond what was recorded: written during the cut
            return len(await segments_on_swift(target, container, job_id)) > recorded + 2 * window
        await until(copying_unrecorded, "segments written while the database is cut")
        await expect_database_unavailable(service, "GET", f"/v1/jobs/{job_id}")
        relay.restore()
        finished = await service.wait(job_id, deadline=OUTAGE_DEADLINE)
        assert finished["state"] == "succeeded", finished["error"]
        assert finished["md5"] == md5(data) and finished["attempts"] == 1
        assert finished["segments_reused"] == 0 and finished["bytes_uploaded"] == len(data)
        # every segment written during the cut was recorded afterwards
        assert finished["segments_written"] == finished["segments_total"] == len(data) // segment
        # (as a set: transitions of different transactions may share or swap timestamps)
        assert {(t["from"], t["to"]) for t in finished["transitions"]} == {
            (None, "queued"), ("queued", "running"), ("running", "verifying"),
            ("verifying", "succeeded")}
        assert len(finished["transitions"]) == 4

        await put_plain(regions["RegionOne"], container, "next", payload(1000))
        submitted = time.monotonic()
        after = await service.copy(job_body(container, "next"), deadline=OUTAGE_DEADLINE)
        assert after["state"] == "succeeded", after["error"]
        assert time.monotonic() - submitted < 10
    assert relay.cuts == 1


async def test_a_verified_copy_waits_for_the_database_to_record_its_success(
        settings: Settings, relay: DatabaseRelay, store: JobStore,
        regions: dict[str, SwiftClient], caplog: pytest.LogCaptureFixture):
    """The database goes away just as the worker records a verified copy: the copy stays
    published, the worker retries, and the job succeeds (once) when the database returns."""
    caplog.set_level(logging.INFO, logger="xfer")
    container, name, data = unique("pg-finish"), "image.raw", payload(3 * MiB)
    await put_plain(regions["RegionOne"], container, name, data)
    relay.cut_when_sent(Q["finish_succeeded"])
    tuned = settings.with_overrides(database_url=relay.url(settings.database_url),
                                    lease_seconds=2.0)
    async with running_service(tuned) as service:
        job_id = (await service.submit(job_body(container, name)))["id"]
        await until(logged(caplog, "retrying to record the verified copy"),
                    "the worker retries recording the verified copy")
        assert relay.cuts == 1
        await expect_database_unavailable(service, "POST", "/v1/jobs",
                                          json=job_body(container, "other"))
        await expect_not_ready(service)
        head = await regions["RegionTwo"].head_object(container, name)
        assert head.size == len(data)  # published, and not deleted while the database is away

        # Its lease runs out meanwhile: a claim could take the job, but not this worker's own
        # claim loop, which leaves alone the jobs it still works on.
        await until(lease_expired(store, job_id), "the job's lease has expired")
        assert (await store.get_job(uuid.UUID(job_id))).state == "verifying"
        relay.restore()
        finished = await service.wait(job_id, deadline=OUTAGE_DEADLINE)
    assert finished["state"] == "succeeded", finished["error"]
    assert finished["md5"] == md5(data) and finished["attempts"] == 1
    indexed = await store.find_objects(md5(data), None, "RegionTwo")
    assert [(entry.container, entry.object) for entry in indexed] == [(container, name)]
    head = await regions["RegionTwo"].head_object(container, name)
    assert head.size == len(data)


async def test_a_copy_whose_lease_was_taken_keeps_what_it_wrote(
        settings: Settings, store: JobStore, regions: dict[str, SwiftClient],
        caplog: pytest.LogCaptureFixture):
    """Another worker holds the job now (as after an outage longer than the lease): the copy
    stops without deleting the segments that worker resumes from."""
    caplog.set_level(logging.INFO, logger="xfer")
    container, name, data = unique("lease-taken"), "image.raw", payload(24 * MiB)
    await put_plain(regions["RegionOne"], container, name, data)
    # A 4 s lease: with 2 s, a renewal had 0.67 s to get through, and on a loaded machine (the
    # whole suite beside a benchmark, load 5) the takeover's own lease ran out once.
    tuned = settings.with_overrides(segment_size=128 * 1024, segments_in_flight=2,
                                    lease_seconds=4.0)
    async with running_service(tuned) as service:
        job_id = (await service.submit(job_body(container, name)))["id"]

        async def copying() -> bool:
            return await bytes_done(service, job_id) >= len(data) // 16
        await until(copying, "the copy is under way")
        await store.pool.execute("UPDATE jobs SET lease_owner = 'another' WHERE id = $1",
                                 uuid.UUID(job_id))
        await until(logged(caplog, "lease lost"), "the copy stops on its next renewal")
        recorded = await store.recorded_segments(uuid.UUID(job_id))
        on_swift = set(await segments_on_swift(regions["RegionTwo"], container, job_id))
        assert recorded and {f"{name}.xfer-segments/{job_id}/{s.index:08d}"
                             for s in recorded} <= on_swift
        # that other worker dies in turn: its lease runs out and this service takes over
        await store.pool.execute(
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
            uuid.UUID(job_id))
        finished = await service.wait(job_id, deadline=OUTAGE_DEADLINE)
    assert finished["state"] == "succeeded", finished["error"]
    assert finished["md5"] == md5(data) and finished["attempts"] == 2
    assert finished["segments_reused"] == len(recorded)


async def test_an_abandoned_cancel_cut_off_from_the_database_is_finished_later(
        settings: Settings, relay: DatabaseRelay, store: JobStore,
        regions: dict[str, SwiftClient], caplog: pytest.LogCaptureFixture):
    """A cancel left by a dead worker: the database goes away as the worker that deleted the
    job's segments records the cancel; the worker stays up and records it once it is back."""
    caplog.set_level(logging.INFO, logger="xfer")
    container, name = unique("orphan-outage"), "image.raw"
    await put_plain(regions["RegionOne"], container, name, payload(1000))
    request = JobRequest(ObjectRef("RegionOne", container, name),
                         ObjectRef("RegionTwo", container, name))
    job_id = (await store.create_job(request))[0].id
    # a worker claims the job, writes and records two segments, and dies while cancelling
    assert (await store.claim_job("ghost", 0.2)).id == job_id
    target = regions["RegionTwo"]
    await target.put_container(container)
    for index in range(2):
        data = payload(1000)
        await target.put_object(container, f"{name}.xfer-segments/{job_id}/{index:08d}", data,
                                md5(data))
        await store.record_segment(job_id, Segment(index, index * 1000, 1000), md5(data))
    assert (await store.cancel(job_id))[1]
    await until(lease_expired(store, str(job_id)), "the dead worker's lease has expired")
    relay.cut_when_sent(Q["finish_cancelled"])
    tuned = settings.with_overrides(database_url=relay.url(settings.database_url))
    async with running_service(tuned) as service:
        await until(logged(caplog, "retrying to record the cancel"),
                    "the worker retries recording the cancel")
        # what the job wrote is removed by its cleanup duty, once its end is recorded
        assert (await store.get_job(job_id)).state == "cancelling"
        relay.restore()

        async def cancelled() -> bool:
            return (await store.get_job(job_id)).state == "cancelled"
        await until(cancelled, "the cancel is recorded")

        async def removed() -> bool:
            return await segments_on_swift(target, container, str(job_id)) == []
        await until(removed, "the cancelled job's segments are removed by its cleanup")
        assert service.serving is not None and not service.serving.done()


async def test_an_event_stream_stays_open_through_an_outage(settings: Settings,
                                                            relay: DatabaseRelay):
    tuned = settings.with_overrides(database_url=relay.url(settings.database_url),
                                    events_poll_interval=0.1)
    async with api_only(tuned) as (service, _):
        job_id = (await service.submit(job_body("c", "o")))["id"]
        async with service.http.get(f"{service.url}/v1/jobs/{job_id}/events") as stream:
            await stream.content.readuntil(b"\n\n")  # the first progress event: queued
            relay.cut()

            async def polls_refused() -> bool:  # the stream keeps polling, in vain
                return relay.refused >= 5
            await until(polls_refused, "the stream's polls meet the cut")
            relay.restore()
            async with service.http.post(f"{service.url}/v1/jobs/{job_id}/cancel") as cancel:
                assert cancel.status == 202
            events = await read_events(stream)
    assert [(name, data.get("state", data)) for name, data in events] == [
        ("progress", "cancelled"), ("end", {"reason": "finished"})]
