"""What each route of the API takes and answers, as data: openapi.py makes the document's
paths from this table. A success reply names its model (replies.py); an error names what
raises it (an error class, a CopyFailed's code, or aiohttp's own status), and its status and
code come from the error table (errors.py), so that no status is written twice.
tests/test_openapi.py checks that every route here is one of the application's, and that
real replies are what this says."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from xfer.errors import (
    DatabaseUnavailable,
    ErrorCode,
    NotCancellable,
    RangeNotSatisfiable,
    RequestError,
    ServiceCredentialsRefused,
    TokenInvalid,
    TrustRefused,
    XferError,
)
from xfer.jobs.store import IdempotencyConflict
from xfer.web import replies, validation
from xfer.web.errors import KEYSTONE_UNAVAILABLE, SERVICE_FAILED, Answer

Schema = dict[str, Any]
# What raises an error reply: an error class (answered by the table), one of the table's
# answers, a CopyFailed's code (errors.STATUS_OF_CODE), or a status aiohttp raises.
Raised = type[XferError] | Answer | ErrorCode | int
TEXT: Schema = {"type": "string"}
BINARY: Schema = {"type": "string", "contentMediaType": "application/octet-stream"}


@dataclass(frozen=True)
class Success:
    description: str
    model: type[replies.Reply] | None = None  # a JSON reply
    content: Schema | None = None  # any other
    location: bool = False  # with Location: /v1/jobs/{id}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    replies: dict[int, Success]
    raises: tuple[Raised, ...] = ()
    # (model of validation.py, where): the path, query or header parameters it checks
    parameters: tuple[tuple[type[BaseModel], str], ...] = ()
    job_id: bool = False  # a {job_id} path parameter
    headers: tuple[Schema, ...] = ()  # header parameters no model checks
    body: type[BaseModel] | None = None
    example: Callable[[list[str]], Schema] | None = None
    description: str | None = None
    keystone: str = "open"  # "auth": with Keystone, a token; "only": only with Keystone
    # a status whose reply is not xfer's Error: the fronted Glance's own, passed on
    passed_on: dict[int, Schema] = field(default_factory=dict)


def _request_example(regions: list[str]) -> Schema:
    """A copy between the first two configured regions: documentation, and the valid request
    that schemathesis' coverage phase varies one field at a time (tests/test_fuzz.py), so that
    each boundary value reaches the database."""
    source, target = (regions * 2)[:2] if regions else ("RegionOne", "RegionTwo")
    copy = {"region": target} if target != source else {"region": target, "object": "copy.img"}
    return {"source": {"region": source, "container": "images", "object": "cirros.img"},
            "target": copy, "checksum": "0" * 32}


def _image_copy_example(regions: list[str]) -> Schema:
    """A copy from the first configured region, with a name and a property: documentation, and
    the valid request whose fields tests/test_fuzz.py varies one at a time."""
    return {"source_region": regions[0] if regions else "RegionOne", "name": "cirros copy",
            "properties": {"os_distro": "cirros"}}


# With Keystone (XFER_KEYSTONE_URL), what every route but the probes and the document may
# answer: no valid token, the policy says no (aiohttp's 403), Keystone away or refusing xfer.
AUTH_ERRORS: tuple[Raised, ...] = (TokenInvalid, 403, KEYSTONE_UNAVAILABLE,
                                   ServiceCredentialsRefused)
# Reading a body: too slow (408, the connection is closed) or too large (413).
BODY_ERRORS: tuple[Raised, ...] = (RequestError, 408, 413, DatabaseUnavailable)
GLANCE_404 = {"application/json": {"schema": {"type": "object"}},
              "text/html": {"schema": TEXT}, "text/plain": {"schema": TEXT}}
JOB_CREATED = {
    201: Success("The job, queued", replies.Job, location=True),
    200: Success("The job an earlier request with this Idempotency-Key created (in your "
                 "project), which this one repeats", replies.Job, location=True)}
KEY = (validation.KeyHeaders, "header")
IMAGE_ID = (validation.ImagePath, "path")
RANGE = {"name": "Range", "in": "header", "required": False,
         "schema": {"type": "string", "example": "bytes=0-1048575"},
         "description": "one byte range; a range short of the whole image is pinned to the "
                        "source version but not hashed"}
FRONT_READ = "(Keystone only; for glance-download)"

OPERATIONS = (
    Operation("post", "/v1/jobs", "createJob", "Request a copy", JOB_CREATED,
              (*BODY_ERRORS, IdempotencyConflict), parameters=(KEY,),
              body=validation.JobRequestBody, example=_request_example, keystone="auth"),
    Operation("get", "/v1/jobs", "listJobs", "Jobs, newest first, a page at a time",
              {200: Success("A page of jobs", replies.JobPage)},
              (RequestError, DatabaseUnavailable), parameters=((validation.JobsQuery, "query"),),
              keystone="auth"),
    Operation("get", "/v1/jobs/{job_id}", "getJob",
              "A job with its progress, written segments, state transitions and cleanup",
              {200: Success("The job", replies.JobDetail)}, (404, DatabaseUnavailable),
              job_id=True, keystone="auth"),
    Operation("post", "/v1/jobs/{job_id}/cancel", "cancelJob", "Cancel a job",
              {202: Success("Cancelled, or asked to stop", replies.Job)},
              (404, NotCancellable, DatabaseUnavailable), job_id=True, keystone="auth"),
    Operation("get", "/v1/jobs/{job_id}/events", "jobEvents",
              "Live progress as server-sent events",
              {200: Success("An event stream", content={"text/event-stream": {"schema": TEXT}})},
              (404, DatabaseUnavailable), job_id=True, keystone="auth",
              description="`event: progress` with a Job as data whenever its state, "
                          "bytes_done or image.step changes; last `event: end` with a "
                          "StreamEnd as data."),
    Operation("get", "/v1/objects", "findObjects", "Verified copies by checksum",
              {200: Success("Matching copies", replies.ObjectList)},
              (RequestError, DatabaseUnavailable),
              parameters=((validation.ObjectsQuery, "query"),), keystone="auth"),
    Operation("post", "/v1/images/{image_id}/copies", "copyImage",
              "Copy an image of another region into this one (Keystone only)", JOB_CREATED,
              (*BODY_ERRORS, IdempotencyConflict, TrustRefused), parameters=(IMAGE_ID, KEY),
              body=validation.ImageCopyBody, example=_image_copy_example, keystone="only"),
    Operation("get", "/v1/images", "findImages",
              "Active images with this content, per region of your catalog (Keystone only)",
              {200: Success("The oldest match per region, with a count", replies.ImageMatches)},
              (RequestError,), parameters=((validation.ImagesQuery, "query"),),
              keystone="only"),
    Operation("get", "/v1/regions", "listRegions",
              "Regions of your catalog to copy from (Keystone only)",
              {200: Success("The regions", replies.RegionList)}, keystone="only"),
    Operation("get", "/v2/images/{image_id}", "glanceShowImage",
              f"The fronted region's Glance image record, as that Glance gives it to you "
              f"{FRONT_READ}. A failing Glance is a 502.", {200: Success("Glance's image record",
                                              content={"application/json": {
                                                  "schema": {"type": "object"}}})},
              (RequestError, ErrorCode.REGION_NOT_AVAILABLE),
              parameters=(IMAGE_ID,), keystone="only", passed_on={404: GLANCE_404}),
    Operation("get", "/v2/images/{image_id}/file", "glanceImageData",
              f"The image's data, read with parallel ranged GETs and verified (MD5 and "
              f"SHA-512) before its last byte {FRONT_READ}", {
                  200: Success("The whole image; cut short and the connection closed when it "
                               "does not verify. X-Xfer-Source: swift or glance; "
                               "X-Xfer-Verified: whole",
                               content={"application/octet-stream": {"schema": BINARY}}),
                  206: Success("The range asked (Content-Range); X-Xfer-Verified: range, or "
                               "whole when the range is the whole image",
                               content={"application/octet-stream": {"schema": BINARY}})},
              (RequestError, RangeNotSatisfiable, SERVICE_FAILED["glance"],
               SERVICE_FAILED["swift"], ErrorCode.REGION_NOT_AVAILABLE,
               ErrorCode.SOURCE_NOT_FOUND, ErrorCode.SOURCE_FORBIDDEN,
               ErrorCode.SOURCE_AUTH_FAILED, ErrorCode.SOURCE_CHANGED,
               ErrorCode.SOURCE_UNAVAILABLE, ErrorCode.IMAGE_NOT_ACTIVE,
               ErrorCode.IMAGE_UNVERIFIABLE, ErrorCode.UNSUPPORTED_STORE,
               ErrorCode.CHECKSUM_MISMATCH),
              parameters=(IMAGE_ID,), headers=(RANGE,), keystone="only",
              passed_on={404: GLANCE_404}),
    Operation("get", "/v1/openapi.json", "openapi", "This document",
              {200: Success("OpenAPI 3.1", content={"application/json": {
                  "schema": {"type": "object"}}})}),
    Operation("get", "/healthz", "healthz", "Liveness",
              {200: Success("Alive", replies.Health)}),
    Operation("get", "/readyz", "readyz", "Database, Keystone and every region reachable",
              {200: Success("Ready", replies.Ready),
               503: Success("A check failed (not_ready); `checks` says which",
                            replies.NotReady)}),
    Operation("get", "/metrics", "metrics", "Prometheus metrics",
              {200: Success("Prometheus text exposition format",
                            content={"text/plain": {"schema": TEXT}})}),
)
