"""Where an image's bytes are, and how xfer reads them as the user: from the source Swift
(the object Glance's location names, plain, SLO or DLO) when the image is there, else through
the source Glance's ranged `/file` (a file or RBD store, a single-tenant Swift), unless the
operator turned that off (XFER_READ_THROUGH_GLANCE=false: such images are unsupported_store).

Shared by the copy flow (images/flow.py) and the Glance-compatible read endpoint
(images/front.py), so both read an image the same way.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from xfer.clients.glance import GlanceClient
from xfer.clients.keystone import UserTokens, account_url
from xfer.clients.openstack import OpenStackClients
from xfer.clients.swift import SwiftClient
from xfer.clients.transport import RangeProgress
from xfer.engine.sources import SourceReader, SourceState, SwiftSource
from xfer.engine.types import ObjectRef
from xfer.errors import ImageNotActive, UnsupportedStore
from xfer.images.types import ImageSource, ThroughGlance
from xfer.proto import swift
from xfer.proto.glance import (
    SWIFT_SCHEMES,
    Image,
    SwiftLocation,
    location_scheme,
    parse_location_url,
)

# What the stores a Glance location may name are, in words, for unsupported_store.
_STORE_NAMES = {
    "swift+config": "a single-tenant Swift store (swift+config://, credentials from Glance's "
                    "own config)",
    "swift": "a single-tenant Swift store with credentials in the URL (swift://)",
    "file": "Glance's file store (file://, on the Glance host's disk)",
    "filesystem": "Glance's file store",
    "rbd": "a Ceph RBD store (rbd://)",
    "cinder": "a Cinder volume store (cinder://)",
    "http": "the web (an http:// location, read-only)",
    "https": "the web (an https:// location, read-only)",
    "s3": "an S3 store (s3://)",
    "vsphere": "a VMware datastore (vsphere://)",
}


@dataclass(frozen=True)
class ImageData:
    ref: ImageSource  # the Swift object, or the image through its Glance
    reader: SourceReader
    swift: SwiftClient | None  # the source Swift, as the user, when the bytes are in it

    @property
    def path(self) -> str:
        """Which way the bytes come: "swift" or "glance"."""
        return "swift" if self.swift is not None else "glance"


async def locate(openstack: OpenStackClients, tokens: UserTokens, region: str, image: Image,
                 glance: GlanceClient, read_through_glance: bool) -> ImageData:
    """The image's bytes in `region`, read as the tokens' user; UnsupportedStore when they are
    in no Swift xfer can name and reading through Glance is off."""
    info = await tokens.info()
    # Where the multi-tenant store keeps the owner's images, when Glance hides direct_url
    # ("": no account xfer can name, and swift_location says unsupported_store).
    owner_url = ""
    store_url = info.endpoint("object-store", region)
    if store_url and image.owner:
        with contextlib.suppress(ValueError):
            owner_url = account_url(store_url, info.project_id, image.owner)
    try:
        location = swift_location(image, owner_url)
    except UnsupportedStore:
        if not read_through_glance:
            raise
        # A store xfer cannot read itself: the bytes come through the source Glance's ranged
        # /file, still verified end to end.
        return ImageData(ThroughGlance(region, image.id),
                         GlanceImageSource(glance, image.id, image.size or 0), None)
    ref = ObjectRef(region, location.container, location.object)
    client = openstack.swift(tokens, region,
                             swift.account_of(location.storage_url).removeprefix("AUTH_"))
    return ImageData(ref, SwiftSource(client, ref), client)


class GlanceImageSource:
    """An active image's data read through its Glance (`GET /v2/images/{id}/file` with
    Range), in parallel: for images in a store xfer cannot read itself (file, RBD, a
    single-tenant Swift). Glance never changes an active image's data, and the image's own
    checksum is what the copy is verified against."""

    def __init__(self, glance: GlanceClient, image_id: str, size: int) -> None:
        self.glance = glance
        self.image_id = image_id
        self.size = size

    def describe(self) -> str:
        return f"image {self.image_id} through {self.glance.image_url}/v2/images/…/file"

    async def state(self) -> SourceState:
        return SourceState(self.size, self.image_id, None)

    async def segments(self, state: SourceState) -> list[tuple[int, str]]:
        return []

    async def read_into(self, state: SourceState, start: int, view: memoryview,
                        progress: RangeProgress) -> None:
        await self.glance.read_range_into(self.image_id, start, state.size, view, progress)


def require_active(image: Image, region: str) -> Image:
    """Only an active image has data, and the checksums to verify it: a copy or a read of any
    other is ImageNotActive (source_image_not_active)."""
    if image.status != "active":
        raise ImageNotActive(f"image {image.id} in {region} is {image.status}; only an active "
                             f"image has data to copy or read")
    return image


def swift_location(image: Image, owner_storage_url: str) -> SwiftLocation:
    """Where the image's bytes are in Swift, readable with the user's (trust) token.

    From `direct_url` when Glance shows it, a multi-tenant Swift store's location
    (proto.glance.parse_location_url); any other store is UnsupportedStore, saying which.
    Without `direct_url`: the multi-tenant store's own convention,
    `<owner_storage_url>/glance_<id>/<id>`.
    """
    if image.direct_url is None:
        if image.stores and "swift" not in image.stores.split(","):
            raise UnsupportedStore(_unsupported(image, f"the store(s) {image.stores}"))
        if not owner_storage_url:
            raise UnsupportedStore(_unsupported(
                image, "a store Glance does not show (no direct_url), and the catalog has no "
                       "object store to look in"))
        return SwiftLocation(owner_storage_url.rstrip("/"), f"glance_{image.id}", image.id)
    scheme = location_scheme(image.direct_url)
    if scheme not in SWIFT_SCHEMES:
        store = _STORE_NAMES.get(scheme, f"a store xfer does not know ({scheme or 'no'} scheme)")
        raise UnsupportedStore(_unsupported(image, store))
    try:
        return parse_location_url(image.direct_url)
    except ValueError:
        raise UnsupportedStore(_unsupported(
            image, "a Swift location that is not a multi-tenant store's "
                   "(credentials in the URL, or not .../AUTH_<project>/<container>/<object>)")
        ) from None


def _unsupported(image: Image, store: str) -> str:
    return (f"image {image.id} is stored in {store}, which xfer cannot read with the user's "
            f"token; xfer copies images whose data is in a multi-tenant Swift store "
            f"(swift_store_multi_tenant = true: locations swift+http(s)://HOST/v1/AUTH_<project>"
            f"/glance_<id>/<id>)")
