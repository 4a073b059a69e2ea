"""The one place that does Swift IO: sends the sans-IO requests of xfer.proto.swift with
aiohttp, re-authenticates once on 401, and maps aiohttp's exceptions to xfer's."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from xfer.errors import IntegrityError, RemoteError, TransportError
from xfer.proto import swift
from xfer.proto.http import Reply, Request
from xfer.settings import RegionConfig

log = logging.getLogger(__name__)
RequestFactory = Callable[[swift.Credentials], Request]


@asynccontextmanager
async def translated_errors(request: Request) -> AsyncIterator[None]:
    try:
        yield
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
        raise TransportError(swift.SERVICE, request.method, request.path, reason) from exc


def _listing_page(creds: swift.Credentials, *, container: str, prefix: str,
                  marker: str) -> Request:
    return swift.list_objects_request(creds, container, prefix, marker)


class BufferPayload(aiohttp.payload.Payload):
    """A request body sent from a buffer in slices, so the socket's flow control paces it and
    no copy of the whole buffer is made (aiohttp's bytes payload writes it in one piece)."""

    SLICE = 1 << 20

    def __init__(self, buffer: bytes | bytearray | memoryview) -> None:
        view = memoryview(buffer).cast("B")
        super().__init__(view, content_type="application/octet-stream")
        self._size = len(view)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._value).decode(encoding, errors)

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        view: memoryview = self._value
        end = len(view) if content_length is None else min(len(view), content_length)
        for start in range(0, end, self.SLICE):
            await writer.write(view[start:min(end, start + self.SLICE)])


def _body(body: bytes | bytearray | memoryview | None) -> Any:
    if body is None or len(body) <= BufferPayload.SLICE:
        return body
    return BufferPayload(body)


class SwiftClient:
    """One region's Swift, with the token cached and renewed once when it is refused."""

    def __init__(self, http: aiohttp.ClientSession, region: RegionConfig) -> None:
        self.http = http
        self.region = region
        self._credentials: swift.Credentials | None = None
        self._auth_lock = asyncio.Lock()

    async def credentials(self) -> swift.Credentials:
        if self._credentials is None:
            await self._authenticate(stale=None)
        assert self._credentials is not None
        return self._credentials

    async def _authenticate(self, stale: swift.Credentials | None) -> None:
        async with self._auth_lock:
            if self._credentials is not None and self._credentials is not stale:
                return  # another task renewed it meanwhile
            request = swift.auth_v1_request(self.region.auth_url, self.region.user,
                                            self.region.key)
            reply = await self._exchange(request)
            self._credentials = swift.parse_auth_v1(request, reply)

    async def _exchange(self, request: Request) -> Reply:
        async with translated_errors(request), self.http.request(
            request.method, request.url, headers=request.headers, params=request.params,
            data=_body(request.body),
        ) as response:
            body = await response.read()
            return Reply(response.status, response.headers, body)

    async def send(self, build: RequestFactory) -> tuple[Request, Reply]:
        """Send a request with a small body reply; on 401 renew the token once and resend."""
        creds = await self.credentials()
        request = build(creds)
        reply = await self._exchange(request)
        if reply.status == 401:
            log.info("token refused by %s, authenticating again", self.region.name)
            await self._authenticate(stale=creds)
            request = build(await self.credentials())
            reply = await self._exchange(request)
        return request, reply

    # --- operations ---------------------------------------------------------------------

    async def limits(self) -> swift.Limits:
        return swift.parse_info(*await self.send(lambda c: swift.info_request(c.storage_url)))

    async def head_object(self, container: str, obj: str) -> swift.ObjectHead:
        return swift.parse_object_head(
            *await self.send(lambda c: swift.head_object_request(c, container, obj)))

    async def put_container(self, container: str) -> None:
        swift.check_put_container_reply(
            *await self.send(lambda c: swift.put_container_request(c, container)))

    async def put_object(self, container: str, obj: str, body: Any, etag: str,
                         metadata: dict[str, str] | None = None) -> None:
        request, reply = await self.send(
            lambda c: swift.put_object_request(c, container, obj, body, etag, metadata))
        swift.check_put_reply(request, reply, etag)

    async def put_manifest(self, container: str, obj: str, segments: list[swift.ManifestSegment],
                           metadata: dict[str, str] | None = None) -> str:
        return swift.parse_manifest_put_reply(*await self.send(
            lambda c: swift.put_manifest_request(c, container, obj, segments, metadata)))

    async def delete_manifest(self, container: str, obj: str) -> bool:
        return swift.parse_manifest_delete_reply(
            *await self.send(lambda c: swift.delete_manifest_request(c, container, obj)))

    async def delete_object(self, container: str, obj: str) -> bool:
        return swift.check_delete_reply(
            *await self.send(lambda c: swift.delete_object_request(c, container, obj)))

    async def get_manifest(self, container: str, obj: str) -> list[swift.ManifestSegment]:
        return swift.parse_manifest(
            *await self.send(lambda c: swift.manifest_get_request(c, container, obj)))

    async def list_objects(self, container: str, prefix: str = "") -> list[swift.Listed]:
        """Every object under `prefix`, following Swift's pages of at most 10,000 names."""
        listed: list[swift.Listed] = []
        while True:
            marker = listed[-1].name if listed else ""
            page = swift.parse_listing(*await self.send(
                functools.partial(_listing_page, container=container, prefix=prefix,
                                  marker=marker)))
            if not page:
                return listed
            listed.extend(page)

    async def read_range_into(self, container: str, obj: str, start: int, object_size: int,
                              buffer: memoryview) -> None:
        """Fill `buffer` with bytes [start, start + len(buffer)) of the object, exactly."""
        length = len(buffer)
        for attempt in range(2):
            creds = await self.credentials()
            request = swift.get_range_request(creds, container, obj, start, length)
            async with translated_errors(request), self.http.get(
                request.url, headers=request.headers
            ) as response:
                if response.status == 401 and attempt == 0:
                    await self._authenticate(stale=creds)
                    continue
                head = Reply(response.status, response.headers,
                             b"" if response.status < 300 else await response.read())
                swift.check_ranged_reply(request, head, start, length, object_size)
                await _read_exactly(request, response, buffer)
                return
        raise RemoteError(swift.SERVICE, "GET", request.path, 401, None, "token refused twice")


async def _read_exactly(request: Request, response: aiohttp.ClientResponse,
                        buffer: memoryview) -> None:
    filled = 0
    async for chunk in response.content.iter_any():
        end = filled + len(chunk)
        if end > len(buffer):
            raise IntegrityError(f"{request.method} {request.path}: body longer than the "
                                 f"{len(buffer)} bytes asked")
        buffer[filled:end] = chunk
        filled = end
    if filled != len(buffer):
        raise IntegrityError(f"{request.method} {request.path}: body ended after {filled} of "
                             f"{len(buffer)} bytes")


class SwiftRegions:
    """One SwiftClient per configured region, sharing one aiohttp session (one pool)."""

    def __init__(self, http: aiohttp.ClientSession, regions: dict[str, RegionConfig]) -> None:
        self._clients = {name: SwiftClient(http, config) for name, config in regions.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._clients

    def __getitem__(self, name: str) -> SwiftClient:
        return self._clients[name]

    @property
    def names(self) -> list[str]:
        return sorted(self._clients)
