"""`xfer sweep` against the real local cloud: what dead copies left in the operator's Swift
accounts is found in Swift and removed; what a live job, a published copy or an unknown job's
manifest still uses stays (issue 17, section 2)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import timedelta

import pytest

from tests.conftest import MiB, md5, running_service, unique
from tests.sources import payload, put_plain
from tests.test_workers import job_request, worker_environ
from xfer.clients.swift import SwiftClient, SwiftRegions
from xfer.clients.transport import http_session
from xfer.jobs.duty_store import DutyStore
from xfer.jobs.records import Duty, DutyState
from xfer.jobs.store import JobStore
from xfer.jobs.sweep import Sweeper
from xfer.proto import swift
from xfer.settings import Settings

pytestmark = pytest.mark.integration
TARGET = "RegionTwo"


async def put_segments(client: SwiftClient, container: str, target: str, job_id: str,
                       count: int = 2) -> list[str]:
    return [name for name, _, _ in await put_segment_objects(client, container, target,
                                                             job_id, count)]


async def put_segment_objects(client: SwiftClient, container: str, target: str, job_id: str,
                              count: int = 2) -> list[tuple[str, str, int]]:
    """Segments named as job `job_id` names them for `target`: (name, MD5, size) each."""
    await client.put_container(container)
    made = []
    for index in range(count):
        data = payload(1000 + index)
        name = f"{target}.xfer-segments/{job_id}/{index:08d}"
        await client.put_object(container, name, data, md5(data))
        made.append((name, md5(data), len(data)))
    return made


async def names_in(client: SwiftClient, container: str) -> set[str]:
    return {listed.name for listed in await client.list_objects(container)}


async def test_the_sweep_removes_only_segments_nothing_uses(
        settings: Settings, stores: tuple[JobStore, DutyStore],
        regions: dict[str, SwiftClient]) -> None:
    store, duties = stores
    target = regions[TARGET]
    container = unique("sweep")
    # a job that failed, whose cleanup duty could not finish (an older xfer had none)
    failed, _ = await store.create_job(job_request(container, "failed.img"))
    assert (await store.claim_job("ghost", 30)) is not None
    failed_segments = await put_segments(target, container, "failed.img", str(failed.id))
    assert await store.finish_failed(failed.id, "ghost", "test", "failed for the test")
    await duties.finish_duty(failed.id, Duty.REMOVE_OBJECT_DATA, DutyState.FAILED,
                             "could not remove it")
    # a job still running: its segments are in use
    running, _ = await store.create_job(job_request(container, "running.img"))
    assert (await store.claim_job("alive", 30)) is not None
    running_segments = await put_segments(target, container, "running.img", str(running.id))
    # segments of a job this database never knew, none using them
    orphan = str(uuid.uuid4())
    orphan_segments = await put_segments(target, container, "orphan.img", orphan)
    # and a published copy of such a job, its manifest using its segments
    published = str(uuid.uuid4())
    written = await put_segment_objects(target, container, "published.img", published)
    await target.put_manifest(container, "published.img", [
        swift.ManifestSegment(f"/{container}/{name}", etag, size)
        for name, etag, size in written], {})
    used = [name for name, _, _ in written]
    # a real copy that succeeded, its segments those of its SLO
    source = unique("sweep-source")
    await put_plain(regions["RegionOne"], source, "big.img", payload(3 * MiB))
    async with running_service(settings) as service:
        copied = await service.copy({"source": {"region": "RegionOne", "container": source,
                                                "object": "big.img"},
                                     "target": {"region": TARGET, "container": container,
                                                "object": "copied.img"}})
    assert copied["state"] == "succeeded" and copied["layout"] == "slo", copied
    everything = await names_in(target, container)

    async with http_session(settings) as http:
        sweeper = Sweeper(store, duties, SwiftRegions(http, dict(settings.regions)))
        dry = await sweeper.sweep(dry_run=True, older_than=timedelta(0))
        assert await names_in(target, container) == everything  # a dry run removes nothing
        report = await sweeper.sweep(dry_run=False, older_than=timedelta(0))

    mine = {left.job_id: left for left in report.leftovers if left.container == container}
    assert {job for job, left in mine.items() if left.removable} == {str(failed.id), orphan}
    assert {left.job_id for left in dry.leftovers if left.removable} >= {str(failed.id), orphan}
    assert "running" in mine[str(running.id)].reason
    assert "published copy" in mine[published].reason
    assert "published copy" in mine[copied["id"]].reason
    left = await names_in(target, container)
    assert left == everything - set(failed_segments) - set(orphan_segments)
    assert set(running_segments) <= left and set(used) <= left
    assert report.removed.objects >= 4
    assert any("could not remove it" in what for what in report.cleanup_failed)


async def test_recent_segments_of_an_unknown_job_stay_and_the_command_reports_json(
        settings: Settings, regions: dict[str, SwiftClient]) -> None:
    target = regions[TARGET]
    container = unique("sweep-cli")
    recent = str(uuid.uuid4())
    segments = await put_segments(target, container, "recent.img", recent)
    environ = worker_environ(settings, "sweeper")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xfer.cli", "sweep", "--json", "--older-than-hours", "1",
        env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    report = json.loads(out)
    (mine,) = [left for left in report["leftovers"] if left["job_id"] == recent]
    assert mine["removable"] is False and "newer than" in mine["reason"]
    assert mine["segments"] == 2 and mine["bytes"] == 2001
    assert set(segments) <= await names_in(target, container)
    assert report["dry_run"] is False and report["removed"]["objects"] >= 0
