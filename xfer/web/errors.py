"""Every reply that is no success is one JSON shape, {"error": {"code", "message", "field"}}
(replies.Error), and one log line, wherever it is made; and which status and code an error
gets is decided here only, by the error's class (ANSWERS, below):

- `json_errors` (middleware): xfer's own errors through ANSWERS, aiohttp's HTTP exceptions
  (404, 405, 408, 413) by their status (HTTP_CODES), and any other exception as a 500 whose
  message names the request id (the traceback goes to the log line, never to the client);
- server.ApiRequestHandler: what aiohttp's protocol handler answers before any middleware
  runs (a request line or header over its limits, bytes that are no HTTP), which it would
  otherwise answer as text/plain and log with a traceback.

The domain raises typed errors that know nothing of HTTP; tests/test_errors.py fails on an
error class ANSWERS does not name. Each request gets an id, sent back as X-Request-Id and
carried by every log line about it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from xfer import logs
from xfer.clients.bulk_link import LinkLost
from xfer.clients.swift import TokenRefused
from xfer.engine.retry import RetryBudgetExhausted
from xfer.errors import (
    AuthError,
    BodyRejected,
    ConfigError,
    CopyFailed,
    DatabaseUnavailable,
    ErrorCode,
    FrontRefused,
    ImageNotActive,
    ImageNotFound,
    ImageRejected,
    ImportFailed,
    IntegrityError,
    NotCancellable,
    QuotaExceeded,
    RangeNotSatisfiable,
    RegistrationFailed,
    RemoteError,
    RequestError,
    SegmentMismatch,
    ServiceCredentialsRefused,
    SourceChanged,
    TargetForbidden,
    TokenInvalid,
    TransportError,
    TrustExists,
    TrustInvalid,
    TrustRefused,
    UnsupportedStore,
    UntrustedCertificate,
    XferError,
)
from xfer.jobs.states import InvalidTransition
from xfer.jobs.store import IdempotencyConflict
from xfer.jobs.worker import CancelRequested, LeaseExpiring, LeaseLost
from xfer.proto.http1 import FramingError
from xfer.web.replies import Error, ErrorBody
from xfer.web.validation import job_id

log = logging.getLogger(__name__)
REQUEST_ID = web.RequestKey("request_id", str)
# A database restart or failover takes seconds, as does Keystone's: clients wait this long
# before trying again.
RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class Answer:
    """How the API answers one kind of error. `code` None: the error's own (a CopyFailed's).
    `message` None: the error's own sentence; else a template formatted with `exc`, or a
    fixed sentence where the detail is the operator's (it goes to the log, at `log_level`)."""

    status: int
    code: ErrorCode | None
    message: str | None = None
    field: str | None = None  # None: the error's own `field` (a RequestError's), if any
    retry_after: int | None = None
    log_level: int = logging.INFO


INTERNAL = Answer(500, ErrorCode.INTERNAL_ERROR, log_level=logging.ERROR)
JOB_FAILURE = Answer(502, None)  # a CopyFailed: status by its code (STATUS_OF_CODE)
KEYSTONE_UNAVAILABLE = Answer(503, ErrorCode.KEYSTONE_UNAVAILABLE,
                              "Keystone did not answer xfer; try again shortly",
                              retry_after=RETRY_AFTER_SECONDS, log_level=logging.WARNING)
# Keystone answered, with a status xfer cannot use (a 5xx, mostly): said apart from no answer,
# so that whoever reads it looks at Keystone's log rather than at the network.
KEYSTONE_ANSWERED_ERROR = Answer(503, ErrorCode.KEYSTONE_UNAVAILABLE,
                                 "Keystone answered xfer with HTTP {exc.status} to "
                                 "{exc.method} {exc.path}; try again shortly",
                                 retry_after=RETRY_AFTER_SECONDS, log_level=logging.WARNING)
# A service xfer calls while answering failed (RemoteError and TransportError: by service).
SERVICE_FAILED: Mapping[str, Answer] = {
    "keystone": KEYSTONE_UNAVAILABLE,
    "glance": Answer(502, ErrorCode.GLANCE_FAILED,
                     "the image service failed to answer xfer: {exc}", log_level=logging.WARNING),
    "swift": Answer(502, ErrorCode.SWIFT_FAILED,
                    "the object store failed to answer xfer: {exc}", log_level=logging.WARNING),
}
# The same services when they answered (RemoteError): Keystone's status is told.
SERVICE_ANSWERED: Mapping[str, Answer] = {**SERVICE_FAILED, "keystone": KEYSTONE_ANSWERED_ERROR}

# The one table from error class to status and code; an error's class is looked up along its
# MRO, so a subclass listed here wins over its base (ServiceCredentialsRefused over AuthError).
ANSWERS: Mapping[type[XferError], Answer | Mapping[str, Answer]] = {
    XferError: INTERNAL,
    RequestError: Answer(400, ErrorCode.INVALID_REQUEST),
    RangeNotSatisfiable: Answer(416, ErrorCode.RANGE_NOT_SATISFIABLE),
    IdempotencyConflict: Answer(409, ErrorCode.IDEMPOTENCY_CONFLICT, field="Idempotency-Key"),
    NotCancellable: Answer(409, ErrorCode.NOT_CANCELLABLE, field="state"),
    TokenInvalid: Answer(401, ErrorCode.UNAUTHORIZED, field="X-Auth-Token"),
    DatabaseUnavailable: Answer(
        # A job is created in one transaction, so the request may simply be sent again (with
        # an Idempotency-Key, even a connection lost during COMMIT itself cannot make two).
        503, ErrorCode.DATABASE_UNAVAILABLE,
        "the job database is unavailable; try again shortly",
        retry_after=RETRY_AFTER_SECONDS, log_level=logging.WARNING),
    RemoteError: SERVICE_ANSWERED,
    TransportError: SERVICE_FAILED,
    AuthError: SERVICE_ANSWERED,
    TrustExists: SERVICE_ANSWERED,
    # the user's own trust refused: the user's to fix (another token, another login)
    TrustRefused: Answer(403, ErrorCode.TRUST_REFUSED,
                         "Keystone refused the trust xfer needs to copy as you: {exc.detail}"),
    # xfer's own credentials refused: the operator's to fix, whoever asks and however often
    ServiceCredentialsRefused: Answer(
        503, ErrorCode.SERVICE_MISCONFIGURED,
        "Keystone refuses xfer's own service credentials, so xfer cannot act for anyone; "
        "this is the cloud operator's to fix (xfer's log says what Keystone answered), not "
        "something to try again", log_level=logging.ERROR),
    # a service's certificate xfer does not trust: the operator's too (XFER_CA_FILE)
    UntrustedCertificate: Answer(
        503, ErrorCode.SERVICE_MISCONFIGURED,
        "xfer does not trust the TLS certificate of a service it calls ({exc.reason}); this "
        "is the cloud operator's to fix, not something to try again", log_level=logging.ERROR),
    CopyFailed: JOB_FAILURE,
    ImageNotFound: JOB_FAILURE,
    ImageNotActive: JOB_FAILURE,
    TargetForbidden: JOB_FAILURE,
    QuotaExceeded: JOB_FAILURE,
    ImageRejected: JOB_FAILURE,
    UnsupportedStore: JOB_FAILURE,
    RegistrationFailed: JOB_FAILURE,
    ImportFailed: JOB_FAILURE,
    FrontRefused: JOB_FAILURE,
    TrustInvalid: JOB_FAILURE,
    # Never meant to reach a handler: caught where they are raised, or a copy's own (the
    # worker's); one reaching a reply is a bug.
    ConfigError: INTERNAL,
    TokenRefused: INTERNAL,
    IntegrityError: INTERNAL,
    BodyRejected: INTERNAL,
    SourceChanged: INTERNAL,
    SegmentMismatch: INTERNAL,
    RetryBudgetExhausted: INTERNAL,
    InvalidTransition: INTERNAL,
    LeaseLost: INTERNAL,
    LeaseExpiring: INTERNAL,
    CancelRequested: INTERNAL,
    LinkLost: INTERNAL,  # the bulk data path's; it becomes a TransportError where raised
    FramingError: INTERNAL,  # likewise
}
# A CopyFailed answered as a reply (the Glance-compatible reads), by its code; else 502.
STATUS_OF_CODE: Mapping[ErrorCode, int] = {
    ErrorCode.SOURCE_NOT_FOUND: 404,
    ErrorCode.REGION_NOT_AVAILABLE: 404,
    ErrorCode.SOURCE_FORBIDDEN: 403,
    ErrorCode.SOURCE_AUTH_FAILED: 403,
    ErrorCode.SOURCE_CHANGED: 409,
    ErrorCode.IMAGE_NOT_ACTIVE: 409,
    ErrorCode.IMAGE_UNVERIFIABLE: 409,
    ErrorCode.UNSUPPORTED_STORE: 501,
    ErrorCode.SOURCE_UNAVAILABLE: 503,
}
# aiohttp's own HTTP exceptions, raised by it or by a handler, by their status.
HTTP_CODES: Mapping[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST, 401: ErrorCode.UNAUTHORIZED, 403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED, 408: ErrorCode.BODY_TIMEOUT,
    413: ErrorCode.BODY_TOO_LARGE}


def answer_of(exc: XferError) -> Answer:
    """The table's answer for this error: its class's, or its nearest listed base's."""
    return answer_of_class(type(exc), getattr(exc, "service", ""))


def answer_of_class(kind: type[XferError], service: str = "") -> Answer:
    """The answer for an error of this class (of this service, where that decides)."""
    for base in kind.__mro__:
        entry = ANSWERS.get(base)
        if isinstance(entry, Answer):
            return entry
        if entry is not None:
            return entry.get(service, INTERNAL)
    return INTERNAL


@dataclass(frozen=True)
class Reply:
    """What an error is answered with, before it is a response."""

    status: int
    code: ErrorCode
    message: str
    field: str | None
    headers: Mapping[str, str]


def reply_of(exc: XferError, request_id: str) -> Reply:
    answer = answer_of(exc)
    code = answer.code
    status = answer.status
    message = str(exc)
    if isinstance(exc, RequestError | CopyFailed):
        message = exc.message
    if isinstance(exc, CopyFailed):
        code = ErrorCode(exc.code)
        status = STATUS_OF_CODE.get(code, status)
    assert code is not None  # only a CopyFailed's answer takes its own code
    if answer.message is not None:
        message = answer.message.format(exc=exc)
    if answer is INTERNAL:
        message = f"an unexpected error; the service log has it as request {request_id}"
    field = exc.field if isinstance(exc, RequestError) else answer.field
    headers = {}
    if answer.retry_after is not None:
        headers["Retry-After"] = str(answer.retry_after)
    if isinstance(exc, RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{exc.size}"
    return Reply(status, code, message, field, headers)


def error_response(status: int, code: ErrorCode, message: str, field: str | None = None
                   ) -> web.Response:
    return web.json_response(Error(error=ErrorBody(code=code, message=message, field=field))
                             .wire(), status=status)


def error_reply(request: web.Request, exc: XferError) -> web.Response:
    """The reply to an error, and its log line: the error itself where the reply says less."""
    reply = reply_of(exc, request.get(REQUEST_ID, ""))
    where = f"{request.method} {request.path[:200]}"
    level = answer_of(exc).log_level
    if reply.status == 500:
        log.error("%s -> 500: unhandled error", where, exc_info=exc)
    else:
        log.log(level, "%s -> %d %s%s: %s", where, reply.status, reply.code,
                f" ({reply.field[:100]})" if reply.field else "",
                # the detail is the operator's, whole; a client's sentence is cut short
                str(exc) if level > logging.INFO else reply.message[:300])
    response = error_response(reply.status, reply.code, reply.message, reply.field)
    response.headers.update(reply.headers)
    return response


async def _answer(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    try:
        return await handler(request)
    except XferError as exc:
        if request.writer.output_size:  # a stream had begun: the protocol handler ends it
            raise
        return error_reply(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, field = HTTP_CODES.get(exc.status, ErrorCode.HTTP_ERROR), None
        message = exc.reason
        if exc.status in (408, 413):  # the body was too slow or too large
            message, field = exc.text or message, "body"
        response = error_response(exc.status, code, message, field)
        if exc.status == 408:
            response = await _reply_and_close(request, response)
        if "Allow" in exc.headers:  # a 405 says which methods the resource has
            response.headers["Allow"] = exc.headers["Allow"]
        log.info("%s %s -> %d %s%s: %s", request.method, request.path[:200], exc.status, code,
                 f" ({field})" if field else "", message[:300])
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
    except web.HTTPException:  # a redirect (the web view's forms): aiohttp answers it as is
        raise
    except Exception:
        if request.writer.output_size:  # a stream had begun: the protocol handler ends it
            raise
        log.exception("%s %s -> 500: unhandled error", request.method, request.path[:200])
        return error_response(500, ErrorCode.INTERNAL_ERROR,
                              f"an unexpected error; the service log has it as request "
                              f"{request_id}")
    finally:
        logs.current_job.reset(job_token)
        logs.current_request.reset(request_token)


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every reply, a stream too, says which request it answers."""
    if REQUEST_ID in request:
        response.headers["X-Request-Id"] = request[REQUEST_ID]
