"""REST handlers: validate -> call the store -> JSON. No SQL and no Swift calls here."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from xfer.errors import RequestError
from xfer.jobs.states import JobState
from xfer.jobs.metrics import Metrics
from xfer.web.progress import eta_seconds, transfer_rate
from xfer.settings import Settings
from xfer.jobs.store import IdempotencyConflict, JobStore
from xfer.web.validation import validate_job_request

STORE = web.AppKey("store", JobStore)
SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
MAX_PAGE = 500
DEFAULT_PAGE = 100
LIST_PARAMETERS = frozenset({"state", "region", "limit", "cursor"})
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
JOB_STATES = tuple(state.value for state in JobState)


def error_response(status: int, code: str, message: str, field: str | None = None
                   ) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return web.json_response({"error": error}, status=status)


@web.middleware
async def json_errors(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
    """Every error, ours or aiohttp's (404, 405, 413), in one JSON shape."""
    try:
        return await handler(request)
    except RequestError as exc:
        return error_response(400, "invalid_request", exc.message, exc.field)
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, "body_too_large", exc.text or "request body too large", "body")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        response = error_response(exc.status, code, exc.reason)
        if "Allow" in exc.headers:  # a 405 says which methods the resource has
            response.headers["Allow"] = exc.headers["Allow"]
        return response


def _timestamp(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def job_json(row: asyncpg.Record) -> dict[str, Any]:
    """A job as the API shows it. `rate` and `eta` need the database's clock: the rows read
    for the API carry it as `observed_at`; a row just written carries its `updated_at`."""
    error = None
    if row["error_code"]:
        error = {"code": row["error_code"], "message": row["error_message"]}
    rate = transfer_rate(row["bytes_done"], row["started_at"], row["finished_at"],
                         row.get("observed_at") or row["updated_at"])
    eta = eta_seconds(JobState(row["state"]), row["bytes_total"], row["bytes_done"], rate)
    return {
        "id": str(row["id"]),
        "state": row["state"],
        "source": {"region": row["source_region"], "container": row["source_container"],
                   "object": row["source_object"]},
        "target": {"region": row["target_region"], "container": row["target_container"],
                   "object": row["target_object"]},
        "checksum": row["expected_md5"],
        "bytes_total": row["bytes_total"],
        "bytes_done": row["bytes_done"],
        "rate": None if rate is None else round(rate, 1),
        "eta": None if eta is None else round(eta, 1),
        "segments_total": row["segments_total"],
        "layout": row["layout"],
        "md5": row["md5"],
        "sha512": row["sha512"],
        "etag": row["etag"],
        "md5_checked_against": row["md5_checked_against"],
        "retries": row["retries"],
        "bytes_uploaded": row["bytes_uploaded"],
        "segments_reused": row["segments_reused"],
        "deduplicated": row["deduplicated"],
        "existing": {"region": row["target_region"], "container": row["existing_container"],
                     "object": row["existing_object"]} if row["deduplicated"] else None,
        "attempts": row["attempts"],
        "error": error,
        "created_at": _timestamp(row["created_at"]),
        "started_at": _timestamp(row["started_at"]),
        "finished_at": _timestamp(row["finished_at"]),
        "updated_at": _timestamp(row["updated_at"]),
    }


async def create_job(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise RequestError("body", f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    except UnicodeDecodeError:
        raise RequestError("body", "not UTF-8 text") from None
    settings = request.app[SETTINGS]
    job_request = validate_job_request(body, settings.regions.keys())
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise RequestError("Idempotency-Key", "must be 1 to 255 printable ASCII characters")
    try:
        row, created = await request.app[STORE].create_job(job_request, key)
    except IdempotencyConflict as conflict:
        return error_response(409, "idempotency_conflict",
                              f"this Idempotency-Key was used for another request (job "
                              f"{conflict}); use a new key for a new request", "Idempotency-Key")
    location = str(request.app.router["job"].url_for(job_id=str(row["id"])))
    # A replay with the same key and body answers 200 with the job it created the first time.
    return web.json_response(job_json(row), status=201 if created else 200,
                             headers={"Location": location})


def job_id_of(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["job_id"])
    except ValueError:
        raise web.HTTPNotFound(reason="no such job") from None


def job_detail_json(row: asyncpg.Record, segments: list[asyncpg.Record],
                    transitions: list[asyncpg.Record]) -> dict[str, Any]:
    return {
        **job_json(row),
        "segments_written": len(segments),
        "segments": [{"index": s["index"], "offset": s["offset"], "length": s["length"],
                      "etag": s["etag"]} for s in segments],
        "transitions": [{"from": t["from_state"], "to": t["to_state"], "at": _timestamp(t["at"])}
                        for t in transitions],
    }


async def get_job(request: web.Request) -> web.Response:
    detail = await request.app[STORE].job_detail(job_id_of(request))
    if detail is None:
        raise web.HTTPNotFound(reason="no such job")
    return web.json_response(job_detail_json(*detail))


def encode_cursor(row: asyncpg.Record) -> str:
    """An opaque token for the page after `row`: its (created_at, id)."""
    position = json.dumps([row["created_at"].isoformat(), str(row["id"])])
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[datetime, uuid.UUID]:
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        position = datetime.fromisoformat(created_at), uuid.UUID(job_id)
    except (ValueError, TypeError):  # binascii.Error and JSONDecodeError are ValueErrors
        raise RequestError("cursor", "not a cursor this API gave as `next`") from None
    if position[0].tzinfo is None:
        raise RequestError("cursor", "not a cursor this API gave as `next`")
    return position


def _page_limit(text: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        raise RequestError("limit", "must be an integer") from None
    if not 1 <= limit <= MAX_PAGE:
        raise RequestError("limit", f"must be between 1 and {MAX_PAGE}")
    return limit


async def list_jobs(request: web.Request) -> web.Response:
    """Newest first, `limit` at a time; `next` is the `cursor` of the following page."""
    query = request.query
    unknown = sorted(set(query) - LIST_PARAMETERS)
    if unknown:
        raise RequestError(unknown[0], f"unknown parameter; known: {', '.join(sorted(LIST_PARAMETERS))}")
    state, region = query.get("state"), query.get("region")
    if state is not None and state not in JOB_STATES:
        raise RequestError("state", f"must be one of {', '.join(JOB_STATES)}")
    regions = request.app[SETTINGS].regions
    if region is not None and region not in regions:
        raise RequestError("region", f"unknown region {region!r}; known: {', '.join(sorted(regions))}")
    limit = _page_limit(query.get("limit", str(DEFAULT_PAGE)))
    after = decode_cursor(query["cursor"]) if "cursor" in query else None
    rows = await request.app[STORE].list_jobs_page(state, region, after, limit + 1)
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return web.json_response({"jobs": [job_json(row) for row in rows[:limit]],
                              "next": next_cursor})


async def cancel_job(request: web.Request) -> web.Response:
    """202 when the cancel took effect (a running job stops, deletes what it wrote and ends
    `cancelled`); 409 when the job has already ended."""
    row, took_effect = await request.app[STORE].cancel(job_id_of(request))
    if row is None:
        raise web.HTTPNotFound(reason="no such job")
    if not took_effect:
        return error_response(409, "not_cancellable",
                              f"the job is {row['state']}; there is nothing to cancel", "state")
    return web.json_response(job_json(row), status=202)


def object_json(row: asyncpg.Record) -> dict[str, Any]:
    return {"checksum": row["md5"], "os_hash_algo": "sha512" if row["sha512"] else None,
            "os_hash_value": row["sha512"], "size": row["size"], "region": row["region"],
            "project": row["project"], "container": row["container"], "object": row["object"],
            "job_id": str(row["job_id"]) if row["job_id"] else None,
            "verified_at": _timestamp(row["verified_at"])}


async def find_objects(request: web.Request) -> web.Response:
    """Verified copies by checksum: at most one per region and project."""
    md5 = request.query.get("checksum")
    sha512 = request.query.get("os_hash_value")
    if md5 is None and sha512 is None:
        raise RequestError("checksum", "give checksum (MD5) or os_hash_value (SHA-512)")
    if md5 is not None and not re.fullmatch(r"[0-9a-fA-F]{32}", md5):
        raise RequestError("checksum", "must be an MD5 as 32 hexadecimal digits")
    if sha512 is not None and not re.fullmatch(r"[0-9a-fA-F]{128}", sha512):
        raise RequestError("os_hash_value", "must be a SHA-512 as 128 hexadecimal digits")
    rows = await request.app[STORE].find_objects(
        md5.lower() if md5 else None, sha512.lower() if sha512 else None,
        request.query.get("region"))
    return web.json_response({"objects": [object_json(row) for row in rows]})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/jobs", create_job)
    app.router.add_get("/v1/jobs", list_jobs)
    app.router.add_get("/v1/jobs/{job_id}", get_job, name="job")
    app.router.add_post("/v1/jobs/{job_id}/cancel", cancel_job)
    app.router.add_get("/v1/objects", find_objects)
