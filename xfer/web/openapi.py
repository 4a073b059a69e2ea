"""The OpenAPI 3.1 description of the REST API, served at GET /v1/openapi.json.

Generated, never written twice: every request schema and parameter from the models of
xfer/web/validation.py (what the handlers validate with), every reply schema from the models
of xfer/web/replies.py (what the handlers send), the paths from the table of operations.py,
whose error replies get their status and code from the error table (errors.py); the job
states, page limits, error codes and configured region names come from the code that
enforces them. tests/test_openapi.py validates real responses of a running service against
it, and tests/test_fuzz.py sends the requests it describes (valid and invalid) and checks
each reply.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from pydantic_core import CoreSchema

from xfer.errors import ErrorCode
from xfer.web import replies, validation
from xfer.web.api import SETTINGS
from xfer.web.errors import HTTP_CODES, JOB_FAILURE, STATUS_OF_CODE, Answer, answer_of_class
from xfer.web.operations import AUTH_ERRORS, OPERATIONS, Operation, Raised, Success

Schema = dict[str, Any]
REF_TEMPLATE = "#/components/schemas/{model}"


class _Untitled(GenerateJsonSchema):
    """pydantic's JSON Schemas without a generated title on every property."""

    def field_title_should_be_set(self, schema: CoreSchema) -> bool:
        return False


def ref(name: str, kind: str = "schemas") -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def response(description: str, schema: Schema, **more: Any) -> Schema:
    return {"description": description, "content": json_content(schema), **more}


def error(description: str) -> Schema:
    return response(description, ref("Error"))


def _schemas() -> dict[str, Schema]:
    """Requests as validation.py checks them, replies as replies.py makes them."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (validation.JobRequestBody, "validation"), (validation.ImageCopyBody, "validation"),
        *((model, "serialization") for model in replies.DOCUMENTED)]
    _, generated = models_json_schema(models, ref_template=REF_TEMPLATE,
                                      schema_generator=_Untitled)
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


def _status_and_code(raised: Raised) -> tuple[int, ErrorCode]:
    """The status and code the error table answers what is raised with."""
    if isinstance(raised, ErrorCode):
        return STATUS_OF_CODE.get(raised, JOB_FAILURE.status), raised
    if isinstance(raised, int):
        return raised, HTTP_CODES[raised]
    answer = raised if isinstance(raised, Answer) else answer_of_class(raised)
    assert answer.code is not None, f"{raised} takes its code from the error"
    return answer.status, answer.code


def _errors(operation: Operation) -> dict[str, Schema]:
    raised = list(operation.raises)
    if operation.keystone != "open":
        raised += AUTH_ERRORS
    if operation.keystone == "only":
        raised.append(404)  # require_caller: this xfer runs without Keystone
    codes: dict[int, list[ErrorCode]] = {}
    for item in raised:
        status, code = _status_and_code(item)
        if code not in codes.setdefault(status, []):
            codes[status].append(code)
    documented = {}
    for status, listed in sorted(codes.items()):
        named = ", ".join(f"`{code}`" for code in listed) + " (docs/api.md says when)"
        if status in operation.passed_on:
            documented[str(status)] = {
                "description": "The fronted Glance's own reply (no such image, or you may not "
                               "see it: {code, message, title}), or an Error: " + named,
                "content": operation.passed_on[status]}
        else:
            documented[str(status)] = error("An Error: " + named)
    return documented


def _success(success: Success) -> Schema:
    if success.model is not None:
        content = json_content(ref(success.model.__name__))
    else:
        assert success.content is not None
        content = success.content
    documented = {"description": success.description, "content": content}
    if success.location:
        documented["headers"] = {"Location": {"required": True, "schema": {"type": "string"},
                                              "description": "/v1/jobs/{id}"}}
    return documented


def _operation(operation: Operation, regions: list[str]) -> Schema:
    parameters = [{"name": "job_id", "in": "path", "required": True,
                   "schema": _schema_of(validation.JOB_ID)}] if operation.job_id else []
    for model, where in operation.parameters:
        parameters += _parameters(model, where)
    parameters += operation.headers
    item: Schema = {"operationId": operation.operation_id, "summary": operation.summary}
    if operation.description:
        item["description"] = operation.description
    if parameters:
        item["parameters"] = parameters
    if operation.body is not None:
        example = operation.example(regions) if operation.example else None
        item["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": ref(operation.body.__name__), "example": example}}}
    item["responses"] = {**{str(status): _success(success)
                            for status, success in operation.replies.items()},
                         **_errors(operation)}
    return item


def _paths(regions: list[str]) -> dict[str, Schema]:
    paths: dict[str, Schema] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation, regions)
    return paths


def document(regions: Iterable[str] = ()) -> Schema:
    named: Schema = _name_regions({
        "openapi": "3.1.0",
        "info": {"title": "xfer", "version": "1",
                 "description": "Verified copies of Swift objects between regions. Every "
                                "error, including an unknown route (404) or method (405, with "
                                "Allow), is an Error object."},
        "paths": _paths(sorted(regions)),
        "components": {
            "schemas": _schemas(),
            # what any path answers that is no route, or any method a route does not have
            "responses": {
                "NotFound": error("No such route (`not_found`)"),
                "MethodNotAllowed": error("The route has no such method "
                                          "(`method_not_allowed`)") | {
                    "headers": {"Allow": {"required": True, "schema": {"type": "string"}}}},
            },
        },
    }, sorted(regions))
    return named


async def serve_document(request: web.Request) -> web.Response:
    return web.json_response(document(request.app[SETTINGS].regions))


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/openapi.json", serve_document)
