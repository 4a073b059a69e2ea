"""The Glance-compatible read endpoint: `GET /v2/images/{id}` and `GET /v2/images/{id}/file`
(with Range) for the region xfer fronts (XFER_FRONT_REGION, default its home region), so that
a stock Glance elsewhere imports through xfer with `glance-download` (images/front.py).

The catalog lists this endpoint as an `image` endpoint of a region of its own (the local
cloud: `RegionOne-via-xfer`); every other Glance path here is a 404. Without Keystone both
routes are 404s, like the rest of the image API.

Refusals (a CopyFailed's code, Glance or Swift failing) are raised before the first byte and
answered by the error table (errors.py). A data stream that cannot be verified ends before
its last byte and the connection is closed: glance-download, which checks only the size,
then fails the import.
"""

from __future__ import annotations

import logging

from aiohttp import web

from xfer.errors import CopyFailed
from xfer.images.front import GlanceFront
from xfer.proto.http import ByteRange, Reply, parse_range
from xfer.web.auth import require_caller
from xfer.web.validation import image_id_of

log = logging.getLogger(__name__)
GLANCE_FRONT = web.AppKey("glance_front", GlanceFront)
PASSED_ON_HEADERS = ("Content-Type", "x-openstack-request-id")


def _passed_on(reply: Reply) -> web.Response:
    """Glance's reply as it came (status, body, content type): its 404 for an image the
    caller may not see too, so xfer says no more than Glance would."""
    headers = {name: value for name in PASSED_ON_HEADERS
               if (value := reply.header(name)) is not None}
    return web.Response(status=reply.status, body=reply.body, headers=headers)


async def show_image(request: web.Request) -> web.Response:
    caller = require_caller(request, "image:read")
    front = request.app[GLANCE_FRONT]
    image_id = image_id_of(request.match_info["image_id"])
    return _passed_on(await front.image_reply(caller.token, caller.info, image_id))


async def image_file(request: web.Request) -> web.StreamResponse:
    caller = require_caller(request, "image:read")
    front = request.app[GLANCE_FRONT]
    metrics = front.metrics
    image_id = image_id_of(request.match_info["image_id"])
    try:
        reply, read = await front.open(caller.token, caller.info, image_id)
    except CopyFailed as exc:
        metrics.image_streamed(exc.code, 0, 0, 0)
        raise
    if read is None:
        return _passed_on(reply)
    size = read.image.size or 0
    byte_range = parse_range(request.headers.get("Range"), size)  # 400, 416: the middleware's
    response = _data_response(read.data.path, read.image.checksum or "", byte_range, size)

    async def start_reply() -> None:
        await response.prepare(request)

    def backlog() -> int:
        transport = request.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    try:
        outcome = await front.stream(read, byte_range, start_reply, response.write, backlog)
    except CopyFailed as exc:
        metrics.image_streamed(exc.code, 0, 0, 0)
        if not response.prepared:
            log.warning("refused to stream image %s (%s): %s", image_id, exc.code, exc.message)
            raise
        log.warning("the data of image %s was cut before its last byte (%s): %s", image_id,
                    exc.code, exc.message)
        # Not a complete reply: the connection goes, so the client sees a short body.
        if request.transport is not None:
            request.transport.close()
        return response
    except ConnectionError as exc:  # the client went away: its choice, not an error of ours
        metrics.image_streamed("client_gone", 0, 0, 0)
        log.info("the client reading image %s went away: %r", image_id, exc)
        return response
    metrics.image_streamed("verified" if outcome.verified else "range", outcome.bytes_sent,
                           outcome.reads, outcome.most_reading, outcome.seconds)
    await response.write_eof()
    return response


def _data_response(path: str, checksum: str, byte_range: ByteRange | None, size: int
                   ) -> web.StreamResponse:
    """Glance's headers for image data (a 206 for a Range), plus which way the bytes came
    and how far they are verified."""
    partial = byte_range is not None
    response = web.StreamResponse(status=206 if partial else 200)
    response.content_type = "application/octet-stream"
    response.content_length = size if byte_range is None else byte_range.length
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["X-Xfer-Source"] = path  # swift: its Swift; glance: through its /file
    whole = byte_range is None or byte_range.whole
    # whole: MD5 and SHA-512 checked before the last byte; range: reads pinned, not hashed
    response.headers["X-Xfer-Verified"] = "whole" if whole else "range"
    if byte_range is not None:
        response.headers["Content-Range"] = byte_range.content_range()
    if whole:
        response.headers["Content-MD5"] = checksum  # as Glance sends it: the hex checksum
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2/images/{image_id}", show_image, allow_head=False)
    app.router.add_get("/v2/images/{image_id}/file", image_file, allow_head=False)
