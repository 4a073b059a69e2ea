"""The local cloud: Swift clusters plus Postgres, started by ``up`` and stopped by ``down``.

Everything lives in one state directory; ``devcloud.json`` in it records what runs (PIDs with
their kernel start times, so a reused PID is never signalled) and how clients reach it. The state
file is written as soon as the first process starts, so ``down`` can clean up after an ``up``
that died half-way.

    <state_dir>/devcloud.json          the state file ("ready": false until up returns)
    <state_dir>/clusters/<region>/     one Swift cluster (see swift_cluster.py)
    <state_dir>/pgdata/                embedded Postgres (see postgres.py)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from xfer.dev.devcloud import postgres, swift_cluster
from xfer.dev.devcloud.swift_cluster import (
    ClusterInfo,
    ClusterPorts,
    ClusterSpec,
    DevcloudError,
    LaunchSpec,
)
from xfer.settings import RegionConfig, regions_variable

STATE_FILE = "devcloud.json"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
DEFAULT_CLUSTERS = (ClusterSpec("RegionOne"), ClusterSpec("RegionTwo"))
REPO_ROOT = Path(__file__).resolve().parents[3]  # the directory holding the xfer package


@dataclass(frozen=True)
class ProcessRecord:
    name: str  # "RegionOne/proxy-server", "postgres"
    pid: int
    start_ticks: int  # field 22 of /proc/<pid>/stat: tells our process from a reused PID
    stop_signal: int
    log_path: Path


@dataclass(frozen=True)
class CloudInfo:
    state_dir: Path
    clusters: dict[str, ClusterInfo]  # by region name
    database_url: str  # "" when started with database=False and no XFER_DATABASE_URL
    processes: tuple[ProcessRecord, ...] = field(default=())

    def environ(self) -> dict[str, str]:
        """XFER_* variables for an xfer process using this cloud."""
        regions = (RegionConfig(region, c.auth_url, c.user, c.key)
                   for region, c in self.clusters.items())
        variables = {"XFER_REGIONS": regions_variable(regions)}
        if self.database_url:
            variables["XFER_DATABASE_URL"] = self.database_url
        return variables

    def shell_exports(self) -> str:
        """``export NAME='value'`` lines for ``eval "$(xfer devcloud env)"``."""
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in self.environ().items())


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
) -> CloudInfo:
    """Start a fresh cloud in ``state_dir`` and return once every cluster serves authenticated
    requests and Postgres accepts clients. Refuses if a cloud already runs there."""
    regions = [spec.region for spec in clusters]
    if not regions or len(set(regions)) != len(regions):
        raise ValueError(f"need at least one cluster and distinct regions, got {regions}")
    python = cloud_python()
    if not python.exists():
        raise DevcloudError(
            f"no cloud venv Python at {python} (pip install -r "
            "devcloud-requirements.txt into .cloud-venv, or set XFER_DEVCLOUD_PYTHON)"
        )
    state_dir = state_dir.absolute()
    with _locked(state_dir):
        _clear_stopped_cloud(state_dir)
        cloud = _plan(state_dir, clusters)
        try:
            return _start(cloud, python, database)
        except BaseException:
            _stop_recorded(state_dir)
            raise


def down(state_dir: Path) -> None:
    """Stop every recorded process of the cloud in ``state_dir``; nothing to do if none runs.
    Data and logs stay on disk until the next ``up``."""
    state_dir = state_dir.absolute()
    if not state_dir.is_dir():
        return
    with _locked(state_dir):
        _stop_recorded(state_dir)


def load(state_dir: Path) -> CloudInfo:
    """The running cloud in ``state_dir``."""
    state_dir = state_dir.absolute()
    state = _read_state(state_dir)
    if state is None:
        raise DevcloudError(f"no local cloud in {state_dir}: run `xfer devcloud up`")
    cloud, ready = state
    dead = [p.name for p in cloud.processes if not _is_alive(p)]
    if not ready or dead:
        raise DevcloudError(
            f"the local cloud in {state_dir} is not running (stopped: {dead}); "
            "run `xfer devcloud down`, then `up`"
        )
    return cloud


def _plan(state_dir: Path, specs: Sequence[ClusterSpec]) -> CloudInfo:
    """Ports and config files for every cluster; nothing started yet."""
    ports = iter(swift_cluster.pick_free_ports(5 * len(specs)))
    clusters = {
        spec.region: swift_cluster.prepare_cluster(
            spec,
            state_dir / "clusters" / spec.region,
            ClusterPorts(*(next(ports) for _ in range(5))),
        )
        for spec in specs
    }
    database_url = os.environ.get("XFER_DATABASE_URL", "")
    return CloudInfo(state_dir, clusters, database_url)


def _start(cloud: CloudInfo, python: Path, database: bool) -> CloudInfo:
    _build_rings(cloud, python)
    for info in cloud.clusters.values():
        for launch in swift_cluster.launch_specs(info, python):
            cloud = _record(cloud, _spawn(launch))
    if database and not cloud.database_url:
        # Postgres initialises while the Swift servers import and bind.
        cloud = _start_postgres(cloud)
    _wait_until_ready(cloud, time.monotonic() + READY_TIMEOUT_S)
    for info in cloud.clusters.values():
        swift_cluster.check_constraints(info)
    _write_state(cloud, ready=True)
    return cloud


def _build_rings(cloud: CloudInfo, python: Path) -> None:
    """One builder process per cluster, all at once."""
    builders = {
        region: subprocess.Popen(
            swift_cluster.ring_command(info, python),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=_child_environ(),
        )
        for region, info in cloud.clusters.items()
    }
    outputs = {region: builder.communicate()[0] for region, builder in builders.items()}
    for region, builder in builders.items():
        if builder.returncode != 0:
            tail = outputs[region].decode(errors="replace")[-3000:]
            raise DevcloudError(f"{region}: building rings failed:\n{tail}")


def _start_postgres(cloud: CloudInfo) -> CloudInfo:
    pgdata = cloud.state_dir / "pgdata"
    try:
        embedded = postgres.start_postgres(pgdata)
    except BaseException:
        # pg_ctl may have started a postmaster before the failure: record it so it is stopped.
        pid = postgres.postmaster_pid(pgdata)
        if pid is not None and _proc_status(pid) is not None:
            _record(cloud, _process_record("postgres", pid, postgres.STOP_SIGNAL, pgdata / "log"))
        raise
    record = _process_record("postgres", embedded.pid, postgres.STOP_SIGNAL, embedded.log_path)
    return _record(replace(cloud, database_url=embedded.url), record)


def _spawn(launch: LaunchSpec) -> ProcessRecord:
    """Start one process in its own session, so it outlives the command that started it.

    posix_spawn rather than Popen: a Popen object whose child outlives it warns (ResourceWarning,
    an error under pytest), and these children are meant to outlive this process.
    """
    log_fd = os.open(launch.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        pid = os.posix_spawn(
            launch.argv[0],
            launch.argv,
            _child_environ(),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log_fd)
    return _process_record(launch.name, pid, launch.stop_signal, launch.log_path)


def _child_environ() -> dict[str, str]:
    # Keep xfer's venv (or any PYTHONPATH) out of the cloud venv's interpreter.
    hidden = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    return {name: value for name, value in os.environ.items() if name not in hidden}


def _process_record(name: str, pid: int, stop_signal: int, log_path: Path) -> ProcessRecord:
    status = _proc_status(pid)
    ticks = -1 if status is None else status[1]  # -1: gone already; its log is still reported
    return ProcessRecord(name, pid, ticks, stop_signal, log_path)


def _record(cloud: CloudInfo, process: ProcessRecord) -> CloudInfo:
    cloud = replace(cloud, processes=(*cloud.processes, process))
    _write_state(cloud, ready=False)
    return cloud


def _wait_until_ready(cloud: CloudInfo, deadline: float) -> None:
    pending = dict(cloud.clusters)
    while pending:
        for process in cloud.processes:
            if not _is_alive(process):
                raise DevcloudError(
                    f"{process.name} exited during startup; the end of "
                    f"{process.log_path}:\n{swift_cluster.log_tail(process.log_path)}"
                )
        problems = {region: swift_cluster.readiness_problem(info) for region, info in pending.items()}
        pending = {region: pending[region] for region, problem in problems.items() if problem}
        if pending and time.monotonic() > deadline:
            region, info = next(iter(pending.items()))
            proxy_log = info.log_dir / "proxy-server.log"
            raise DevcloudError(
                f"{region} not ready after {READY_TIMEOUT_S:.0f} s "
                f"({problems[region]}); the end of {proxy_log}:\n"
                f"{swift_cluster.log_tail(proxy_log)}"
            )
        if pending:
            time.sleep(0.1)


def _clear_stopped_cloud(state_dir: Path) -> None:
    """Refuse a running cloud; otherwise remove what a previous cloud left (data and logs)."""
    state = _read_state(state_dir)
    if state is not None:
        alive = [p.name for p in state[0].processes if _is_alive(p)]
        if alive:
            raise DevcloudError(
                f"a local cloud already runs in {state_dir} ({len(alive)} "
                "processes); `xfer devcloud down` first"
            )
        (state_dir / STATE_FILE).unlink()
    # Only the directories this module creates: state_dir may be a user's own directory.
    for owned in (state_dir / "clusters", state_dir / "pgdata"):
        shutil.rmtree(owned, ignore_errors=True)


def _stop_recorded(state_dir: Path) -> None:
    state = _read_state(state_dir)
    if state is None:
        return
    survivors = _stop(state[0].processes)
    if survivors:
        raise DevcloudError(f"still running after SIGKILL: {survivors}; state kept in {state_dir}")
    (state_dir / STATE_FILE).unlink()


def _stop(processes: Sequence[ProcessRecord]) -> list[str]:
    """Signal all, wait, SIGKILL the stragglers; returns the names of any survivors."""
    for process in processes:
        _signal(process, process.stop_signal)
    if _wait_dead(processes, time.monotonic() + STOP_TIMEOUT_S):
        return []
    for process in processes:
        _signal(process, signal.SIGKILL)
    _wait_dead(processes, time.monotonic() + 3.0)
    return [p.name for p in processes if _is_alive(p)]


def _signal(process: ProcessRecord, signum: int) -> None:
    if _is_alive(process):
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


def _wait_dead(processes: Sequence[ProcessRecord], deadline: float) -> bool:
    while any(_is_alive(p) for p in processes):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _is_alive(process: ProcessRecord) -> bool:
    status = _proc_status(process.pid)
    if status is None or status[1] != process.start_ticks:
        return False  # gone, or the PID now belongs to another process
    if status[0] in ("Z", "X"):
        # Dead; reap it if it is our own child (up and down in one process, as in tests).
        with contextlib.suppress(ChildProcessError):
            os.waitpid(process.pid, os.WNOHANG)
        return False
    return True


def _proc_status(pid: int) -> tuple[str, int] | None:
    """State letter and start time (clock ticks after boot) of a process, from /proc/<pid>/stat.

    A zombie ("Z") is dead even though ``kill -0`` succeeds; our processes are orphans once the
    ``up`` that started them exits, and this machine's PID 1 reaps orphans only lazily.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Serialise up/down on one state directory across processes."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


def _write_state(cloud: CloudInfo, *, ready: bool) -> None:
    document = {"ready": ready, **asdict(cloud)}
    temporary = cloud.state_dir / f"{STATE_FILE}.tmp"
    temporary.write_text(json.dumps(document, indent=2, default=str) + "\n")
    os.replace(temporary, cloud.state_dir / STATE_FILE)


def _read_state(state_dir: Path) -> tuple[CloudInfo, bool] | None:
    try:
        document: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DevcloudError(f"unreadable state file in {state_dir}: {exc}") from exc
    clusters = {
        region: ClusterInfo(**{**c, "directory": Path(c["directory"]), "ports": ClusterPorts(**c["ports"])})
        for region, c in document["clusters"].items()
    }
    processes = tuple(ProcessRecord(**{**p, "log_path": Path(p["log_path"])}) for p in document["processes"])
    cloud = CloudInfo(Path(document["state_dir"]), clusters, document["database_url"], processes)
    return cloud, bool(document["ready"])
