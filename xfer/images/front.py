"""Glance's image reads, answered for one region by xfer (the Glance-compatible read endpoint:
web/glance_front.py), so that a stock Glance in another region imports through xfer with its
own `glance-download` method, with no patch to Glance.

Everything is done as the caller, with the token the request came with (glance-download
forwards the user's): the fronted region's Glance says whether the image exists and may be
seen (its reply, a 404 too, is passed on as it is), and its data is read from that region's
Swift with parallel ranged GETs, or through that Glance's ranged /file for a store xfer cannot
read (images/data.py). The whole image is verified against the image's checksum and
os_hash_value before its last byte goes out (engine/stream.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from xfer.clients.glance import GlanceClient
from xfer.clients.keystone import CallerToken
from xfer.clients.openstack import OpenStackClients
from xfer.engine.hashing import Digests
from xfer.engine.object_copy import Copier
from xfer.engine.sources import SourceState
from xfer.engine.stream import Backlog, StreamOutcome, Writer
from xfer.errors import CopyFailed, ErrorCode, FrontRefused, ImageNotActive
from xfer.images.data import ImageData, locate, require_active
from xfer.images.metrics import ImageStreamMetrics
from xfer.proto.glance import Image
from xfer.proto.http import ByteRange, Reply
from xfer.proto.keystone import TokenInfo
from xfer.settings import Settings

log = logging.getLogger(__name__)
SHA512 = "sha512"


@dataclass(frozen=True)
class ImageRead:
    """One image's data, ready to stream: what it must hash to, and where it comes from."""

    image: Image
    expected: Digests
    data: ImageData


class GlanceFront:
    def __init__(self, settings: Settings, openstack: OpenStackClients, copier: Copier,
                 metrics: ImageStreamMetrics) -> None:
        self.settings = settings
        self.region = settings.fronted_region
        self.openstack = openstack
        self.copier = copier
        self.metrics = metrics  # fed by the endpoint, which sees how each stream ends

    def _as_caller(self, token: str, info: TokenInfo) -> tuple[CallerToken, GlanceClient]:
        """The caller's token, and the fronted Glance as the caller."""
        url = info.endpoint("image", self.region)
        if url is None:
            raise FrontRefused(ErrorCode.REGION_NOT_AVAILABLE,
                               f"your catalog has no image endpoint in region {self.region}, "
                               f"which this endpoint reads for")
        caller = CallerToken(token, info)
        return caller, self.openstack.glance(url, caller.token)

    async def image_reply(self, token: str, info: TokenInfo, image_id: str) -> Reply:
        """The fronted Glance's reply to GET /v2/images/{id} for the caller, as it is."""
        _, glance = self._as_caller(token, info)
        return (await glance.image_reply(image_id))[0]

    async def open(self, token: str, info: TokenInfo, image_id: str
                   ) -> tuple[Reply, ImageRead | None]:
        """The image's record as the caller may see it and, when it is a 200, how to read its
        data; FrontRefused when an image that may be seen cannot be served verified."""
        caller, glance = self._as_caller(token, info)
        reply, image = await glance.image_reply(image_id)
        if image is None:
            return reply, None
        try:
            require_active(image, self.region)
        except ImageNotActive as exc:
            raise FrontRefused(ErrorCode.IMAGE_NOT_ACTIVE, exc.message) from None
        if not image.checksum or image.size is None:
            raise FrontRefused(ErrorCode.IMAGE_UNVERIFIABLE,
                               f"image {image.id} has no checksum and size to verify its data "
                               f"against")
        expected = Digests(image.checksum,
                           image.os_hash_value if image.os_hash_algo == SHA512 else None)
        data = await locate(self.openstack, caller, self.region, image, glance,
                            self.settings.read_through_glance)
        return reply, ImageRead(image, expected, data)

    async def stream(self, read: ImageRead, byte_range: ByteRange | None,
                     start_reply: Callable[[], Awaitable[None]], write: Writer,
                     backlog: Backlog) -> StreamOutcome:
        """Stream the image's bytes (all, or `byte_range`) to `write`, in order, once
        `start_reply` sent the headers; the whole image is verified before its last byte.
        First the data must be the size the image records and, for a plain Swift object,
        carry the image's MD5 as its ETag: other data is refused before any byte.
        `backlog`: the bytes written that the reader has not taken yet."""

        async def choose(state: SourceState) -> tuple[int, int]:
            _check_state(read, state)
            if byte_range is None:
                return 0, state.size
            return byte_range.start, byte_range.length

        outcome = await self.copier.stream(read.data.reader, read.expected, write, choose,
                                           start_reply, backlog)
        log.info("streamed image %s (%d of %d bytes, from %s) in %.2fs: %d ranged reads, up "
                 "to %d at once; %s", read.image.id, outcome.bytes_sent, read.image.size or 0,
                 read.data.ref.describe(), outcome.seconds, outcome.reads, outcome.most_reading,
                 "verified MD5" + ("+SHA-512" if read.expected.sha512 else "")
                 if outcome.verified else "a range: pinned to the source version, not hashed")
        return outcome


def _check_state(read: ImageRead, state: SourceState) -> None:
    image = read.image  # open() served only an image with a size and a checksum
    where = read.data.ref.describe()
    if state.size != image.size:
        raise CopyFailed(ErrorCode.CHECKSUM_MISMATCH,
                         f"{where} holds {state.size} bytes, but image {image.id} records "
                         f"{image.size}: its data does not match its image record")
    if state.content_md5 is not None and state.content_md5 != read.expected.md5:
        raise CopyFailed(ErrorCode.CHECKSUM_MISMATCH,
                         f"{where} has MD5 {state.content_md5}, but image {image.id} records "
                         f"checksum {read.expected.md5}: its data does not match its image "
                         f"record")
