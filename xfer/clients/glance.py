"""One region's Glance, called with a token from a callable (a trust-scoped token that renews
itself, or a caller's token for the length of one request)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from xfer.clients.transport import exchange
from xfer.errors import CopyFailed, ImageNotFound, XferError
from xfer.proto import glance
from xfer.proto.glance import Image, SwiftLocation
from xfer.proto.http import Reply, Request

log = logging.getLogger(__name__)
TokenSource = Callable[[], Awaitable[str]]
MAX_PAGES = 100  # images_with: at most 10,000 matches, in case a Glance pages for ever


class GlanceClient:
    def __init__(self, http: aiohttp.ClientSession, image_url: str, user_token: TokenSource,
                 service_token: TokenSource | None = None) -> None:
        self.http = http
        self.image_url = image_url
        self._user_token = user_token
        self._service_token = service_token

    async def _send(self, request: Request) -> Reply:
        return await exchange(self.http, glance.SERVICE, request)

    async def image(self, image_id: str) -> Image:
        request = glance.image_request(self.image_url, await self._user_token(), image_id)
        return glance.parse_image(request, await self._send(request))

    async def create_image(self, body: dict[str, Any]) -> Image:
        request = glance.create_image_request(self.image_url, await self._user_token(), body)
        return glance.parse_created_image(request, await self._send(request))

    async def delete_image(self, image_id: str) -> bool:
        request = glance.delete_image_request(self.image_url, await self._user_token(), image_id)
        return glance.parse_deleted(request, await self._send(request))

    async def add_location(self, image_id: str, location: SwiftLocation, os_hash_algo: str,
                           os_hash_value: str) -> None:
        if self._service_token is None:
            raise XferError("adding a location needs xfer's service token")
        request = glance.add_location_request(
            self.image_url, await self._user_token(), await self._service_token(), image_id,
            glance.location_url(location), os_hash_algo, os_hash_value)
        glance.parse_location_added(request, await self._send(request))

    async def images_with(self, *, checksum: str | None = None,
                          os_hash_value: str | None = None) -> list[Image]:
        """Every active image with that content the token may see, oldest first."""
        found: list[Image] = []
        marker = None
        for _ in range(MAX_PAGES):
            request = glance.list_images_request(
                self.image_url, await self._user_token(), checksum=checksum,
                os_hash_value=os_hash_value, marker=marker)
            page, marker = glance.parse_image_list(request, await self._send(request))
            found.extend(page)
            if marker is None:
                break
        return found

    async def failed_task(self, image_id: str) -> str | None:
        """The message of the image's last failed task, if any."""
        request = glance.image_tasks_request(self.image_url, await self._user_token(), image_id)
        try:
            tasks = glance.parse_image_tasks(request, await self._send(request))
        except XferError:
            return None
        failed = [message for status, message in tasks if status == "failure"]
        return failed[-1] if failed else None

    async def wait_active(self, image_id: str, *, within: float, poll: float = 0.5) -> Image:
        """The image once active. Glance reads a new location back and checks its hashes in
        a task: when that fails the image returns to `queued` (and Glance deletes the data);
        that, `killed` or the image's deletion is `registration_failed` with Glance's reason."""
        try:
            async with asyncio.timeout(within):
                while True:
                    try:
                        image = await self.image(image_id)
                    except ImageNotFound:
                        raise CopyFailed("registration_failed",
                                         f"the target image {image_id} was deleted while "
                                         f"Glance registered it") from None
                    if image.status == "active":
                        return image
                    if image.status in ("killed", "deleted", "pending_delete"):
                        raise CopyFailed("registration_failed",
                                         f"the target image {image_id} became "
                                         f"{image.status} while Glance registered its data")
                    if image.status == "queued":
                        reason = await self.failed_task(image_id)
                        if reason is not None:
                            raise CopyFailed("registration_failed",
                                             f"the target Glance did not accept the copy's "
                                             f"data: {reason}")
                    await asyncio.sleep(poll)
        except TimeoutError:
            raise CopyFailed("registration_timeout",
                             f"the target image {image_id} was not active after {within:.0f} "
                             f"s: Glance is still reading the data back, or stuck") from None
