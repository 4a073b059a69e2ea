"""Every reply that is no success is one JSON shape, {"error": {"code", "message", "field"}},
and one log line, wherever it is made:

- `json_errors` (middleware): xfer's own RequestError (400), aiohttp's HTTP exceptions (404,
  405, 413), the database being unavailable (503 with Retry-After), and any other exception
  (500, whose message names the request id; the traceback goes to the log line, never to the
  client);
- server.ApiRequestHandler: what aiohttp's protocol handler answers before any middleware
  runs (a request line or header over its limits, bytes that are no HTTP), which it would
  otherwise answer as text/plain and log with a traceback.

Each request gets an id, sent back as X-Request-Id and carried by every log line about it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from xfer import logs
from xfer.errors import DatabaseUnavailable, RequestError
from xfer.web.validation import job_id

log = logging.getLogger(__name__)
REQUEST_ID = web.RequestKey("request_id", str)
# A database restart or failover takes seconds; clients wait this long before trying again.
DATABASE_RETRY_AFTER_SECONDS = 5
CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 408: "body_timeout",
         413: "body_too_large"}


def error_response(status: int, code: str, message: str, field: str | None = None
                   ) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return web.json_response({"error": error}, status=status)


def _client_error(request: web.Request, response: web.Response, code: str, message: str,
                  field: str | None = None) -> web.Response:
    log.info("%s %s -> %d %s%s: %s", request.method, request.path[:200], response.status, code,
             f" ({field[:100]})" if field else "", message[:300])
    return response


async def _answer(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as exc:
        response = error_response(400, "invalid_request", exc.message, exc.field)
        return _client_error(request, response, "invalid_request", exc.message, exc.field)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, field = CODES.get(exc.status, "http_error"), None
        message = exc.reason
        if exc.status in (408, 413):  # the body was too slow or too large
            message, field = exc.text or message, "body"
        response = error_response(exc.status, code, message, field)
        if exc.status == 408:
            response = await _reply_and_close(request, response)
        if "Allow" in exc.headers:  # a 405 says which methods the resource has
            response.headers["Allow"] = exc.headers["Allow"]
        return _client_error(request, response, code, message, field)
    except DatabaseUnavailable as exc:
        # A job is created in one transaction, so the request may simply be sent again (with
        # an Idempotency-Key, even a connection lost during COMMIT itself cannot make two).
        log.warning("%s %s: %s", request.method, request.path[:200], exc)  # not for clients
        response = error_response(503, "database_unavailable",
                                  "the job database is unavailable; try again shortly")
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response


async def _reply_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send the reply now and close the connection: what else the client sends of its body is
    no request, and aiohttp would go on reading it for up to its lingering time (10 s)."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # the transport sends what it holds, then closes
    return response


@web.middleware
async def json_errors(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
    request_id = uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    job = job_id(request.match_info.get("job_id", ""))
    request_token = logs.current_request.set(request_id)
    job_token = logs.current_job.set(None if job is None else str(job))
    try:
        return await _answer(request, handler)
    except Exception:
        if request.writer.output_size:  # a stream had begun: the protocol handler ends it
            raise
        log.exception("%s %s -> 500: unhandled error", request.method, request.path[:200])
        return error_response(500, "internal_error",
                              f"an unexpected error; the service log has it as request "
                              f"{request_id}")
    finally:
        logs.current_job.reset(job_token)
        logs.current_request.reset(request_token)


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every reply, a stream too, says which request it answers."""
    if REQUEST_ID in request:
        response.headers["X-Request-Id"] = request[REQUEST_ID]
