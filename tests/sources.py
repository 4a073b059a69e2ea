"""Put test sources in place in a real Swift region (plain objects, SLOs and DLOs), and read
what a copy wrote back."""

from __future__ import annotations

import hashlib
import os

from xfer.clients.swift import SwiftClient
from xfer.proto import swift


def payload(size: int) -> bytes:
    return os.urandom(size)


async def put_plain(client: SwiftClient, container: str, name: str, data: bytes) -> None:
    await client.put_container(container)
    await client.put_object(container, name, data, hashlib.md5(data).hexdigest())


async def put_slo(client: SwiftClient, container: str, name: str, data: bytes,
                  segment_size: int) -> str:
    """Upload `data` as an SLO with segments in `<container>_segments`; returns its ETag."""
    segment_container = f"{container}_segments"
    await client.put_container(container)
    await client.put_container(segment_container)
    manifest = []
    for index, offset in enumerate(range(0, len(data), segment_size)):
        chunk = data[offset:offset + segment_size]
        segment_name = f"{name}/{index:08d}"
        etag = hashlib.md5(chunk).hexdigest()
        await client.put_object(segment_container, segment_name, chunk, etag)
        manifest.append(swift.ManifestSegment(f"/{segment_container}/{segment_name}", etag,
                                              len(chunk)))
    return await client.put_manifest(container, name, manifest)


async def put_dlo(client: SwiftClient, container: str, name: str, data: bytes,
                  segment_size: int) -> str:
    """Upload `data` as a DLO the way Glance's Swift store writes one: segments
    `<name>-00001`... in the same container, then a 0-byte manifest with X-Object-Manifest.
    Returns the DLO's ETag as Swift reports it."""
    await client.put_container(container)
    for index, offset in enumerate(range(0, len(data), segment_size), start=1):
        chunk = data[offset:offset + segment_size]
        await client.put_object(container, f"{name}-{index:05d}", chunk,
                                hashlib.md5(chunk).hexdigest())
    await client.send(lambda c: swift.Request(
        "PUT", swift.object_url(c.storage_url, container, name),
        {"X-Auth-Token": c.token, "X-Object-Manifest": f"{container}/{name}-",
         "Content-Length": "0"}, body=b""))
    return (await client.head_object(container, name)).etag


async def read_back(client: SwiftClient, container: str, name: str) -> bytes:
    """The whole object as Swift serves it."""
    head = await client.head_object(container, name)
    buffer = bytearray(head.size)
    if head.size:
        await client.read_range_into(container, name, 0, head.size, memoryview(buffer))
    return bytes(buffer)
