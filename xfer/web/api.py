"""REST handlers: validate -> call the store -> a reply model (replies.py). No SQL and no
Swift calls here, and no error statuses: an error is raised and answered by errors.py's table."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable

from aiohttp import web

from xfer.errors import NotCancellable, RequestError
from xfer.jobs.duties import DutyRunner
from xfer.jobs.metrics import Metrics
from xfer.jobs.records import JobRecord
from xfer.jobs.states import JobState
from xfer.jobs.store import JobStore
from xfer.settings import Settings
from xfer.web import replies
from xfer.web.auth import Caller, authorize
from xfer.web.replies import Job, JobPage, Object, ObjectList
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
    job, created = await creating  # IdempotencyConflict: the error table's 409
    location = str(request.app.router["job"].url_for(job_id=str(job.id)))
    return web.json_response(Job.of(job).wire(), status=201 if created else 200,
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


async def get_job(request: web.Request) -> web.Response:
    caller = authorize(request, "job:read")
    detail = await request.app[STORE].job_detail(job_id_of(request))
    if detail is None or not visible(caller, detail.job):
        raise web.HTTPNotFound(reason="no such job")
    return web.json_response(replies.JobDetail.of_detail(detail).wire())


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
    return web.json_response(JobPage(jobs=[Job.of(job) for job in jobs[:query.limit]],
                                     next=next_cursor).wire())


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
        raise NotCancellable(job.state)
    return web.json_response(Job.of(job).wire(), status=202)


async def find_objects(request: web.Request) -> web.Response:
    """Verified copies by checksum: at most one per region and project."""
    authorize(request, "object:find")
    query = objects_query(request.query, request.app[SETTINGS].regions.keys())
    entries = await request.app[STORE].find_objects(
        None if query.checksum is None else query.checksum.lower(),
        None if query.os_hash_value is None else query.os_hash_value.lower(), query.region)
    return web.json_response(ObjectList(objects=[Object.of(entry) for entry in entries]).wire())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/jobs", create_job)
    app.router.add_get("/v1/jobs", list_jobs)
    app.router.add_get("/v1/jobs/{job_id}", get_job, name="job")
    app.router.add_post("/v1/jobs/{job_id}/cancel", cancel_job)
    app.router.add_get("/v1/objects", find_objects)
