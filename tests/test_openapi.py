"""GET /v1/openapi.json stays true: it is a valid OpenAPI 3.1 document, its routes are the
application's routes, its request schema says what xfer/web/validation.py accepts, and every
response of real requests to a running service (201/200/202/400/404/405/409/413/503, JSON,
server-sent events and Prometheus text) matches what it documents for that route, method and
status. Every response it documents is exercised."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import openapi_spec_validator
import pytest
from openapi_schema_validator import OAS31Validator, oas31_format_checker

from tests.conftest import MiB, RegionConfig, Service, keystone_settings, md5, unique
from tests.sources import payload, put_plain
from tests.test_cloud_keystone_glance import create_image, object_store, upload, user_session
from tests.test_observe import api_only, closed_port
from xfer.app import build_app
from xfer.clients.swift import SwiftClient
from xfer.dev import devcloud
from xfer.dev.devcloud.keystone_server import issue_token
from xfer.errors import RequestError
from xfer.settings import Settings
from xfer.web import openapi, validation
from xfer.web.policy import DEFAULT_RULES

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
REGIONS = ["RegionOne", "RegionTwo"]
GOOD = {"source": {"region": "RegionOne", "container": "images", "object": "cirros.img"},
        "target": {"region": "RegionTwo"}}


@pytest.fixture
def settings(base_settings: Settings, database: str) -> Settings:
    return base_settings.with_overrides(database_url=database, events_max_seconds=5.0)


def test_the_document_is_valid_openapi_3_1():
    openapi_spec_validator.validate(openapi.document(REGIONS))
    openapi_spec_validator.validate(openapi.document())


def test_the_document_has_exactly_the_applications_routes(base_settings: Settings):
    app = build_app(base_settings, store=None, regions=None)  # type: ignore[arg-type]  # routes only
    routes = {(route.resource.canonical, route.method.lower())
              for route in app.router.routes() if route.method != "HEAD"}
    document = openapi.document(base_settings.regions)
    documented = {(path, method) for path, item in document["paths"].items()
                  for method in item if method in METHODS}
    assert routes == documented


@pytest.mark.parametrize("body", [
    GOOD, {**GOOD, "checksum": "A" * 32, "segment_size": 2**63 - 1, "segment_container": "s"},
    {**GOOD, "target": {"region": "RegionTwo", "container": None, "object": "../x/"}},
    {**GOOD, "checksum": "a" * 32 + "\n"}, {**GOOD, "segment_size": 2**63},
    {**GOOD, "segment_size": 0}, {**GOOD, "segment_size": True}, {**GOOD, "segment_size": 1.5},
    {**GOOD, "segment_container": ".."}, {**GOOD, "segment_container": "a/b"},
    {**GOOD, "source": {**GOOD["source"], "container": "c" * 257}},
    {**GOOD, "source": {**GOOD["source"], "object": "nul\x00"}},
    {**GOOD, "source": {**GOOD["source"], "region": "Mars"}},
    {**GOOD, "target": {"region": "RegionTwo", "colour": "red"}}, {"source": GOOD["source"]},
])
def test_the_request_schema_says_what_validation_accepts(body):
    """Generated from the same models; checked here with a JSON Schema validator, as clients
    and the fuzz test read it. (Validation is stricter in one way JSON Schema cannot say: an
    integer field refuses 1.0, which JSON Schema counts as an integer.)"""
    document = openapi.document(REGIONS)
    schema = {"$ref": "#/components/schemas/JobRequestBody", "components": document["components"]}
    schema_valid = OAS31Validator(schema).is_valid(body)
    try:
        validation.validate_job_request(body, REGIONS)
        accepted = True
    except RequestError:
        accepted = False
    assert schema_valid == accepted


@dataclass
class Contract:
    """Checks real responses against the document; remembers what it saw."""

    document: dict[str, Any]
    seen: set[tuple[str, str, str]] = field(default_factory=set)

    def schema_validator(self, schema: dict[str, Any]) -> OAS31Validator:
        rooted = {**schema, "components": self.document["components"]}  # "#/components/..."
        return OAS31Validator(rooted, format_checker=oas31_format_checker)

    def validate(self, schema: dict[str, Any], value: Any) -> None:
        errors = sorted(self.schema_validator(schema).iter_errors(value), key=str)
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)

    def template(self, path: str) -> str | None:
        for template in self.document["paths"]:
            pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
            if re.fullmatch(pattern, path):
                return template
        return None

    def described(self, method: str, path: str, status: int,
                  headers: Any) -> tuple[str, dict[str, Any]]:
        """(the key it is recorded under, the documented response)."""
        template = self.template(path)
        responses = self.document["components"]["responses"]
        if template is None:
            assert status == 404, f"{method} {path}: undocumented route answered {status}"
            return "(no route)", responses["NotFound"]
        item = self.document["paths"][template]
        operation = item.get(method.lower())
        if operation is None:
            assert status == 405, f"{method} {template} is undocumented but answered {status}"
            allowed = set(headers["Allow"].split(",")) if "Allow" in headers else set()
            assert {m.strip().lower() for m in allowed} - {"head"} == set(item) & set(METHODS)
            return f"{method} {template}", responses["MethodNotAllowed"]
        documented = operation["responses"].get(str(status))
        assert documented is not None, f"{method} {template}: status {status} is undocumented"
        if "$ref" in documented:
            documented = responses[documented["$ref"].rsplit("/", 1)[1]]
        self.seen.add((template, method.lower(), str(status)))
        return f"{method} {template}", documented

    def check(self, method: str, path: str, response: aiohttp.ClientResponse,
              body: bytes) -> None:
        where, documented = self.described(method, path, response.status, response.headers)
        for name, header in documented.get("headers", {}).items():
            assert not header.get("required") or name in response.headers, f"{where}: {name}"
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        assert media_type in documented["content"], f"{where}: {media_type} is undocumented"
        schema = documented["content"][media_type]["schema"]
        # binary data (image bytes) is a string of bytes: one character per byte
        self.validate(schema, json.loads(body) if media_type == "application/json"
                      else body.decode("utf-8" if media_type.startswith("text/") else "latin-1"))

    def check_request(self, body: Any) -> None:
        request = self.document["paths"]["/v1/jobs"]["post"]["requestBody"]
        self.validate(request["content"]["application/json"]["schema"], body)

    def documented(self) -> set[tuple[str, str, str]]:
        return {(path, method, status) for path, item in self.document["paths"].items()
                for method, operation in item.items() if method in METHODS
                for status in operation["responses"]}


async def call(contract: Contract, service: Service, method: str, path: str,
               **kwargs: Any) -> tuple[int, Any, bytes]:
    """Make a real request, check its response against the document; (status, JSON, body)."""
    async with service.http.request(method, f"{service.url}{path}", **kwargs) as response:
        body = await response.read()
        contract.check(method, path, response, body)
        is_json = response.content_type == "application/json"
        return response.status, json.loads(body) if is_json else None, body


def event_data(contract: Contract, stream: bytes) -> list[tuple[str, Any]]:
    """The events of a text/event-stream body; progress data validated as Job objects."""
    events = []
    for block in stream.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines()
                     if not line.startswith(":"))
        if lines:
            events.append((lines["event"], json.loads(lines["data"])))
            if lines["event"] == "progress":
                contract.validate({"$ref": "#/components/schemas/Job"}, events[-1][1])
    return events


async def test_real_responses_match_the_document(service: Service, settings: Settings,
                                                 regions: dict[str, SwiftClient],
                                                 cloud: devcloud.CloudInfo):
    async with service.http.get(f"{service.url}/v1/openapi.json") as response:
        document = await response.json()
    openapi_spec_validator.validate(document)  # as served: with this service's region names
    contract = Contract(document)
    assert (await call(contract, service, "GET", "/v1/openapi.json"))[0] == 200
    await exercise_jobs(contract, service, settings, regions)
    await exercise_service(contract, service)
    broken = {**settings.regions, "Refusing": RegionConfig(
        "Refusing", f"http://127.0.0.1:{closed_port()}/auth/v1.0", "u", "k")}
    # no worker here, so a job stays queued until cancelled
    async with api_only(settings.with_overrides(regions=broken)) as (quiet, _):
        await exercise_cancel(contract, quiet)
        assert (await call(contract, quiet, "GET", "/readyz"))[0] == 503
    await exercise_images(contract, service, settings, cloud)
    await exercise_glance_front(contract, settings, cloud)
    assert contract.documented() - contract.seen == set()


async def exercise_jobs(contract: Contract, service: Service, settings: Settings,
                        regions: dict[str, SwiftClient]) -> None:
    container, name, data = unique("contract"), "image.raw", payload(MiB + 1)
    await put_plain(regions["RegionOne"], container, name, data)
    request = {"source": {"region": "RegionOne", "container": container, "object": name},
               "target": {"region": "RegionTwo"}, "checksum": md5(data)}
    contract.check_request(request)
    key = {"Idempotency-Key": unique("contract")}
    status, job, _ = await call(contract, service, "POST", "/v1/jobs", json=request, headers=key)
    assert status == 201
    assert (await call(contract, service, "POST", "/v1/jobs", json=request, headers=key))[0] == 200
    other = {**request, "target": {"region": "RegionTwo", "object": "elsewhere"}}
    assert (await call(contract, service, "POST", "/v1/jobs", json=other, headers=key))[0] == 409
    for bad in ({"target": {"region": "RegionTwo"}}, {**request, "checksum": "xyz"}):
        assert (await call(contract, service, "POST", "/v1/jobs", json=bad))[0] == 400
    too_big = b"x" * (settings.max_body_bytes + 1)
    assert (await call(contract, service, "POST", "/v1/jobs", data=too_big))[0] == 413
    async with api_only(settings.with_overrides(body_timeout=0.5)) as (hasty, _):
        assert (await call(contract, hasty, "POST", "/v1/jobs", data=stalling_body()))[0] == 408
    assert (await call(contract, service, "DELETE", "/v1/jobs"))[0] == 405
    assert (await call(contract, service, "GET", f"/v1/jobs/{job['id']}/cancel"))[0] == 405

    _, _, stream = await call(contract, service, "GET", f"/v1/jobs/{job['id']}/events")
    events = event_data(contract, stream)
    assert events[-1] == ("end", {"reason": "finished"}) and events[-2][1]["state"] == "succeeded"
    status, detail, _ = await call(contract, service, "GET", f"/v1/jobs/{job['id']}")
    assert status == 200 and detail["segments_written"] == 2
    assert (await call(contract, service, "GET", f"/v1/jobs/{'0' * 32}"))[0] == 404
    assert (await call(contract, service, "GET", f"/v1/jobs/{'0' * 32}/events"))[0] == 404
    missing = {**request, "source": {**request["source"], "object": "missing"}}
    assert (await call(contract, service, "POST", "/v1/jobs", json=missing))[0] == 201
    status, page, _ = await call(contract, service, "GET", "/v1/jobs", params={"limit": "1"})
    assert status == 200 and page["next"] is not None
    assert (await call(contract, service, "GET", "/v1/jobs", params={"state": "x"}))[0] == 400


async def stalling_body() -> AsyncIterator[bytes]:
    """A chunked body that begins and stops: the server answers it with a 408."""
    yield b'{"source": '
    await asyncio.sleep(60)


async def exercise_cancel(contract: Contract, service: Service) -> None:
    request = {"source": {"region": "RegionOne", "container": "c", "object": "o"},
               "target": {"region": "RegionTwo"}}
    _, job, _ = await call(contract, service, "POST", "/v1/jobs", json=request)
    assert (await call(contract, service, "POST", f"/v1/jobs/{job['id']}/cancel"))[0] == 202
    assert (await call(contract, service, "POST", f"/v1/jobs/{job['id']}/cancel"))[0] == 409
    assert (await call(contract, service, "POST", f"/v1/jobs/{'0' * 32}/cancel"))[0] == 404


async def exercise_service(contract: Contract, service: Service) -> None:
    assert (await call(contract, service, "GET", "/v1/objects"))[0] == 400
    assert (await call(contract, service, "GET", "/v1/objects",
                       params={"checksum": "0" * 32}))[0] == 200
    assert (await call(contract, service, "GET", "/healthz"))[0] == 200
    assert (await call(contract, service, "GET", "/readyz"))[0] == 200
    _, _, text = await call(contract, service, "GET", "/metrics")
    assert b"xfer_jobs{" in text
    assert (await call(contract, service, "POST", "/metrics"))[0] == 405
    assert (await call(contract, service, "GET", "/v2/jobs"))[0] == 404


def token_of(cloud: devcloud.CloudInfo, user: str) -> dict[str, str]:
    assert cloud.keystone is not None
    issued = issue_token(cloud.keystone, cloud.keystone.user(user))
    assert not isinstance(issued, str), issued
    return {"X-Auth-Token": issued.token}


# Every route that needs a token with Keystone, as (method, path, body).
SECURED = [("GET", "/v1/jobs", None), ("POST", "/v1/jobs", GOOD),
           ("GET", f"/v1/jobs/{'0' * 32}", None), ("POST", f"/v1/jobs/{'0' * 32}/cancel", None),
           ("GET", f"/v1/jobs/{'0' * 32}/events", None),
           ("GET", "/v1/objects", None), ("GET", "/v1/regions", None),
           ("GET", "/v1/images", None),
           ("POST", f"/v1/images/{'1' * 32}/copies", {"source_region": "RegionOne"}),
           ("GET", f"/v2/images/{uuid.UUID(int=1)}", None),
           ("GET", f"/v2/images/{uuid.UUID(int=1)}/file", None)]


async def exercise_images(contract: Contract, open_service: Service, settings: Settings,
                          cloud: devcloud.CloudInfo) -> None:
    """The image routes and what Keystone adds to every route: 404 without Keystone; 401
    without a token; 403 when the policy says no; 503 when Keystone does not answer."""
    for method, path in (("GET", "/v1/regions"), ("GET", "/v1/images"),
                         ("POST", f"/v1/images/{'1' * 32}/copies"),
                         ("GET", f"/v2/images/{uuid.UUID(int=1)}"),
                         ("GET", f"/v2/images/{uuid.UUID(int=1)}/file")):
        assert (await call(contract, open_service, method, path, json={}))[0] == 404
    alice, carol = token_of(cloud, "alice"), token_of(cloud, "carol")
    nobody = {rule: "!" for rule in DEFAULT_RULES}
    async with api_only(keystone_settings(settings, cloud, "RegionTwo", policy=nobody)) as (closed, _):
        for method, path, body in SECURED:
            assert (await call(contract, closed, method, path, json=body))[0] == 401
            assert (await call(contract, closed, method, path, json=body,
                               headers=alice))[0] == 403
    keystone_down = {"keystone_url": f"http://127.0.0.1:{closed_port()}/v3"}
    async with api_only(keystone_settings(settings, cloud, "RegionTwo", **keystone_down)) as (down, _):
        for method, path, body in SECURED:
            assert (await call(contract, down, method, path, json=body,
                               headers=alice))[0] == 503
    async with api_only(keystone_settings(settings, cloud, "RegionTwo")) as (secured, _):
        assert (await call(contract, secured, "GET", "/v1/regions", headers=alice))[0] == 200
        assert (await call(contract, secured, "GET", "/v1/images", headers=alice,
                           params={"checksum": "0" * 32}))[0] == 200
        assert (await call(contract, secured, "GET", "/v1/images", headers=alice))[0] == 400
        copies = f"/v1/images/{uuid.uuid4()}/copies"
        body = {"source_region": "RegionOne", "name": "copy"}
        key = {**alice, "Idempotency-Key": unique("contract")}
        assert (await call(contract, secured, "POST", copies, json=body, headers=key))[0] == 201
        assert (await call(contract, secured, "POST", copies, json=body, headers=key))[0] == 200
        assert (await call(contract, secured, "POST", copies, json={**body, "force": True},
                           headers=key))[0] == 409
        assert (await call(contract, secured, "POST", copies, json={"source_region": "X"},
                           headers=alice))[0] == 400
        assert (await call(contract, secured, "POST", copies, data=b"x" * (65 * 1024),
                           headers=alice))[0] == 413
        assert (await call(contract, secured, "POST", copies, json=body,
                           headers=carol))[0] == 403
    hasty = keystone_settings(settings, cloud, "RegionTwo", body_timeout=0.5)
    async with api_only(hasty) as (service, _):
        assert (await call(contract, service, "POST", copies, data=stalling_body(),
                           headers=alice))[0] == 408


async def exercise_glance_front(contract: Contract, settings: Settings,
                                cloud: devcloud.CloudInfo) -> None:
    """The Glance-compatible reads, fronting RegionOne: every status they document."""
    alice, bob = token_of(cloud, "alice"), token_of(cloud, "bob")
    session = user_session(cloud, "alice")
    try:
        data = payload(MiB + 3)
        image = upload(session, "RegionOne", data)
        altered = upload(session, "RegionOne", data)
        assert session.put(f"{object_store(session, 'RegionOne')}/glance_{altered['id']}/"
                           f"{altered['id']}", data=payload(MiB + 3)).ok
        queued = create_image(session, "RegionOne")
        in_file_store = upload(session, "RegionOne", data,
                               through=cloud.glances["RegionOne"].file_store_url)
    finally:
        session.session.close()
    front = keystone_settings(settings, cloud, "RegionTwo", front_region="RegionOne")
    async with api_only(front) as (service, _):
        record, data_path = f"/v2/images/{image['id']}", f"/v2/images/{image['id']}/file"
        status, body, _ = await call(contract, service, "GET", record, headers=alice)
        assert status == 200 and body["checksum"] == image["checksum"]
        assert (await call(contract, service, "GET", record, headers=bob))[0] == 404
        assert (await call(contract, service, "GET", "/v2/images/x", headers=alice))[0] == 400
        status, _, received = await call(contract, service, "GET", data_path, headers=alice)
        assert status == 200 and received == data
        status, _, received = await call(contract, service, "GET", data_path,
                                         headers={**alice, "Range": "bytes=1-2"})
        assert status == 206 and received == data[1:3]
        for header, expected in (("bytes=2-1", 400), (f"bytes={len(data)}-", 416)):
            assert (await call(contract, service, "GET", data_path,
                               headers={**alice, "Range": header}))[0] == expected
        assert (await call(contract, service, "GET", data_path, headers=bob))[0] == 404
        assert (await call(contract, service, "GET", f"/v2/images/{queued}/file",
                           headers=alice))[0] == 409
        status, body, _ = await call(contract, service, "GET",
                                     f"/v2/images/{altered['id']}/file", headers=alice)
        assert status == 502 and body["error"]["code"] == "checksum_mismatch"
    async with api_only(front.with_overrides(read_through_glance=False)) as (service, _):
        status, body, _ = await call(contract, service, "GET",
                                     f"/v2/images/{in_file_store['id']}/file", headers=alice)
        assert status == 501 and body["error"]["code"] == "unsupported_store"
