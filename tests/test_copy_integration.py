"""Copies through the REST API, against the real local Swift clusters and real Postgres."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from tests.conftest import TARGET_MAX_FILE_SIZE, MiB, Service, md5, unique
from tests.sources import payload, put_plain, put_slo, read_back
from xfer.clients.swift import SwiftClient
from xfer.errors import RemoteError
from xfer.proto import swift


def job_body(container: str, name: str, **extra: object) -> dict:
    return {"source": {"region": "RegionOne", "container": container, "object": name},
            "target": {"region": "RegionTwo"}, **extra}




async def leftovers(client: SwiftClient, container: str, job_id: str) -> list[str]:
    return [o.name for o in await client.list_objects(container) if job_id in o.name]


async def test_copy_plain_object_as_slo(service: Service, regions: dict[str, SwiftClient]):
    container, name, data = unique("plain"), "image.raw", payload(3 * MiB + 123)
    await put_plain(regions["RegionOne"], container, name, data)
    job = await service.copy(job_body(container, name))
    assert job["state"] == "succeeded", job["error"]
    assert job["md5"] == md5(data)
    assert job["sha512"] == hashlib.sha512(data).hexdigest()
    assert job["md5_checked_against"] == "the source object's ETag"
    assert job["verification"] == "end_to_end"
    assert job["bytes_done"] == job["bytes_total"] == len(data)
    assert job["layout"] == "slo" and job["segments_total"] == 4
    target = regions["RegionTwo"]
    head = await target.head_object(container, name)
    assert head.kind is swift.ObjectKind.SLO and head.etag == job["etag"]
    assert await read_back(target, container, name) == data
    # the verified copy is indexed: "the same image" is found in RegionTwo by its checksum
    async with service.http.get(f"{service.url}/v1/objects",
                                params={"checksum": md5(data)}) as response:
        found = (await response.json())["objects"]
    assert [(o["region"], o["container"], o["object"], o["size"]) for o in found] == [
        ("RegionTwo", container, name, len(data))]
    assert found[0]["os_hash_value"] == job["sha512"] and found[0]["project"] == "TEMPAUTH_test"


async def test_copy_slo_source_keeps_boundaries_and_etag(service: Service,
                                                         regions: dict[str, SwiftClient]):
    container, name, data = unique("slo"), "image.qcow2", payload(2 * MiB + 77)
    source_etag = await put_slo(regions["RegionOne"], container, name, data, 512 * 1024)
    job = await service.copy(job_body(container, name, checksum=md5(data)))
    assert job["state"] == "succeeded", job["error"]
    assert job["md5"] == md5(data) and job["md5_checked_against"] == "the requested checksum"
    assert job["verification"] == "end_to_end"
    assert job["segments_total"] == 5
    assert job["etag"] == source_etag  # same segment boundaries, same SLO ETag
    assert await read_back(regions["RegionTwo"], container, name) == data


async def test_an_slo_without_a_checksum_is_verified_as_source_pinned(
        service: Service, regions: dict[str, SwiftClient]):
    container, name, data = unique("slo-pinned"), "image.qcow2", payload(1 * MiB + 3)
    await put_slo(regions["RegionOne"], container, name, data, 256 * 1024)
    job = await service.copy(job_body(container, name))
    assert job["state"] == "succeeded", job["error"]
    # hashed, read as one pinned version, but nothing independent said what the MD5 must be
    assert job["verification"] == "source_pinned" and job["md5_checked_against"] is None
    assert job["md5"] == md5(data)
    assert await read_back(regions["RegionTwo"], container, name) == data


async def test_copy_empty_object(service: Service, regions: dict[str, SwiftClient]):
    container, name = unique("empty"), "empty.img"
    await put_plain(regions["RegionOne"], container, name, b"")
    job = await service.copy(job_body(container, name))
    assert job["state"] == "succeeded", job["error"]
    assert job["bytes_total"] == 0 and job["md5"] == md5(b"") and job["layout"] == "plain"
    head = await regions["RegionTwo"].head_object(container, name)
    assert head.size == 0 and head.kind is swift.ObjectKind.PLAIN


async def test_small_object_is_one_plain_put(service: Service, regions: dict[str, SwiftClient]):
    container, name, data = unique("small"), "small.img", payload(300 * 1024)
    await put_plain(regions["RegionOne"], container, name, data)
    job = await service.copy(job_body(container, name))
    assert job["state"] == "succeeded", job["error"]
    assert job["layout"] == "plain" and job["etag"] == md5(data)
    assert await read_back(regions["RegionTwo"], container, name) == data


async def test_object_above_target_max_file_size_becomes_slo(service: Service,
                                                             regions: dict[str, SwiftClient]):
    container, name = unique("big"), "big.img"
    data = payload(TARGET_MAX_FILE_SIZE + 3 * MiB)
    await put_plain(regions["RegionOne"], container, name, data)
    # ask for one huge segment: the plan must still respect RegionTwo's max_file_size
    job = await service.copy(job_body(container, name, segment_size=64 * MiB))
    assert job["state"] == "succeeded", job["error"]
    assert job["layout"] == "slo" and job["segments_total"] == 2
    head = await regions["RegionTwo"].head_object(container, name)
    assert head.kind is swift.ObjectKind.SLO and head.size == len(data)
    assert job["md5"] == md5(data)


async def test_missing_source_fails_with_a_message_naming_it(service: Service,
                                                             regions: dict[str, SwiftClient]):
    container = unique("missing")
    await regions["RegionOne"].put_container(container)
    job = await service.copy(job_body(container, "no-such-image"))
    assert job["state"] == "failed"
    assert job["error"]["code"] == "source_not_found"
    message = job["error"]["message"]
    assert "RegionOne" in message and container in message and "no-such-image" in message


async def test_wrong_checksum_fails_and_leaves_nothing(service: Service,
                                                       regions: dict[str, SwiftClient]):
    container, name, data = unique("mismatch"), "image.raw", payload(3 * MiB)
    await put_plain(regions["RegionOne"], container, name, data)
    job = await service.copy(job_body(container, name, checksum="0" * 32))
    assert job["state"] == "failed"
    # a plain object's ETag is the MD5 of what Swift stores: refused before any byte moves
    assert job["error"]["code"] == "source_not_as_recorded"
    assert md5(data) in job["error"]["message"] and "0" * 32 in job["error"]["message"]
    assert job["bytes_done"] == 0
    target = regions["RegionTwo"]
    try:
        await target.head_object(container, name)
        raise AssertionError("a manifest was published")
    except RemoteError as missing:
        assert missing.status == 404
    assert await leftovers(target, container, job["id"]) == []


async def test_wrong_checksum_on_a_small_object_publishes_nothing(
        service: Service, regions: dict[str, SwiftClient]):
    container, name, data = unique("mismatch-small"), "small.img", payload(1000)
    await put_plain(regions["RegionOne"], container, name, data)
    job = await service.copy(job_body(container, name, checksum="f" * 32))
    assert job["error"]["code"] == "source_not_as_recorded"
    assert await regions["RegionTwo"].list_objects(container) == []


async def test_existing_target_is_never_overwritten(service: Service,
                                                    regions: dict[str, SwiftClient]):
    container, name, data = unique("exists"), "image.raw", payload(1000)
    await put_plain(regions["RegionOne"], container, name, data)
    await put_plain(regions["RegionTwo"], container, name, b"precious")
    job = await service.copy(job_body(container, name))
    assert job["error"]["code"] == "target_exists"
    assert await read_back(regions["RegionTwo"], container, name) == b"precious"


async def test_cancel_through_the_api_removes_what_was_written(
        settings, regions: dict[str, SwiftClient]):
    from tests.conftest import running_service

    container, name, data = unique("cancel-api"), "image.raw", payload(8 * MiB)
    await put_plain(regions["RegionOne"], container, name, data)
    slow = settings.with_overrides(segments_in_flight=1, segment_size=512 * 1024)
    async with running_service(slow) as service:
        job = await service.submit(job_body(container, name))
        async with asyncio.timeout(30):
            while (await service.job(job["id"]))["bytes_done"] == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        async with service.http.post(f"{service.url}/v1/jobs/{job['id']}/cancel") as response:
            assert response.status == 202, await response.text()
            assert (await response.json())["state"] in ("cancelling", "cancelled")
        ended = await service.wait(job["id"])
        assert ended["state"] == "cancelled" and ended["error"]["code"] == "cancelled"
        async with service.http.post(f"{service.url}/v1/jobs/{job['id']}/cancel") as response:
            assert response.status == 409
            assert (await response.json())["error"]["code"] == "not_cancellable"
    target = regions["RegionTwo"]
    assert await leftovers(target, container, job["id"]) == []
    with pytest.raises(RemoteError):
        await target.head_object(container, name)


async def test_second_copy_of_the_same_bytes_is_deduplicated(service: Service,
                                                             regions: dict[str, SwiftClient]):
    container, data = unique("dedup"), payload(2 * MiB + 9)
    await put_plain(regions["RegionOne"], container, "first.img", data)
    await put_plain(regions["RegionOne"], container, "again.img", data)
    first = await service.copy(job_body(container, "first.img"))
    assert first["state"] == "succeeded" and not first["deduplicated"]
    again = await service.copy(job_body(container, "again.img"))
    assert again["state"] == "succeeded", again["error"]
    assert again["deduplicated"] is True and again["bytes_uploaded"] == 0
    assert again["existing"] == {"region": "RegionTwo", "container": container,
                                 "object": "first.img"}
    assert again["md5"] == md5(data) and again["sha512"] == first["sha512"]
    with pytest.raises(RemoteError):  # nothing was written under the requested name
        await regions["RegionTwo"].head_object(container, "again.img")
    # once the existing copy is gone, the same request copies for real
    await regions["RegionTwo"].delete_manifest(container, "first.img")
    third = await service.copy(job_body(container, "again.img"))
    assert third["state"] == "succeeded" and not third["deduplicated"]
    assert await read_back(regions["RegionTwo"], container, "again.img") == data


async def test_deduplication_still_refuses_a_target_holding_other_bytes(
        service: Service, regions: dict[str, SwiftClient]):
    container, data, other = unique("dedup-exists"), payload(1 * MiB + 5), payload(777)
    await put_plain(regions["RegionOne"], container, "image.img", data)
    first = await service.copy(job_body(container, "image.img"))
    assert first["state"] == "succeeded" and not first["deduplicated"]
    # the requested name already holds something else: deduplication must not report success
    await put_plain(regions["RegionTwo"], container, "taken.img", other)
    refused = await service.copy(job_body(container, "image.img",
                                          target={"region": "RegionTwo", "object": "taken.img"}))
    assert refused["state"] == "failed" and refused["error"]["code"] == "target_exists"
    assert await read_back(regions["RegionTwo"], container, "taken.img") == other
    # naming the indexed copy itself is no conflict: it does hold these bytes
    await put_plain(regions["RegionOne"], container, "same.img", data)
    same = await service.copy(job_body(container, "same.img",
                                       target={"region": "RegionTwo", "object": "image.img"}))
    assert same["state"] == "succeeded" and same["deduplicated"] is True
    assert same["existing"]["object"] == "image.img"
