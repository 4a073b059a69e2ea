"""The web view of copies under /ui/ (with Keystone only): server-rendered pages (aiohttp-jinja2,
templates/), a copy's page kept live by an EventSource on /ui/jobs/{id}/events (static/job.js),
and forms that POST with the session's CSRF token (ui_session.py).

Every page acts through the REST API's own code: the session's token becomes the same Caller
(auth.caller_of_token), `authorize` applies the same policy rule, the store is asked with the
same project scope, replies are the API's reply models (replies.Job, JobDetail), a copy is
started by images.start_image_copy and cancelled by api.cancel_job, and errors are worded by the
one error table (errors.reply_of). A page says no more than GET /v1/jobs would.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from multidict import MultiDict

from xfer.errors import RequestError, TokenInvalid, XferError
from xfer.jobs.records import JobRecord
from xfer.jobs.states import JobState
from xfer.web import api, images
from xfer.web.api import SETTINGS, STORE, job_id_of, visible
from xfer.web.auth import UI_PREFIX, Caller, authorize, require_caller
from xfer.web.errors import REQUEST_ID, reply_of
from xfer.web.events import stream_events
from xfer.web.replies import Job, JobDetail
from xfer.web.segment_map import segment_map
from xfer.web.ui_session import (
    checked_form,
    csrf_token,
    flash,
    install_sessions,
    require_signed_in,
    sign_in,
    sign_out,
    signed_in,
    take_flash,
)
from xfer.web.validation import JobsQuery, validate_query

PAGE_OF_JOBS = 100  # the newest; GET /v1/jobs pages through the rest


def _sentence(request: web.Request, exc: XferError) -> str:
    """The error table's code and sentence for an error, as the API would answer it."""
    reply = reply_of(exc, request.get(REQUEST_ID, ""))
    return f"{reply.code.value}: {reply.message}"


async def _page(request: web.Request, template: str, context: dict[str, Any],
                status: int = 200) -> web.Response:
    base = {"csrf": await csrf_token(request),
            "flash": await take_flash(request), "prefix": UI_PREFIX}
    response = aiohttp_jinja2.render_template(template, request, base | context, status=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
    return response


async def login_page(request: web.Request) -> web.Response:
    return await _page(request, "login.html", {"caller": None, "error": None})


async def login(request: web.Request) -> web.StreamResponse:
    form = await checked_form(request)
    try:
        await sign_in(request, request.app[SETTINGS], form)
    except TokenInvalid:
        return await _page(request, "login.html", {
            "caller": None, "error": "Keystone refused these credentials"}, status=401)
    except XferError as exc:
        return await _page(request, "login.html", {
            "caller": None, "error": _sentence(request, exc)}, status=503)
    raise web.HTTPSeeOther(UI_PREFIX)


async def logout(request: web.Request) -> web.StreamResponse:
    await checked_form(request)
    await sign_out(request)
    raise web.HTTPSeeOther(f"{UI_PREFIX}login")


async def jobs_page(request: web.Request) -> web.Response:
    """The caller's copies (admin: all), newest first, filtered as GET /v1/jobs filters."""
    caller = await require_signed_in(request)
    authorize(request, "job:read")
    wanted = MultiDict((name, request.query[name]) for name in ("state", "region")
                       if request.query.get(name))
    error, regions = None, request.app[SETTINGS].regions.keys()
    try:
        query = validate_query(JobsQuery, wanted, regions)
    except RequestError as exc:
        error, query = _sentence(request, exc), validate_query(JobsQuery, MultiDict(), regions)
    jobs = await request.app[STORE].list_jobs_page(
        query.state, query.region, None, PAGE_OF_JOBS, caller.project_scope)
    return await _page(request, "jobs.html", {
        "caller": caller, "jobs": [Job.of(job) for job in jobs], "error": error,
        "state": wanted.get("state", ""), "states": [state.value for state in JobState]})


async def job_page(request: web.Request) -> web.Response:
    caller = await require_signed_in(request)
    authorize(request, "job:read")
    detail = await request.app[STORE].job_detail(job_id_of(request))
    if detail is None or not visible(caller, detail.job):
        raise web.HTTPNotFound(reason="no such job")
    return await _page(request, "job.html", {
        "caller": caller, "job": JobDetail.of_detail(detail),
        "segments": segment_map(detail.job, [segment.index for segment in detail.segments],
                                detail.attempts).wire(),
        "lease": _lease(request, caller, detail.job)})


def _lease(request: web.Request, caller: Caller, job: JobRecord) -> dict[str, Any] | None:
    """For operators (who see all projects): the worker holding a running job and how long
    ago it last renewed its lease (each renewal sets it `lease_seconds` ahead)."""
    if not (caller.sees_all_projects and job.lease_owner and job.lease_expires_at):
        return None
    renewed = job.lease_expires_at - timedelta(seconds=request.app[SETTINGS].lease_seconds)
    return {"owner": job.lease_owner, "age": max(0.0, (job.clock - renewed).total_seconds())}


async def job_events(request: web.Request) -> web.StreamResponse:
    """The API's event stream, for the session's caller, each event with the segment map: one
    also whenever a segment's attempts change (one starts, fails, or is written)."""
    caller = await signed_in(request)
    if caller is None:
        raise web.HTTPUnauthorized(reason="sign in first")
    authorize(request, "job:read")
    store = request.app[STORE]

    async def with_segments(job: JobRecord) -> Any:
        detail = await store.job_detail(job.id)
        if detail is None:
            return {"job": Job.of(job).wire(), **segment_map(job, [], []).wire()}
        written = [segment.index for segment in detail.segments]
        return {"job": Job.of(detail.job).wire(),
                **segment_map(detail.job, written, detail.attempts).wire()}

    async def segments_changed(job: JobRecord) -> object:
        return await store.segment_attempts_changed(job.id)

    return await stream_events(request, caller, with_segments, segments_changed)


async def cancel(request: web.Request) -> web.StreamResponse:
    await require_signed_in(request)
    await checked_form(request)
    try:
        await api.cancel_job(request)  # the API's own: policy, tenancy, 404 and 409
        await flash(request, "cancel asked: the copy stops and removes what it wrote")
    except XferError as exc:
        await flash(request, _sentence(request, exc))
    raise web.HTTPSeeOther(f"{UI_PREFIX}jobs/{job_id_of(request)}")


def _source_regions(request: web.Request, caller: Caller) -> list[str]:
    home = request.app[SETTINGS].home_region
    return [region for region in images.copy_regions(caller) if region != home]


async def new_copy_page(request: web.Request, form: dict[str, str] | None = None,
                        error: str | None = None, status: int = 400) -> web.Response:
    """Pick a source region of the caller's catalog, then one of the project's images there
    (`status`: the page's when it shows an error, the API's for that error)."""
    caller = await require_signed_in(request)
    require_caller(request, "image_copy:create")
    chosen = (form or {}).get("source_region") or request.query.get("source_region", "")
    regions = _source_regions(request, caller)
    found: list[Any] = []
    if chosen in regions:
        try:
            found = await request.app[images.IMAGE_SEARCH].owned(caller.info, caller.token,
                                                                 chosen)
        except XferError as exc:
            error = error or _sentence(request, exc)
    return await _page(request, "new.html", {
        "caller": caller, "regions": regions, "chosen": chosen, "images": found,
        "home": request.app[SETTINGS].home_region, "error": error, "form": form or {},
        "key": (form or {}).get("key") or uuid.uuid4().hex}, status=status if error else 200)


async def new_copy_form(request: web.Request) -> web.Response:
    return await new_copy_page(request)


async def create_copy(request: web.Request) -> web.StreamResponse:
    caller = await require_signed_in(request)
    require_caller(request, "image_copy:create")
    form = dict(await checked_form(request))
    body: dict[str, Any] = {"source_region": form.get("source_region", "")}
    if form.get("name", "").strip():
        body["name"] = form["name"].strip()
    try:
        # the form's key: a second submit of the same form is the same copy, not another
        job, _ = await images.start_image_copy(request, caller, body, form.get("image_id", ""),
                                               form.get("key") or None)
    except XferError as exc:  # answered as the API answers it (a refused trust: 403)
        return await new_copy_page(request, form, _sentence(request, exc),
                                   reply_of(exc, request.get(REQUEST_ID, "")).status)
    raise web.HTTPSeeOther(f"{UI_PREFIX}jobs/{job.id}")


async def to_jobs(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(UI_PREFIX)


def _bytes(count: int | None) -> str:
    if count is None:
        return "-"
    value, unit = float(count), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"


def _rate(per_second: float | None) -> str:
    return "-" if per_second is None else f"{per_second / 1e6:.2f} MB/s"


def _seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60} s" if whole >= 60 else f"{whole} s"


def _package_dir(name: str) -> Path:
    return Path(str(resources.files("xfer.web") / name))


def setup(app: web.Application) -> None:
    """The web view's routes, templates, assets and sessions (before the app starts)."""
    settings = app[SETTINGS]
    install_sessions(app, settings)
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(_package_dir("templates")),
                         autoescape=jinja2.select_autoescape(default=True),
                         undefined=jinja2.StrictUndefined,
                         filters={"bytes": _bytes, "rate": _rate, "seconds": _seconds})
    router = app.router
    router.add_get("/ui", to_jobs)
    router.add_get(UI_PREFIX, jobs_page)
    router.add_get(f"{UI_PREFIX}login", login_page)
    router.add_post(f"{UI_PREFIX}login", login)
    router.add_post(f"{UI_PREFIX}logout", logout)
    router.add_get(f"{UI_PREFIX}jobs/{{job_id}}", job_page)
    router.add_get(f"{UI_PREFIX}jobs/{{job_id}}/events", job_events)
    router.add_post(f"{UI_PREFIX}jobs/{{job_id}}/cancel", cancel)
    router.add_get(f"{UI_PREFIX}copies/new", new_copy_form)
    router.add_post(f"{UI_PREFIX}copies", create_copy)
    router.add_static(f"{UI_PREFIX}static/", _package_dir("static"))
