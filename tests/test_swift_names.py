"""Object names that URL normalisers rewrite (`..`, `.`, `//`, a trailing `/`, `%2e%2e`)
address exactly the object named: on the wire, and in real Swift through whole copies, where
each such job reads and writes only the object it names. Container names are refused at
submission exactly where real Swift refuses them (and `.`, `..`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from tests.conftest import MiB, Service, md5, unique
from tests.sources import payload, put_dlo, put_plain, put_slo, read_back
from xfer.clients.swift import SwiftClient
from xfer.clients.transport import exchange, http_session
from xfer.errors import RemoteError
from xfer.proto import swift
from xfer.settings import Settings

# Each name, and the object a normalising client would have read or written instead.
TRICKY = {
    "dir/../victim.img": "victim.img",
    "./victim.img": "victim.img",
    "dir/./../victim.img": "victim.img",
    "..": None,  # the container itself
    ".": None,
    "a//b": "a/b",
    "dir/": "dir",
    "%2e%2e": "..",
    "/": None,
}


@pytest.fixture
async def request_lines() -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback HTTP server that answers 204 and records each request line."""
    lines: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines.append((await reader.readline()).decode().rstrip())
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/AUTH_test", lines
    finally:
        server.close()
        await server.wait_closed()


async def test_the_transport_sends_the_path_as_built(request_lines: tuple[str, list[str]]):
    storage_url, lines = request_lines
    creds = swift.Credentials(storage_url, "token")
    heads = [swift.head_object_request(creds, "..", name) for name in TRICKY]
    listing = swift.list_objects_request(creds, "c", prefix="a+b&c/../", marker="..")
    async with http_session(Settings()) as http:
        for request in [*heads, listing]:
            await exchange(http, swift.SERVICE, request)
    assert lines[:-1] == [f"HEAD {urlsplit(request.url).path} HTTP/1.1" for request in heads]
    assert lines[0] == "HEAD /v1/AUTH_test/%2E%2E/dir/%2E%2E/victim.img HTTP/1.1"
    assert lines[-1] == "GET /v1/AUTH_test/c?format=json&prefix=a%2Bb%26c/../&marker=.. HTTP/1.1"




def job_body(container: str, name: str, checksum: str | None = None, **target: str) -> dict:
    body = {"source": {"region": "RegionOne", "container": container, "object": name},
            "target": {"region": "RegionTwo", **target}}
    return body if checksum is None else {**body, "checksum": checksum}


async def test_copies_of_dot_segment_names_read_and_write_only_themselves(
        service: Service, regions: dict[str, SwiftClient]):
    source, target = regions["RegionOne"], regions["RegionTwo"]
    container = unique("dots")
    contents = {name: payload(1000 + index) for index, name in enumerate(TRICKY)}
    # what the names would wrongly resolve to, on both sides (`..` is also a name of its own)
    decoys = {decoy for decoy in TRICKY.values() if decoy is not None} - set(TRICKY)
    for decoy in decoys:
        await put_plain(source, container, decoy, b"decoy in the source")
    for name, data in contents.items():
        await put_plain(source, container, name, data)
    await target.put_container(container)
    for decoy in decoys:
        await put_plain(target, container, decoy, b"decoy in the target")
    jobs = {name: await service.submit(job_body(container, name)) for name in contents}
    for name, job in jobs.items():
        done = await service.wait(job["id"])
        assert done["state"] == "succeeded", (name, done["error"])
        assert done["md5"] == md5(contents[name]), name
        assert done["target"] == {"region": "RegionTwo", "container": container, "object": name}
    for name, data in contents.items():
        assert await read_back(target, container, name) == data, name
    for decoy in decoys:
        assert await read_back(target, container, decoy) == b"decoy in the target"
    assert {o.name for o in await target.list_objects(container)} == set(contents) | decoys


async def test_an_slo_target_named_outside_its_container_stays_inside(
        service: Service, regions: dict[str, SwiftClient]):
    source, target = regions["RegionOne"], regions["RegionTwo"]
    container, outside = unique("dots-slo"), unique("other")
    name, data = "dir/../victim.img", payload(2 * MiB + 5)
    await put_slo(source, container, name, data, 512 * 1024)
    await put_plain(source, container, "victim.img", b"not this one")
    target_name = f"../{outside}/x"
    job = await service.copy(job_body(container, name, object=target_name))
    assert job["state"] == "succeeded", job["error"]
    assert job["md5"] == md5(data) and job["layout"] == "slo"
    head = await target.head_object(container, target_name)
    assert head.kind is swift.ObjectKind.SLO and head.size == len(data)
    assert await read_back(target, container, target_name) == data
    written = {o.name for o in await target.list_objects(container)}
    assert target_name in written
    assert all(n == target_name or n.startswith(f"{target_name}.xfer-segments/") for n in written)
    with pytest.raises(RemoteError) as absent:  # nothing reached the container `outside`
        await target.head_object(outside, "x")
    assert absent.value.status == 404
    assert await target.list_objects(outside) == []


async def test_a_dlo_named_with_dot_segments_lists_only_its_own_segments(
        service: Service, regions: dict[str, SwiftClient]):
    source = regions["RegionOne"]
    container, name, data = unique("dots-dlo"), "dir/../victim.img", payload(2 * MiB + 7)
    await put_dlo(source, container, name, data, 768 * 1024)
    # what `dir/../victim.img-` as a prefix would be, normalised: other segments
    await put_plain(source, container, "victim.img-00001", b"not a segment of it")
    job = await service.copy(job_body(container, name, checksum=md5(data)))
    assert job["state"] == "succeeded", job["error"]
    assert job["md5"] == md5(data) and job["bytes_total"] == len(data)
    assert await read_back(regions["RegionTwo"], container, name) == data


async def submitted(service: Service, body: dict) -> tuple[int, dict]:
    async with service.http.post(f"{service.url}/v1/jobs", json=body) as response:
        return response.status, await response.json()


async def test_container_names_are_refused_exactly_where_swift_refuses_them(
        service: Service, regions: dict[str, SwiftClient]):
    client = regions["RegionOne"]
    suffix = unique("")
    # (a name with `/` cannot be tried as a container: Swift reads it as an object path; nor
    # can an object name over 1024 bytes: the object server fails it and the proxy then shuns
    # that server for a minute, see xfer/web/validation.py)
    for name in ["c" * 257, "é" * 257, "nul\x00" + suffix, "c" * 256, "é" * 256,
                 "tab\there" + suffix, " " + suffix, "%2e%2e" + suffix, "a..b" + suffix]:
        try:
            await client.put_container(name)
            swift_refuses = False
        except RemoteError as refused:
            assert refused.status in (400, 412), refused
            swift_refuses = True
        status, reply = await submitted(service, job_body(name, "image.img"))
        if swift_refuses:
            assert status == 400 and reply["error"]["field"] == "source.container", name
        else:
            assert status == 201, (name, reply)
    # Swift takes `.` and `..`, xfer does not: no normalising client could reach them (docs/api.md)
    for name in (".", ".."):
        await client.put_container(name)
        status, reply = await submitted(service, job_body(name, "image.img"))
        assert status == 400 and reply["error"]["field"] == "source.container"
