"""Service-level behaviour: NOTIFY wakes idle workers, bursts queue, bad settings stop start-up."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import MiB, running_service, unique
from tests.sources import payload, put_plain
from xfer.clients.swift import SwiftClient
from xfer.settings import Settings

pytestmark = pytest.mark.integration


def body(container: str, name: str) -> dict:
    return {"source": {"region": "RegionOne", "container": container, "object": name},
            "target": {"region": "RegionTwo"}}


async def idle_while_listening(caplog: pytest.LogCaptureFixture) -> None:
    """Until the worker has gone idle after its LISTEN connection was up: from then on only
    a notification (or the poll interval) makes it claim again."""
    def waiting() -> bool:
        messages = [record.getMessage() for record in caplog.records
                    if record.name == "xfer.jobs.worker.claims"]
        listening = [i for i, m in enumerate(messages) if m == "listening for new jobs"]
        return bool(listening) and any(m.startswith("no job to claim")
                                       for m in messages[listening[0] + 1:])
    async with asyncio.timeout(20):
        while not waiting():  # noqa: ASYNC110 (log records have no event to wait on)
            await asyncio.sleep(0.01)


async def test_new_job_wakes_an_idle_worker_without_waiting_for_the_poll(
        settings: Settings, regions: dict[str, SwiftClient], caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="xfer.jobs.worker.claims")
    container = unique("notify")
    await put_plain(regions["RegionOne"], container, "image", payload(1000))
    # polling alone would take 30 s: a prompt start can only come from LISTEN/NOTIFY
    async with running_service(settings.with_overrides(poll_interval=30.0)) as service:
        await idle_while_listening(caplog)
        submitted = time.monotonic()
        job = await service.copy(body(container, "image"), deadline=20)
        assert job["state"] == "succeeded", job["error"]
        assert time.monotonic() - submitted < 5


async def test_a_burst_of_jobs_queues_within_the_concurrency_limit(
        settings: Settings, regions: dict[str, SwiftClient]):
    container = unique("burst")
    names = [f"image-{i}" for i in range(6)]
    for name in names:
        await put_plain(regions["RegionOne"], container, name, payload(3 * MiB))
    limited = settings.with_overrides(max_concurrent_copies=2, segments_in_flight=1)
    async with running_service(limited) as service:
        jobs = {(await service.submit(body(container, name)))["id"] for name in names}
        most_running = 0
        async with asyncio.timeout(60):
            while True:
                # one query, so one consistent snapshot of every job's state
                async with service.http.get(f"{service.url}/v1/jobs") as response:
                    listed = (await response.json())["jobs"]
                states = [job["state"] for job in listed if job["id"] in jobs]
                busy = sum(state in ("running", "verifying") for state in states)
                most_running = max(most_running, busy)
                if all(state == "succeeded" for state in states):
                    break
                assert not any(state == "failed" for state in states)
                await asyncio.sleep(0.02)
    assert 1 <= most_running <= 2


def test_unknown_setting_stops_start_up_naming_it():
    environ = {**os.environ, "XFER_SEGMENT_SIZ": "1"}
    result = subprocess.run([sys.executable, "-m", "xfer.cli", "serve"], env=environ,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "XFER_SEGMENT_SIZ" in result.stderr


def test_invalid_setting_value_stops_start_up_naming_it():
    environ = {**os.environ, "XFER_SEGMENTS_IN_FLIGHT": "many"}
    result = subprocess.run([sys.executable, "-m", "xfer.cli", "worker"], env=environ,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "XFER_SEGMENTS_IN_FLIGHT" in result.stderr
