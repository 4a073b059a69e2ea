"""The local cloud's Keystone and Glance keep their records in the session's PostgreSQL, as
real deployments keep them in a SQL server: concurrent token requests and location imports all
finish (on sqlite an import never did and token requests failed: `database is locked`).
Their recovery from a PostgreSQL restart is tested in test_database_outage.py."""

from __future__ import annotations

import asyncio
import configparser
import hashlib
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest
from keystoneauth1 import service_token
from keystoneauth1 import session as ksa_session

from tests.conftest import unique
from tests.test_cloud_keystone_glance import (
    create_image,
    image_api,
    object_store,
    password_auth,
    user_session,
    wait_active,
)
from xfer.dev import devcloud

pytestmark = pytest.mark.integration

CONCURRENT_IMPORTS = 8
CONCURRENT_TOKENS = 16
IMPORT_SIZE = 2 * 1024 * 1024
TASK_DEADLINE_S = 30.0
LOCATIONS_VERSION = {"OpenStack-API-Version": "image 2.17"}


def put_image_object(alice: ksa_session.Session, region: str, image_id: str,
                     data: bytes) -> str:
    """The image's bytes in alice's Swift, where Glance's multi-tenant store would put them."""
    container = f"{object_store(alice, region)}/glance_{image_id}"
    assert alice.put(container).status_code in (201, 202)
    assert alice.put(f"{container}/{image_id}", data=data).status_code == 201
    return f"swift+{container}/{image_id}"


def add_location(cloud: devcloud.CloudInfo, region: str, image_id: str, url: str, data: bytes,
                 start: threading.Barrier) -> int:
    """API 2.17 add-location with xfer's service token, as xfer registers a copy; every caller
    waits at `start` so that the requests reach Glance together."""
    session = ksa_session.Session(auth=service_token.ServiceTokenAuthWrapper(
        password_auth(cloud, "alice"), password_auth(cloud, "xfer")))
    try:
        try:
            session.get_token()  # authenticate before the barrier, not in the race
        except BaseException:
            start.abort()  # the others stop waiting; this error is the one reported
            raise
        request = {"url": url, "validation_data": {
            "os_hash_algo": "sha512", "os_hash_value": hashlib.sha512(data).hexdigest()}}
        start.wait(timeout=30)
        response = session.post(f"{image_api(session, region)}/v2/images/{image_id}/locations",
                                json=request, headers=LOCATIONS_VERSION, raise_exc=False)
        return int(response.status_code)
    finally:
        session.session.close()


def all_results(futures: list[Future[int]]) -> list[int]:
    """Every future's result; else the first error that is not another thread's broken barrier."""
    errors = [error for future in futures if (error := future.exception()) is not None]
    errors.sort(key=lambda error: isinstance(error, threading.BrokenBarrierError))
    if errors:
        raise errors[0]
    return [future.result() for future in futures]


def finished_tasks(alice: ksa_session.Session, region: str, image_id: str) -> list[dict]:
    """The image's import tasks once none is pending or processing (Glance records a location
    import's success a moment after the image turns active); bounded."""
    deadline = time.monotonic() + TASK_DEADLINE_S
    while True:
        response = alice.get(f"{image_api(alice, region)}/v2/images/{image_id}/tasks",
                             headers=LOCATIONS_VERSION)
        assert response.status_code == 200, response.text
        tasks: list[dict] = response.json()["tasks"]
        if all(task["status"] in ("success", "failure") for task in tasks):
            return tasks
        assert time.monotonic() < deadline, f"a task of image {image_id} never finished: {tasks}"
        time.sleep(0.2)


def test_concurrent_location_imports_all_finish(cloud: devcloud.CloudInfo) -> None:
    region = "RegionTwo"
    alice = user_session(cloud, "alice")
    try:
        payloads = {create_image(alice, region, name=unique("concurrent")): os.urandom(IMPORT_SIZE)
                    for _ in range(CONCURRENT_IMPORTS)}
        urls = {image_id: put_image_object(alice, region, image_id, data)
                for image_id, data in payloads.items()}
        start = threading.Barrier(CONCURRENT_IMPORTS)
        with ThreadPoolExecutor(CONCURRENT_IMPORTS) as pool:
            statuses = all_results([
                pool.submit(add_location, cloud, region, image_id, urls[image_id], data, start)
                for image_id, data in payloads.items()])
        assert statuses == [202] * CONCURRENT_IMPORTS

        for image_id, data in payloads.items():
            image = wait_active(alice, region, image_id)  # bounded: ACTIVE_DEADLINE_S each
            assert image["checksum"] == hashlib.md5(data).hexdigest()
            tasks = finished_tasks(alice, region, image_id)
            assert [task["status"] for task in tasks] == ["success"], tasks
    finally:
        alice.session.close()
    glance_log = cloud.glances[region].log_path.read_text(errors="replace")
    assert "database is locked" not in glance_log


def test_concurrent_token_requests_all_succeed(cloud: devcloud.CloudInfo) -> None:
    """Every password authentication writes to Keystone's database (the user's last activity)."""
    assert cloud.keystone is not None
    keystone = cloud.keystone
    users = [keystone.user(name) for name in ("alice", "bob", "carol", "xfer")]
    start = threading.Barrier(CONCURRENT_TOKENS)

    def token_request(user: devcloud.OpenStackUser) -> str:
        start.wait(timeout=30)
        issued = devcloud.issue_token(keystone, user, timeout=30)
        return issued if isinstance(issued, str) else "issued"

    with ThreadPoolExecutor(CONCURRENT_TOKENS) as pool:
        outcomes = list(pool.map(token_request, users * (CONCURRENT_TOKENS // len(users))))
    assert outcomes == ["issued"] * CONCURRENT_TOKENS


def database_option(config_file: Path) -> str:
    config = configparser.ConfigParser(interpolation=None)
    assert config.read(config_file) == [str(config_file)]
    return config["database"]["connection"]


async def rows(server: devcloud.PostgresInfo, database: str, query: str, *args: object) -> set[str]:
    connection = await asyncpg.connect(server.url(database))
    try:
        return {str(row[0]) for row in await connection.fetch(query, *args)}
    finally:
        await connection.close()


async def test_keystone_and_glance_keep_their_records_in_postgres(
        cloud: devcloud.CloudInfo) -> None:
    """Their configs name a database each in the session's PostgreSQL (a region's file-store
    API shares its region's), no sqlite file exists, and what the APIs write is in there."""
    server, keystone = cloud.postgres, cloud.keystone
    assert server is not None and keystone is not None
    assert database_option(keystone.directory / "keystone.conf") == server.sqlalchemy_url(
        "keystone")
    for glance in cloud.glances.values():
        url = server.sqlalchemy_url(glance.database)
        assert database_option(glance.directory / "glance-api.conf") == url
    file_store = cloud.glances["RegionOne"]
    assert database_option(file_store.file_store_api_dir / "glance-api.conf") == \
        server.sqlalchemy_url(file_store.database)
    assert {glance.database for glance in cloud.glances.values()} == {
        "glance_regionone", "glance_regiontwo"}
    # (Swift's account and container databases are sqlite files, as in every Swift.)
    directories = [keystone.directory, *(glance.directory for glance in cloud.glances.values())]
    assert not [path for directory in directories for pattern in ("*.db", "*.sqlite")
                for path in directory.rglob(pattern)]

    alice = user_session(cloud, "alice")
    try:
        created = await asyncio.to_thread(lambda: {
            "RegionOne": create_image(alice, "RegionOne"),
            "RegionTwo": create_image(alice, "RegionTwo"),
            "file-store": alice.post(f"{file_store.file_store_url}/v2/images", json={
                "name": unique("file-store"), "disk_format": "raw",
                "container_format": "bare"}).json()["id"],
        })
        alpha = await asyncio.to_thread(alice.get_project_id)
    finally:
        alice.session.close()
    images = "SELECT id FROM images WHERE id = ANY($1::text[])"
    assert await rows(server, "glance_regionone", images, list(created.values())) == {
        created["RegionOne"], created["file-store"]}
    assert await rows(server, "glance_regiontwo", images, list(created.values())) == {
        created["RegionTwo"]}
    assert await rows(server, "keystone", "SELECT id FROM project WHERE name = 'alpha'") == {
        alpha}
    assert "alice" in await rows(server, "keystone", "SELECT name FROM local_user")
