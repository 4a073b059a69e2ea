"""Swift IO: sends the sans-IO requests of xfer.proto.swift through the transport, with the
token from the region's Authenticator, renewed once when Swift refuses it."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from xfer.clients.auth import Authenticator, TempAuth
from xfer.clients.transport import RangeProgress, bulk_http, exchange
from xfer.errors import IntegrityError, XferError
from xfer.proto import swift
from xfer.proto.http import Reply, Request
from xfer.settings import RegionConfig

log = logging.getLogger(__name__)
RequestFactory = Callable[[swift.Credentials], Request]
T = TypeVar("T")


class TokenRefused(XferError):
    """Swift answered 401 to a token that may merely have expired: authenticate again (and,
    for a streamed body, which cannot be replayed here, send it again)."""

    retryable = True


def _listing_page(creds: swift.Credentials, *, container: str, prefix: str,
                  marker: str) -> Request:
    return swift.list_objects_request(creds, container, prefix, marker)


class SwiftClient:
    """One region's Swift, with the token cached and renewed once when it is refused."""

    def __init__(self, http: aiohttp.ClientSession, region: RegionConfig,
                 auth: Authenticator | None = None) -> None:
        self.http = http
        self.bulk = bulk_http(http)  # ranged GETs and streamed PUTs: the bulk bytes
        self.region = region
        self.auth = auth or TempAuth(region)
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
            self._credentials = await self.auth.authenticate(self.http)

    async def _authorized(self, attempt: Callable[[swift.Credentials, bool], Awaitable[T]]
                          ) -> T:
        """The re-authentication flow, in one place: run `attempt(credentials, final)`; when
        it raises TokenRefused, authenticate again and run it once more as the final one (a
        final attempt passes a 401 on to the reply parsers, which say what was refused)."""
        creds = await self.credentials()
        try:
            return await attempt(creds, False)
        except TokenRefused:
            log.info("token refused by %s, authenticating again", self.region.name)
            await self._authenticate(stale=creds)
        return await attempt(await self.credentials(), True)

    async def send(self, build: RequestFactory) -> tuple[Request, Reply]:
        """Send a request with a small body reply."""

        async def attempt(creds: swift.Credentials, final: bool) -> tuple[Request, Reply]:
            request = build(creds)
            reply = await exchange(self.http, swift.SERVICE, request)
            if reply.status == 401 and not final:
                raise TokenRefused(request.path)
            return request, reply

        return await self._authorized(attempt)

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

    async def put_streamed(self, container: str, obj: str, views: AsyncIterator[memoryview],
                           length: int, etag: str | None,
                           metadata: dict[str, str] | None = None) -> str:
        """PUT `length` bytes streamed from `views`; returns the ETag Swift stored. Not
        re-sent on a 401: a streamed body cannot be replayed (the caller reads it again)."""
        creds = await self.credentials()
        request = swift.put_stream_request(creds, container, obj, length, etag, metadata)
        reply = await self.bulk.put_stream(swift.SERVICE, request, views, length)
        if reply.status == 401:
            await self._authenticate(stale=creds)  # the retry of the whole segment uses it
            raise TokenRefused(f"{request.method} {request.path}: token refused")
        return swift.parse_stream_put_reply(request, reply, etag)

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

    async def delete_container(self, container: str) -> bool:
        """True when deleted, False when gone already; RemoteError 409 when not empty."""
        return swift.check_delete_container_reply(
            *await self.send(lambda c: swift.delete_container_request(c, container)))

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

    async def list_containers(self) -> list[str]:
        """Every container of the account, following Swift's pages."""
        names: list[str] = []
        while True:
            marker = names[-1] if names else ""
            page = swift.parse_container_listing(*await self.send(
                functools.partial(swift.list_containers_request, marker=marker)))
            if not page:
                return names
            names.extend(page)

    async def read_range_into(self, container: str, obj: str, start: int, object_size: int,
                              buffer: memoryview, if_match: str | None = None,
                              progress: RangeProgress | None = None) -> None:
        """Fill `buffer` with bytes [start, start + len(buffer)) of the object, exactly; of the
        version whose ETag is `if_match` (else SourceChanged). `progress` counts the bytes
        landed, so that a caller retrying after a broken read can resume after them."""
        length = len(buffer)

        async def attempt(creds: swift.Credentials, final: bool) -> None:
            request = swift.get_range_request(creds, container, obj, start, length, if_match)
            async with self.bulk.get(swift.SERVICE, request) as response:
                if response.status == 401 and not final:
                    raise TokenRefused(request.path)
                head = Reply(response.status, response.headers,
                             b"" if response.status < 300 else await response.read())
                swift.check_ranged_reply(request, head, start, length, object_size)
                try:
                    await response.read_into(buffer, progress)
                except IntegrityError as exc:
                    raise IntegrityError(f"{request.method} {request.path}: {exc}") from None

        await self._authorized(attempt)


class SwiftRegions:
    """One SwiftClient per configured region, sharing one aiohttp session (one pool)."""

    def __init__(self, http: aiohttp.ClientSession, regions: dict[str, RegionConfig]) -> None:
        self._clients = {name: SwiftClient(http, config) for name, config in regions.items()}

    def __getitem__(self, name: str) -> SwiftClient:
        return self._clients[name]

    def items(self) -> list[tuple[str, SwiftClient]]:
        return sorted(self._clients.items())
