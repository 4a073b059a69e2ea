"""Glance IO: one region's image API, as a user (its token, or a trust's), with xfer's own
token as the service token where Glance's policy asks for one (registering a location)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from xfer.clients.transport import (
    RangeProgress,
    exchange,
    read_exactly,
    translated_errors,
    wire_url,
)
from xfer.errors import (
    ConfigError,
    CopyFailed,
    ImageNotFound,
    ImportFailed,
    RegistrationFailed,
)
from xfer.proto import glance
from xfer.proto.glance import Image, ImageTask, SwiftLocation
from xfer.proto.http import Reply, Request

log = logging.getLogger(__name__)
TokenSource = Callable[[], Awaitable[str]]
# Statuses from which an image never becomes active by itself.
DEAD_STATUSES = frozenset({"killed", "deleted", "pending_delete", "deactivated"})


class GlanceClient:
    def __init__(self, http: aiohttp.ClientSession, image_url: str, user_token: TokenSource,
                 service_token: TokenSource | None = None) -> None:
        self.http = http
        self.image_url = image_url.rstrip("/")
        self._user_token = user_token
        self._service_token = service_token

    async def _send(self, request: Request) -> tuple[Request, Reply]:
        return request, await exchange(self.http, glance.SERVICE, request)

    async def read_range_into(self, image_id: str, start: int, image_size: int,
                              buffer: memoryview, progress: RangeProgress | None = None) -> None:
        """Fill `buffer` with bytes [start, start + len(buffer)) of the image's data, read
        through Glance (`/file` with Range): for images in a store xfer cannot read itself.
        An active image's data never changes, so no read needs pinning."""
        request = glance.file_range_request(self.image_url, await self._user_token(), image_id,
                                            start, len(buffer))
        async with translated_errors(glance.SERVICE, request), self.http.get(
                wire_url(request), headers=request.headers) as response:
            head = Reply(response.status, response.headers,
                         b"" if response.status < 300 else await response.read())
            glance.check_file_range_reply(request, head, start, len(buffer), image_size)
            await read_exactly(request, response, buffer, progress)

    async def image_reply(self, image_id: str) -> tuple[Reply, Image | None]:
        """Glance's own reply to GET /v2/images/{id}, to pass on as it is, and the image when
        it is a 200."""
        request, reply = await self._send(
            glance.image_request(self.image_url, await self._user_token(), image_id))
        return reply, glance.parse_image(request, reply) if reply.status == 200 else None

    async def image(self, image_id: str) -> Image:
        return glance.parse_image(*await self._send(
            glance.image_request(self.image_url, await self._user_token(), image_id)))

    async def create_image(self, body: Mapping[str, Any]) -> Image:
        return glance.parse_created_image(*await self._send(
            glance.create_image_request(self.image_url, await self._user_token(), body)))

    async def delete_image(self, image_id: str) -> bool:
        return glance.parse_deleted(*await self._send(
            glance.delete_image_request(self.image_url, await self._user_token(), image_id)))

    async def add_location(self, image_id: str, location: SwiftLocation, os_hash_algo: str,
                           os_hash_value: str) -> None:
        """Register `location` as the data of the queued image; Glance reads and checks it
        afterwards (see wait_active). Beware: when its check fails, Glance deletes the object
        and its container."""
        if self._service_token is None:
            raise ConfigError("registering a location needs xfer's service token")
        request = glance.add_location_request(
            self.image_url, await self._user_token(), await self._service_token(), image_id,
            glance.location_url(location), os_hash_algo, os_hash_value)
        glance.parse_location_added(*await self._send(request))
        log.info("location of image %s registered; Glance verifies it", image_id)

    async def upload_empty(self, image_id: str) -> None:
        """Give the queued image its data: none (Glance then computes the checksums of no
        bytes, and the image becomes active)."""
        glance.check_uploaded(*await self._send(glance.empty_upload_request(
            self.image_url, await self._user_token(), image_id)))

    async def tasks(self, image_id: str) -> list[ImageTask]:
        return glance.parse_image_tasks(*await self._send(
            glance.image_tasks_request(self.image_url, await self._user_token(), image_id)))

    async def images_with(self, *, checksum: str | None = None, os_hash_value: str | None = None,
                          owner: str | None = None, hidden: bool = False,
                          page_size: int | None = None) -> list[Image]:
        """Every active image the user sees with this checksum (and/or os_hash_value), oldest
        first, across all pages; `owner`: that project's only; `hidden`: only those hidden
        from listings (os_hidden), which Glance leaves out unless asked."""
        found: list[Image] = []
        marker: str | None = None
        while True:
            page, following = glance.parse_images(*await self._send(glance.list_images_request(
                self.image_url, await self._user_token(), checksum=checksum,
                os_hash_value=os_hash_value, owner=owner, hidden=hidden, marker=marker,
                limit=page_size)))
            found.extend(page)
            if following is None or following == marker:
                return found
            marker = following

    # `timeout` is how long Glance may take to verify (it re-reads the object at ~170 MB/s),
    # part of what registration means, so it is a parameter, not the caller's asyncio.timeout.
    async def wait_active(self, image_id: str, *, timeout: float,  # noqa: ASYNC109
                          stall_after: float, since: ImageTask | None = None,
                          poll: float = 0.5) -> Image:
        """The image once active, following it and its import task. ImportFailed as soon as
        a task newer than `since` (the newest before the location was added) failed and
        Glance reverted the image to queued (with the task's message);
        RegistrationFailed `registration_stalled` when neither the image's status nor its
        newest task changed for `stall_after` seconds (a task Glance lost stays processing
        for ever); RegistrationFailed when the image is gone, killed or deactivated;
        `registration_timeout` when `timeout` seconds passed."""
        loop = asyncio.get_running_loop()
        status, last_task = "unknown", await self.newest_task(image_id)
        changed_at = loop.time()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    image = await self._registered(image_id)
                    if image.status == "active":
                        return image
                    if image.status != status:
                        status, changed_at = image.status, loop.time()
                    # The tasks are read only when they can tell something: Glance's task
                    # listing is a database read, which under load held up the very imports
                    # it watched (Glance on sqlite, measured: "database is locked").
                    if status == "queued":
                        await self._check_failed(image_id, since)
                    if loop.time() - changed_at > stall_after:
                        newest = await self.newest_task(image_id)
                        if newest == last_task:
                            raise RegistrationFailed(
                                f"Glance at {self.image_url} stopped registering image "
                                f"{image_id}: it stayed {status}, its import task "
                                f"{newest.status if newest else 'absent'}, for "
                                f"{stall_after:g} s", code="registration_stalled")
                        last_task, changed_at = newest, loop.time()
                    await asyncio.sleep(poll)
        except TimeoutError:
            raise CopyFailed(
                "registration_timeout",
                f"image {image_id} in Glance at {self.image_url} is still {status} after "
                f"{timeout:g} s: Glance did not finish verifying the copy's data") from None

    async def newest_task(self, image_id: str) -> ImageTask | None:
        tasks = await self.tasks(image_id)
        return tasks[-1] if tasks else None

    async def _check_failed(self, image_id: str, since: ImageTask | None) -> None:
        """A queued image whose newest task, newer than `since`, failed: Glance reverted it
        (and deleted its data)."""
        newest = await self.newest_task(image_id)
        if newest is not None and newest.status == "failure" and newest != since:
            raise ImportFailed(
                f"Glance at {self.image_url} did not accept the copy's data for image "
                f"{image_id}: its location import failed "
                f"({newest.message or 'no reason given'})")

    async def _registered(self, image_id: str) -> Image:
        try:
            image = await self.image(image_id)
        except ImageNotFound as exc:
            raise RegistrationFailed(f"image {image_id} disappeared from Glance at "
                                     f"{self.image_url} while it was being registered") from exc
        if image.status in DEAD_STATUSES:
            raise RegistrationFailed(f"image {image_id} in Glance at {self.image_url} became "
                                     f"{image.status} instead of active")
        return image


async def images_of_project(glance: GlanceClient, project_id: str, *, checksum: str | None,
                            os_hash_value: str | None = None) -> list[Image]:
    """The active images a project owns with this content, those hidden from listings too,
    oldest first."""
    listed = await glance.images_with(checksum=checksum, os_hash_value=os_hash_value,
                                      owner=project_id)
    hidden = await glance.images_with(checksum=checksum, os_hash_value=os_hash_value,
                                      owner=project_id, hidden=True)
    return oldest_first(listed, hidden)


def oldest_first(*lists: list[Image]) -> list[Image]:
    """The images of several listings, each once, oldest first (ties by id, as Glance)."""
    unique = {image.id: image for images in lists for image in images}
    return sorted(unique.values(), key=lambda image: (image.created_at or "", image.id))
