"""Operational endpoints: liveness, readiness and Prometheus metrics.

    GET /healthz   200 {"status": "ok"} while the process serves requests
    GET /readyz    200 when the database answers SELECT 1 and every configured region's Swift
                   answers GET /info (at the proxy of its auth_url), each within
                   `ready_timeout`; else 503 with the usual error object and every check
    GET /metrics   Prometheus text format, from this service's own registry
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from xfer.clients.swift import translated_errors
from xfer.errors import XferError
from xfer.jobs.metrics import Metrics
from xfer.proto import swift
from xfer.proto.http import Reply
from xfer.settings import RegionConfig
from xfer.web.api import METRICS, SETTINGS, STORE


class Probes:
    """The HTTP session readiness checks use, apart from the copies' session."""

    def __init__(self) -> None:
        self.http: aiohttp.ClientSession | None = None

    async def session(self, _app: web.Application) -> AsyncIterator[None]:  # cleanup_ctx
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as http:
            self.http = http
            yield
            self.http = None


PROBES = web.AppKey("probes", Probes)
Check = dict[str, Any]


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _timed(check: Awaitable[None], limit_seconds: float) -> Check:
    """Run one check: {"ok": true, "seconds": s} or {"ok": false, "error": why, ...}."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit_seconds):
            await check
    except TimeoutError:
        result: Check = {"ok": False, "error": f"no answer within {limit_seconds:g}s"}
    except (XferError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError,
            ValueError) as exc:
        result = {"ok": False, "error": str(exc) or type(exc).__name__}
    else:
        result = {"ok": True}
    result["seconds"] = round(time.monotonic() - started, 4)
    return result


async def _region_info(http: aiohttp.ClientSession, region: RegionConfig) -> None:
    """GET /info at the Swift proxy that serves the region's auth URL; it must parse."""
    request = swift.info_request(region.auth_url)
    async with translated_errors(request), http.get(request.url) as response:
        reply = Reply(response.status, response.headers, await response.read())
    swift.parse_info(request, reply)


async def readyz(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    http = request.app[PROBES].http
    assert http is not None
    timeout = settings.ready_timeout
    async with asyncio.TaskGroup() as group:
        database = group.create_task(_timed(request.app[STORE].ping(), timeout))
        regions = {name: group.create_task(_timed(_region_info(http, region), timeout))
                   for name, region in sorted(settings.regions.items())}
    checks = {"database": database.result(),
              "regions": {name: task.result() for name, task in regions.items()}}
    failed = [f"database: {checks['database']['error']}"] if not checks["database"]["ok"] else []
    failed += [f"region {name}: {check['error']}"
               for name, check in checks["regions"].items() if not check["ok"]]
    if failed:
        error = {"code": "not_ready", "message": "not ready: " + "; ".join(failed)}
        return web.json_response({"error": error, "checks": checks}, status=503)
    return web.json_response({"status": "ok", "checks": checks})


async def scrape_metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS]
    await registry.refresh_jobs(request.app[STORE])
    return web.Response(body=registry.exposition(),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application, metrics_registry: Metrics) -> None:
    app[METRICS] = metrics_registry
    app[PROBES] = probes = Probes()
    app.cleanup_ctx.append(probes.session)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", scrape_metrics)
