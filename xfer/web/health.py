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

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from xfer.clients.keystone import SERVICE_ROLE, Keystone
from xfer.clients.swift import SwiftRegions
from xfer.errors import ConfigError, ErrorCode, ServiceCredentialsRefused, XferError
from xfer.jobs.metrics import Metrics
from xfer.web.api import METRICS, SETTINGS, STORE
from xfer.web.auth import KEYSTONE
from xfer.web.replies import Check, Checks, ErrorBody, Health, NotReady, Ready

REGIONS = web.AppKey("regions", SwiftRegions)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response(Health(status="ok").wire())


async def _timed(check: Awaitable[object], limit_seconds: float) -> Check:
    """Run one check: ok, or why not, and how long it took."""
    started = time.monotonic()
    error = None
    try:
        async with asyncio.timeout(limit_seconds):
            await check
    except TimeoutError:
        error = f"no answer within {limit_seconds:g}s"
    except (ServiceCredentialsRefused, ConfigError) as exc:
        error = f"xfer's own configuration: {exc}"
    except XferError as exc:
        error = str(exc) or type(exc).__name__
    return Check(ok=error is None, error=error,
                 seconds=round(time.monotonic() - started, 4))


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
    checks = Checks(database=database.result(),
                    keystone=None if identity is None else identity.result(),
                    regions={name: task.result() for name, task in regions.items()})
    failed = [] if checks.database.ok else [f"database: {checks.database.error}"]
    if checks.keystone is not None and not checks.keystone.ok:
        failed.append(f"keystone: {checks.keystone.error}")
    failed += [f"region {name}: {check.error}"
               for name, check in checks.regions.items() if not check.ok]
    if failed:
        # not an error of the request: what the probe asked, answered with the error shape
        error = ErrorBody(code=ErrorCode.NOT_READY, message="not ready: " + "; ".join(failed))
        return web.json_response(NotReady(error=error, checks=checks).wire(), status=503)
    return web.json_response(Ready(status="ok", checks=checks).wire())


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
