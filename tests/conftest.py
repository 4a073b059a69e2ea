"""Shared fixtures: one local cloud per test session (real Swift clusters, Keystone, a Glance per
region and Postgres), a database per test cloned from a migrated template, and an in-process xfer
service."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import hypothesis
import pytest

from tests.database_faults import stop_restarted_postgres
from xfer.app import serve
from xfer.clients.swift import SwiftClient
from xfer.clients.transport import http_session
from xfer.dev import devcloud
from xfer.jobs.db import create_pool, migrate
from xfer.jobs.duty_store import DutyStore
from xfer.jobs.store import JobStore
from xfer.settings import MiB, RegionConfig, Settings, from_environ

# No per-example deadline: on a shared 2-core machine a 3 MiB example took over the default
# 200 ms (DeadlineExceeded in test_stream and test_hashing) with nothing wrong; speed is
# measured by the benchmarks, not asserted by property tests.
hypothesis.settings.register_profile("xfer", deadline=None)
hypothesis.settings.load_profile("xfer")

TARGET_MAX_FILE_SIZE = 8 * MiB  # RegionTwo's constraint: bigger copies must become SLOs
TEMPLATE_DB = "xfer_template"
_database_numbers = itertools.count()


def database_url(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the local cloud (its `cloud` fixture, directly or through another
    fixture) is an integration test, whatever its file says: `make unit` (`-m "not
    integration"`) then never starts OpenStack because a file forgot its marker."""
    for item in items:
        if "cloud" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


class UnmarkedCloudUse(AssertionError):
    """A test not marked integration started a local cloud."""


@pytest.fixture(autouse=True)
def _cloud_only_in_integration_tests(request: pytest.FixtureRequest,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The other half of the marker's promise: a unit test that starts a cloud by itself
    (not through the `cloud` fixture) fails, naming itself, instead of slowing `make unit`."""
    if request.node.get_closest_marker("integration") is not None:
        return

    def refused(*_: Any, **__: Any) -> devcloud.CloudInfo:
        raise UnmarkedCloudUse(f"{request.node.nodeid} starts a local cloud: mark it "
                               "pytest.mark.integration")
    monkeypatch.setattr(devcloud, "up", refused)


@contextlib.contextmanager
def cloud_state_dir(name: str) -> Iterator[Path]:
    """A state directory for a local cloud with Postgres, outside pytest's base temp dir:
    the embedded Postgres runs as its own user and needs to traverse the parents, and any
    pytest run on the machine resets its base temp dir to mode 0700."""
    path = Path(tempfile.mkdtemp(prefix=f"xfer-{name}-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def cloud() -> Iterator[devcloud.CloudInfo]:
    specs = (devcloud.ClusterSpec("RegionOne"),
             devcloud.ClusterSpec("RegionTwo", max_file_size=TARGET_MAX_FILE_SIZE))
    with cloud_state_dir("tests") as state_dir:
        # RegionOne's file-store API: source images in Glance's file store (issue 10);
        # RegionTwo's no-secure-hash API: a target Glance with do_secure_hash = False (21).
        info = devcloud.up(state_dir, specs, file_store_regions=("RegionOne",),
                           no_secure_hash_regions=("RegionTwo",))
        try:
            yield info
        finally:
            devcloud.down(state_dir)
            stop_restarted_postgres(state_dir)


@pytest.fixture(scope="session")
def base_settings(cloud: devcloud.CloudInfo) -> Settings:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XFER_")}
    environ.update(cloud.environ())
    return from_environ(environ).with_overrides(
        listen_port=0, segment_size=1 * MiB, segments_in_flight=4, poll_interval=0.5,
        backoff_base=0.05, backoff_max=0.5, read_timeout=5.0)


@pytest.fixture(scope="session")
async def template_database(cloud: devcloud.CloudInfo) -> str:
    await as_postgres(cloud.database_url, f"DROP DATABASE IF EXISTS {TEMPLATE_DB}",
                      f"CREATE DATABASE {TEMPLATE_DB}")
    connection = await asyncpg.connect(database_url(cloud.database_url, TEMPLATE_DB))
    try:
        await migrate(connection)
    finally:
        await connection.close()
    return TEMPLATE_DB


@pytest.fixture
async def database(cloud: devcloud.CloudInfo, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test, cloned from the template."""
    name = f"xfer_test_{os.getpid()}_{next(_database_numbers)}"
    await as_postgres(cloud.database_url, f"CREATE DATABASE {name} TEMPLATE {template_database}")
    yield database_url(cloud.database_url, name)
    # a connection of its own: a test may have restarted Postgres, dropping any held one
    await as_postgres(cloud.database_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def as_postgres(server_url: str, *statements: str) -> None:
    """`statements`, in order, on the server's `postgres` database (creating, dropping
    databases and roles), on a connection of their own."""
    admin = await asyncpg.connect(database_url(server_url, "postgres"))
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


@pytest.fixture
def settings(base_settings: Settings, database: str) -> Settings:
    return base_settings.with_overrides(database_url=database)


@dataclass
class Service:
    url: str
    http: aiohttp.ClientSession
    serving: asyncio.Task[None] | None = None  # `serve` itself, when this process runs it

    async def submit(self, body: dict) -> dict:
        async with self.http.post(f"{self.url}/v1/jobs", json=body) as response:
            assert response.status == 201, await response.text()
            assert response.headers["Location"].startswith("/v1/jobs/")
            return await response.json()

    async def job(self, job_id: str) -> dict:
        async with self.http.get(f"{self.url}/v1/jobs/{job_id}") as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def wait(self, job_id: str, deadline: float = 60.0) -> dict:
        async with asyncio.timeout(deadline):
            while True:
                job = await self.job(job_id)
                if job["state"] in ("succeeded", "failed", "cancelled"):
                    return job
                await asyncio.sleep(0.1)

    async def copy(self, body: dict, deadline: float = 60.0) -> dict:
        return await self.wait((await self.submit(body))["id"], deadline)

    async def cleaned_up(self, job_id: str, deadline: float = 60.0,
                         headers: dict[str, str] | None = None) -> list[dict]:
        """The job's `cleanup` once none of it is pending (what removes what a failed or
        cancelled copy made runs after the job has ended)."""
        async with asyncio.timeout(deadline):
            while True:
                async with self.http.get(f"{self.url}/v1/jobs/{job_id}",
                                         headers=headers) as response:
                    assert response.status == 200, await response.text()
                    cleanup: list[dict] = (await response.json())["cleanup"]
                if all(duty["state"] != "pending" for duty in cleanup):
                    return cleanup
                await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[Service]:
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, stop=stop, on_ready=ready.set_result))
    try:
        port = await asyncio.wait_for(asyncio.shield(ready), 30)
        async with aiohttp.ClientSession() as http:
            yield Service(f"http://127.0.0.1:{port}", http, task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def keystone_settings(settings: Settings, cloud: devcloud.CloudInfo, home_region: str,
                      **changes: Any) -> Settings:
    """`settings` for an xfer with Keystone: the local cloud's xfer service user, serving
    `home_region`."""
    assert cloud.keystone is not None
    service = cloud.keystone.user("xfer")
    return settings.with_overrides(**{
        "keystone_url": cloud.keystone.auth_url, "keystone_user": service.name,
        "keystone_password": service.password, "keystone_project": service.project,
        "home_region": home_region, **changes})


@pytest.fixture
async def stores(settings: Settings) -> AsyncIterator[tuple[JobStore, DutyStore]]:
    """The job and duty stores on the test's database, for tests that drive them directly."""
    pool = await create_pool(settings.database_url, max_size=4)  # xfer's: no reset query
    try:
        yield JobStore(pool), DutyStore(pool)
    finally:
        await pool.close()


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    async with running_service(settings) as running:
        yield running


@pytest.fixture(scope="session")
async def swift_http(cloud: devcloud.CloudInfo, base_settings: Settings
                     ) -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session(base_settings) as http:
        yield http


@pytest.fixture(scope="session")
def regions(base_settings: Settings, swift_http: aiohttp.ClientSession) -> dict[str, SwiftClient]:
    """xfer's own Swift client per region, for putting test sources in place and checking."""
    return {name: SwiftClient(swift_http, config) for name, config in base_settings.regions.items()}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def is_running(process: devcloud.ProcessRecord) -> bool:
    """Same test as the launcher's, written out independently: a zombie or a reused PID is not
    the recorded process running."""
    try:
        stat = Path(f"/proc/{process.pid}/stat").read_text()
    except FileNotFoundError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] not in ("Z", "X") and int(fields[19]) == process.start_ticks


_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_names)}"


__all__ = ["MiB", "Path", "RegionConfig", "Service", "is_running", "md5", "running_service", "unique"]
