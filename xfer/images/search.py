"""The checksum index across regions: which regions of the caller's catalog hold an active
image with given content that the caller may see.

Each region's Glance answers with the caller's own token, so Glance's visibility rules (own,
shared, community, public) decide what is found, never xfer's: a user cannot learn of an image
it could not read. Glance filters by `checksum` (MD5) and `os_hash_value` (SHA-512) itself.
Images of the caller's project that are hidden from listings (`os_hidden`) count too: Glance
lists those only when asked, and only the project's own are asked for (another project hid
its images from everyone's listings).

A Glance with `do_secure_hash = False` records no MD5 for an image whose location xfer added
(images/registered.py). So a search by MD5 alone also asks, by SHA-512, for the images without a
checksum whose SHA-512 xfer verified together with that MD5 when it copied them (`paired`,
from xfer's own index of verified copies): still with the caller's token, so Glance's
visibility rules decide, and a pairing tells the caller nothing about images it cannot see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from xfer.clients.glance import GlanceClient, oldest_first
from xfer.clients.openstack import OpenStackClients
from xfer.errors import XferError
from xfer.proto.glance import Image
from xfer.proto.keystone import TokenInfo


@dataclass(frozen=True)
class RegionMatch:
    region: str
    image: Image | None  # the oldest matching image, None when there is none
    count: int  # how many match in that region
    error: str | None = None  # the region could not be asked (its Glance failed)


class ImageSearch:
    def __init__(self, openstack: OpenStackClients) -> None:
        self.openstack = openstack

    async def find(self, info: TokenInfo, token: str, *, checksum: str | None,
                   os_hash_value: str | None, paired: Sequence[str] = ()) -> list[RegionMatch]:
        """One entry per region of the caller's catalog holding images (an image and an
        object-store endpoint: not a front such as `RegionOne-via-xfer`), by name. `paired`:
        SHA-512 values xfer verified with `checksum` (used when only `checksum` is given)."""
        also = tuple(paired) if checksum is not None and os_hash_value is None else ()

        async def user_token() -> str:
            return token

        async def in_region(region: str, url: str) -> RegionMatch:
            return await _match(region, self.openstack.glance(url, user_token),
                                info.project_id, checksum, os_hash_value, also)

        endpoints = {region: info.endpoint("image", region) for region in info.storage_regions()}
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(in_region(region, url))
                     for region, url in sorted(endpoints.items()) if url]
        return [task.result() for task in tasks]


    async def owned(self, info: TokenInfo, token: str, region: str) -> list[Image]:
        """The active images the caller's project owns in `region` (the web view's copy
        form), oldest first; nothing for a region without an image endpoint."""

        async def user_token() -> str:
            return token

        url = info.endpoint("image", region) if region in info.storage_regions() else None
        if url is None:
            return []
        return await self.openstack.glance(url, user_token).images_with(owner=info.project_id)


async def _match(region: str, glance: GlanceClient, project_id: str, checksum: str | None,
                 os_hash_value: str | None, paired: Sequence[str] = ()) -> RegionMatch:
    try:
        found = await _visible(glance, project_id, checksum, os_hash_value)
        for sha512 in paired:  # copies whose Glance computed no MD5
            found += [image for image in await _visible(glance, project_id, None, sha512)
                      if image.checksum is None]
        images = oldest_first(found)
    except XferError as exc:
        return RegionMatch(region, None, 0, f"the image service of {region} failed: {exc}")
    # Both filters may be given: Glance ANDs them. Oldest first (images_with's order).
    return RegionMatch(region, images[0] if images else None, len(images))


async def _visible(glance: GlanceClient, project_id: str, checksum: str | None,
                   os_hash_value: str | None) -> list[Image]:
    """Listed, and the project's own hidden ones (possibly twice: oldest_first dedupes)."""
    listed = await glance.images_with(checksum=checksum, os_hash_value=os_hash_value)
    hidden = await glance.images_with(checksum=checksum, os_hash_value=os_hash_value,
                                      owner=project_id, hidden=True)
    return listed + hidden
