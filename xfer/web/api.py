"""REST handlers: validate -> call the store -> JSON. No SQL and no Swift calls here."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

from aiohttp import web

from xfer.engine.types import ObjectRef
from xfer.errors import RequestError
from xfer.jobs.duties import DutyRunner
from xfer.jobs.metrics import Metrics
from xfer.jobs.records import (
    Duty,
    DutyRecord,
    IndexedObject,
    JobDetail,
    JobError,
    JobRecord,
    TargetRecord,
)
from xfer.jobs.states import JobState
from xfer.jobs.store import IdempotencyConflict, JobStore
from xfer.settings import Settings
from xfer.web.auth import Caller, authorize
from xfer.web.errors import error_response
from xfer.web.progress import eta_seconds, transfer_rate
from xfer.web.validation import (
    JobsQuery,
    encode_cursor,
    idempotency_key,
    job_id,
    objects_query,
    parse_json_body,
    validate_job_request,
    validate_query,
)

STORE = web.AppKey("store", JobStore)
SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
DUTIES = web.AppKey("duties", DutyRunner)


def _timestamp(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _ref_json(ref: ObjectRef) -> dict[str, str]:
    return {"region": ref.region, "container": ref.container, "object": ref.object}


def _error_json(error: JobError | None) -> dict[str, str] | None:
    return None if error is None else {"code": error.code, "message": error.message}


def _target_json(target: TargetRecord) -> dict[str, Any]:
    return {**_ref_json(target.ref), "state": target.state.value,
            "error": _error_json(target.error), "md5": target.md5, "etag": target.etag,
            "verification": target.verification, "bytes_uploaded": target.bytes_uploaded,
            "segments_reused": target.segments_reused}


def job_json(job: JobRecord) -> dict[str, Any]:
    """A job as the API shows it; `rate` and `eta` are computed against the database's clock
    at the time the job was read."""
    rate = transfer_rate(job.bytes_done, job.started_at, job.finished_at, job.clock)
    eta = eta_seconds(job.state, job.bytes_total, job.bytes_done, rate)
    return {
        "id": str(job.id),
        "state": job.state.value,
        "source": _ref_json(job.source),
        "target": _ref_json(job.target),
        "targets": [_target_json(target) for target in job.targets],
        "checksum": job.expected_md5,
        "max_rate_mb": job.max_rate_mb,
        "bytes_total": job.bytes_total,
        "bytes_done": job.bytes_done,
        "rate": None if rate is None else round(rate, 1),
        "eta": None if eta is None else round(eta, 1),
        "segments_total": job.segments_total,
        "layout": job.layout,
        "md5": job.md5,
        "sha512": job.sha512,
        "etag": job.etag,
        "md5_checked_against": job.md5_checked_against,
        "verification": job.verification,
        "retries": job.retries,
        "bytes_uploaded": job.bytes_uploaded,
        "segments_reused": job.segments_reused,
        "deduplicated": job.existing is not None,
        "existing": None if job.existing is None else _ref_json(job.existing),
        "attempts": job.attempts,
        "error": _error_json(job.error),
        "kind": job.kind,
        "image": _image_json(job),
        "created_at": _timestamp(job.created_at),
        "started_at": _timestamp(job.started_at),
        "finished_at": _timestamp(job.finished_at),
        "updated_at": _timestamp(job.updated_at),
    }


def _image_json(job: JobRecord) -> dict[str, Any] | None:
    image = job.image
    if image is None:
        return None
    return {"source_region": job.source.region, "source_image_id": image.source_image_id,
            "target_region": job.target.region, "target_image_id": image.target_image_id,
            "step": image.step, "name": image.name, "properties": dict(image.properties),
            "force": image.force, "project_id": job.project_id}


async def read_body(request: web.Request) -> bytes:
    """The whole body, within XFER_BODY_TIMEOUT of the handler starting to read it; a client
    that stalls gets 408 and the connection is closed."""
    seconds = request.app[SETTINGS].body_timeout
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=f"the body did not arrive within {seconds:g} s (XFER_BODY_TIMEOUT)") from None
    except web.RequestPayloadError as exc:  # a broken chunked or compressed body
        raise RequestError("body", f"could not be read: {exc}") from None


async def created_job_reply(request: web.Request,
                            creating: Awaitable[tuple[JobRecord, bool]]) -> web.Response:
    """201 with the job and its Location; 200 for a replay with the same Idempotency-Key and
    body (the job it created the first time); 409 when the key was used for another request."""
    try:
        job, created = await creating
    except IdempotencyConflict as conflict:
        return error_response(409, "idempotency_conflict",
                              f"this Idempotency-Key was used for another request (job "
                              f"{conflict}); use a new key for a new request", "Idempotency-Key")
    location = str(request.app.router["job"].url_for(job_id=str(job.id)))
    return web.json_response(job_json(job), status=201 if created else 200,
                             headers={"Location": location})


async def create_job(request: web.Request) -> web.Response:
    caller = authorize(request, "object_copy:create")
    raw = await read_body(request)
    settings = request.app[SETTINGS]
    job_request = validate_job_request(parse_json_body(raw), settings.regions.keys())
    key = idempotency_key(request.headers)
    scope = "" if caller is None else caller.info.project_id  # a key is per project
    return await created_job_reply(request, request.app[STORE].create_job(job_request, key,
                                                                          scope))


def job_id_of(request: web.Request) -> uuid.UUID:
    found = job_id(request.match_info["job_id"])
    if found is None:
        raise web.HTTPNotFound(reason="no such job")
    return found


def visible(caller: Caller | None, job: JobRecord | None) -> bool:
    """Whether the caller may see the job: without Keystone, anyone; with it, its project's
    jobs (admin: all). Another project's job is answered as no job at all."""
    if job is None:
        return False
    scope = None if caller is None else caller.project_scope
    return scope is None or job.project_id == scope


# What a job's `cleanup` shows: removing what a failed or cancelled copy made, and ending the
# trust it acted through (not how it got its trust).
CLEANUP_DUTIES = (Duty.REMOVE_TARGET_IMAGE, Duty.REMOVE_IMAGE_DATA, Duty.REMOVE_OBJECT_DATA,
                  Duty.END_TRUST)


def cleanup_json(duties: tuple[DutyRecord, ...]) -> list[dict[str, Any]]:
    return [{"duty": duty.duty.value, "state": duty.state.value, "outcome": duty.outcome,
             "error": duty.last_error, "attempts": duty.attempts}
            for duty in duties if duty.duty in CLEANUP_DUTIES]


def job_detail_json(detail: JobDetail) -> dict[str, Any]:
    return {
        **job_json(detail.job),
        "cleanup": cleanup_json(detail.duties),
        "segments_written": len(detail.segments),
        "segments": [{"index": s.index, "offset": s.offset, "length": s.length, "etag": s.etag}
                     for s in detail.segments],
        "transitions": [{"from": t.from_state, "to": t.to_state, "at": _timestamp(t.at)}
                        for t in detail.transitions],
    }


async def get_job(request: web.Request) -> web.Response:
    caller = authorize(request, "job:read")
    detail = await request.app[STORE].job_detail(job_id_of(request))
    if detail is None or not visible(caller, detail.job):
        raise web.HTTPNotFound(reason="no such job")
    return web.json_response(job_detail_json(detail))


async def list_jobs(request: web.Request) -> web.Response:
    """Newest first, `limit` at a time; `next` is the `cursor` of the following page."""
    caller = authorize(request, "job:read")
    query = validate_query(JobsQuery, request.query, request.app[SETTINGS].regions.keys())
    jobs = await request.app[STORE].list_jobs_page(
        query.state, query.region, query.cursor, query.limit + 1,
        None if caller is None else caller.project_scope)
    next_cursor = None
    if len(jobs) > query.limit:  # one more than a page was asked for: there is a next page
        last = jobs[query.limit - 1]
        next_cursor = encode_cursor(last.created_at, last.id)
    return web.json_response({"jobs": [job_json(job) for job in jobs[:query.limit]],
                              "next": next_cursor})


async def cancel_job(request: web.Request) -> web.Response:
    """202 when the cancel took effect (a running job stops, deletes what it wrote and ends
    `cancelled`); 409 when the job has already ended."""
    caller = authorize(request, "job:cancel")
    wanted = job_id_of(request)
    if not visible(caller, await request.app[STORE].get_job(wanted)):
        raise web.HTTPNotFound(reason="no such job")
    job, took_effect = await request.app[STORE].cancel(wanted)
    if job is None:
        raise web.HTTPNotFound(reason="no such job")
    if took_effect and job.state is JobState.CANCELLED and DUTIES in request.app:
        request.app[DUTIES].wake()  # a queued job ended at once: its trust goes now
    if not took_effect:
        return error_response(409, "not_cancellable",
                              f"the job is {job.state}; there is nothing to cancel", "state")
    return web.json_response(job_json(job), status=202)


def object_json(entry: IndexedObject) -> dict[str, Any]:
    return {"checksum": entry.md5, "os_hash_algo": "sha512" if entry.sha512 else None,
            "os_hash_value": entry.sha512, "size": entry.size, "region": entry.region,
            "project": entry.project, "container": entry.container, "object": entry.object,
            "job_id": None if entry.job_id is None else str(entry.job_id),
            "verified_at": _timestamp(entry.verified_at)}


async def find_objects(request: web.Request) -> web.Response:
    """Verified copies by checksum: at most one per region and project."""
    authorize(request, "object:find")
    query = objects_query(request.query, request.app[SETTINGS].regions.keys())
    entries = await request.app[STORE].find_objects(
        None if query.checksum is None else query.checksum.lower(),
        None if query.os_hash_value is None else query.os_hash_value.lower(), query.region)
    return web.json_response({"objects": [object_json(entry) for entry in entries]})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/jobs", create_job)
    app.router.add_get("/v1/jobs", list_jobs)
    app.router.add_get("/v1/jobs/{job_id}", get_job, name="job")
    app.router.add_post("/v1/jobs/{job_id}/cancel", cancel_job)
    app.router.add_get("/v1/objects", find_objects)
