"""Assembles the service: database, Swift clients, worker and REST API, in one TaskGroup."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from xfer.clients.openstack import OpenStackClients
from xfer.clients.swift import SwiftRegions
from xfer.clients.transport import http_session
from xfer.engine.object_copy import Copier
from xfer.errors import ConfigError
from xfer.images.cleanup import ImageCleanup
from xfer.images.flow import ImageCopier
from xfer.images.front import GlanceFront
from xfer.images.metrics import ImageStreamMetrics
from xfer.images.search import ImageSearch
from xfer.jobs.cleanup import JobCleanup
from xfer.jobs.db import close_pool, create_pool
from xfer.jobs.duties import DutyHandler, DutyRunner
from xfer.jobs.duty_store import DutyStore
from xfer.jobs.metrics import Metrics
from xfer.jobs.records import Duty
from xfer.jobs.store import JobStore
from xfer.jobs.sweep import Sweeper, sweep_periodically
from xfer.jobs.trusts import JobTrusts
from xfer.jobs.worker import Worker
from xfer.settings import Settings
from xfer.tls import client_context, server_context
from xfer.web import (
    api,
    auth,
    errors,
    events,
    glance_front,
    health,
    images,
    openapi,
    server,
    ui,
)
from xfer.web.policy import Policy

log = logging.getLogger(__name__)


def build_app(settings: Settings, store: JobStore, regions: SwiftRegions,
              metrics: Metrics | None = None,
              openstack: OpenStackClients | None = None,
              copier: Copier | None = None,
              duty_runner: DutyRunner | None = None) -> web.Application:
    """The REST API, /v1/openapi.json, /healthz, /readyz and /metrics; `metrics` is shared
    with the worker that feeds its counters, `regions` with its copies. With `keystone`,
    every call but the probes needs a valid token, and the image API is there with the
    Glance-compatible read endpoint, whose streams share `copier`'s bounds."""
    metrics = metrics or Metrics()
    middlewares = [errors.json_errors]
    if openstack is not None:
        middlewares.append(auth.keystone_auth)
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body_bytes)
    app.on_response_prepare.append(errors.stamp_request_id)
    app[api.SETTINGS] = settings
    app[api.STORE] = store
    if duty_runner is not None:
        app[api.DUTIES] = duty_runner
    if openstack is not None:
        app[auth.KEYSTONE] = openstack.keystone
        app[images.TRUSTS] = JobTrusts(settings, openstack.keystone, store,
                                       DutyStore(store.pool))
        app[auth.POLICY] = Policy.from_settings(settings.policy)
        app[images.IMAGE_SEARCH] = ImageSearch(openstack)
        app[glance_front.GLANCE_FRONT] = GlanceFront(
            settings, openstack, copier or Copier(settings, regions),
            ImageStreamMetrics(metrics.registry))
    api.add_routes(app)
    images.add_routes(app)
    glance_front.add_routes(app)
    events.setup(app)
    health.setup(app, metrics, regions)
    openapi.setup(app)
    if openstack is not None:
        ui.setup(app)  # the web view signs in with Keystone: there is none without it
    return app


async def serve(settings: Settings, *, api_enabled: bool = True,
                on_ready: Callable[[int], None] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run the API (unless disabled) and a worker until `stop` is set, SIGTERM or SIGINT."""
    if not settings.database_url:
        raise ConfigError("XFER_DATABASE_URL is not set")
    # A CA bundle, certificate or key that cannot be used stops start-up, naming its setting.
    client_context(settings)
    listen_tls = server_context(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    pool = await create_pool(settings.database_url)
    store = JobStore(pool)
    metrics = Metrics()
    runner = None
    try:
        async with http_session(settings) as http:
            regions = SwiftRegions(http, dict(settings.regions))
            copier = Copier(settings, regions)
            openstack = OpenStackClients.from_settings(settings, http)
            image_copier = None
            duties = DutyRunner(settings, store, DutyStore(pool), duty_handlers(
                settings, store, regions, openstack))
            if openstack is not None:
                image_copier = ImageCopier(settings, openstack, copier)
            port = 0
            if api_enabled:
                runner = server.ApiRunner(
                    build_app(settings, store, regions, metrics, openstack, copier, duties),
                    access_log=None)
                await runner.setup()
                site = web.TCPSite(runner, settings.listen_host, settings.listen_port,
                                   ssl_context=listen_tls)
                await site.start()
                port = runner.addresses[0][1]
                log.info("listening on %s://%s:%d", settings.listen_scheme,
                         settings.listen_host, port)
            async with asyncio.TaskGroup() as group:
                worker = group.create_task(
                    Worker(settings, store, copier, metrics, image_copier,
                           on_job_end=duties.wake).run())
                duty_task = group.create_task(duties.run())
                sweeping = None
                if settings.sweep_interval_hours > 0:
                    sweeping = group.create_task(sweep_periodically(
                        Sweeper(store, DutyStore(pool), regions), settings))
                if on_ready:
                    on_ready(port)
                await stop.wait()
                copier.handing_over = True  # running jobs go back to the queue, resumable
                worker.cancel()
                duty_task.cancel()
                if sweeping is not None:
                    sweeping.cancel()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        if runner is not None:
            await runner.cleanup()
        await close_pool(pool)


def duty_handlers(settings: Settings, store: JobStore, regions: SwiftRegions,
                  openstack: OpenStackClients | None) -> dict[Duty, DutyHandler]:
    """What each duty does; a trust's duties, and an image copy's, need Keystone."""
    cleanup = JobCleanup(regions, None if openstack is None else ImageCleanup(openstack))
    handlers: dict[Duty, DutyHandler] = {Duty.REMOVE_OBJECT_DATA: cleanup.remove_object_data}
    if openstack is not None:
        trusts = JobTrusts(settings, openstack.keystone, store, DutyStore(store.pool))
        handlers |= {Duty.ADOPT_TRUST: trusts.adopt, Duty.END_TRUST: trusts.end,
                     Duty.REMOVE_TARGET_IMAGE: cleanup.remove_target_image,
                     Duty.REMOVE_IMAGE_DATA: cleanup.remove_image_data}
    return handlers
