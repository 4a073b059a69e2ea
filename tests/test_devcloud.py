"""The local cloud launcher, against what it really starts: Swift clusters and Postgres."""

from __future__ import annotations

import http.client
import json
import shlex
import socket
import uuid
from collections.abc import Iterator
from dataclasses import astuple
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import cloud_state_dir
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


def is_running(process: ProcessRecord) -> bool:
    """Same test as the launcher's, written out independently: a zombie or a reused PID is not
    the recorded process running."""
    try:
        stat = Path(f"/proc/{process.pid}/stat").read_text()
    except FileNotFoundError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] not in ("Z", "X") and int(fields[19]) == process.start_ticks


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


# The session's cloud (tests/conftest.py) is the full one: Keystone and a Glance per region too.

def test_full_cloud_records_every_service_and_load_finds_it(cloud: CloudInfo) -> None:
    names = {process.name for process in cloud.processes}
    for region in ("RegionOne", "RegionTwo"):
        assert {f"{region}/proxy-server", f"{region}/keystone-proxy-server",
                f"{region}/glance-api"} <= names
    assert {"keystone", "postgres", "RegionOne/glance-file-store-api"} <= names
    assert all(is_running(process) for process in cloud.processes)
    assert load(cloud.state_dir) == cloud
    with pytest.raises(DevcloudError, match="already runs"):
        up(cloud.state_dir)
    assert load(cloud.state_dir) == cloud


def test_files_with_passwords_or_keys_are_owner_only(cloud: CloudInfo) -> None:
    assert cloud.keystone is not None
    secret_files = [
        cloud.state_dir / "devcloud.json",
        cloud.keystone.directory / "seed.json",
        *(glance.directory / "glance-api.conf" for glance in cloud.glances.values()),
        *(cluster.swift_dir / name for cluster in cloud.clusters.values()
          for name in ("proxy-server.conf", "keystone-proxy-server.conf", "swift.conf")),
        *(cloud.keystone.directory / "keys").glob("*/*"),
    ]
    assert len(secret_files) > 10
    for path in secret_files:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    assert (cloud.keystone.directory / "keys" / "fernet-tokens").stat().st_mode & 0o777 == 0o700


def test_env_exports_openstack_variables_that_get_a_token(
    cloud: CloudInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    from keystoneauth1 import session as ksa_session
    from keystoneauth1.identity import v3

    from xfer.cli import main

    assert main(["devcloud", "env", "--state-dir", str(cloud.state_dir), "--region", "RegionTwo"]) == 0
    exported = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1)
                    for line in capsys.readouterr().out.splitlines())
    assert cloud.keystone is not None
    alice = cloud.keystone.user("alice")
    assert exported["OS_AUTH_URL"] == cloud.keystone.auth_url
    assert (exported["OS_USERNAME"], exported["OS_PASSWORD"]) == ("alice", alice.password)
    assert exported["OS_PROJECT_NAME"] == "alpha"
    assert exported["OS_USER_DOMAIN_NAME"] == exported["OS_PROJECT_DOMAIN_NAME"] == "Default"
    assert exported["OS_REGION_NAME"] == "RegionTwo"
    assert exported["XFER_REGIONS"] == cloud.environ()["XFER_REGIONS"]

    auth = v3.Password(auth_url=exported["OS_AUTH_URL"], username=exported["OS_USERNAME"],
                       password=exported["OS_PASSWORD"], project_name=exported["OS_PROJECT_NAME"],
                       user_domain_name=exported["OS_USER_DOMAIN_NAME"],
                       project_domain_name=exported["OS_PROJECT_DOMAIN_NAME"])
    session = ksa_session.Session(auth=auth)
    try:
        image = session.get_endpoint(service_type="image", region_name=exported["OS_REGION_NAME"])
        assert image == cloud.glances["RegionTwo"].url
    finally:
        session.session.close()


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
