"""Requests generated from the OpenAPI document by schemathesis (its coverage phase: every
field's boundary and just-past-boundary values, each constraint broken one at a time; then
random valid and invalid requests) against the API on a database of its own: no reply is a
5xx, every reply is what the document says (status documented for the operation, content
type, body schema, headers), and a request the document calls invalid is refused.
Bounded: EXAMPLES random cases per operation, and BUDGET_SECONDS for the whole module."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import database_url
from tests.test_observe import api_only
from xfer.dev import devcloud
from xfer.settings import Settings
from xfer.web import openapi

EXAMPLES = 40
BUDGET_SECONDS = 45.0
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance, negative_data_rejection]


@dataclass
class Target:
    url: str
    deadline: float  # time.monotonic() past which no more cases are sent
    sent: int = 0


async def _serve_until(stopped: asyncio.Event, url: Future[str], settings: Settings,
                       cloud: devcloud.CloudInfo, template: str) -> None:
    name = f"xfer_fuzz_{os.getpid()}"
    admin = await asyncpg.connect(database_url(cloud.database_url, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        own = settings.with_overrides(database_url=database_url(cloud.database_url, name),
                                      events_max_seconds=1.0)  # no stream outlives a case
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


@pytest.fixture(scope="module")
def target(base_settings: Settings, cloud: devcloud.CloudInfo, template_database: str,
           pytestconfig: pytest.Config) -> Iterator[Target]:
    """The API (no worker) on its own event loop in a thread: schemathesis' tests are
    synchronous, so the test session's loop does not run while they send requests."""
    loop = asyncio.new_event_loop()
    stopped = asyncio.Event()
    url: Future[str] = Future()
    thread = threading.Thread(target=loop.run_until_complete, args=(
        _serve_until(stopped, url, base_settings, cloud, template_database),), daemon=True)
    thread.start()
    try:
        fuzzed = Target(url.result(timeout=60), time.monotonic() + BUDGET_SECONDS)
        yield fuzzed
    finally:
        loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout=60)
        loop.close()
    took = time.monotonic() - fuzzed.deadline + BUDGET_SECONDS
    with pytestconfig.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(f"\nfuzz: {fuzzed.sent} generated requests in {took:.1f}s")


# Built here, not read from the service: schemathesis makes one test per operation when the
# module is collected. The cloud's regions have these fixed names (tests/conftest.py), and
# test_the_fuzzed_document_is_the_served_one keeps the two documents the same.
REGIONS = ["RegionOne", "RegionTwo"]
schema = schemathesis.openapi.from_dict(openapi.document(REGIONS))


def test_the_fuzzed_document_is_the_served_one(target: Target) -> None:
    with urllib.request.urlopen(f"{target.url}/v1/openapi.json", timeout=10) as served:
        assert json.load(served) == openapi.document(REGIONS)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_generated_requests_get_documented_replies_and_never_a_5xx(
        case: schemathesis.Case, target: Target) -> None:
    if time.monotonic() > target.deadline:
        return  # out of budget: the rest of this operation's cases are not sent
    case.call_and_validate(base_url=target.url, checks=CHECKS, timeout=10)
    target.sent += 1
