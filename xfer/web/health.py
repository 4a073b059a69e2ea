"""Operational endpoints: liveness, readiness and Prometheus metrics.

    GET /healthz   200 {"status": "ok"} while the process serves requests
    GET /readyz    200 when the database answers SELECT 1, every configured region's Swift
                   authenticates and answers GET /info, through the same clients the copies
                   use, and (with Keystone) xfer's own service user gets a token holding the
                   `service` role, each within `ready_timeout`; else 503 with the usual error
                   object naming what is down, and every check. A check failed by xfer's own
                   configuration (Keystone refusing its credentials, the role missing) says so:
                   waiting will not mend it, unlike a service that did not answer.
    GET /metrics   Prometheus text format, from this service's own registry
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from xfer.clients.keystone import SERVICE_ROLE, Keystone
from xfer.clients.swift import SwiftRegions
from xfer.errors import ConfigError, ServiceCredentialsRefused, XferError
from xfer.jobs.metrics import Metrics
from xfer.web.api import METRICS, SETTINGS, STORE
from xfer.web.auth import KEYSTONE

REGIONS = web.AppKey("regions", SwiftRegions)
Check = dict[str, Any]


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _timed(check: Awaitable[object], limit_seconds: float) -> Check:
    """Run one check: {"ok": true, "seconds": s} or {"ok": false, "error": why, ...}."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit_seconds):
            await check
    except TimeoutError:
        result: Check = {"ok": False, "error": f"no answer within {limit_seconds:g}s"}
    except (ServiceCredentialsRefused, ConfigError) as exc:
        result = {"ok": False, "error": f"xfer's own configuration: {exc}"}
    except XferError as exc:
        result = {"ok": False, "error": str(exc) or type(exc).__name__}
    else:
        result = {"ok": True}
    result["seconds"] = round(time.monotonic() - started, 4)
    return result


async def keystone_ready(keystone: Keystone) -> None:
    """xfer's own token, and the role without which Keystone lets it validate no caller's
    token (every request would get 503 service_misconfigured)."""
    identity = await keystone.service_identity()
    if SERVICE_ROLE not in identity.roles:
        raise ConfigError(
            f"Keystone's token for xfer's service user {identity.user_name!r} on project "
            f"{identity.project_name!r} lacks the {SERVICE_ROLE!r} role, without which it "
            f"validates no caller's token (openstack role add --user {identity.user_name} "
            f"--project {identity.project_name} {SERVICE_ROLE})")


async def readyz(request: web.Request) -> web.Response:
    timeout = request.app[SETTINGS].ready_timeout
    keystone = request.app.get(KEYSTONE)
    async with asyncio.TaskGroup() as group:
        database = group.create_task(_timed(request.app[STORE].ping(), timeout))
        regions = {name: group.create_task(_timed(client.limits(), timeout))
                   for name, client in request.app[REGIONS].items()}
        identity = None if keystone is None else group.create_task(
            _timed(keystone_ready(keystone), timeout))
    checks: Check = {"database": database.result(),
                     "regions": {name: task.result() for name, task in regions.items()}}
    if identity is not None:
        checks["keystone"] = identity.result()
    failed = [f"{name}: {checks[name]['error']}" for name in ("database", "keystone")
              if name in checks and not checks[name]["ok"]]
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


def setup(app: web.Application, metrics_registry: Metrics, regions: SwiftRegions) -> None:
    app[METRICS] = metrics_registry
    app[REGIONS] = regions
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", scrape_metrics)
