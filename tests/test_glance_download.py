"""Issue 10 against the real local cloud: a stock Glance (RegionTwo) imports a RegionOne image
through xfer's Glance-compatible read endpoint with its own `glance-download` method, found in
the user's catalog as region RegionOne-via-xfer; xfer reads the source Swift with parallel
ranged GETs and verifies MD5 and SHA-512 before the last byte goes out.

The session's blocking keystoneauth calls run in threads: the xfer under test runs in this
test's event loop and must keep answering Glance meanwhile."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from keystoneauth1 import session as ksa_session
from keystoneauth1.exceptions import EndpointNotFound

from tests.conftest import MiB, Service, keystone_settings, running_service
from tests.test_cloud_keystone_glance import (
    create_image,
    image_api,
    object_store,
    replace_with_slo,
    share,
    swift_url,
    upload,
    user_session,
    wait_active,
)
from xfer.dev import devcloud
from xfer.dev.devcloud.keystone_server import via_xfer
from xfer.settings import Settings

pytestmark = pytest.mark.integration

SOURCE, TARGET = "RegionOne", "RegionTwo"
FRONT = via_xfer(SOURCE)  # RegionOne-via-xfer
IMPORT_DEADLINE_S = 120.0


@pytest.fixture
def front_settings(settings: Settings, cloud: devcloud.CloudInfo) -> Settings:
    """An xfer of RegionOne on the port the catalog lists for RegionOne-via-xfer, reading
    1 MiB chunks: RegionTwo's Swift takes objects of at most TARGET_MAX_FILE_SIZE (8 MiB), and
    Glance writes a plain object, so images here stay below that and are still several
    ranged reads."""
    port = int(cloud.xfer_urls[SOURCE].rsplit(":", 1)[1])
    return keystone_settings(settings, cloud, SOURCE, listen_port=port,
                             stream_chunk_size=MiB, stream_reads=8)


@pytest.fixture
async def front(front_settings: Settings) -> AsyncIterator[Service]:
    async with running_service(front_settings) as running:
        yield running


@pytest.fixture(scope="module")
def sessions(cloud: devcloud.CloudInfo) -> Iterator[dict[str, ksa_session.Session]]:
    made = {name: user_session(cloud, name) for name in ("alice", "bob")}
    yield made
    for session in made.values():
        session.session.close()


def headers(session: ksa_session.Session, **more: str) -> dict[str, str]:
    return {"X-Auth-Token": session.get_token(), **more}


def start_import(session: ksa_session.Session, source_id: str, region: str = FRONT) -> str:
    """A queued RegionTwo image, importing `source_id` with stock glance-download from
    `region` of the user's catalog."""
    target = create_image(session, TARGET)
    response = session.post(f"{image_api(session, TARGET)}/v2/images/{target}/import", json={
        "method": {"name": "glance-download", "glance_image_id": source_id,
                   "glance_region": region}})
    assert response.status_code == 202, response.text
    return target


def import_failure(session: ksa_session.Session, image_id: str) -> tuple[dict[str, Any], str]:
    """Wait for the import task to fail; the image then and the task's message. It must never
    have been active meanwhile."""
    api = image_api(session, TARGET)
    deadline = time.monotonic() + IMPORT_DEADLINE_S
    while True:
        image: dict[str, Any] = session.get(f"{api}/v2/images/{image_id}").json()
        assert image["status"] != "active", image
        tasks = session.get(f"{api}/v2/images/{image_id}/tasks").json()["tasks"]
        failed = [task for task in tasks if task["status"] == "failure"]
        if failed:
            return session.get(f"{api}/v2/images/{image_id}").json(), failed[0]["message"]
        assert time.monotonic() < deadline, f"import of {image_id} neither failed nor ended"
        time.sleep(0.3)


async def import_fails_and_xfer_says_why(session: ksa_session.Session, source_id: str,
                                         caplog: pytest.LogCaptureFixture, said: str,
                                         code: str = "checksum_mismatch") -> None:
    """glance-download of an altered source fails and its image stays queued without data;
    Glance's task says only "Internal Error", so xfer's log must say why: one line for the
    test's own read of the data and one for Glance's, each `said` and `code`."""
    target = await asyncio.to_thread(start_import, session, source_id)
    image, _ = await asyncio.to_thread(import_failure, session, target)
    assert image["status"] == "queued" and image["checksum"] is None, image
    lines = [r.getMessage() for r in caplog.records if source_id in r.getMessage()]
    assert len(lines) == 2 and all(said in line and f"({code})" in line
                                   for line in lines), lines


async def metrics(front: Service) -> str:
    async with front.http.get(f"{front.url}/metrics") as response:
        assert response.status == 200
        return await response.text()


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    match = re.search(f"^{pattern}$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


async def read_file(front: Service, session: ksa_session.Session, image_id: str,
                    **more: str) -> tuple[int, Any, bytes]:
    async with front.http.get(f"{front.url}/v2/images/{image_id}/file",
                              headers=headers(session, **more)) as response:
        return response.status, response.headers, await response.read()


def test_the_catalog_lists_the_front_as_an_image_region_of_its_own(
        cloud: devcloud.CloudInfo, sessions: dict[str, ksa_session.Session]) -> None:
    alice = sessions["alice"]
    assert image_api(alice, FRONT) == cloud.xfer_urls[SOURCE]
    with pytest.raises(EndpointNotFound):
        alice.get_endpoint(service_type="object-store", region_name=FRONT)


async def test_stock_glance_download_through_xfer_is_active_with_the_source_hashes(
        front: Service, sessions: dict[str, ksa_session.Session],
        caplog: pytest.LogCaptureFixture) -> None:
    alice = sessions["alice"]
    caplog.set_level(logging.INFO, logger="xfer.images.front")
    data = os.urandom(7 * MiB + 3)  # seven 1 MiB chunks and a bit: parallel ranged reads
    source = await asyncio.to_thread(upload, alice, SOURCE, data, chunked=True)  # a DLO
    before = await metrics(front)

    target = await asyncio.to_thread(start_import, alice, source["id"])
    imported = await asyncio.to_thread(wait_active, alice, TARGET, target)

    assert (imported["checksum"], imported["os_hash_value"], imported["size"]) == (
        source["checksum"], source["os_hash_value"], len(data))
    assert imported["id"] != source["id"]
    after = await metrics(front)
    assert metric(after, "xfer_image_streams_total", outcome="verified") == \
        metric(before, "xfer_image_streams_total", outcome="verified") + 1
    reads = metric(after, "xfer_image_stream_ranged_reads_total") - \
        metric(before, "xfer_image_stream_ranged_reads_total")
    assert reads == 8  # ceil((7 MiB + 3) / 1 MiB)
    # one stream more, and it had more than one ranged read in flight at once
    parallel = "xfer_image_stream_parallel_reads"
    assert metric(after, f"{parallel}_count") == metric(before, f"{parallel}_count") + 1
    assert metric(after, f"{parallel}_bucket", le="1.0") == \
        metric(before, f"{parallel}_bucket", le="1.0")
    logged = [r.getMessage() for r in caplog.records if "streamed image" in r.getMessage()]
    assert any(source["id"] in line and "8 ranged reads, up to 8 at once" in line
               and "verified MD5+SHA-512" in line for line in logged), logged


async def test_the_image_record_is_the_source_glances_own(
        front: Service, sessions: dict[str, ksa_session.Session]) -> None:
    alice = sessions["alice"]
    source = await asyncio.to_thread(upload, alice, SOURCE, os.urandom(1000))
    async with front.http.get(f"{front.url}/v2/images/{source['id']}",
                              headers=headers(alice)) as response:
        assert response.status == 200
        record = await response.json()
    direct = await asyncio.to_thread(
        lambda: alice.get(f"{image_api(alice, SOURCE)}/v2/images/{source['id']}").json())
    assert record == direct


async def test_a_plain_source_altered_behind_glance_is_refused_before_any_byte(
        front: Service, sessions: dict[str, ksa_session.Session],
        caplog: pytest.LogCaptureFixture) -> None:
    """A plain object's ETag is its MD5: other bytes are seen before the first one is sent."""
    alice = sessions["alice"]
    caplog.set_level(logging.WARNING, logger="xfer.web.glance_front")
    source = await asyncio.to_thread(upload, alice, SOURCE, os.urandom(MiB))  # plain object
    put = await asyncio.to_thread(alice.put, swift_url(alice, SOURCE, source["id"]),
                                  data=os.urandom(MiB))
    assert put.status_code == 201

    status, _, body = await read_file(front, alice, source["id"])
    assert status == 502
    assert b'"checksum_mismatch"' in body and source["checksum"].encode() in body

    await import_fails_and_xfer_says_why(alice, source["id"], caplog, "refused to stream")


async def test_data_deleted_behind_glance_is_a_json_404_before_any_byte(
        front: Service, sessions: dict[str, ksa_session.Session],
        caplog: pytest.LogCaptureFixture) -> None:
    """The image record is there, its Swift object is not: xfer's first Swift call fails and
    says so, as JSON, with no reply started."""
    alice = sessions["alice"]
    caplog.set_level(logging.WARNING, logger="xfer.web.glance_front")
    source = await asyncio.to_thread(upload, alice, SOURCE, os.urandom(MiB))
    deleted = await asyncio.to_thread(alice.delete, swift_url(alice, SOURCE, source["id"]))
    assert deleted.status_code == 204

    status, reply, body = await read_file(front, alice, source["id"])
    assert status == 404 and reply["Content-Type"].startswith("application/json")
    assert b'"source_not_found"' in body and b"Traceback" not in body
    await import_fails_and_xfer_says_why(alice, source["id"], caplog, "refused to stream",
                                         code="source_not_found")


async def test_a_dlo_segment_altered_behind_glance_cuts_the_stream_before_its_last_byte(
        front: Service, sessions: dict[str, ksa_session.Session],
        caplog: pytest.LogCaptureFixture) -> None:
    """Same size, other bytes, in a DLO (no MD5 to compare up front): only the stream's own
    hashes can tell; glance-download, which checks only the size, must see a short body."""
    alice = sessions["alice"]
    caplog.set_level(logging.WARNING, logger="xfer.web.glance_front")
    data = os.urandom(7 * MiB)  # RegionTwo's Glance could store it: only xfer can refuse
    source = await asyncio.to_thread(upload, alice, SOURCE, data, chunked=True)
    container = f"{object_store(alice, SOURCE)}/glance_{source['id']}"
    listing = (await asyncio.to_thread(alice.get, container, params={"format": "json"})).json()
    segment = next(entry for entry in listing if entry["name"] != source["id"])
    put = await asyncio.to_thread(alice.put, f"{container}/{segment['name']}",
                                  data=os.urandom(segment["bytes"]))
    assert put.status_code == 201
    before = await metrics(front)

    received = bytearray()
    with pytest.raises(aiohttp.ClientPayloadError):
        async with front.http.get(f"{front.url}/v2/images/{source['id']}/file",
                                  headers=headers(alice)) as response:
            assert response.status == 200
            assert response.headers["X-Xfer-Verified"] == "whole"
            async for piece in response.content.iter_any():
                received += piece
    assert len(received) < len(data)

    await import_fails_and_xfer_says_why(alice, source["id"], caplog,
                                         "cut before its last byte")
    after = await metrics(front)
    assert metric(after, "xfer_image_streams_total", outcome="checksum_mismatch") >= \
        metric(before, "xfer_image_streams_total", outcome="checksum_mismatch") + 2


async def test_an_slo_source_is_imported_verified_and_an_altered_segment_never_activates(
        front: Service, sessions: dict[str, ksa_session.Session],
        caplog: pytest.LogCaptureFixture) -> None:
    """The layout of xfer's own copies, an SLO with its segments in the image's container: the
    import through xfer is active with the source's hashes. A segment then replaced by other
    bytes of its size cuts the stream before its last byte, and the next import fails."""
    alice = sessions["alice"]
    caplog.set_level(logging.WARNING, logger="xfer.web.glance_front")
    data = os.urandom(5 * MiB + 11)
    source = await asyncio.to_thread(upload, alice, SOURCE, data)
    segments = await asyncio.to_thread(replace_with_slo, alice, SOURCE, source["id"], data,
                                       2 * MiB)

    status, reply, body = await read_file(front, alice, source["id"])
    assert (status, reply["X-Xfer-Verified"]) == (200, "whole") and body == data
    target = await asyncio.to_thread(start_import, alice, source["id"])
    imported = await asyncio.to_thread(wait_active, alice, TARGET, target)
    assert (imported["checksum"], imported["os_hash_value"]) == (source["checksum"],
                                                               source["os_hash_value"])

    put = await asyncio.to_thread(alice.put, swift_url(alice, SOURCE, source["id"], segments[1]),
                                  data=os.urandom(2 * MiB))
    assert put.status_code == 201
    received = bytearray()
    with pytest.raises(aiohttp.ClientPayloadError):
        async with front.http.get(f"{front.url}/v2/images/{source['id']}/file",
                                  headers=headers(alice)) as response:
            assert response.status == 200
            async for piece in response.content.iter_any():
                received += piece
    assert len(received) < len(data)
    # Swift itself refuses the segment (409), which says the object is damaged, not that hashes
    # differ: the stream is cut all the same
    await import_fails_and_xfer_says_why(alice, source["id"], caplog, "no longer matches its "
                                         "manifest", code="source_changed")


async def test_a_reader_that_goes_away_mid_stream_is_counted_and_the_next_is_served(
        front: Service, sessions: dict[str, ksa_session.Session]) -> None:
    alice = sessions["alice"]
    data = os.urandom(7 * MiB)
    source = await asyncio.to_thread(upload, alice, SOURCE, data)
    before = await metrics(front)
    async with aiohttp.ClientSession() as impatient:
        async with impatient.get(f"{front.url}/v2/images/{source['id']}/file",
                                 headers=headers(alice)) as response:
            assert response.status == 200
            await response.content.readexactly(1000)
        # leaving the block without reading the rest closes the connection
    gone = "xfer_image_streams_total"
    for _ in range(300):  # up to 30 s: xfer notices at its next write
        if metric(await metrics(front), gone, outcome="client_gone") > \
                metric(before, gone, outcome="client_gone"):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("xfer never counted the reader that went away")
    status, _, body = await read_file(front, alice, source["id"])
    assert status == 200 and body == data


@pytest.mark.parametrize("visibility", ["shared", "community"])
async def test_a_user_of_another_project_imports_an_image_shared_with_them(
        front: Service, sessions: dict[str, ksa_session.Session], visibility: str) -> None:
    """bob reads alice's image from her Swift account as himself, through the container ACL
    Glance keeps for the image's members (or for everyone, a community image)."""
    alice, bob = sessions["alice"], sessions["bob"]
    data = os.urandom(3 * MiB + 5)
    source = await asyncio.to_thread(upload, alice, SOURCE, data, chunked=True)  # a DLO
    if visibility == "shared":
        await asyncio.to_thread(share, alice, bob, SOURCE, source["id"])
    else:
        made = await asyncio.to_thread(
            alice.patch, f"{image_api(alice, SOURCE)}/v2/images/{source['id']}",
            json=[{"op": "replace", "path": "/visibility", "value": "community"}],
            headers={"Content-Type": "application/openstack-images-v2.1-json-patch"})
        assert made.status_code == 200, made.text

    status, reply, body = await read_file(front, bob, source["id"])
    assert (status, reply["X-Xfer-Verified"]) == (200, "whole") and body == data
    target = await asyncio.to_thread(start_import, bob, source["id"])
    imported = await asyncio.to_thread(wait_active, bob, TARGET, target)
    assert imported["os_hash_value"] == source["os_hash_value"]
    assert imported["owner"] == bob.get_project_id() != source["owner"]


async def test_a_user_who_cannot_see_the_image_gets_glances_404_and_no_bytes(
        front: Service, sessions: dict[str, ksa_session.Session]) -> None:
    alice, bob = sessions["alice"], sessions["bob"]
    source = await asyncio.to_thread(upload, alice, SOURCE, os.urandom(MiB))  # private
    for path in (f"/v2/images/{source['id']}", f"/v2/images/{source['id']}/file"):
        async with front.http.get(f"{front.url}{path}", headers=headers(bob)) as response:
            assert response.status == 404
            body = await response.read()
        assert len(body) < 1000 and b"404" in body  # Glance's own "404 Not Found" page
    direct = await asyncio.to_thread(
        bob.get, f"{image_api(bob, SOURCE)}/v2/images/{source['id']}", raise_exc=False)
    assert direct.status_code == 404  # what RegionOne's Glance itself answers bob

    target = await asyncio.to_thread(start_import, bob, source["id"])
    image, _ = await asyncio.to_thread(import_failure, bob, target)
    assert image["status"] == "queued"


async def test_ranges_are_served_exactly_and_bad_ones_are_named(
        front: Service, sessions: dict[str, ksa_session.Session]) -> None:
    alice = sessions["alice"]
    data = os.urandom(9 * MiB + 7)
    source = await asyncio.to_thread(upload, alice, SOURCE, data, chunked=True)
    image_id, size = source["id"], len(data)
    cases = {
        f"bytes=0-{size - 1}": (0, size),
        "bytes=100-199": (100, 100),
        f"bytes={2 * MiB - 1}-{5 * MiB}": (2 * MiB - 1, 3 * MiB + 2),  # across chunks
        "bytes=-10": (size - 10, 10),
        f"bytes=-{size + 5}": (0, size),
        f"bytes={size - 1}-": (size - 1, 1),
        f"BYTES=5-{size + 100}": (5, size - 5),
    }
    for header, (start, length) in cases.items():
        status, reply, body = await read_file(front, alice, image_id, Range=header)
        assert status == 206, (header, body[:300])
        assert body == data[start:start + length], header
        assert reply["Content-Range"] == f"bytes {start}-{start + length - 1}/{size}"
        assert reply["X-Xfer-Verified"] == ("whole" if length == size else "range"), header
    status, reply, body = await read_file(front, alice, image_id)
    assert status == 200 and body == data and reply["Content-MD5"] == source["checksum"]
    assert reply["X-Xfer-Source"] == "swift"
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        status, reply, body = await read_file(front, alice, image_id, Range=header)
        assert status == 416, header
        assert reply["Content-Range"] == f"bytes */{size}"
    for header in ("bytes=5-1", "bytes=0-1,5-6", "items=0-5", "bytes=-", "bytes=x-5",
                   "bytes=" + "9" * 30 + "-"):
        status, _, body = await read_file(front, alice, image_id, Range=header)
        assert status == 400, header
        assert b'"field": "Range"' in body or b'"field":"Range"' in body, (header, body)


async def test_ids_tokens_and_other_routes(
        front: Service, sessions: dict[str, ksa_session.Session]) -> None:
    alice = sessions["alice"]
    for path in ("/v2/images/not-a-uuid", "/v2/images/not-a-uuid/file"):
        async with front.http.get(f"{front.url}{path}", headers=headers(alice)) as response:
            assert response.status == 400
            assert (await response.json())["error"]["field"] == "image_id"
    image = f"/v2/images/{uuid.uuid4()}/file"
    async with front.http.get(f"{front.url}{image}") as response:
        assert response.status == 401
    async with front.http.get(f"{front.url}{image}", headers=headers(alice)) as response:
        assert response.status == 404
    async with front.http.get(f"{front.url}/v2/images", headers=headers(alice)) as response:
        assert response.status == 404  # only the two reads glance-download makes are served


async def test_an_image_id_reaches_glance_exactly_as_written(
        front: Service, sessions: dict[str, ksa_session.Session]) -> None:
    """Glance keeps the upper-case id a user created an image with and looks ids up as
    written: for each spelling, xfer answers what RegionOne's Glance answers, and serves the
    data of the image named."""
    alice = sessions["alice"]
    data = os.urandom(3 * MiB + 1)
    image_id = str(uuid.uuid4()).upper()
    source = await asyncio.to_thread(upload, alice, SOURCE, data, image_id=image_id)
    assert source["id"] == image_id
    for spelling in (image_id, image_id.lower()):
        direct = await asyncio.to_thread(
            alice.get, f"{image_api(alice, SOURCE)}/v2/images/{spelling}", raise_exc=False)
        async with front.http.get(f"{front.url}/v2/images/{spelling}",
                                  headers=headers(alice)) as response:
            assert response.status == direct.status_code, spelling
            if response.status == 200:
                assert await response.json() == direct.json()
        status, _, body = await read_file(front, alice, spelling)
        assert status == direct.status_code, spelling
        assert body == data if status == 200 else len(body) < 1000
    status, _, body = await read_file(front, alice, image_id)
    assert status == 200 and body == data


async def test_an_empty_image_is_served_and_imported_and_any_range_of_it_is_416(
        front: Service, sessions: dict[str, ksa_session.Session]) -> None:
    alice = sessions["alice"]
    source = await asyncio.to_thread(upload, alice, SOURCE, b"")
    assert (source["size"], source["checksum"]) == (0, hashlib.md5(b"").hexdigest())

    status, reply, body = await read_file(front, alice, source["id"])
    assert (status, body, reply["Content-Length"], reply["X-Xfer-Verified"]) == (
        200, b"", "0", "whole")
    for header in ("bytes=0-", "bytes=0-0", "bytes=-1"):
        status, reply, _ = await read_file(front, alice, source["id"], Range=header)
        assert (status, reply["Content-Range"]) == (416, "bytes */0"), header
    target = await asyncio.to_thread(start_import, alice, source["id"])
    imported = await asyncio.to_thread(wait_active, alice, TARGET, target)
    assert (imported["size"], imported["checksum"]) == (0, source["checksum"])


async def test_an_image_in_glances_file_store_is_streamed_through_its_glance_verified(
        front: Service, cloud: devcloud.CloudInfo,
        sessions: dict[str, ksa_session.Session]) -> None:
    alice = sessions["alice"]
    data = os.urandom(7 * MiB + 5)
    source = await asyncio.to_thread(upload, alice, SOURCE, data,
                                     through=cloud.glances[SOURCE].file_store_url)
    assert source["direct_url"].startswith("file://")

    status, reply, body = await read_file(front, alice, source["id"])
    assert status == 200 and reply["X-Xfer-Source"] == "glance"
    assert hashlib.sha512(body).hexdigest() == source["os_hash_value"]

    target = await asyncio.to_thread(start_import, alice, source["id"])
    imported = await asyncio.to_thread(wait_active, alice, TARGET, target)
    assert imported["os_hash_value"] == source["os_hash_value"]


async def test_regions_and_search_leave_the_front_out(
        cloud: devcloud.CloudInfo, front: Service,
        sessions: dict[str, ksa_session.Session]) -> None:
    """A region with an image endpoint only is a front, not a region to copy from or search."""
    alice = sessions["alice"]
    async with front.http.get(f"{front.url}/v1/regions", headers=headers(alice)) as response:
        regions = [region["name"] for region in (await response.json())["regions"]]
    assert regions == [SOURCE, TARGET]
    async with front.http.get(f"{front.url}/v1/images", params={"checksum": "0" * 32},
                              headers=headers(alice)) as response:
        found = await response.json()
    assert found == {"images": [], "unavailable": []}
