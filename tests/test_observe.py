"""Watching jobs and the service: job detail, listing with filters and pages, server-sent
events, /healthz, /readyz and /metrics, against real Postgres and the real Swift regions."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import socket
import time
from collections.abc import AsyncIterator
from datetime import datetime
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MiB, RegionConfig, Service, as_postgres, md5, unique
from tests.sources import payload, put_plain
from xfer.app import build_app
from xfer.clients.openstack import OpenStackClients
from xfer.clients.swift import SwiftClient, SwiftRegions
from xfer.clients.transport import http_session
from xfer.jobs.db import create_pool
from xfer.jobs.store import JobStore
from xfer.settings import Settings
from xfer.web.server import ApiRunner


def job_body(container: str, name: str, source: str = "RegionOne", target: str = "RegionTwo"
             ) -> dict:
    return {"source": {"region": source, "container": container, "object": name},
            "target": {"region": target}}


@contextlib.asynccontextmanager
async def api_only(settings: Settings) -> AsyncIterator[tuple[Service, web.AppRunner]]:
    """The REST API on the test's database with no worker: jobs stay as the test puts them."""
    pool = await create_pool(settings.database_url)
    swift_http = http_session(settings)
    regions = SwiftRegions(swift_http, dict(settings.regions))
    runner = ApiRunner(build_app(settings, JobStore(pool), regions,
                                 openstack=OpenStackClients.from_settings(settings, swift_http)),
                       access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        async with aiohttp.ClientSession() as http:
            yield Service(f"http://127.0.0.1:{runner.addresses[0][1]}", http), runner
    finally:
        await runner.cleanup()
        await swift_http.close()
        await pool.close()


async def get_json(service: Service, path: str, expect: int = 200, **params: str) -> dict:
    async with service.http.get(f"{service.url}{path}", params=params) as response:
        assert response.status == expect, await response.text()
        return await response.json()


async def read_events(response: aiohttp.ClientResponse) -> list[tuple[str, dict]]:
    """Parse a text/event-stream body to its end: [(event name, data)]."""
    events, name, data = [], None, None
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            data = json.loads(line[len("data: "):])
        elif line == "" and name is not None:
            events.append((name, data))
            name = data = None
    return events


async def metric_samples(service: Service) -> dict[tuple[str, tuple], float]:
    async with service.http.get(f"{service.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


# --- GET /v1/jobs/{id} -------------------------------------------------------------------

async def test_job_detail_has_segments_transitions_rate_and_eta(
        service: Service, regions: dict[str, SwiftClient]):
    container, name, data = unique("detail"), "image.raw", payload(3 * MiB + 5)
    await put_plain(regions["RegionOne"], container, name, data)
    job = await service.copy(job_body(container, name))
    assert job["state"] == "succeeded", job["error"]
    assert job["segments_written"] == job["segments_total"] == 4
    chunks = [data[offset:offset + MiB] for offset in range(0, len(data), MiB)]
    assert [(s["index"], s["offset"], s["length"], s["etag"]) for s in job["segments"]] == [
        (index, index * MiB, len(chunk), md5(chunk)) for index, chunk in enumerate(chunks)]
    # The interval as the server computes it: datetime subtraction is exact to the microsecond,
    # while subtracting two epoch floats loses about 0.2 us; the API rounds the rate to 0.1 B/s.
    elapsed = (datetime.fromisoformat(job["finished_at"])
               - datetime.fromisoformat(job["started_at"])).total_seconds()
    assert job["rate"] == pytest.approx(len(data) / elapsed, abs=0.05) and job["eta"] == 0
    assert job["attempts"] == 1
    moves = [(t["from"], t["to"]) for t in job["transitions"]]
    assert moves[0] == (None, "queued") and moves[-1][1] == "succeeded"
    assert all(a[1] == b[0] for a, b in itertools.pairwise(moves)), moves
    assert ("queued", "running") in moves
    times = [t["at"] for t in job["transitions"]]
    assert [_time(t) for t in times] == sorted(_time(t) for t in times)


def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


async def test_a_queued_job_has_no_rate_nor_eta(settings: Settings):
    async with api_only(settings) as (service, _):
        job = await service.submit(job_body("c", "o"))
        detail = await service.job(job["id"])
    assert (detail["rate"], detail["eta"], detail["segments_written"]) == (None, None, 0)
    assert detail["segments"] == [] and [(t["from"], t["to"]) for t in detail["transitions"]] == [
        (None, "queued")]


# --- GET /v1/jobs ------------------------------------------------------------------------

def with_third_region(settings: Settings) -> Settings:
    """RegionThree: another name for RegionOne's cluster, so region filters can tell jobs
    apart (each job names two regions)."""
    one = settings.regions["RegionOne"]
    three = RegionConfig("RegionThree", one.auth_url, one.user, one.key)
    return settings.with_overrides(regions={**settings.regions, "RegionThree": three})


async def test_list_filters_by_state_and_region_and_pages_newest_first(settings: Settings):
    async with api_only(with_third_region(settings)) as (service, _):
        one_two = [(await service.submit(job_body("c", f"a{i}")))["id"] for i in range(3)]
        two_three = [(await service.submit(job_body("c", f"b{i}", "RegionTwo", "RegionThree")))
                     ["id"] for i in range(2)]
        async with service.http.post(f"{service.url}/v1/jobs/{one_two[0]}/cancel") as response:
            assert response.status == 202
        newest_first = list(reversed(one_two + two_three))

        pages, params = [], {"limit": "2"}
        while True:
            page = await get_json(service, "/v1/jobs", **params)
            pages.append([job["id"] for job in page["jobs"]])
            if page["next"] is None:
                break
            params = {"limit": "2", "cursor": page["next"]}
        assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:]]

        async def ids(**params: str) -> list[str]:
            return [job["id"] for job in (await get_json(service, "/v1/jobs", **params))["jobs"]]

        assert await ids(region="RegionOne") == list(reversed(one_two))
        assert await ids(region="RegionThree") == list(reversed(two_three))
        assert await ids(region="RegionTwo") == newest_first
        assert await ids(state="cancelled") == [one_two[0]]
        assert await ids(state="queued", region="RegionOne") == list(reversed(one_two[1:]))
        assert await ids(state="running") == []
        # a filtered listing pages by the same cursor
        first = await get_json(service, "/v1/jobs", region="RegionTwo", limit="4")
        rest = await get_json(service, "/v1/jobs", region="RegionTwo", cursor=first["next"])
        assert [j["id"] for j in first["jobs"] + rest["jobs"]] == newest_first
        assert rest["next"] is None


async def test_list_rejects_bad_filters_naming_the_field(settings: Settings):
    cases = [({"state": "bogus"}, "state"), ({"region": "Mars"}, "region"),
             ({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"), ({"limit": "ten"}, "limit"),
             ({"cursor": "not-a-cursor"}, "cursor"), ({"status": "queued"}, "status")]
    async with api_only(settings) as (service, _):
        for params, field in cases:
            body = await get_json(service, "/v1/jobs", 400, **params)
            assert set(body) == {"error"}
            assert body["error"]["field"] == field and body["error"]["code"] == "invalid_request"


# --- GET /v1/jobs/{id}/events ------------------------------------------------------------

async def test_events_follow_a_copy_to_its_end(service: Service, regions: dict[str, SwiftClient]):
    container, name, data = unique("events"), "image.raw", payload(4 * MiB)
    await put_plain(regions["RegionOne"], container, name, data)
    job = await service.submit(job_body(container, name))
    async with service.http.get(f"{service.url}/v1/jobs/{job['id']}/events") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        events = await read_events(response)
    assert events[-1] == ("end", {"reason": "finished"})
    progress = [data for name, data in events[:-1]]
    assert {name for name, _ in events[:-1]} == {"progress"}
    assert progress[-1]["state"] == "succeeded" and progress[-1]["bytes_done"] == len(data)
    assert progress[-1]["sha512"] == hashlib.sha512(data).hexdigest()
    changes = [(p["state"], p["bytes_done"]) for p in progress]
    assert all(a != b for a, b in itertools.pairwise(changes)), changes
    assert [done for _, done in changes] == sorted(done for _, done in changes)


async def test_events_end_on_cancel_max_duration_disconnect_and_shutdown(settings: Settings):
    async with api_only(settings.with_overrides(events_max_seconds=1.0)) as (service, runner):
        job = (await service.submit(job_body("c", "o")))["id"]
        url = f"{service.url}/v1/jobs/{job}/events"
        started = time.monotonic()
        async with service.http.get(url) as response:
            events = await read_events(response)
        assert [(name, data["state"] if name == "progress" else data) for name, data in events] == [
            ("progress", "queued"), ("end", {"reason": "max_duration"})]
        assert 1.0 <= time.monotonic() - started < 5

        async with service.http.get(f"{service.url}/v1/jobs/{'0' * 32}/events") as response:
            assert response.status == 404 and (await response.json())["error"]["code"] == "not_found"

    async with api_only(settings) as (service, runner):
        job = (await service.submit(job_body("c", "o")))["id"]
        url = f"{service.url}/v1/jobs/{job}/events"
        async with service.http.get(url) as response:
            await response.content.readuntil(b"\n\n")  # the first progress event
            async with service.http.post(f"{service.url}/v1/jobs/{job}/cancel") as cancel:
                assert cancel.status == 202
            events = await read_events(response)
        assert [(name, data.get("state", data)) for name, data in events] == [
            ("progress", "cancelled"), ("end", {"reason": "finished"})]

        job = (await service.submit(job_body("c", "o2")))["id"]
        url = f"{service.url}/v1/jobs/{job}/events"
        async with aiohttp.ClientSession() as client:  # a client that goes away
            async with client.get(url) as response:
                await response.content.readuntil(b"\n\n")
                assert (await metric_samples(service))[("xfer_event_streams", ())] == 1
        assert await _streams_open(service, until=0) == 0  # its stream ended at the next poll

        async with service.http.get(url) as response:
            await response.content.readuntil(b"\n\n")
            stopping = time.monotonic()
            cleanup = asyncio.create_task(runner.cleanup())
            events = await read_events(response)
            await cleanup
        assert events == [("end", {"reason": "shutdown"})]
        assert time.monotonic() - stopping < 5


async def _streams_open(service: Service, until: float, seconds: float = 5.0) -> float:
    """The open event streams, once they are `until` or after `seconds`."""
    deadline = time.monotonic() + seconds
    while (count := (await metric_samples(service))[("xfer_event_streams", ())]) != until:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    return count


# --- /healthz, /readyz -------------------------------------------------------------------

async def test_healthz_and_readyz(service: Service):
    assert await get_json(service, "/healthz") == {"status": "ok"}
    ready = await get_json(service, "/readyz")
    assert ready["status"] == "ok" and ready["checks"]["database"]["ok"]
    assert {name: check["ok"] for name, check in ready["checks"]["regions"].items()} == {
        "RegionOne": True, "RegionTwo": True}


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A loopback port that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_readyz_names_unreachable_and_silent_regions(settings: Settings):
    async with silent_server() as silent:
        regions = {**settings.regions,
                   "Refusing": RegionConfig("Refusing", f"http://127.0.0.1:{closed_port()}/auth/v1.0",
                                            "u", "k"),
                   "Silent": RegionConfig("Silent", f"http://127.0.0.1:{silent}/auth/v1.0", "u", "k")}
        async with api_only(settings.with_overrides(regions=regions, ready_timeout=0.5)) as (
                service, _):
            started = time.monotonic()
            body = await get_json(service, "/readyz", 503)
            assert time.monotonic() - started < 2.5  # the checks run side by side
    assert body["error"]["code"] == "not_ready"
    assert "Refusing" in body["error"]["message"] and "Silent" in body["error"]["message"]
    checks = body["checks"]["regions"]
    assert {name: check["ok"] for name, check in checks.items()} == {
        "RegionOne": True, "RegionTwo": True, "Refusing": False, "Silent": False}
    assert checks["Silent"]["error"] == "no answer within 0.5s"
    assert "ClientConnectorError" in checks["Refusing"]["error"]
    assert body["checks"]["database"]["ok"]


async def test_readyz_and_metrics_without_the_database(settings: Settings, cloud):
    async with api_only(settings) as (service, _):
        await service.submit(job_body("c", "o"))
        name = urlsplit(settings.database_url).path.lstrip("/")
        await as_postgres(cloud.database_url, f"DROP DATABASE {name} WITH (FORCE)")
        body = await get_json(service, "/readyz", 503)
        assert not body["checks"]["database"]["ok"] and "database" in body["error"]["message"]
        assert all(check["ok"] for check in body["checks"]["regions"].values())
        samples = await metric_samples(service)  # still served, without the jobs gauge
        assert not [key for key in samples if key[0] == "xfer_jobs"]
        assert ("xfer_copied_bytes_total", ()) in samples


# --- /metrics ----------------------------------------------------------------------------

async def test_metrics_count_jobs_by_state_per_app(settings: Settings):
    async with api_only(settings) as (first, _), api_only(settings) as (second, _):
        for index in range(3):
            await first.submit(job_body("c", f"o{index}"))
        for service in (first, second):  # two apps in one process: one registry each
            samples = await metric_samples(service)
            assert samples[("xfer_jobs", (("state", "queued"),))] == 3
            assert samples[("xfer_jobs", (("state", "failed"),))] == 0
            assert samples[("xfer_copied_bytes_total", ())] == 0


async def test_worker_feeds_the_copy_metrics(service: Service, regions: dict[str, SwiftClient]):
    container, name, data = unique("metrics"), "image.raw", payload(2 * MiB + 1)
    await put_plain(regions["RegionOne"], container, name, data)
    copied = await service.copy(job_body(container, name))
    assert copied["state"] == "succeeded", copied["error"]
    failed = await service.copy(job_body(container, "missing"))
    assert failed["state"] == "failed"
    samples = await metric_samples(service)
    assert samples[("xfer_copied_bytes_total", ())] == len(data)
    assert samples[("xfer_copy_duration_seconds_count", ())] == 1
    assert samples[("xfer_retries_total", ())] == copied["retries"]
    assert samples[("xfer_job_errors_total", (("code", failed["error"]["code"]),))] == 1
    assert samples[("xfer_jobs", (("state", "succeeded"),))] == 1
    assert samples[("xfer_jobs", (("state", "failed"),))] == 1
