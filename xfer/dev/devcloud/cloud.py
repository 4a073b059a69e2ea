"""The local cloud: Swift clusters, Keystone, a Glance API per region and Postgres (xfer's
database, Keystone's and each region's Glance's), started by ``up`` and stopped by ``down``.

Everything lives in one state directory; ``devcloud.json`` in it records what runs (PIDs with
their kernel start times, so a reused PID is never signalled) and how clients reach it, passwords
included (so it is mode 0600). The state file is written as soon as the first process starts, so
``down`` can clean up after an ``up`` that died half-way.

    <state_dir>/devcloud.json          the state file ("ready": false until up returns)
    <state_dir>/clusters/<region>/     one Swift cluster (see swift_cluster.py)
    <state_dir>/keystone/              Keystone, shared by every region (see keystone_server.py)
    <state_dir>/glance/<region>/       one Glance API (see glance_server.py)
    <state_dir>/pgdata/                embedded Postgres (see postgres.py)

Start-up runs everything that can run at once: the one-shot steps (Swift rings, Keystone's
set-up, Glance's db sync) and Keystone's server start together, Postgres initialises in a thread
meanwhile, and each other service starts as soon as its own step is done. The steps that fill a
database import their service first (most of their cost) and then wait for Postgres; Keystone's
server reads its database only on its first request. Swift and Glance need no Keystone to start
(their keystonemiddleware asks it on the first request), only to pass their readiness checks,
which begin once every step has finished.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import ModuleType

from xfer.dev.children import stop_child
from xfer.dev.devcloud import (
    glance_server,
    keystone_server,
    loopback,
    postgres,
    swift_cluster,
    tls,
    tls_proxy,
)
from xfer.dev.devcloud.keystone_server import RegionEndpoints
from xfer.dev.devcloud.loopback import DevcloudError, LaunchSpec, OneShot
from xfer.dev.devcloud.processes import (
    ProcessRecord,
    is_alive,
    process_record,
    spawn,
    start_step,
    stop,
)
from xfer.dev.devcloud.readiness import wait_until_ready
from xfer.dev.devcloud.state import CloudInfo, locked, read_state, remove_state, write_state
from xfer.dev.devcloud.swift_cluster import ClusterPorts, ClusterSpec
from xfer.dev.devcloud.swift_conf import KeystoneAccess

# Cold start measured 14-19 s on 2 busy cores, and 40-90 s when other work kept them 5-8 times
# oversubscribed (load average 10-16); this only bounds a start that went wrong.
READY_TIMEOUT_S = 180.0
DEFAULT_CLUSTERS = (ClusterSpec("RegionOne"), ClusterSpec("RegionTwo"))
REPO_ROOT = Path(__file__).resolve().parents[3]  # the directory holding the xfer package
# Only the directories this module creates: state_dir may be a user's own directory.
OWNED_DIRECTORIES = ("clusters", "keystone", "glance", "pgdata", "tls")
# Where `up` moves a previous cloud's directories, to remove them while the new one starts: the
# ~2,600 files of the last cloud took 8-10 s to delete on the busy 2-core machine.
PREVIOUS_CLOUD_PREFIX = ".previous-cloud-"
# proxy, account, container, object, memcached; with Keystone also the Keystone proxy.
PORTS_PER_CLUSTER = 5


def default_state_dir() -> Path:
    return Path(os.environ.get("XFER_DEVCLOUD_DIR") or REPO_ROOT / ".devcloud").absolute()


def cloud_python() -> Path:
    """The cloud venv's interpreter. Never resolve() it: the symlink is what selects the venv."""
    configured = os.environ.get("XFER_DEVCLOUD_PYTHON")
    return Path(configured or REPO_ROOT / ".cloud-venv" / "bin" / "python").absolute()


def up(
    state_dir: Path,
    clusters: Sequence[ClusterSpec] = DEFAULT_CLUSTERS,
    *,
    database: bool = True,
    openstack: bool = True,
    file_store_regions: Sequence[str] = (),
    glance_defaults: Sequence[tuple[str, str]] = (),
    no_secure_hash_regions: Sequence[str] = (),
) -> CloudInfo:
    """Start a fresh cloud in ``state_dir`` and return once every service answers authenticated
    requests and Postgres accepts clients. Refuses if a cloud already runs there.

    ``database=False``: no database for xfer (Postgres still runs for Keystone and Glance).
    ``openstack=False``: Swift clusters with tempauth only, no Keystone and no Glance.
    ``file_store_regions``: these regions' Glance also get a file-store API (glance_server.py).
    ``glance_defaults``: (option, value) set in every Glance's [DEFAULT] section, e.g.
    ``("do_secure_hash", "false")`` (the benchmark's image flow without Glance's read-back).
    ``no_secure_hash_regions``: these regions' Glance also get a no-secure-hash API, the same
    with ``do_secure_hash = False`` (glance_server.py)."""
    regions = [spec.region for spec in clusters]
    databases = {glance_server.database_name(region) for region in regions}
    if not regions or len(databases) != len(regions):
        raise ValueError(f"need at least one cluster and distinct regions, got {regions}")
    for extra in (file_store_regions, no_secure_hash_regions):
        if set(extra) - set(regions) or (extra and not openstack):
            raise ValueError(f"{list(extra)}: not Glance regions")
    python = cloud_python()
    if not python.exists():
        raise DevcloudError(
            f"no cloud venv Python at {python} (pip install -r "
            "devcloud-requirements.txt into .cloud-venv, or set XFER_DEVCLOUD_PYTHON)"
        )
    state_dir = state_dir.absolute()
    database_url = os.environ.get("XFER_DATABASE_URL", "") if database else ""
    # pgserver is imported here, in the main thread: warnings filters are not thread-safe.
    pgserver = postgres.import_pgserver() if openstack or (database and not database_url) else None
    with locked(state_dir):
        _clear_stopped_cloud(state_dir)
        server = None if pgserver is None else postgres.plan_postgres(state_dir / "pgdata",
                                                                      pgserver)
        if server is not None and database and not database_url:
            database_url = server.url(postgres.DATABASE_NAME)
        cloud = _plan(state_dir, clusters, python, openstack, file_store_regions, server,
                      glance_defaults, no_secure_hash_regions)
        cloud = replace(cloud, database_url=database_url)
        try:
            return _start(cloud, python, pgserver)
        except BaseException:
            _stop_recorded(state_dir)
            raise


def down(state_dir: Path) -> None:
    """Stop every recorded process of the cloud in ``state_dir``; nothing to do if none runs.
    Data and logs stay on disk until the next ``up``."""
    state_dir = state_dir.absolute()
    if not state_dir.is_dir():
        return
    with locked(state_dir):
        _stop_recorded(state_dir)


def load(state_dir: Path) -> CloudInfo:
    """The running cloud in ``state_dir``."""
    state_dir = state_dir.absolute()
    state = read_state(state_dir)
    if state is None:
        raise DevcloudError(f"no local cloud in {state_dir}: run `xfer devcloud up`")
    cloud, ready = state
    dead = [p.name for p in cloud.processes if not is_alive(p)]
    if not ready or dead:
        raise DevcloudError(
            f"the local cloud in {state_dir} is not running (stopped: {dead}); "
            "run `xfer devcloud down`, then `up`"
        )
    return cloud


def _plan(
    state_dir: Path,
    specs: Sequence[ClusterSpec],
    python: Path,
    openstack: bool,
    file_store_regions: Sequence[str],
    server: postgres.PostgresInfo | None,
    glance_defaults: Sequence[tuple[str, str]] = (),
    no_secure_hash_regions: Sequence[str] = (),
) -> CloudInfo:
    """Ports, passwords and config files for every service; nothing started yet."""
    # Keystone; per region a Glance, a Keystone proxy and xfer's catalog port; file-store and
    # no-secure-hash APIs; https for Keystone and, per region, Swift, Glance and xfer (tls.py).
    openstack_ports = (2 + 6 * len(specs) + len(file_store_regions)
                       + len(no_secure_hash_regions)) if openstack else 0
    ports = iter(loopback.pick_free_ports(PORTS_PER_CLUSTER * len(specs) + openstack_ports))
    cluster_ports = {
        spec.region: ClusterPorts(*(next(ports) for _ in range(PORTS_PER_CLUSTER)))
        for spec in specs
    }
    if openstack:
        cluster_ports = {region: replace(p, keystone_proxy=next(ports))
                         for region, p in cluster_ports.items()}
    if not openstack:
        clusters = {spec.region: swift_cluster.prepare_cluster(
            spec, state_dir / "clusters" / spec.region, cluster_ports[spec.region]) for spec in specs}
        return CloudInfo(state_dir, clusters, "", postgres=server)
    assert server is not None, "Keystone and Glance keep their records in Postgres"

    keystone_port = next(ports)
    glance_ports = {spec.region: next(ports) for spec in specs}
    file_store_ports = {region: next(ports) for region in file_store_regions}
    no_secure_hash_ports = {region: next(ports) for region in no_secure_hash_regions}
    # Where an xfer serving each region listens (`xfer devcloud env --serve REGION`): the
    # catalog lists it as that region's `image-transfer` endpoint.
    xfer_urls = {spec.region: f"http://{loopback.LOOPBACK}:{next(ports)}" for spec in specs}
    endpoints = {
        region: RegionEndpoints(swift_cluster.keystone_storage_url(cluster_ports[region].keystone_proxy),
                                f"http://{loopback.LOOPBACK}:{glance_ports[region]}",
                                xfer_urls[region])
        for region in cluster_ports
    }
    keystone = keystone_server.prepare_keystone(state_dir / "keystone", keystone_port, endpoints,
                                                server)
    https = tls.prepare_tls(state_dir / "tls", (next(ports), keystone_port), {
        region: ((next(ports), cluster_ports[region].keystone_proxy),
                 (next(ports), glance_ports[region]),
                 (next(ports), int(xfer_urls[region].rsplit(":", 1)[1])))
        for region in cluster_ports})
    swift_user = keystone.user("swift")
    access = KeystoneAccess(keystone.auth_url, swift_user.name, swift_user.password,
                            swift_user.project)
    clusters = {spec.region: swift_cluster.prepare_cluster(
        spec, state_dir / "clusters" / spec.region, cluster_ports[spec.region], access)
        for spec in specs}
    # Imports (web-download, glance-download) may fetch from any service of this cloud, and
    # glance-download from the xfer fronting another region (its `<region>-via-xfer`).
    cloud_ports = [keystone_port, *glance_ports.values(),
                   *(port for p in cluster_ports.values() for port in (p.proxy, p.keystone_proxy)),
                   *(int(url.rsplit(":", 1)[1]) for url in xfer_urls.values()), *https.ports()]
    glances = {region: glance_server.prepare_glance(
        region, state_dir / "glance" / region, port, keystone, cloud_ports, python, server,
        file_store_ports.get(region, 0), glance_defaults, str(https.ca_file),
        no_secure_hash_ports.get(region, 0))
        for region, port in glance_ports.items()}
    return CloudInfo(state_dir, clusters, "", keystone=keystone, glances=glances,
                     xfer_urls=xfer_urls, postgres=server, tls=https)


class _Recorder:
    """The cloud as started so far. Every process is written to the state file the moment it
    exists, so that ``down`` stops whatever a failed ``up`` had started."""

    def __init__(self, cloud: CloudInfo) -> None:
        self.cloud = cloud
        self.postgres_awaited = False  # _postgres_started has run

    def record(self, process: ProcessRecord) -> None:
        self.cloud = replace(self.cloud, processes=(*self.cloud.processes, process))
        write_state(self.cloud, ready=False)


def _start(planned: CloudInfo, python: Path, pgserver: ModuleType | None) -> CloudInfo:
    deadline = time.monotonic() + READY_TIMEOUT_S
    started = _Recorder(planned)
    steps = _steps(planned, python)
    running = {step.name: start_step(step) for step, _ in steps}
    with ThreadPoolExecutor(max_workers=2) as background:
        background.submit(_remove_previous_clouds, planned.state_dir)
        starting_postgres = None
        if planned.postgres is not None and pgserver is not None:
            # initdb and the start take a few CPU-s: this thread starts the rest meanwhile, and
            # the steps that fill a database wait for it themselves (openstack_main.py).
            starting_postgres = background.submit(
                postgres.start_postgres, planned.postgres, _databases(planned), pgserver)
        try:
            if planned.keystone is not None:
                started.record(spawn(keystone_server.launch_spec(planned.keystone, python)))
            if planned.tls is not None:
                started.record(spawn(tls_proxy.launch_spec(planned.tls, planned.state_dir)))
            _finish_steps(started, steps, running, starting_postgres, deadline)
        finally:
            for child in running.values():  # only after a failure are some still running
                stop_child(child, grace_seconds=2.0)
            if starting_postgres is not None:
                _postgres_started(started, starting_postgres)
    cloud = started.cloud
    wait_until_ready(cloud, deadline)
    for info in cloud.clusters.values():
        swift_cluster.check_constraints(info)
    write_state(cloud, ready=True)
    return cloud


def _databases(cloud: CloudInfo) -> list[str]:
    """What Postgres is started with: xfer's database, Keystone's, and the first region's
    Glance's (glance-db-sync fills it; the other regions' are copies of it)."""
    assert cloud.postgres is not None
    names = [postgres.DATABASE_NAME] if cloud.database_url == cloud.postgres.url(
        postgres.DATABASE_NAME) else []
    if cloud.keystone is not None:
        names.append(keystone_server.DATABASE)
    names.extend(glance.database for glance in list(cloud.glances.values())[:1])
    return names


# A one-shot step, and what to do once it has succeeded: the processes it returns are started.
Step = tuple[OneShot, Callable[[], list[LaunchSpec]]]


def _steps(cloud: CloudInfo, python: Path) -> list[Step]:
    steps: list[Step] = [
        (swift_cluster.ring_step(info, python), partial(swift_cluster.launch_specs, info, python))
        for info in cloud.clusters.values()]
    if cloud.keystone is not None:
        # Keystone's server starts at once, its set-up alongside (see keystone_server.py).
        steps.append((keystone_server.setup_step(cloud.keystone, python), list))
    if cloud.glances:
        glances = list(cloud.glances.values())
        server = cloud.postgres
        assert server is not None

        def start_glances() -> list[LaunchSpec]:
            for other in glances[1:]:
                glance_server.copy_database(glances[0], other, server)
            return [spec for info in glances for spec in glance_server.launch_specs(info, python)]

        steps.append((glance_server.db_sync_step(glances[0], python), start_glances))
    return steps


def _finish_steps(
    started: _Recorder,
    steps: list[Step],
    running: dict[str, subprocess.Popen[bytes]],
    starting_postgres: Future[int] | None,
    deadline: float,
) -> None:
    """Wait for every step; start each one's processes as soon as it succeeds. A failed start
    of Postgres ends the wait at once (the steps would wait for their database in vain)."""
    followers = dict((step.name, (step, then)) for step, then in steps)
    while running:
        if starting_postgres is not None and starting_postgres.done():
            _postgres_started(started, starting_postgres)
        for name, child in list(running.items()):
            if child.poll() is None:
                continue
            del running[name]
            step, then = followers[name]
            if child.returncode != 0:
                raise DevcloudError(f"{name} failed (exit {child.returncode}); the end of "
                                    f"{step.log_path}:\n{loopback.log_tail(step.log_path)}")
            for launch in then():
                started.record(spawn(launch))
        if running and time.monotonic() > deadline:
            raise DevcloudError(f"still running after {READY_TIMEOUT_S:.0f} s: {sorted(running)}")
        if running:
            time.sleep(0.05)


def _postgres_started(started: _Recorder, starting: Future[int]) -> None:
    """Wait for Postgres and record its postmaster, also when its start failed; once."""
    if started.postgres_awaited:
        return
    started.postgres_awaited = True
    server = started.cloud.postgres
    assert server is not None
    try:
        pid = starting.result()
    except BaseException:
        # pg_ctl may have started a postmaster before the failure: record it so it is stopped.
        found = postgres.postmaster_pid(server.pgdata)
        if found is not None:
            record = process_record("postgres", found, postgres.STOP_SIGNAL, server.log_path)
            if record.start_ticks != -1:
                started.record(record)
        raise
    started.record(process_record("postgres", pid, postgres.STOP_SIGNAL, server.log_path))


def _clear_stopped_cloud(state_dir: Path) -> None:
    """Refuse a running cloud; otherwise move what a previous cloud left (data and logs) aside,
    for _start to remove."""
    state = read_state(state_dir)
    if state is not None:
        alive = [p.name for p in state[0].processes if is_alive(p)]
        if alive:
            raise DevcloudError(
                f"a local cloud already runs in {state_dir} ({len(alive)} "
                "processes); `xfer devcloud down` first"
            )
        remove_state(state_dir)
    previous = Path(tempfile.mkdtemp(prefix=PREVIOUS_CLOUD_PREFIX, dir=state_dir))
    for owned in OWNED_DIRECTORIES:
        if (state_dir / owned).exists():
            (state_dir / owned).rename(previous / owned)


def _remove_previous_clouds(state_dir: Path) -> None:
    """What _clear_stopped_cloud moved aside, also by an `up` that was interrupted."""
    for previous in state_dir.glob(f"{PREVIOUS_CLOUD_PREFIX}*"):
        shutil.rmtree(previous, ignore_errors=True)


def _stop_recorded(state_dir: Path) -> None:
    state = read_state(state_dir)
    if state is None:
        return
    survivors = stop(state[0].processes)
    if survivors:
        raise DevcloudError(f"still running after SIGKILL: {survivors}; state kept in {state_dir}")
    remove_state(state_dir)
