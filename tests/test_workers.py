"""Several xfer worker processes on one database: exactly-once jobs and resume after SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import MiB, md5, unique
from tests.sources import payload, put_plain
from xfer.clients.swift import SwiftClient
from xfer.engine.types import ObjectRef
from xfer.jobs.records import JobRequest
from xfer.jobs.store import JobStore
from xfer.settings import Settings, regions_variable

pytestmark = pytest.mark.integration


def worker_environ(settings: Settings, worker_id: str, **extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XFER_")}
    environ.update({
        "XFER_DATABASE_URL": settings.database_url,
        "XFER_REGIONS": regions_variable(settings.regions.values()),
        "XFER_WORKER_ID": worker_id, "XFER_POLL_INTERVAL": "0.5", "XFER_LEASE_SECONDS": "2",
        "XFER_BACKOFF_BASE": "0.05", "XFER_BACKOFF_MAX": "0.5", **extra})
    return environ


@contextlib.asynccontextmanager
async def worker_process(settings: Settings, worker_id: str, log_dir: Path,
                         **extra: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """An `xfer worker` process; stopped (by its PID) when the block ends, if still running."""
    log = await asyncio.to_thread((log_dir / f"{worker_id}.log").open, "wb")
    with log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xfer.cli", "worker",
            env=worker_environ(settings, worker_id, **extra),
            stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        await stop_process(process)


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to a process this test started (by its PID), SIGKILL if it outlives 20 s."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(20):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


def claimed_jobs(log_path: Path) -> list[str]:
    lines = [json.loads(line) for line in log_path.read_text().splitlines()
             if line.startswith("{")]
    return [line["job_id"] for line in lines if line["message"].startswith("claimed job")]


def job_request(container: str, name: str) -> JobRequest:
    return JobRequest(ObjectRef("RegionOne", container, name), ObjectRef("RegionTwo", container, name))


def job_body(container: str, name: str) -> dict:
    return job_request(container, name).canonical()


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[JobStore]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    try:
        yield JobStore(pool)
    finally:
        await pool.close()


async def wait_ended(store: JobStore, job_ids: list, deadline: float) -> list:
    async with asyncio.timeout(deadline):
        while True:
            rows = [await store.get_job(job_id) for job_id in job_ids]
            if all(row.state.terminal for row in rows):
                return rows
            await asyncio.sleep(0.2)


async def test_two_workers_run_each_of_20_jobs_exactly_once(
        settings: Settings, store: JobStore, regions: dict[str, SwiftClient], tmp_path: Path):
    container = unique("batch")
    sources = {}
    for index in range(20):
        data = payload(256 * 1024 if index % 4 else 2 * MiB + index)
        sources[f"image-{index:02d}"] = data
        await put_plain(regions["RegionOne"], container, f"image-{index:02d}", data)
    async with worker_process(settings, "worker-a", tmp_path), \
            worker_process(settings, "worker-b", tmp_path):
        job_ids = [(await store.create_job(job_request(container, name)))[0].id
                   for name in sources]
        rows = await wait_ended(store, job_ids, 120)
    assert [row.state for row in rows] == ["succeeded"] * 20, [r.error for r in rows]
    assert all(row.attempts == 1 for row in rows)
    for row, (name, data) in zip(rows, sources.items(), strict=True):
        assert row.target.object == name and row.md5 == md5(data)
    claims_a = claimed_jobs(tmp_path / "worker-a.log")
    claims_b = claimed_jobs(tmp_path / "worker-b.log")
    all_claims = sorted(claims_a + claims_b)
    assert all_claims == sorted(str(job_id) for job_id in job_ids)  # each claimed exactly once
    assert claims_a and claims_b  # and both processes took part


async def test_sigkilled_worker_is_resumed_by_another_without_recopying(
        settings: Settings, store: JobStore, regions: dict[str, SwiftClient], tmp_path: Path):
    container, name = unique("resume"), "image.raw"
    segment, window, data = 256 * 1024, 2, payload(48 * MiB)
    await put_plain(regions["RegionOne"], container, name, data)
    tuning = {"XFER_SEGMENT_SIZE": str(segment), "XFER_SEGMENTS_IN_FLIGHT": str(window)}
    async with worker_process(settings, "doomed", tmp_path, **tuning) as doomed:
        job_id = (await store.create_job(job_request(container, name)))[0].id
        async with asyncio.timeout(60):
            while (await store.get_job(job_id)).bytes_done < len(data) // 4:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        doomed.send_signal(signal.SIGKILL)
        await doomed.wait()
    killed = await store.get_job(job_id)
    assert killed.state == "running", "the copy ended before the kill: nothing to resume"
    recorded = await store.recorded_segments(job_id)
    on_swift = [o.name for o in await regions["RegionTwo"].list_objects(container)
                if str(job_id) in o.name]
    in_flight = len(on_swift) - len(recorded)  # written by the dead worker, never recorded
    assert recorded and 0 <= in_flight <= window
    async with worker_process(settings, "heir", tmp_path, **tuning):
        (finished,) = await wait_ended(store, [job_id], 60)
    assert finished.state == "succeeded", finished.error
    assert finished.attempts == 2
    assert finished.md5 == md5(data)
    assert finished.md5_checked_against == "the source object's ETag"
    # every recorded segment was checked and kept; only the rest went over the wire again
    assert finished.segments_reused == len(recorded)
    assert finished.bytes_uploaded == len(data) - len(recorded) * segment
    sent_twice = in_flight * segment
    assert sent_twice <= window * segment
    head = await regions["RegionTwo"].head_object(container, name)
    assert head.size == len(data)


async def test_a_cancel_left_by_a_dead_worker_is_finished_by_another(
        settings: Settings, store: JobStore, regions: dict[str, SwiftClient]):
    from tests.conftest import running_service
    from xfer.engine.plan import Segment

    container, name = unique("orphan-cancel"), "image.raw"
    await put_plain(regions["RegionOne"], container, name, payload(1000))
    job = (await store.create_job(job_request(container, name)))[0]
    job_id = job.id
    # a worker claims the job, writes and records two segments, then dies (its lease runs out)
    assert (await store.claim_job("ghost", 0.2)).id == job_id
    target = regions["RegionTwo"]
    await target.put_container(container)
    for index in range(2):
        data = payload(1000)
        segment_name = f"{name}.xfer-segments/{job_id}/{index:08d}"
        await target.put_object(container, segment_name, data, md5(data))
        await store.record_segment(job_id, Segment(index, index * 1000, 1000), md5(data))
    _, took_effect = await store.cancel(job_id)
    assert took_effect and (await store.get_job(job_id)).state == "cancelling"
    await asyncio.sleep(0.3)  # the ghost's lease has expired
    async with running_service(settings) as service:
        ended = await service.wait(str(job_id), deadline=30)
        (cleanup,) = await service.cleaned_up(str(job_id), deadline=30)
    assert ended["state"] == "cancelled"
    assert [o.name for o in await target.list_objects(container) if str(job_id) in o.name] == []
    assert (cleanup["duty"], cleanup["state"], cleanup["outcome"]) == (
        "remove_object_data", "done", "deleted 2 objects (2000 bytes) this job had written")


async def test_a_stopping_service_hands_its_job_back_and_the_next_one_resumes(
        settings: Settings, store: JobStore, regions: dict[str, SwiftClient]):
    from tests.conftest import running_service

    container, name, data = unique("handover"), "image.raw", payload(24 * MiB)
    await put_plain(regions["RegionOne"], container, name, data)
    slow = settings.with_overrides(segment_size=256 * 1024, segments_in_flight=2)
    async with running_service(slow) as service:
        job_id = (await service.submit(job_body(container, name)))["id"]
        async with asyncio.timeout(60):
            while ((await service.job(job_id))["bytes_done"] or 0) < len(data) // 4:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    handed_back = await store.get_job(uuid.UUID(job_id))
    assert handed_back.state == "queued", "the copy ended before the stop: nothing to hand back"
    recorded = await store.recorded_segments(uuid.UUID(job_id))
    assert recorded
    async with running_service(slow) as service:
        finished = await service.wait(job_id, deadline=60)
    assert finished["state"] == "succeeded", finished["error"]
    assert finished["md5"] == md5(data) and finished["attempts"] == 2
    assert finished["segments_reused"] == len(recorded)


async def test_a_jobs_targets_and_rate_cap_reach_the_copy_engine(
        settings: Settings, store: JobStore, swift_http):
    from xfer.clients.swift import SwiftRegions
    from xfer.engine.object_copy import Copier
    from xfer.jobs.store import copy_spec

    container, name = unique("capped"), "image.raw"
    request = JobRequest(ObjectRef("RegionOne", container, name),
                         ObjectRef("RegionTwo", container, name),
                         more_targets=(ObjectRef("RegionOne", container + "-copy", name),),
                         max_rate_mb=2.5)
    job_id = (await store.create_job(request))[0].id
    spec = copy_spec(await store.get_job(job_id))
    assert spec.max_rate == 2.5e6
    assert [t.ref for t in spec.targets] == list(request.targets)
    assert [t.segment_container for t in spec.targets] == [container, container + "-copy"]

    class Reached(Exception):
        pass

    asked: list[float | None] = []

    class Rates:  # stands in for the process's RateShares: what rate does the copy ask for?
        @contextlib.contextmanager
        def bucket(self, job_rate):
            asked.append(job_rate)
            raise Reached
            yield

    copier = Copier(settings, SwiftRegions(swift_http, dict(settings.regions)))
    copier.rates = Rates()
    with pytest.raises(Reached):
        await copier.copy_to_all(spec, None)
    assert asked == [2.5e6]
    uncapped = copy_spec(await store.get_job((await store.create_job(
        job_request(container, name)))[0].id))
    assert uncapped.max_rate is None and uncapped.more_targets == ()


async def test_a_fan_out_job_handed_back_resumes_every_target_from_its_records(
        settings: Settings, store: JobStore, regions: dict[str, SwiftClient]):
    from tests.conftest import running_service
    from tests.sources import read_back

    container, name, data = unique("fan-out-handover"), "image.raw", payload(24 * MiB)
    copies = container + "-copies"
    await put_plain(regions["RegionOne"], container, name, data)
    body = {**job_body(container, name), "targets": [
        {"region": "RegionTwo"}, {"region": "RegionOne", "container": copies}]}
    del body["target"]
    slow = settings.with_overrides(segment_size=256 * 1024, segments_in_flight=2)
    async with running_service(slow) as service:
        job_id = (await service.submit(body))["id"]
        async with asyncio.timeout(60):
            while ((await service.job(job_id))["bytes_done"] or 0) < len(data) // 4:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    handed_back = await store.get_job(uuid.UUID(job_id))
    assert handed_back.state == "queued", "the copy ended before the stop: nothing to hand back"
    assert {t.state for t in handed_back.targets} == {"queued"}
    recorded = await store.recorded_segments(uuid.UUID(job_id))
    assert recorded
    async with running_service(slow) as service:
        finished = await service.wait(job_id, deadline=90)
    assert finished["state"] == "succeeded", finished["error"]
    assert finished["attempts"] == 2
    # each target checked the recorded segments in its own segment container and kept them
    assert [t["segments_reused"] for t in finished["targets"]] == [len(recorded)] * 2
    assert finished["segments_reused"] == 2 * len(recorded)
    assert await read_back(regions["RegionTwo"], container, name) == data
    assert await read_back(regions["RegionOne"], copies, name) == data
