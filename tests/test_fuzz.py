"""Requests generated from the OpenAPI document by schemathesis (its coverage phase: every
field's boundary and just-past-boundary values, each constraint broken one at a time; then
random valid and invalid requests) against the API, with Keystone, on a database of its own:
no reply is a 5xx, every reply is what the document says (status documented for the operation,
content type, body schema, headers), and a request the document calls invalid is refused.

The image routes are sent with a member's token (alice), the others with admin's (object
copies are for admins). Image copy bodies are also given hostile text (hostile_text: NUL, lone
surrogates, 4-byte UTF-8, noncharacters, text at and past Glance's limits) from a valid
source region, so that it reaches the database and the trust: each is refused with a 400
naming its field, or stored exactly (the job's reply shows it as sent).

Bounded: EXAMPLES random cases per operation, and BUDGET_SECONDS for them all; a case that
comes after the budget is not sent but counted, and test_every_operation_was_fuzzed prints how
many each operation got and fails when the budget left one with fewer than MIN_CASES."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import database_url, keystone_settings
from tests.test_cloud_keystone_glance import user_session
from tests.test_observe import api_only
from xfer.dev import devcloud
from xfer.settings import Settings
from xfer.web import openapi

pytestmark = pytest.mark.integration

EXAMPLES = 40
BUDGET_SECONDS = 120.0  # a cap: about 35-60 s on two busy cores (load 10-12)
MIN_CASES = 15  # per operation: fewer means the budget ran out before it was fuzzed
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance, negative_data_rejection]
HOME = "RegionTwo"  # the xfer under test serves it; image copies come from RegionOne
SOURCE = "RegionOne"


@dataclass
class Target:
    url: str
    tokens: dict[str, str]  # "member" and "admin"
    deadline: float  # time.monotonic() past which no more cases are sent
    sent: Counter[str] = field(default_factory=Counter)  # per operation
    unsent: Counter[str] = field(default_factory=Counter)


async def _serve_until(stopped: asyncio.Event, url: Future[str], settings: Settings,
                       cloud: devcloud.CloudInfo, template: str) -> None:
    name = f"xfer_fuzz_{os.getpid()}"
    admin = await asyncpg.connect(database_url(cloud.database_url, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        own = keystone_settings(settings.with_overrides(
            database_url=database_url(cloud.database_url, name),
            events_max_seconds=1.0), cloud, HOME)  # no stream outlives a case
        async with api_only(own) as (service, _):
            url.set_result(service.url)
            await stopped.wait()
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    except BaseException as exc:
        if not url.done():
            url.set_exception(exc)
        raise
    finally:
        await admin.close()


def _token(cloud: devcloud.CloudInfo, user: str) -> str:
    session = user_session(cloud, user)
    try:
        token = session.get_token()
        assert isinstance(token, str)
        return token
    finally:
        session.session.close()


@pytest.fixture(scope="module")
def target(base_settings: Settings, cloud: devcloud.CloudInfo, template_database: str
           ) -> Iterator[Target]:
    """The API (no worker) on its own event loop in a thread: schemathesis' tests are
    synchronous, so the test session's loop does not run while they send requests."""
    loop = asyncio.new_event_loop()
    stopped = asyncio.Event()
    url: Future[str] = Future()
    thread = threading.Thread(target=loop.run_until_complete, args=(
        _serve_until(stopped, url, base_settings, cloud, template_database),), daemon=True)
    thread.start()
    try:
        tokens = {"member": _token(cloud, "alice"), "admin": _token(cloud, "admin")}
        yield Target(url.result(timeout=60), tokens, time.monotonic() + BUDGET_SECONDS)
    finally:
        loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout=60)
        loop.close()


# Built here, not read from the service: schemathesis makes one test per operation when the
# module is collected. The cloud's regions have these fixed names (tests/conftest.py), and
# test_the_fuzzed_document_is_the_served_one keeps the two documents the same.
REGIONS = ["RegionOne", "RegionTwo"]
schema = schemathesis.openapi.from_dict(openapi.document(REGIONS))
OPERATIONS = sorted(operation.ok().label for operation in schema.get_all_operations())


# Characters and texts that PostgreSQL, Swift or Glance could not hold, or that a careless
# layer would change; each is refused or must come back exactly as sent.
HOSTILE_PIECES = ["\x00", "\ud800", "\udfff", "\U0001f600", "\U0010ffff", "\uffff", "\ufffe",
                  "\ufeff", "\u2028", "\x85", "\x1f", "\x7f", "\u202e", "e\u0301", "\\u0000",
                  "%00", " ", "\r\n", "\"", "\\"]
HOSTILE_WHOLE = ["", "x" * 255, "x" * 256, "\u4e2d" * 255, "\u4e2d" * 256, "é" * 40000]


def hostile_text() -> st.SearchStrategy[str]:
    piece = st.sampled_from(HOSTILE_PIECES)
    return st.one_of(
        st.builds(lambda before, middle, after: before + middle + after,
                  st.text(max_size=4), piece, st.text(max_size=4)),
        st.lists(piece, min_size=1, max_size=6).map("".join),
        st.sampled_from(HOSTILE_WHOLE))


COPY_PATH = "/v1/images/{image_id}/copies"


@st.composite
def _hostile_copy(draw: st.DrawFn, case: schemathesis.Case) -> schemathesis.Case:
    """A case of the operation asking to copy an image from a valid source region, with hostile text as
    its name, or a property's name or value, and no Idempotency-Key (which could make it a
    replay or a conflict): the request then gets as far as the database and the trust."""
    text = draw(hostile_text())
    body: dict[str, Any] = {"source_region": SOURCE}
    where = draw(st.sampled_from(["name", "property name", "property value"]))
    if where == "name":
        body["name"] = text
    else:
        body["properties"] = {text: "v"} if where == "property name" else {"x_fuzz": text}
    # a case of its own, not one derived: schemathesis would judge it by the metadata of the
    # generated case (a negative path or header, say), which no longer describes it
    return case.operation.Case(
        path_parameters={"image_id": str(draw(st.uuids()))},
        headers={name: value for name, value in case.headers.items()
                 if name.lower() != "idempotency-key"},
        body=body if _utf8(body) else json.dumps(body).encode(),  # see _utf8
        media_type="application/json")


def _utf8(body: Any) -> bool:
    """Whether schemathesis can check the body against the document: its validator takes only
    UTF-8, so a body with a lone surrogate goes as the JSON it is (`\\ud800` escapes), bytes
    it sends unchecked."""
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


@schema.hook
def flatmap_case(context: schemathesis.HookContext, case: schemathesis.Case
                 ) -> st.SearchStrategy[schemathesis.Case]:
    if case.operation.path == COPY_PATH:
        return st.one_of(st.just(case), _hostile_copy(case))
    return st.just(case)


def _token_for(target: Target, case: schemathesis.Case) -> str:
    """A member's token for the image API and the Glance-compatible reads, admin's for the
    rest (object copies and the object index are for admins)."""
    path = case.operation.path
    member = path.startswith(("/v1/images", "/v1/regions", "/v2/"))
    return target.tokens["member" if member else "admin"]


def _stored_exactly(case: schemathesis.Case, status: int, reply: Any) -> None:
    """A copy the API took shows name and properties as they were sent (read back from
    PostgreSQL: the reply is the recorded job)."""
    if case.operation.path != COPY_PATH or status not in (200, 201):
        return
    body = json.loads(case.body) if isinstance(case.body, bytes) else case.body
    assert _utf8(body), f"a lone surrogate was taken: {body!a}"
    assert isinstance(body, dict) and isinstance(reply, dict)
    assert reply["image"]["name"] == body.get("name"), (ascii(body.get("name")), reply["image"])
    assert reply["image"]["properties"] == body.get("properties", {}), (
        ascii(body.get("properties")), reply["image"])


def test_the_fuzzed_document_is_the_served_one(target: Target) -> None:
    with urllib.request.urlopen(f"{target.url}/v1/openapi.json", timeout=10) as served:
        assert json.load(served) == openapi.document(REGIONS)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_generated_requests_get_documented_replies_and_never_a_5xx(
        case: schemathesis.Case, target: Target) -> None:
    if time.monotonic() > target.deadline:
        target.unsent[case.operation.label] += 1  # out of budget: counted, not sent
        return
    response = case.call_and_validate(base_url=target.url, checks=CHECKS, timeout=10,
                                      headers={"X-Auth-Token": _token_for(target, case)})
    target.sent[case.operation.label] += 1
    if response.headers.get("content-type", [""])[0].startswith("application/json"):
        _stored_exactly(case, response.status_code, response.json())


def test_every_operation_was_fuzzed(target: Target, pytestconfig: pytest.Config) -> None:
    """After the generated cases (pytest runs a module's tests in order): how many each
    operation got, and a failure when the budget left one with too few."""
    took = time.monotonic() - target.deadline + BUDGET_SECONDS
    ran = [label for label in OPERATIONS if target.sent[label] + target.unsent[label]]
    if not ran:
        pytest.skip("no generated case ran (deselected?)")
    lines = [f"  {target.sent[label]:4d} sent, {target.unsent[label]:4d} past the budget: {label}"
             for label in ran]
    report = (f"fuzz: {sum(target.sent.values())} generated requests in {took:.1f}s\n"
              + "\n".join(lines))
    with pytestconfig.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print("\n" + report)
    # an operation with few cases and none left unsent had no more to give (one without
    # parameters has about ten); one that the budget cut short must have had MIN_CASES
    short = [label for label in ran if target.unsent[label] and target.sent[label] < MIN_CASES]
    assert not short, f"the budget ran out before {MIN_CASES} cases of {short}\n{report}"
