"""The image API, with Keystone only: copy an image into this region, list the regions a caller
may copy from, and find an image by its content across regions."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from aiohttp import web

from xfer.images.search import ImageSearch
from xfer.jobs.records import JobRecord
from xfer.jobs.trusts import JobTrusts
from xfer.web.api import SETTINGS, STORE, created_job_reply, read_body
from xfer.web.auth import Caller, require_caller
from xfer.web.replies import ImageMatch, ImageMatches, Region, RegionList, RegionUnavailable
from xfer.web.validation import (
    idempotency_key,
    images_query,
    parse_json_body,
    validate_image_copy,
)

IMAGE_SEARCH = web.AppKey("image_search", ImageSearch)
TRUSTS = web.AppKey("trusts", JobTrusts)


def copy_regions(caller: Caller) -> list[str]:
    """Regions of the caller's catalog with an image and an object-store endpoint: Glance to
    read and register images, Swift to move their data."""
    return list(caller.info.storage_regions())


async def create_image_copy(request: web.Request) -> web.Response:
    """201 with the job (200 for an Idempotency-Key replay, which creates nothing). The
    caller's token creates a Keystone trust from the caller to xfer's service user, for this
    job only, deleted once the job has ended (jobs/trusts.py): xfer acts through it, so the
    copy outlives the token and no token is stored."""
    caller = require_caller(request, "image_copy:create")
    body = parse_json_body(await read_body(request))
    return await created_job_reply(request, start_image_copy(
        request, caller, body, request.match_info["image_id"], idempotency_key(request.headers)))


def start_image_copy(request: web.Request, caller: Caller, body: Any, image_id: str,
                     key: str | None) -> Awaitable[tuple[JobRecord, bool]]:
    """The copy asked for by `body` (ImageCopyBody's fields), as the API and the web view's
    form ask it: (the job, whether it was created now); RequestError for a bad field."""
    copy_request = validate_image_copy(
        body, image_id, copy_regions(caller), request.app[SETTINGS].home_region,
        caller.info.project_id, caller.info.user_id)
    # Keystone refusing the trust (the user's to fix: 403 trust_refused) or xfer's own
    # credentials (the operator's: 503 service_misconfigured), or not answering: errors.py
    return request.app[TRUSTS].create_job(copy_request, key, caller.token, caller.info)


async def list_regions(request: web.Request) -> web.Response:
    caller = require_caller(request, "region:list")
    home = request.app[SETTINGS].home_region
    return web.json_response(RegionList(
        home_region=home, regions=[Region(name=region, home=region == home,
                                          copy_from=region != home)
                                   for region in copy_regions(caller)]).wire())


async def find_images(request: web.Request) -> web.Response:
    """Per region of the caller's catalog: the oldest active image with that content the
    caller can see, and how many there are."""
    caller = require_caller(request, "image:find")
    query = images_query(request.query)
    checksum = None if query.checksum is None else query.checksum.lower()
    os_hash_value = None if query.os_hash_value is None else query.os_hash_value.lower()
    # copies registered where Glance computes no MD5 are found by the SHA-512 xfer paired
    paired = (await request.app[STORE].sha512_paired_with(checksum)
              if checksum is not None and os_hash_value is None else [])
    matches = await request.app[IMAGE_SEARCH].find(
        caller.info, caller.token, checksum=checksum, os_hash_value=os_hash_value,
        paired=paired)
    return web.json_response(ImageMatches(
        images=[ImageMatch.of(match) for match in matches if match.image is not None],
        unavailable=[RegionUnavailable(region=m.region, error=m.error)
                     for m in matches if m.error]).wire())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/images/{image_id}/copies", create_image_copy)
    app.router.add_get("/v1/images", find_images)
    app.router.add_get("/v1/regions", list_regions)
