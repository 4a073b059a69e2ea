"""Copies under injected faults: a fault proxy sits in front of each real Swift region.

Tempauth builds the storage URL from the Host header the client sent, so pointing a region's
auth_url at the proxy routes every later request of that region through it as well. The
test's own `regions` clients talk to Swift directly: they put sources in place and check.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import MiB, RegionConfig, md5, running_service, unique
from tests.fault_proxy import (
    FaultProxy,
    flip_byte_at,
    reset_after,
    stall_after,
    status,
    truncate_after,
)
from tests.sources import payload, put_dlo, put_plain, put_slo, read_back
from xfer.clients.swift import SwiftClient
from xfer.errors import RemoteError
from xfer.settings import Settings

READ_TIMEOUT = 1.0
STALL_SECONDS = 4.0  # well past READ_TIMEOUT; the proxy cancels the stall when it stops
TEST_SECONDS = 30.0
SIZE = 3 * MiB + 4321  # four 1 MiB ranges
SEGMENT_PUT = r"\.xfer-segments/"
MANIFEST_PUT = r"multipart-manifest=put"
NEVER_ENDING = 10_000


@dataclass
class Faulty:
    """Both regions behind a fault proxy, and settings that route xfer through them."""

    source: FaultProxy  # in front of RegionOne
    target: FaultProxy  # in front of RegionTwo
    settings: Settings

    async def copy(self, body: dict[str, Any]) -> dict[str, Any]:
        async with asyncio.timeout(TEST_SECONDS), running_service(self.settings) as service:
            return await service.copy(body, deadline=TEST_SECONDS - 5)


def routed_through(region: RegionConfig, proxy: FaultProxy) -> RegionConfig:
    return RegionConfig(region.name, proxy.url + urlsplit(region.auth_url).path, region.user,
                        region.key)


@contextlib.asynccontextmanager
async def proxy_for(region: RegionConfig) -> AsyncIterator[FaultProxy]:
    upstream = urlsplit(region.auth_url)
    assert upstream.hostname and upstream.port
    async with FaultProxy(upstream.hostname, upstream.port) as proxy:
        yield proxy


@pytest.fixture
async def faulty(settings: Settings) -> AsyncIterator[Faulty]:
    one, two = settings.regions["RegionOne"], settings.regions["RegionTwo"]
    async with proxy_for(one) as source, proxy_for(two) as target:
        regions = {**settings.regions, "RegionOne": routed_through(one, source),
                   "RegionTwo": routed_through(two, target)}
        yield Faulty(source, target, settings.with_overrides(
            regions=regions, read_timeout=READ_TIMEOUT, backoff_base=0.02, backoff_max=0.1))


def job_body(container: str, name: str, **extra: object) -> dict[str, Any]:
    return {"source": {"region": "RegionOne", "container": container, "object": name},
            "target": {"region": "RegionTwo"}, **extra}


def answered(proxy: FaultProxy, method: str, path: str, status_code: int) -> int:
    """How many distinct URLs matching `path` the proxy saw answer `method` with `status_code`."""
    return len({e.target for e in proxy.exchanges
                if e.method == method and re.search(path, e.target) and e.status == status_code})


def object_path(container: str, name: str) -> str:
    """The regex of an object's own URL path (not its manifest, which carries a query)."""
    return re.escape(f"/{container}/{name}") + "$"




async def assert_copied(regions: dict[str, SwiftClient], job: dict[str, Any], container: str,
                        name: str, data: bytes) -> None:
    assert job["state"] == "succeeded", job["error"]
    assert job["md5"] == md5(data) and job["bytes_done"] == len(data)
    assert await read_back(regions["RegionTwo"], container, name) == data


async def assert_nothing_left(regions: dict[str, SwiftClient], job: dict[str, Any],
                              container: str, name: str) -> None:
    target = regions["RegionTwo"]
    with pytest.raises(RemoteError) as missing:
        await target.head_object(container, name)
    assert missing.value.status == 404, "a target object was published"
    assert [o.name for o in await target.list_objects(container) if job["id"] in o.name] == []


async def plain_source(regions: dict[str, SwiftClient], prefix: str) -> tuple[str, str, bytes]:
    container, name, data = unique(prefix), "image.raw", payload(SIZE)
    await put_plain(regions["RegionOne"], container, name, data)
    return container, name, data


# --- transient faults: the copy must succeed ------------------------------------------------

async def test_reset_mid_body_on_a_source_get_is_retried(faulty: Faulty,
                                                         regions: dict[str, SwiftClient]) -> None:
    container, name, data = await plain_source(regions, "reset")
    reset = faulty.source.add(reset_after("GET", object_path(container, name), 300_000,
                                          ranged=True))
    job = await faulty.copy(job_body(container, name))
    await assert_copied(regions, job, container, name, data)
    assert reset.fired == 1 and job["retries"] >= 1


async def test_503_burst_on_source_gets_is_retried(faulty: Faulty,
                                                   regions: dict[str, SwiftClient]) -> None:
    container, name, data = await plain_source(regions, "burst-get")
    burst = faulty.source.add(status("GET", object_path(container, name), 503, times=3,
                                     ranged=True))
    job = await faulty.copy(job_body(container, name))
    await assert_copied(regions, job, container, name, data)
    assert burst.fired == 3 and job["retries"] >= 3


async def test_503_burst_on_target_segment_puts_is_retried(faulty: Faulty,
                                                           regions: dict[str, SwiftClient]) -> None:
    container, name, data = await plain_source(regions, "burst-put")
    burst = faulty.target.add(status("PUT", SEGMENT_PUT, 503, times=3))
    job = await faulty.copy(job_body(container, name))
    await assert_copied(regions, job, container, name, data)
    assert job["layout"] == "slo"
    assert burst.fired == 3 and job["retries"] >= 3


async def test_a_segment_whose_put_failed_once_is_recorded_with_two_attempts_and_written(
        faulty: Faulty, regions: dict[str, SwiftClient]) -> None:
    """Issue 20: the segment map's record. One 503 to segment 1's PUT: the worker records
    that segment's two attempts, the failed one's code, and then the segment written; the
    others have one attempt each and none is left in flight."""
    container, name, data = await plain_source(regions, "retried-segment")
    once = faulty.target.add(status("PUT", SEGMENT_PUT + r".*/00000001$", 503))
    job = await faulty.copy(job_body(container, name, segment_size=MiB))
    await assert_copied(regions, job, container, name, data)
    assert once.fired == 1 and job["segments_total"] == 4
    assert [s["index"] for s in job["segments"]] == [0, 1, 2, 3]  # all written (verified)
    by_index = {record["index"]: record for record in job["segment_attempts"]}
    assert by_index[1] == {"index": 1, "attempts": 2, "failures": 1, "in_flight": False,
                           "last_error": {"code": "target_unavailable",
                                          "message": by_index[1]["last_error"]["message"]}}
    assert "503" in by_index[1]["last_error"]["message"]
    for index in (0, 2, 3):
        assert by_index[index] == {"index": index, "attempts": 1, "failures": 0,
                                   "in_flight": False, "last_error": None}


async def test_stalled_source_read_times_out_and_is_retried(faulty: Faulty,
                                                            regions: dict[str, SwiftClient]) -> None:
    container, name, data = await plain_source(regions, "stall")
    stall = faulty.source.add(stall_after("GET", object_path(container, name), 200_000,
                                          STALL_SECONDS, ranged=True))
    job = await faulty.copy(job_body(container, name))
    await assert_copied(regions, job, container, name, data)
    assert stall.fired == 1 and job["retries"] >= 1


async def test_truncated_source_body_is_retried(faulty: Faulty,
                                                regions: dict[str, SwiftClient]) -> None:
    container, name, data = await plain_source(regions, "truncate")
    truncate = faulty.source.add(truncate_after("GET", object_path(container, name), 500_000,
                                                ranged=True))
    job = await faulty.copy(job_body(container, name))
    await assert_copied(regions, job, container, name, data)
    assert truncate.fired == 1 and job["retries"] >= 1


# --- corrupted bytes: verified data or the right error ----------------------------------------

async def test_a_byte_flipped_once_in_a_plain_source_is_read_again(
        faulty: Faulty, regions: dict[str, SwiftClient]) -> None:
    container, name, data = await plain_source(regions, "flip-plain")
    flip = faulty.source.add(flip_byte_at("GET", object_path(container, name), 12_345,
                                          ranged=True))
    job = await faulty.copy(job_body(container, name))  # checked against the source ETag
    assert flip.fired == 1
    await assert_copied(regions, job, container, name, data)
    assert job["retries"] >= 1 and job["verification"] == "end_to_end"


async def test_bytes_that_never_match_the_source_md5_fail_after_two_readings(
        faulty: Faulty, regions: dict[str, SwiftClient]) -> None:
    container, name, _ = await plain_source(regions, "flip-always")
    flip = faulty.source.add(flip_byte_at("GET", object_path(container, name), 12_345,
                                          ranged=True, times=NEVER_ENDING))
    job = await faulty.copy(job_body(container, name))
    assert job["state"] == "failed" and job["error"]["code"] == "checksum_mismatch", job["error"]
    assert "2 reading(s)" in job["error"]["message"]
    assert flip.fired >= 2  # both readings got damaged bytes
    await assert_nothing_left(regions, job, container, name)


async def test_flipped_byte_in_an_slo_source_segment_is_fetched_again(
        faulty: Faulty, regions: dict[str, SwiftClient]) -> None:
    container, name, data = unique("flip-slo"), "image.qcow2", payload(SIZE)
    source_etag = await put_slo(regions["RegionOne"], container, name, data, 1 * MiB)
    flip = faulty.source.add(flip_byte_at("GET", object_path(container, name), 12_345,
                                          ranged=True))
    # No segment_size: the source's boundaries are kept and each segment PUT carries the
    # source segment's ETag, so Swift refuses the damaged bytes (422).
    job = await faulty.copy(job_body(container, name))
    assert flip.fired == 1
    assert answered(faulty.target, "PUT", SEGMENT_PUT, 422) == 1  # Swift refused the bytes
    await assert_copied(regions, job, container, name, data)
    assert job["etag"] == source_etag and job["retries"] >= 1


# --- persistent faults: a clear error, nothing left behind ------------------------------------

async def test_target_segment_puts_failing_for_good_fail_the_job_cleanly(
        faulty: Faulty, regions: dict[str, SwiftClient]) -> None:
    container, name, _ = await plain_source(regions, "down-put")
    refused = faulty.target.add(status("PUT", SEGMENT_PUT, 503, times=NEVER_ENDING))
    job = await faulty.copy(job_body(container, name))
    assert job["state"] == "failed"
    assert job["error"]["code"].startswith("target_"), job["error"]
    assert "503" in job["error"]["message"] and name in job["error"]["message"]
    assert refused.fired >= faulty.settings.request_attempts
    await assert_nothing_left(regions, job, container, name)


async def test_manifest_put_failing_for_good_deletes_the_written_segments(
        faulty: Faulty, regions: dict[str, SwiftClient]) -> None:
    container, name, _ = await plain_source(regions, "down-manifest")
    refused = faulty.target.add(status("PUT", MANIFEST_PUT, 503, times=NEVER_ENDING))
    job = await faulty.copy(job_body(container, name))
    assert job["state"] == "failed"
    assert job["error"]["code"].startswith("target_"), job["error"]
    assert "503" in job["error"]["message"]
    assert refused.fired >= faulty.settings.request_attempts
    assert answered(faulty.target, "PUT", SEGMENT_PUT, 201) == 4  # written, then...
    assert answered(faulty.target, "DELETE", SEGMENT_PUT, 204) == 4  # ...deleted
    await assert_nothing_left(regions, job, container, name)


# --- a source replaced during the copy: source_changed, never a mix of two versions ----------

async def put_source(client: SwiftClient, kind: str, container: str, name: str,
                     data: bytes) -> None:
    if kind == "plain":
        await put_plain(client, container, name, data)
    elif kind == "dlo":
        await put_dlo(client, container, name, data, 1 * MiB)
    else:
        await put_slo(client, container, name, data, 1 * MiB)


async def replace_source(client: SwiftClient, kind: str, container: str, name: str,
                         size: int) -> None:
    """Another version of the same size: a new object, a new manifest, or (a DLO) one of its
    segments overwritten in place."""
    if kind == "dlo":
        chunk = payload(1 * MiB)
        await client.put_object(container, f"{name}-00002", chunk, md5(chunk))
    else:
        await put_source(client, kind, container, name, payload(size))


@pytest.mark.parametrize("kind, extra", [
    ("plain", {}),
    ("slo", {}),  # the source's boundaries kept
    ("slo", {"segment_size": 512 * 1024}),  # re-cut by xfer, no checksum to compare with
    ("dlo", {}),
], ids=["plain", "slo-kept", "slo-recut", "dlo"])
async def test_a_source_replaced_mid_copy_fails_as_source_changed(
        faulty: Faulty, regions: dict[str, SwiftClient], kind: str, extra: dict) -> None:
    container, name = unique(f"changed-{kind}"), "image.raw"
    await put_source(regions["RegionOne"], kind, container, name, payload(SIZE))
    # The second ranged GET stalls past the read timeout; while it hangs, the source is
    # replaced, so the retry asks (If-Match) for a version that is gone. A DLO is read from
    # its segment objects (engine/sources.py), so the stall is on one of those.
    read_path = (re.escape(f"/{container}/{name}-") + r"\d+$" if kind == "dlo"
                 else object_path(container, name))
    stall = faulty.source.add(stall_after("GET", read_path, 1000, STALL_SECONDS, ranged=True))
    async with asyncio.timeout(TEST_SECONDS), running_service(faulty.settings) as service:
        job_id = (await service.submit(job_body(container, name, **extra)))["id"]
        while not stall.fired:  # noqa: ASYNC110  (the proxy's counter, no event to await)
            await asyncio.sleep(0.01)
        await replace_source(regions["RegionOne"], kind, container, name, SIZE)
        job = await service.wait(job_id, deadline=TEST_SECONDS - 5)
    assert job["state"] == "failed", "a replaced source was copied as a mix"
    assert job["error"]["code"] == "source_changed", job["error"]
    # An SLO is replaced segments first: a read racing the replacement may meet a replaced
    # segment of the old manifest (Swift's 409, SegmentMismatch) before the If-Match of the
    # stalled read fails; either way the message says the source changed (seen under load).
    message = job["error"]["message"]
    assert ("changed while it was being copied" in message
            or (kind == "slo" and "no longer matches its manifest" in message)), message
    assert job["retries"] <= 2  # the stall's timeout, not a string of pointless re-reads
    await assert_nothing_left(regions, job, container, name)


# --- one source, several targets: read once, each target on its own ----------------------------

async def test_fan_out_reads_once_and_a_failing_target_does_not_fail_the_other(
        faulty: Faulty, regions: dict[str, SwiftClient], swift_http) -> None:
    from xfer.clients.swift import SwiftRegions
    from xfer.engine.object_copy import Copier
    from xfer.engine.types import CopySpec, ObjectRef, TargetSpec

    container, name = unique("fan-out"), "image.raw"
    broken_container = container + "-broken"
    data = payload(SIZE)
    await put_slo(regions["RegionOne"], container, name, data, 1 * MiB)
    # the same cluster twice: directly, and behind the proxy that refuses one container's PUTs
    settings = faulty.settings.with_overrides(regions={
        "RegionOne": faulty.settings.regions["RegionOne"],
        "RegionTwo": faulty.settings.regions["RegionTwo"],
        "RegionTwoDirect": RegionConfig("RegionTwoDirect",
                                        regions["RegionTwo"].region.auth_url,
                                        regions["RegionTwo"].region.user,
                                        regions["RegionTwo"].region.key)})
    refused = faulty.target.add(status("PUT", re.escape(broken_container) + r"/.*xfer-segments",
                                       503, times=NEVER_ENDING))
    spec = CopySpec(job_id=unique("job"), source=ObjectRef("RegionOne", container, name),
                    target=ObjectRef("RegionTwoDirect", container, name),
                    segment_container=container, expected_md5=md5(data),
                    more_targets=(TargetSpec(ObjectRef("RegionTwo", broken_container, name),
                                             broken_container),))

    class Quiet:
        handing_over = False

        async def find_verified_copy(self, *_: object) -> None:
            return None

        async def planned(self, plan: object) -> None: ...
        async def segment_started(self, segment: object, attempt: int) -> None: ...
        async def segment_failed(self, segment: object, attempt: int, error: object) -> None: ...
        async def segment_written(self, segment: object, etag: str) -> None: ...
        async def verifying(self) -> None: ...

    copier = Copier(settings, SwiftRegions(swift_http, dict(settings.regions)))
    async with asyncio.timeout(TEST_SECONDS):
        outcome = await copier.copy_to_all(spec, Quiet())  # type: ignore[arg-type]
    good, bad = outcome.targets
    assert outcome.md5 == md5(data)
    # read once for both, and again only for the failing target's own retries
    assert outcome.bytes_read - outcome.bytes_read_for_catch_up == len(data)
    assert outcome.bytes_read_for_catch_up > 0
    assert not isinstance(good, Exception) and good.ref.container == container
    assert await read_back(regions["RegionTwo"], container, name) == data
    assert isinstance(bad, Exception) and bad.code == "target_unavailable", bad
    assert refused.fired >= faulty.settings.request_attempts
    leftovers = [o.name for o in await regions["RegionTwo"].list_objects(broken_container)]
    assert leftovers == []  # the failed target was cleaned up, the other kept


def source_reads(proxy: FaultProxy, container: str, name: str) -> int:
    """The ranged GETs of one source object the proxy in front of its region answered."""
    return sum(1 for e in proxy.exchanges if e.method == "GET" and e.status in (200, 206)
               and re.search(object_path(container, name), e.target))


async def indexed_regions(faulty: Faulty, checksum: str) -> dict[str, tuple[str, str]]:
    async with asyncio.timeout(TEST_SECONDS), running_service(faulty.settings) as service:
        async with service.http.get(f"{service.url}/v1/objects?checksum={checksum}") as found:
            assert found.status == 200
            return {o["region"]: (o["container"], o["object"])
                    for o in (await found.json())["objects"]}


async def test_a_fan_out_job_reads_the_source_once_and_verifies_and_indexes_each_target(
        faulty: Faulty, regions: dict[str, SwiftClient]) -> None:
    from xfer.engine.chunks import chunk_ranges

    container, name, data = await plain_source(regions, "fan-out-job")
    copies = container + "-copies"
    job = await faulty.copy({
        "source": {"region": "RegionOne", "container": container, "object": name},
        "targets": [{"region": "RegionTwo"}, {"region": "RegionOne", "container": copies}],
        "checksum": md5(data)})
    assert job["state"] == "succeeded", job["error"]
    assert [(t["region"], t["container"], t["state"], t["verification"], t["md5"])
            for t in job["targets"]] == [
        ("RegionTwo", container, "succeeded", "end_to_end", md5(data)),
        ("RegionOne", copies, "succeeded", "end_to_end", md5(data))]
    assert all(t["error"] is None and t["etag"] for t in job["targets"])
    assert job["etag"] == job["targets"][0]["etag"]
    assert await read_back(regions["RegionTwo"], container, name) == data
    assert await read_back(regions["RegionOne"], copies, name) == data
    # one reading for both targets: each chunk of each segment fetched once
    chunk_size = faulty.settings.chunk_size
    once = sum(len(chunk_ranges(s["offset"], s["length"], chunk_size)) for s in job["segments"])
    assert source_reads(faulty.source, container, name) == once
    assert await indexed_regions(faulty, md5(data)) == {
        "RegionTwo": (container, name), "RegionOne": (copies, name)}


async def test_a_fan_out_job_with_a_failing_target_fails_naming_it_and_keeps_the_other(
        faulty: Faulty, regions: dict[str, SwiftClient]) -> None:
    container, name, data = await plain_source(regions, "fan-out-fails")
    good, broken = container + "-good", container + "-broken"
    refused = faulty.target.add(status("PUT", re.escape(broken) + r"/.*xfer-segments", 503,
                                       times=NEVER_ENDING))
    job = await faulty.copy({
        "source": {"region": "RegionOne", "container": container, "object": name},
        "targets": [{"region": "RegionOne", "container": good},
                    {"region": "RegionTwo", "container": broken}],
        "checksum": md5(data)})
    assert refused.fired >= faulty.settings.request_attempts
    assert job["state"] == "failed"
    assert job["error"]["code"] == "target_unavailable", job["error"]
    message = job["error"]["message"]
    assert "1 of 2 targets failed" in message and f"targets[1] ({broken}/{name} in RegionTwo)" \
        in message and "targets[0]" not in message, message
    kept, failed = job["targets"]
    assert (kept["state"], kept["verification"], kept["md5"]) == (
        "succeeded", "end_to_end", md5(data))
    assert failed["state"] == "failed" and failed["error"]["code"] == "target_unavailable"
    assert failed["etag"] is None and failed["verification"] is None
    # the good target stays published and indexed; the failing one is cleaned up
    assert await read_back(regions["RegionOne"], good, name) == data
    assert await indexed_regions(faulty, md5(data)) == {"RegionOne": (good, name)}
    with pytest.raises(RemoteError) as missing:
        await regions["RegionTwo"].head_object(broken, name)
    assert missing.value.status == 404
    assert [o.name for o in await regions["RegionTwo"].list_objects(broken)] == []
