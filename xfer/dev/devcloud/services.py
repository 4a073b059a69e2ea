"""One service of a running local cloud stopped and started again, for fault tests and demos:
a Glance API, Keystone, or a Swift server (a proxy, say) as an operator would stop and restart it.

    stop_service(state_dir, "RegionTwo/glance-api")                  # SIGTERM, as systemd does
    stop_service(state_dir, "keystone", signal.SIGKILL)              # a crash: the whole group
    start_service(state_dir, "RegionTwo/glance-api")                 # back, answering

The process started again is recorded in the state file in place of the stopped one, so
``down`` stops it. Every service runs in a process group of its own (``spawn``: a session of
its own), which holds a gunicorn master's workers too: a stop waits until none of the group is
left, so the port is free for the next start. PostgreSQL is not one of these: pg_ctl stops and
starts it (tests/database_faults.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import replace
from pathlib import Path

from xfer.dev.devcloud import glance_server, keystone_server, swift_cluster
from xfer.dev.devcloud.cloud import cloud_python
from xfer.dev.devcloud.loopback import DevcloudError, LaunchSpec, http_request, log_tail
from xfer.dev.devcloud.processes import ProcessRecord, is_alive, spawn
from xfer.dev.devcloud.state import CloudInfo, locked, read_state, write_state

STOP_TIMEOUT_S = 15.0  # gunicorn's graceful timeout is 5 s (loopback.gunicorn_argv)
START_TIMEOUT_S = 120.0  # a Glance API imports for 5-10 s on a quiet machine, 30+ s on a busy one


def stop_service(state_dir: Path, name: str, signum: int | None = None) -> None:
    """Signal the service's process (its own stop signal by default; SIGKILL goes to its whole
    process group, as a crash takes the workers too) and wait until its group is gone."""
    with locked(state_dir):
        record = _record(_cloud(state_dir), name)
        if not is_alive(record):
            return
        group = record.pid  # the leader of its session, so of its group (spawn: setsid)
        with contextlib.suppress(ProcessLookupError):
            if signum == signal.SIGKILL:
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(record.pid, signum or record.stop_signal)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while is_alive(record) or _group_members(group):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                deadline = time.monotonic() + STOP_TIMEOUT_S
            time.sleep(0.05)


def start_service(state_dir: Path, name: str, timeout: float = START_TIMEOUT_S) -> None:
    """Start a stopped service again, as `up` started it, and return once it answers."""
    with locked(state_dir):
        cloud = _cloud(state_dir)
        old = _record(cloud, name)
        if is_alive(old):
            raise DevcloudError(f"{name} runs already (PID {old.pid})")
        spec = _launch_spec(cloud, name)
        new = spawn(spec)
        processes = tuple(new if p.name == name else p for p in cloud.processes)
        write_state(replace(cloud, processes=processes), ready=True)
    port, path = _probe(cloud, name)
    deadline = time.monotonic() + timeout
    while not 200 <= http_request(port, "GET", path, timeout=5.0)[0] < 400:
        if not is_alive(new) or time.monotonic() > deadline:
            raise DevcloudError(f"{name} did not answer GET {path} on port {port}; the end of "
                                f"{spec.log_path}:\n{log_tail(spec.log_path)}")
        time.sleep(0.2)


def _cloud(state_dir: Path) -> CloudInfo:
    state = read_state(state_dir.absolute())
    if state is None:
        raise DevcloudError(f"no local cloud in {state_dir}")
    return state[0]


def _record(cloud: CloudInfo, name: str) -> ProcessRecord:
    for record in cloud.processes:
        if record.name == name:
            return record
    raise DevcloudError(f"no process {name!r} in this cloud: "
                        f"{sorted(p.name for p in cloud.processes)}")


def _launch_spec(cloud: CloudInfo, name: str) -> LaunchSpec:
    python = cloud_python()
    specs = [spec for info in cloud.clusters.values()
             for spec in swift_cluster.launch_specs(info, python)]
    specs += [spec for info in cloud.glances.values()
              for spec in glance_server.launch_specs(info, python)]
    if cloud.keystone is not None:
        specs.append(keystone_server.launch_spec(cloud.keystone, python))
    for spec in specs:
        if spec.name == name:
            return spec
    raise DevcloudError(f"{name} cannot be started on its own")


def _probe(cloud: CloudInfo, name: str) -> tuple[int, str]:
    """Where the service answers once it is up: (port, path)."""
    if name == "keystone" and cloud.keystone is not None:
        return cloud.keystone.port, "/v3"
    region, _, server = name.partition("/")
    if server == "glance-api":
        return cloud.glances[region].port, "/"
    if server == "glance-file-store-api":
        return cloud.glances[region].file_store_port, "/"
    if server == "glance-no-secure-hash-api":
        return cloud.glances[region].no_secure_hash_port, "/"
    ports = cloud.clusters[region].ports
    by_server = {"proxy-server": ports.proxy, "keystone-proxy-server": ports.keystone_proxy,
                 "account-server": ports.account, "container-server": ports.container,
                 "object-server": ports.object}
    if server not in by_server:
        raise DevcloudError(f"{name} cannot be started on its own")
    return by_server[server], "/healthcheck"


def _group_members(group: int) -> list[int]:
    """Live processes of a process group (field 5 of /proc/<pid>/stat), zombies left out."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members

