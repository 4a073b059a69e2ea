"""The image API, with Keystone only: copy an image into this region, list the regions a caller
may copy from, and find an image by its content across regions."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from xfer.errors import DatabaseUnavailable, ServiceCredentialsRefused, TrustRefused, XferError
from xfer.images.search import ImageSearch, RegionMatch
from xfer.jobs.trusts import JobTrusts
from xfer.web.api import SETTINGS, created_job_reply, read_body
from xfer.web.auth import Caller, keystone_unavailable, require_caller, service_misconfigured
from xfer.web.errors import error_response
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
    settings = request.app[SETTINGS]
    copy_request = validate_image_copy(
        parse_json_body(await read_body(request)), request.match_info["image_id"],
        copy_regions(caller), settings.home_region, caller.info.project_id,
        caller.info.user_id)
    key = idempotency_key(request.headers)
    try:
        return await created_job_reply(request, request.app[TRUSTS].create_job(
            copy_request, key, caller.token, caller.info))
    except TrustRefused as exc:
        return error_response(403, "trust_refused",
                              f"Keystone refused the trust xfer needs to copy as you: "
                              f"{exc.detail or exc.status}")
    except ServiceCredentialsRefused as exc:
        return service_misconfigured(exc)
    except DatabaseUnavailable:
        raise  # the middleware's 503
    except XferError as exc:
        return keystone_unavailable(exc)


async def list_regions(request: web.Request) -> web.Response:
    caller = require_caller(request, "region:list")
    home = request.app[SETTINGS].home_region
    return web.json_response({
        "home_region": home,
        "regions": [{"name": region, "home": region == home, "copy_from": region != home}
                    for region in copy_regions(caller)]})


def _match_json(match: RegionMatch) -> dict[str, Any]:
    image = match.image
    assert image is not None
    return {"region": match.region, "count": match.count, "image": {
                "id": image.id, "name": image.name, "status": image.status,
                "owner": image.owner, "visibility": image.visibility,
                "checksum": image.checksum, "os_hash_algo": image.os_hash_algo,
                "os_hash_value": image.os_hash_value, "size": image.size,
                "created_at": image.created_at}}


async def find_images(request: web.Request) -> web.Response:
    """Per region of the caller's catalog: the oldest active image with that content the
    caller can see, and how many there are."""
    caller = require_caller(request, "image:find")
    query = images_query(request.query)
    matches = await request.app[IMAGE_SEARCH].find(
        caller.info, caller.token,
        checksum=None if query.checksum is None else query.checksum.lower(),
        os_hash_value=None if query.os_hash_value is None else query.os_hash_value.lower())
    return web.json_response({
        "images": [_match_json(match) for match in matches if match.image is not None],
        "unavailable": [{"region": m.region, "error": m.error} for m in matches if m.error]})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/images/{image_id}/copies", create_image_copy)
    app.router.add_get("/v1/images", find_images)
    app.router.add_get("/v1/regions", list_regions)
