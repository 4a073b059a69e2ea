"""The local cloud launcher, against what it really starts: Swift clusters and Postgres."""

from __future__ import annotations

import http.client
import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import astuple
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import cloud_state_dir, is_running
from xfer.dev.devcloud import (
    CloudInfo,
    ClusterInfo,
    ClusterSpec,
    DevcloudError,
    ProcessRecord,
    down,
    load,
    loopback,
    up,
)

SMALL_MAX_FILE_SIZE = 4096
SWIFT_DEFAULT_MAX_FILE_SIZE = 5368709122

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def launched_cloud() -> Iterator[CloudInfo]:
    with cloud_state_dir("devcloud-test") as state_dir:
        yield from _launched(state_dir)


def _launched(state_dir: Path) -> Iterator[CloudInfo]:
    # Swift and Postgres only: the session's cloud (tests/conftest.py) has Keystone and Glance.
    specs = (ClusterSpec("RegionOne", max_file_size=SMALL_MAX_FILE_SIZE), ClusterSpec("RegionTwo"))
    try:
        yield up(state_dir, specs, openstack=False)
    finally:
        down(state_dir)  # also after a failed or interrupted up


def request(
    cluster: ClusterInfo,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    host_port = cluster.proxy_url.removeprefix("http://")
    connection = http.client.HTTPConnection(host_port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def login(cluster: ClusterInfo, user: str, key: str) -> tuple[str, dict[str, str]]:
    """tempauth v1: the account path (/v1/TEMPAUTH_...) and the token header to use on it."""
    status, headers, _ = request(cluster, "GET", "/auth/v1.0", {"X-Auth-User": user, "X-Auth-Key": key})
    assert status == 200
    account_path = "/" + headers["X-Storage-Url"].split("/", 3)[3]
    return account_path, {"X-Auth-Token": headers["X-Auth-Token"]}


def put_object(cluster: ClusterInfo, container: str, name: str, body: bytes) -> int:
    account, auth = login(cluster, cluster.user, cluster.key)
    assert request(cluster, "PUT", f"{account}/{container}", auth)[0] in (201, 202)
    return request(cluster, "PUT", f"{account}/{container}/{name}", auth, body)[0]


def swift_info(cluster: ClusterInfo) -> dict[str, dict[str, object]]:
    status, _, body = request(cluster, "GET", "/info")
    assert status == 200
    info: dict[str, dict[str, object]] = json.loads(body)
    return info


def tcp_ports(cloud: CloudInfo) -> set[int]:
    return {port for cluster in cloud.clusters.values() for port in astuple(cluster.ports) if port}


def test_each_cluster_reports_its_own_max_file_size(launched_cloud: CloudInfo) -> None:
    assert swift_info(launched_cloud.clusters["RegionOne"])["swift"]["max_file_size"] == SMALL_MAX_FILE_SIZE
    assert (
        swift_info(launched_cloud.clusters["RegionTwo"])["swift"]["max_file_size"]
        == SWIFT_DEFAULT_MAX_FILE_SIZE
    )


def test_object_larger_than_max_file_size_is_refused(launched_cloud: CloudInfo) -> None:
    cluster = launched_cloud.clusters["RegionOne"]
    assert put_object(cluster, "limits", "too-big", b"x" * (SMALL_MAX_FILE_SIZE + 1)) == 413
    assert put_object(cluster, "limits", "just-fits", b"x" * SMALL_MAX_FILE_SIZE) == 201


def test_clusters_do_not_share_objects(launched_cloud: CloudInfo) -> None:
    one, two = launched_cloud.clusters["RegionOne"], launched_cloud.clusters["RegionTwo"]
    container, name = f"c-{uuid.uuid4().hex}", "only-in-region-one"
    assert put_object(one, container, name, b"payload") == 201

    account_one, auth_one = login(one, one.user, one.key)
    assert request(one, "GET", f"{account_one}/{container}/{name}", auth_one)[2] == b"payload"
    account_two, auth_two = login(two, two.user, two.key)
    assert request(two, "HEAD", f"{account_two}/{container}/{name}", auth_two)[0] == 404


def test_second_user_is_not_admin_of_its_account(launched_cloud: CloudInfo) -> None:
    cluster = launched_cloud.clusters["RegionTwo"]
    account, auth = login(cluster, cluster.user2, cluster.key2)
    assert account.endswith("/TEMPAUTH_test2")
    assert request(cluster, "PUT", f"{account}/not-allowed", auth)[0] == 403


async def test_database_url_works_with_asyncpg(launched_cloud: CloudInfo) -> None:
    connection = await asyncpg.connect(launched_cloud.database_url)
    try:
        assert await connection.fetchval("SELECT 1 + 1") == 2
    finally:
        await connection.close()


def test_environ_describes_regions_and_database(launched_cloud: CloudInfo) -> None:
    environ = launched_cloud.environ()
    regions = json.loads(environ["XFER_REGIONS"])
    assert regions["RegionOne"] == {
        "auth_url": launched_cloud.clusters["RegionOne"].auth_url,
        "user": "test:tester",
        "key": "testing",
    }
    assert set(regions) == {"RegionOne", "RegionTwo"}
    assert environ["XFER_DATABASE_URL"] == launched_cloud.database_url


def test_load_finds_the_running_cloud(launched_cloud: CloudInfo) -> None:
    assert load(launched_cloud.state_dir) == launched_cloud


def test_second_up_on_a_running_state_dir_is_refused(launched_cloud: CloudInfo) -> None:
    with pytest.raises(DevcloudError, match="already runs"):
        up(launched_cloud.state_dir, openstack=False)
    assert all(is_running(process) for process in launched_cloud.processes)
    assert swift_info(launched_cloud.clusters["RegionOne"])["swift"]["max_file_size"] == SMALL_MAX_FILE_SIZE


def test_down_stops_every_recorded_process(launched_cloud: CloudInfo, tmp_path: Path) -> None:
    # A second cloud next to the module's: both must run at once without sharing ports.
    try:
        other = up(tmp_path / "other", (ClusterSpec("Solo"),), database=False, openstack=False)
        assert swift_info(other.clusters["Solo"])["swift"]["version"]
        assert tcp_ports(launched_cloud).isdisjoint(tcp_ports(other))
        assert len(other.processes) == 5 and all(is_running(p) for p in other.processes)
    finally:
        down(tmp_path / "other")

    assert not any(is_running(process) for process in other.processes)
    assert not (tmp_path / "other" / "devcloud.json").exists()
    down(tmp_path / "other")  # idempotent
    with pytest.raises(DevcloudError, match="no local cloud"):
        load(tmp_path / "other")
    assert all(is_running(process) for process in launched_cloud.processes)


def test_failed_start_reports_the_log_and_stops_what_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A squatter that sets SO_REUSEPORT, as every eventlet server does: Swift must not share its
    # port (and so answer for another cluster) but fail.
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        proxy, account, container, memcached = loopback.pick_free_ports(4)
        ports = [proxy, account, container, taken, memcached]  # the object server's is taken
        monkeypatch.setattr(loopback, "pick_free_ports", lambda count: ports)
        try:
            with pytest.raises(DevcloudError, match="Could not bind") as failure:
                up(tmp_path, (ClusterSpec("Clash"),), database=False, openstack=False)
        finally:
            down(tmp_path)

    assert "Clash/object-server exited" in str(failure.value)
    assert not (tmp_path / "devcloud.json").exists()
    for port in (proxy, account, container, memcached):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_failed_step_of_a_full_cloud_stops_every_process_it_had_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from xfer.dev.devcloud import cloud as cloud_module
    from xfer.dev.devcloud import glance_server, processes

    def failing_db_sync(info: glance_server.GlanceInfo, python: Path) -> loopback.OneShot:
        # Fails once Keystone and the Swift servers have been started (the last Swift server's
        # log file exists), and Postgres is on its way; gives up waiting after 60 s.
        swift_log = info.directory.parents[1] / "clusters" / info.region / "log"
        last_started = swift_log / "keystone-proxy-server.log"
        script = (f"for i in $(seq 600); do [ -e {last_started} ] && break; sleep 0.1; done; "
                  "echo schema broken >&2; exit 3")
        argv = ("/bin/sh", "-c", script)
        return loopback.OneShot(f"{info.region}/glance-db-sync", argv, info.directory / "sync.log")

    spawned: list[ProcessRecord] = []

    def recording_spawn(launch: loopback.LaunchSpec) -> ProcessRecord:
        spawned.append(processes.spawn(launch))
        return spawned[-1]

    monkeypatch.setattr(glance_server, "db_sync_step", failing_db_sync)
    monkeypatch.setattr(cloud_module, "spawn", recording_spawn)
    with cloud_state_dir("devcloud-broken") as state_dir:
        try:
            with pytest.raises(DevcloudError, match="glance-db-sync failed") as failure:
                up(state_dir, (ClusterSpec("Broken"),))
        finally:
            down(state_dir)
        assert "schema broken" in str(failure.value)
        assert not (state_dir / "devcloud.json").exists()
        assert {"keystone", "Broken/proxy-server"} <= {p.name for p in spawned}
        assert not any(is_running(process) for process in spawned)
        postmaster = (state_dir / "pgdata" / "postmaster.pid")
        assert not postmaster.exists(), "Postgres, started in a thread, was stopped too"
