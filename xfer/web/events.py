"""GET /v1/jobs/{id}/events: a job's progress as server-sent events (text/event-stream).

    event: progress   data: the job (as GET /v1/jobs/{id} shows it, without segments and
                      transitions), sent first and then whenever its state, bytes_done or
                      (an image copy's) step changes
    event: end        data: {"reason": ...}, the last event:
                      "finished"      the job reached succeeded, failed or cancelled
                      "max_duration"  the stream lasted `events_max_seconds`; reconnect to go on
                      "shutdown"      this xfer process is stopping
                      "deleted"       the job was deleted from the database

The job is read every `events_poll_interval` seconds (while the database is unavailable the
stream stays open and goes on once it answers). A comment line every
KEEPALIVE_SECONDS keeps idle proxies from closing the stream. A client that goes away ends the
stream at the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from xfer.errors import DatabaseUnavailable
from xfer.jobs.records import JobRecord
from xfer.web.api import METRICS, SETTINGS, STORE, job_id_of, visible
from xfer.web.auth import Caller, authorize
from xfer.web.replies import EndReason, Job, StreamEnd

KEEPALIVE_SECONDS = 15.0
STOPPING = web.AppKey("events_stopping", asyncio.Event)
# What a progress event carries for a job: the API's Job, the web view's page its segments too.
Render = Callable[[JobRecord], Awaitable[Any]]
# What a follower sees change besides the job's progress (the web view: its segments' attempts).
Watch = Callable[[JobRecord], Awaitable[object]]
HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
           "X-Accel-Buffering": "no"}  # nginx: pass events on as they come


def event_text(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _stopped_within(stopping: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stopping.wait()
    return stopping.is_set()


def _progress_of(job: JobRecord) -> tuple[object, ...]:
    """What a follower sees change: the state, the bytes, and an image copy's step (its
    bytes stay put while Glance reads the copy back: `copied`, then `registered`)."""
    return job.state, job.bytes_done, None if job.image is None else job.image.step


async def job_progress(job: JobRecord) -> Any:
    return Job.of(job).wire()


async def nothing_else(job: JobRecord) -> object:
    return None


async def _follow(request: web.Request, response: web.StreamResponse, job: JobRecord,
                  render: Render, watch: Watch, watched: object) -> EndReason | None:
    """Send progress events until the stream should end; return why (None: client gone).
    `watched`: what `watch` said of the job first."""
    settings, store = request.app[SETTINGS], request.app[STORE]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.events_max_seconds
    last_sent, last_write = None, loop.time()
    while True:
        if (_progress_of(job), watched) != last_sent:
            await response.write(event_text("progress", await render(job)))
            last_sent, last_write = (_progress_of(job), watched), loop.time()
        if job.state.terminal:
            return "finished"
        remaining = deadline - loop.time()
        if remaining <= 0:
            return "max_duration"
        if await _stopped_within(request.app[STOPPING],
                                 min(settings.events_poll_interval, remaining)):
            return "shutdown"
        if _client_gone(request):
            return None
        if loop.time() - last_write >= KEEPALIVE_SECONDS:
            await response.write(b": keep-alive\n\n")
            last_write = loop.time()
        try:
            fresh = await store.job_observed(job.id)
            if fresh is None:
                return "deleted"
            watched = await watch(fresh)
        except DatabaseUnavailable:
            continue  # keep the stream (and its keep-alives) until the database answers again
        job = fresh


async def job_events(request: web.Request) -> web.StreamResponse:
    return await stream_events(request, authorize(request, "job:read"), job_progress)


async def stream_events(request: web.Request, caller: Caller | None, render: Render,
                        watch: Watch = nothing_else) -> web.StreamResponse:
    """The job of the request's path as events, for a caller already authorized to read it;
    an event whenever its progress or what `watch` says of it changes."""
    job = await request.app[STORE].job_observed(job_id_of(request))
    if job is None or not visible(caller, job):
        raise web.HTTPNotFound(reason="no such job")
    watched = await watch(job)
    response = web.StreamResponse(headers=HEADERS)
    await response.prepare(request)
    with request.app[METRICS].event_streams.track_inprogress(), contextlib.suppress(
            ConnectionResetError):  # the client went away mid-write
        reason = await _follow(request, response, job, render, watch, watched)
        if reason is not None:
            await response.write(event_text("end", StreamEnd(reason=reason).wire()))
            await response.write_eof()
    return response


async def _end_streams(app: web.Application) -> None:  # on_shutdown
    app[STOPPING].set()


def setup(app: web.Application) -> None:
    app[STOPPING] = asyncio.Event()
    app.on_shutdown.append(_end_streams)
    app.router.add_get("/v1/jobs/{job_id}/events", job_events)
