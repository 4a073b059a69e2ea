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
from xfer.engine.sources import GlanceImageSource, SourceReader, SwiftSource
from xfer.engine.types import ObjectRef
from xfer.errors import UnsupportedStore
from xfer.proto import swift
from xfer.proto.glance import Image, swift_location

# The source container of bytes read through the source Glance's /file (the image id is the
# object): what a job shows as its source then.
THROUGH_GLANCE = "glance:file"


@dataclass(frozen=True)
class ImageData:
    ref: ObjectRef  # the Swift object, or THROUGH_GLANCE/<image id>
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
        return ImageData(ObjectRef(region, THROUGH_GLANCE, image.id),
                         GlanceImageSource(glance, image.id, image.size or 0), None)
    ref = ObjectRef(region, location.container, location.object)
    client = openstack.swift(tokens, region,
                             swift.account_of(location.storage_url).removeprefix("AUTH_"))
    return ImageData(ref, SwiftSource(client, ref), client)
