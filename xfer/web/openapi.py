"""The OpenAPI 3.1 description of the REST API, served at GET /v1/openapi.json.

Built here rather than kept as a file so that the job states, page limits and the configured
region names come from the code that enforces them: every request schema and parameter is
generated from the models of xfer/web/validation.py, which are what the handlers validate
with. tests/test_openapi.py validates real responses of a running service against it, and
tests/test_fuzz.py sends the requests it describes (valid and invalid) and checks each reply.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from pydantic_core import CoreSchema

from xfer.engine.types import Verification
from xfer.jobs.records import DutyState
from xfer.jobs.states import JobState, TargetState
from xfer.web import validation
from xfer.web.api import CLEANUP_DUTIES, SETTINGS
from xfer.web.validation import MD5_PATTERN

Schema = dict[str, Any]
STATES = [state.value for state in JobState]
TEXT: Schema = {"type": "string"}
BINARY: Schema = {"type": "string", "contentMediaType": "application/octet-stream"}
REF_TEMPLATE = "#/components/schemas/{model}"


class _Untitled(GenerateJsonSchema):
    """pydantic's JSON Schemas without a generated title on every property."""

    def field_title_should_be_set(self, schema: CoreSchema) -> bool:
        return False


def ref(name: str, kind: str = "schemas") -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def nullable(kind: str, **more: Any) -> Schema:
    return {"type": [kind, "null"], **more}


def closed(properties: dict[str, Schema], optional: Iterable[str] = ()) -> Schema:
    """An object with exactly these properties, all required but the `optional` ones."""
    required = [name for name in properties if name not in set(optional)]
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


def json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def response(description: str, schema: Schema, **more: Any) -> Schema:
    return {"description": description, "content": json_content(schema), **more}


def error(description: str) -> Schema:
    return response(description, ref("Error"))


def _request_schemas() -> dict[str, Schema]:
    _, generated = models_json_schema([(validation.JobRequestBody, "validation"),
                                       (validation.ImageCopyBody, "validation")],
                                      ref_template=REF_TEMPLATE, schema_generator=_Untitled)
    schemas: dict[str, Schema] = generated["$defs"]
    return schemas


def _name_regions(value: Any, regions: list[str]) -> Any:
    """The document with every schema marked as a region listing the configured names."""
    if isinstance(value, list):
        return [_name_regions(item, regions) for item in value]
    if not isinstance(value, dict):
        return value
    named = {key: _name_regions(item, regions) for key, item in value.items()
             if key != validation.REGIONS_MARK}
    if value.get(validation.REGIONS_MARK) and regions:
        named["enum"] = regions
    return named


def _parameters(model: type[BaseModel], where: str = "query") -> list[Schema]:
    """The parameters a model of validation.py checks, in the query, the path or a header."""
    generated = model.model_json_schema(ref_template=REF_TEMPLATE, schema_generator=_Untitled)
    parameters = []
    for name, field in generated["properties"].items():
        description = field.pop("description")
        if field.get("default", 0) is None:
            # optional means absent, never null: a query or a header holds only strings
            del field["default"]
            field = next(kind for kind in field.pop("anyOf") if kind != {"type": "null"}) | field
        parameters.append({"name": name, "in": where,
                           "required": name in generated.get("required", ()),
                           "schema": field, "description": description})
    return parameters


def _schema_of(adapter: TypeAdapter[Any]) -> Schema:
    schema: Schema = adapter.json_schema(schema_generator=_Untitled)
    return schema


def _job_schemas() -> dict[str, Schema]:
    location = closed({"region": {"type": "string"}, "container": {"type": "string"},
                       "object": {"type": "string"}})
    stamp = nullable("string", format="date-time")
    count = {"type": "integer", "minimum": 0}
    verification = {"enum": [*(v.value for v in Verification), None], "description": (
        "end_to_end: the whole-object MD5 equals an independent value (the checksum "
        "asked for, or a plain source's ETag); source_pinned: an SLO or DLO without a "
        "checksum, hashed and read as one pinned version, with nothing independent to "
        "compare with; null until the job (or the target) succeeds")}
    error = {"oneOf": [{"type": "null"}, closed({"code": {"type": "string"},
                                                 "message": {"type": "string"}})]}
    target = closed({
        **location["properties"],
        "state": {"enum": [state.value for state in TargetState], "description": (
            "succeeded: published, verified and indexed; a fan-out job fails when any "
            "target fails, and its targets that succeeded stay published")},
        "error": error, "md5": nullable("string"), "etag": nullable("string"),
        "verification": verification, "bytes_uploaded": nullable("integer", minimum=0),
        "segments_reused": nullable("integer", minimum=0)})
    job_fields = {
        "id": {"type": "string", "format": "uuid"},
        "state": {"type": "string", "enum": STATES},
        "source": location, "target": location,
        "targets": {"type": "array", "items": target, "minItems": 1,
                    "description": "every target, in order; the first is `target`"},
        "checksum": nullable("string", pattern=MD5_PATTERN),
        "max_rate_mb": nullable("number", exclusiveMinimum=0,
                                description="the job's own cap on reading, MB/s"),
        "bytes_total": nullable("integer", minimum=0), "bytes_done": count,
        "rate": nullable("number", minimum=0,
                         description="bytes per second since the job first started"),
        "eta": nullable("number", minimum=0, description="seconds to go; null when unknown"),
        "segments_total": nullable("integer", minimum=0),
        "layout": {"enum": ["slo", "plain", None]},
        "md5": nullable("string"), "sha512": nullable("string"), "etag": nullable("string"),
        "md5_checked_against": nullable("string"),
        "verification": verification,
        "retries": count, "bytes_uploaded": nullable("integer", minimum=0),
        "segments_reused": nullable("integer", minimum=0),
        "deduplicated": {"type": "boolean",
                         "description": "the target region already held a verified copy"},
        "existing": {"oneOf": [{"type": "null"}, location],
                     "description": "that copy, when deduplicated"},
        "attempts": count,
        "error": error,
        "kind": {"enum": ["object", "image"],
                 "description": "object: a Swift object copy; image: a Glance image copy"},
        "image": {"oneOf": [{"type": "null"}, closed({
            "source_region": {"type": "string"}, "source_image_id": {"type": "string"},
            "target_region": {"type": "string"},
            "target_image_id": nullable("string", description="the copy, once created"),
            "step": {"enum": ["planned", "created", "copied", "registered", None]},
            "name": nullable("string"),
            "properties": {"type": "object", "additionalProperties": {"type": "string"}},
            "force": {"type": "boolean"}, "project_id": nullable("string")})]},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": stamp, "finished_at": stamp,
        "updated_at": {"type": "string", "format": "date-time"},
    }
    segment = closed({"index": count, "offset": count, "length": count,
                      "etag": nullable("string")})
    transition = closed({"from": {"enum": [*STATES, None]}, "to": {"enum": STATES},
                         "at": {"type": "string", "format": "date-time"}})
    duty = closed({
        "duty": {"enum": [duty.value for duty in CLEANUP_DUTIES]},
        "state": {"enum": [state.value for state in DutyState]},
        "outcome": nullable("string", description="what was done, or what is left"),
        "error": nullable("string", description="why the last attempt failed"),
        "attempts": count})
    return {
        "JobFields": {"type": "object", "properties": job_fields, "required": list(job_fields)},
        "Job": {"allOf": [ref("JobFields")], "unevaluatedProperties": False},
        "JobDetail": {"allOf": [ref("JobFields"), {
            "type": "object",
            "properties": {"segments_written": count,
                           "segments": {"type": "array", "items": segment},
                           "transitions": {"type": "array", "items": transition},
                           "cleanup": {"type": "array", "items": duty, "description": (
                               "what removes what a failed or cancelled copy made, then "
                               "ends its trust: each with its state and outcome")}},
            "required": ["segments_written", "segments", "transitions", "cleanup"]}],
            "unevaluatedProperties": False},
        "JobPage": closed({"jobs": {"type": "array", "items": ref("Job")},
                           "next": nullable("string", description="cursor of the next page")}),
    }


def _other_schemas() -> dict[str, Schema]:
    text = {"type": "string"}
    check = {"type": "object", "properties": {"ok": {"type": "boolean"}, "error": text,
                                              "seconds": {"type": "number"}},
             "required": ["ok", "seconds"], "additionalProperties": False}
    checks = closed({"database": check, "keystone": check,
                     "regions": {"type": "object", "additionalProperties": check}},
                    optional=("keystone",))
    error_fields = {"error": closed({"code": text, "message": text, "field": text},
                                    optional=("field",))}
    return {
        "ErrorFields": {"type": "object", "properties": error_fields, "required": ["error"]},
        "Error": {"allOf": [ref("ErrorFields")], "unevaluatedProperties": False},
        "Object": closed({
            "checksum": text, "os_hash_algo": {"enum": ["sha512", None]},
            "os_hash_value": nullable("string"), "size": {"type": "integer", "minimum": 0},
            "region": text, "project": text, "container": text, "object": text,
            "job_id": nullable("string", format="uuid"),
            "verified_at": {"type": "string", "format": "date-time"}}),
        "ObjectList": closed({"objects": {"type": "array", "items": ref("Object")}}),
        "RegionList": closed({"home_region": text, "regions": {"type": "array", "items": closed(
            {"name": text, "home": {"type": "boolean"}, "copy_from": {"type": "boolean"}})}}),
        "ImageMatches": closed({
            "images": {"type": "array", "items": closed({
                "region": text, "count": {"type": "integer", "minimum": 1},
                "image": {"type": "object"}})},
            "unavailable": {"type": "array", "items": closed({"region": text,
                                                               "error": text})}}),
        "Health": closed({"status": {"const": "ok"}}),
        "Ready": closed({"status": {"const": "ok"}, "checks": checks}),
        "NotReady": {"allOf": [ref("ErrorFields"), {"properties": {"checks": checks},
                                                     "required": ["checks"]}],
                     "unevaluatedProperties": False},
    }


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


def _paths(regions: list[str]) -> dict[str, Schema]:
    job_id = {"name": "job_id", "in": "path", "required": True,
              "schema": _schema_of(validation.JOB_ID)}
    location = {"Location": {"required": True, "schema": {"type": "string"},
                             "description": "/v1/jobs/{id}"}}
    (idempotency_key,) = _parameters(validation.KeyHeaders, "header")
    (image_id,) = _parameters(validation.ImagePath, "path")
    # With Keystone (XFER_KEYSTONE_URL) every route but the probes and this document
    auth_errors = {
        "401": error("With Keystone: no valid token in X-Auth-Token (or two of them)"),
        "403": error("With Keystone: the policy does not allow it to your roles"),
        "503": error("With Keystone: Keystone did not answer (keystone_unavailable: try "
                     "again after Retry-After), or refuses xfer's own service credentials "
                     "(service_misconfigured: the operator's to fix)"),
    }
    keystone_errors = {**auth_errors, "404": error("This xfer runs without Keystone")}
    # the Glance-compatible reads pass on the fronted Glance's own 404 (its JSON, text or HTML)
    glance_404_text = ("No such image, or you may not see it (the fronted Glance's own reply: "
                       "{code, message, title}); or this xfer runs without Keystone (an Error)")
    glance_404_content = {"application/json": {"schema": {"type": "object"}},
                          "text/html": {"schema": TEXT}, "text/plain": {"schema": TEXT}}
    glance_404 = {"description": glance_404_text, "content": glance_404_content}
    return {
        "/v1/jobs": {
            "post": {
                "operationId": "createJob", "summary": "Request a copy",
                "parameters": [idempotency_key],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": ref("JobRequestBody"), "example": _request_example(regions)}}},
                "responses": {
                    "201": response("The job, queued", ref("Job"), headers=location),
                    "200": response("The job an earlier request with this Idempotency-Key "
                                    "created", ref("Job"), headers=location),
                    "400": error("A field is invalid; `field` names it"),
                    "408": ref("BodyTimeout", "responses"),
                    "409": error("The Idempotency-Key was used in your project for another "
                                 "request"),
                    "413": ref("PayloadTooLarge", "responses"), **auth_errors,
                },
            },
            "get": {
                "operationId": "listJobs", "summary": "Jobs, newest first, a page at a time",
                "parameters": _parameters(validation.JobsQuery),
                "responses": {"200": response("A page of jobs", ref("JobPage")),
                              "400": error("A parameter is invalid; `field` names it"),
                              **auth_errors},
            },
        },
        "/v1/jobs/{job_id}": {"get": {
            "operationId": "getJob", "parameters": [job_id],
            "summary": "A job with its progress, written segments and state transitions",
            "responses": {"200": response("The job", ref("JobDetail")),
                          "404": ref("NotFound", "responses"), **auth_errors}}},
        "/v1/jobs/{job_id}/cancel": {"post": {
            "operationId": "cancelJob", "parameters": [job_id], "summary": "Cancel a job",
            "responses": {"202": response("Cancelled, or asked to stop", ref("Job")),
                          "404": ref("NotFound", "responses"),
                          "409": error("The job has already ended or is being cancelled"),
                          **auth_errors}}},
        "/v1/jobs/{job_id}/events": {"get": {
            "operationId": "jobEvents", "parameters": [job_id],
            "summary": "Live progress as server-sent events",
            "description": "`event: progress` with a Job as data whenever its state or "
                           "bytes_done changes; last `event: end` with data {\"reason\": "
                           "\"finished\"|\"max_duration\"|\"shutdown\"|\"deleted\"}.",
            "responses": {"200": {"description": "An event stream",
                                  "content": {"text/event-stream": {"schema": TEXT}}},
                          "404": ref("NotFound", "responses"), **auth_errors}}},
        "/v1/objects": {"get": {
            "operationId": "findObjects", "summary": "Verified copies by checksum",
            "parameters": _parameters(validation.ObjectsQuery),
            "responses": {"200": response("Matching copies", ref("ObjectList")),
                          "400": error("Neither checksum nor os_hash_value, or a bad one"),
                          **auth_errors}}},
        "/v1/images/{image_id}/copies": {"post": {
            "operationId": "copyImage", "parameters": [image_id, idempotency_key],
            "summary": "Copy an image of another region into this one (Keystone only)",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": ref("ImageCopyBody"), "example": _image_copy_example(regions)}}},
            "responses": {"201": response("The job, queued", ref("Job"), headers=location),
                          "200": response("The job of an earlier request with this "
                                          "Idempotency-Key", ref("Job"), headers=location),
                          **keystone_errors,
                          "400": error("A field is invalid; `field` names it"),
                          "408": ref("BodyTimeout", "responses"),
                          "409": error("The Idempotency-Key was used in your project for another "
                                 "request"),
                          "413": ref("PayloadTooLarge", "responses")}}},
        "/v1/images": {"get": {
            "operationId": "findImages",
            "summary": "Active images with this content, per region of your catalog",
            "parameters": _parameters(validation.ImagesQuery),
            "responses": {"200": response("The oldest match per region, with a count",
                                          ref("ImageMatches")),
                          **keystone_errors,
                          "400": error("Neither checksum nor os_hash_value, or a bad one")}}},
        "/v1/regions": {"get": {
            "operationId": "listRegions", "summary": "Regions of your catalog to copy from",
            "responses": {"200": response("The regions", ref("RegionList")),
                          **keystone_errors}}},
        "/v2/images/{image_id}": {"get": {
            "operationId": "glanceShowImage", "parameters": [image_id],
            "summary": "The fronted region's Glance image record, as that Glance gives it to "
                       "you (Keystone only; for glance-download). A failing Glance is a 502.",
            "responses": {"200": response("Glance's image record", {"type": "object"}),
                          **auth_errors, "404": glance_404,
                          "400": error("The image id is not a UUID")}}},
        "/v2/images/{image_id}/file": {"get": {
            "operationId": "glanceImageData",
            "parameters": [image_id, {
                "name": "Range", "in": "header", "required": False,
                "schema": {"type": "string", "example": "bytes=0-1048575"},
                "description": "one byte range; a range short of the whole image is pinned "
                               "to the source version but not hashed"}],
            "summary": "The image's data, read with parallel ranged GETs and verified (MD5 "
                       "and SHA-512) before its last byte (Keystone only; for glance-download)",
            "responses": {
                "200": {"description": "The whole image; cut short and the connection closed "
                                       "when it does not verify. X-Xfer-Source: swift or "
                                       "glance; X-Xfer-Verified: whole",
                        "content": {"application/octet-stream": {"schema": BINARY}}},
                "206": {"description": "The range asked (Content-Range); X-Xfer-Verified: "
                                       "range, or whole when the range is the whole image",
                        "content": {"application/octet-stream": {"schema": BINARY}}},
                **auth_errors,
                "403": error("The policy does not allow it to your roles; or the image's "
                             "Swift refused you its data (source_forbidden, "
                             "source_auth_failed)"),
                "404": {"description": glance_404_text + "; or the image's data is not in "
                                        "its Swift (source_not_found)",
                        "content": glance_404_content},
                "503": error("Keystone did not answer; or the image's Swift kept failing "
                             "(source_unavailable)"),
                "400": error("The image id is not a UUID, or Range is not one byte range"),
                "409": error("The image is not active, or has no checksum to verify against"),
                "416": error("The range starts past the image's end"),
                "501": error("The image is in a store xfer cannot read, and reading through "
                             "its Glance is off (unsupported_store)"),
                "502": error("The data does not match the image record (checksum_mismatch); "
                             "or the fronted Glance or Swift failed")}}},
        "/v1/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document",
            "responses": {"200": response("OpenAPI 3.1", {"type": "object"})}}},
        "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness",
                             "responses": {"200": response("Alive", ref("Health"))}}},
        "/readyz": {"get": {
            "operationId": "readyz", "summary": "Database and every region reachable",
            "responses": {"200": response("Ready", ref("Ready")),
                          "503": response("A check failed; `checks` says which",
                                          ref("NotReady"))}}},
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics",
            "responses": {"200": {"description": "Prometheus text exposition format",
                                  "content": {"text/plain": {"schema": TEXT}}}}}},
    }


def document(regions: Iterable[str] = ()) -> Schema:
    named: Schema = _name_regions({
        "openapi": "3.1.0",
        "info": {"title": "xfer", "version": "1",
                 "description": "Verified copies of Swift objects between regions. Every "
                                "error, including an unknown route (404) or method (405, with "
                                "Allow), is an Error object."},
        "paths": _paths(sorted(regions)),
        "components": {
            "schemas": {**_request_schemas(), **_job_schemas(), **_other_schemas()},
            "responses": {
                "NotFound": error("No such job, or no such route"),
                "MethodNotAllowed": error("The route has no such method") | {
                    "headers": {"Allow": {"required": True, "schema": {"type": "string"}}}},
                "PayloadTooLarge": error("The body is over the service's limit"),
                "BodyTimeout": error("The body did not arrive within the service's "
                                     "XFER_BODY_TIMEOUT; the connection is closed"),
            },
        },
    }, sorted(regions))
    return named


async def serve_document(request: web.Request) -> web.Response:
    return web.json_response(document(request.app[SETTINGS].regions))


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/openapi.json", serve_document)
