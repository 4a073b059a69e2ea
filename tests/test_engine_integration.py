"""The copy engine on its own (no API, no database) against the real Swift clusters."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from tests.conftest import MiB, md5, unique
from tests.sources import payload, put_dlo, put_plain, put_slo, read_back
from xfer.clients.swift import SwiftClient, SwiftRegions
from xfer.engine.object_copy import Copier
from xfer.engine.plan import Plan, Segment
from xfer.engine.types import CopySpec, ObjectRef
from xfer.errors import RemoteError
from xfer.proto import swift
from xfer.settings import Settings


class Recorder:
    handing_over = False

    def __init__(self) -> None:
        self.plan: Plan | None = None
        self.written: list[Segment] = []
        self.first_written = asyncio.Event()

    async def find_verified_copy(self, md5: str, size: int, region: str, project: str) -> None:
        return None

    async def planned(self, plan: Plan) -> None:
        self.plan = plan

    async def segment_started(self, segment: Segment, attempt: int) -> None:
        pass

    async def segment_failed(self, segment: Segment, attempt: int, error: object) -> None:
        pass

    async def segment_written(self, segment: Segment, etag: str) -> None:
        self.written.append(segment)
        self.first_written.set()

    async def verifying(self) -> None:
        pass


def spec(container: str, name: str, **extra: object) -> CopySpec:
    return CopySpec(job_id=unique("job"), source=ObjectRef("RegionOne", container, name),
                    target=ObjectRef("RegionTwo", container, name), segment_container=container,
                    **extra)  # type: ignore[arg-type]


@pytest.fixture
def copier(base_settings: Settings, swift_http) -> Copier:
    return Copier(base_settings, SwiftRegions(swift_http, dict(base_settings.regions)))


async def test_dlo_source_copies_with_its_boundaries(copier: Copier,
                                                     regions: dict[str, SwiftClient]):
    container, name, data = unique("dlo"), "glance-image", payload(3 * MiB + 5)
    source_etag = await put_dlo(regions["RegionOne"], container, name, data, MiB)
    head = await regions["RegionOne"].head_object(container, name)
    assert head.kind is swift.ObjectKind.DLO and head.size == len(data)
    outcome = await copier.copy(spec(container, name, expected_md5=md5(data)), Recorder())
    assert outcome.md5 == md5(data) and outcome.layout == "slo" and outcome.segments == 4
    assert outcome.etag == source_etag  # same boundaries, same large-object ETag
    target = await regions["RegionTwo"].head_object(container, name)
    assert target.kind is swift.ObjectKind.SLO and target.size == len(data)


async def test_cancel_during_copy_removes_what_was_written(base_settings: Settings, swift_http,
                                                           regions: dict[str, SwiftClient]):
    container, name, data = unique("cancel"), "image.raw", payload(6 * MiB)
    await put_plain(regions["RegionOne"], container, name, data)
    # one segment at a time, so the cancel lands with most of the copy still to do
    slow = Copier(base_settings.with_overrides(segments_in_flight=1),
                  SwiftRegions(swift_http, dict(base_settings.regions)))
    recorder = Recorder()
    copy_spec = spec(container, name)
    task = asyncio.create_task(slow.copy(copy_spec, recorder))
    async with asyncio.timeout(30):
        await recorder.first_written.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert recorder.written, "the cancel came before any segment was written"
    target = regions["RegionTwo"]
    remaining = [o.name for o in await target.list_objects(container) if copy_spec.job_id in o.name]
    assert remaining == []
    with pytest.raises(RemoteError) as missing:
        await target.head_object(container, name)
    assert missing.value.status == 404


async def test_copies_share_the_process_byte_budget(base_settings: Settings, swift_http,
                                                    regions: dict[str, SwiftClient]):
    """With room for one segment in the whole process, two copies take turns and both verify."""
    tight = Copier(base_settings.with_overrides(max_inflight_bytes=MiB, segment_size=MiB),
                   SwiftRegions(swift_http, dict(base_settings.regions)))
    container = unique("budget")
    sources = {f"image-{i}": payload(3 * MiB + i) for i in range(2)}
    for name, data in sources.items():
        await put_plain(regions["RegionOne"], container, name, data)
    async with asyncio.timeout(60):
        outcomes = await asyncio.gather(*(tight.copy(spec(container, name), Recorder())
                                          for name in sources))
    assert [o.md5 for o in outcomes] == [md5(data) for data in sources.values()]
    assert tight.memory.held == 0


async def test_copies_of_one_process_hold_no_more_buffers_than_its_budget(
        base_settings: Settings, swift_http, regions: dict[str, SwiftClient]):
    """Copies at once and one after the other take their chunk buffers from the process's
    pool, so it never holds more than the byte budget lets them use at once, however many
    copies ran (each copy's own pool used to keep its peak for good: RSS grew per copy)."""
    tuned = base_settings.with_overrides(chunk_size=256 * 1024, chunks_ahead=2,
                                         segments_in_flight=3, segment_size=MiB,
                                         max_inflight_bytes=3 * MiB)
    copier = Copier(tuned, SwiftRegions(swift_http, dict(tuned.regions)))
    container = unique("pool")
    sources = {f"image-{i}": payload(4 * MiB + i) for i in range(6)}
    for name, data in sources.items():
        await put_plain(regions["RegionOne"], container, name, data)
    names = list(sources)
    async with asyncio.timeout(120):
        together = await asyncio.gather(*(copier.copy(spec(container, name), Recorder())
                                          for name in names[:4]))
        after = [await copier.copy(spec(container, name), Recorder()) for name in names[4:]]
    outcomes = together + after
    assert [o.md5 for o in outcomes] == [md5(data) for data in sources.values()]
    # each copy saw buffers of its own; the process made no more than the budget's worth
    # (a segment's share of it: (chunks_ahead + 1) chunks, and 3 MiB is 4 segments' shares)
    assert all(0 < o.peak_buffer_bytes for o in outcomes)
    pooled = copier.buffers.allocated * tuned.chunk_size
    assert pooled <= tuned.max_inflight_bytes
    assert pooled < sum(o.peak_buffer_bytes for o in outcomes)
    assert copier.memory.held == 0


@pytest.mark.parametrize("segment_size", [2 * MiB, 8 * MiB])
async def test_kept_segments_of_any_size_stream_within_the_same_bound(
        base_settings: Settings, swift_http, regions: dict[str, SwiftClient], segment_size: int):
    """Segments 8 or 32 chunks long keep their boundaries (and the SLO's ETag) with the same
    buffers; segments ahead of the hasher wait on disk instead of in memory."""
    tuned = base_settings.with_overrides(chunk_size=256 * 1024, chunks_ahead=2,
                                         segments_in_flight=3)
    copier = Copier(tuned, SwiftRegions(swift_http, dict(tuned.regions)))
    container, name, data = unique("kept"), "image.raw", payload(4 * segment_size + 12345)
    source_etag = await put_slo(regions["RegionOne"], container, name, data, segment_size)
    outcome = await copier.copy(spec(container, name, expected_md5=md5(data)), Recorder())
    assert outcome.md5 == md5(data) and outcome.sha512 == hashlib.sha512(data).hexdigest()
    assert outcome.etag == source_etag and outcome.segments == 5
    bound = tuned.copy_memory_bound  # (segments_in_flight + segments_ahead) segments
    assert 0 < outcome.peak_buffer_bytes <= bound
    assert outcome.bytes_spilled > 0  # later segments streamed on while the hasher caught up
    assert await read_back(regions["RegionTwo"], container, name) == data


async def test_segments_xfer_cuts_itself_stay_within_the_bound_too(
        base_settings: Settings, swift_http, regions: dict[str, SwiftClient]):
    """Segments shorter than chunks_ahead never wait for a buffer of their own; their chunks
    the hasher has not reached must still not pile up in memory once the segment is done."""
    tuned = base_settings.with_overrides(chunk_size=128 * 1024, chunks_ahead=4,
                                         segments_in_flight=3, segment_size=256 * 1024)
    copier = Copier(tuned, SwiftRegions(swift_http, dict(tuned.regions)))
    container, name, data = unique("recut"), "image.raw", payload(6 * MiB + 99)
    await put_plain(regions["RegionOne"], container, name, data)
    outcome = await copier.copy(spec(container, name), Recorder())
    assert outcome.md5 == md5(data) and outcome.segments == 25
    bound = tuned.copy_memory_bound  # (segments_in_flight + segments_ahead) segments
    assert 0 < outcome.peak_buffer_bytes <= bound


@pytest.mark.parametrize(("in_flight", "ahead", "reads"), [(2, 2, 3), (1, 0, 1), (3, 4, 16)])
async def test_puts_open_and_reads_in_flight_stay_within_their_settings(
        base_settings: Settings, swift_http, regions: dict[str, SwiftClient],
        in_flight: int, ahead: int, reads: int):
    """Segments fetched ahead wait for a PUT lane: never more than segments_in_flight PUTs
    open, never more than reads_in_flight GETs for the copy, and the copy is whole."""
    tuned = base_settings.with_overrides(chunk_size=64 * 1024, chunks_ahead=4,
                                         segment_size=256 * 1024, segments_in_flight=in_flight,
                                         segments_ahead=ahead, reads_in_flight=reads)
    copier = Copier(tuned, SwiftRegions(swift_http, dict(tuned.regions)))
    container, name, data = unique("lanes"), "image.raw", payload(3 * MiB + 777)
    await put_plain(regions["RegionOne"], container, name, data)
    outcome = await copier.copy(spec(container, name), Recorder())
    assert outcome.md5 == md5(data) and outcome.segments == 13
    assert 1 <= outcome.most_putting <= in_flight
    assert 1 <= outcome.most_reading <= reads
    assert 0 < outcome.peak_buffer_bytes <= tuned.copy_memory_bound
    assert await read_back(regions["RegionTwo"], container, name) == data
