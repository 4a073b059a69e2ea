"""One measured run: a copier (or a fan-out job, or a capped copy) against one source, with
the machine's and the cloud's CPU, the copier's RSS and the bytes read from the source region
taken over exactly the timed part; then the target regions are emptied again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from benchmarks import profiling, report, swift_http, swift_log
from benchmarks.copiers import ApiFeatures, CopierResult, RunSpec, Window, run_copier
from benchmarks.procstat import CpuMeter, machine_cpu_seconds
from benchmarks.shaping_proxy import RunningProxy, Shape, running_proxy
from benchmarks.sources import Source
from xfer.dev import devcloud
from xfer.settings import RegionConfig

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
SOURCE_REGION, TARGET_REGION, SECOND_TARGET_REGION = "RegionOne", "RegionTwo", "RegionThree"
GiB = 1 << 30
QUIET_CORES = 0.3  # busy cores below which the machine counts as quiet before a run
LOG_SETTLE_S = 0.3  # Swift logs a request as it ends: let the last lines reach the file


def say(text: str) -> None:
    print(f"bench: {text}", flush=True)


@dataclass
class Bench:
    """What every run of a session shares."""

    args: argparse.Namespace
    cloud: devcloud.CloudInfo
    sessions: dict[str, swift_http.Session]  # direct (unshaped), by region
    features: ApiFeatures | None = None  # read from xfer once the cloud is up

    @property
    def source_log(self) -> Path:
        return self.cloud.clusters[SOURCE_REGION].log_dir / "proxy-server.log"


@dataclass(frozen=True)
class Stage:
    """One scenario: how copiers reach the regions, and whose CPU is measured."""

    scenario: str
    endpoints: dict[str, RegionConfig]
    meter: CpuMeter


def wait_for_quiet(max_wait: float) -> float:
    """Wait (bounded) until the machine is nearly idle: other programs on it (test suites)
    would slow a run down. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < max_wait:
        before = machine_cpu_seconds()[0]
        time.sleep(1.0)
        if machine_cpu_seconds()[0] - before < QUIET_CORES:
            break
    return round(time.monotonic() - started, 1)


def database_for_run(admin_url: str) -> str:
    """A fresh database per xfer run: no job of an earlier run can be claimed again, and the
    checksum index holds no earlier copy to deduplicate against."""
    import asyncpg  # xfer's dependency, present in .venv

    name = f"bench_{time.time_ns()}"

    async def create() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def login_through(cluster: devcloud.ClusterInfo, proxy: RunningProxy
                  ) -> tuple[str, swift_http.Session]:
    """The cluster's auth URL through `proxy`, and a session logged in there, whose storage
    URL is checked to go through the proxy too (tempauth builds it from the Host header)."""
    auth_url = cluster.auth_url.replace(f":{cluster.ports.proxy}/", f":{proxy.port}/")
    session = swift_http.login(auth_url, cluster.user, cluster.key)
    if urlsplit(session.storage_url).port != proxy.port:
        raise RuntimeError(f"{cluster.region}: storage URL {session.storage_url} bypasses the proxy")
    return auth_url, session


@contextlib.contextmanager
def region_endpoints(cloud: devcloud.CloudInfo, scenario: str, shape: Shape,
                     workdir: Path) -> Iterator[tuple[dict[str, RegionConfig], list[RunningProxy]]]:
    """How copiers reach the regions: directly, or each through its own shaping proxy."""
    direct = {region: RegionConfig(region, c.auth_url, c.user, c.key)
              for region, c in cloud.clusters.items()}
    if scenario == "colocated":
        yield direct, []
        return
    with contextlib.ExitStack() as stack:
        proxies, endpoints = [], {}
        for region, cluster in cloud.clusters.items():
            proxy = stack.enter_context(running_proxy(
                cluster.ports.proxy, shape, str(workdir / f"shaping-{region}.log")))
            auth_url, _ = login_through(cluster, proxy)
            proxies.append(proxy)
            endpoints[region] = RegionConfig(region, auth_url, cluster.user, cluster.key)
        say(f"emulated link ({shape.describe()}): proxies "
            + ", ".join(f"{r} :{urlsplit(e.auth_url).port}" for r, e in endpoints.items())
            + "; storage URLs point at them")
        yield endpoints, proxies


def measured_pids(cloud: devcloud.CloudInfo, proxies: list[RunningProxy]) -> dict[str, int]:
    pids = {p.name: p.pid for p in cloud.processes}
    pids.update({f"shaping-{i}": proxy.pid for i, proxy in enumerate(proxies)})
    return pids


def run_spec(bench: Bench, stage: Stage, source: Source, workdir: Path,
             targets: tuple[str, ...] = (TARGET_REGION,), xfer: bool = True) -> RunSpec:
    workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(workdir).free
    if free < (2 + len(targets)) * source.size:
        raise RuntimeError(f"only {free / GiB:.1f} GiB free on disk; stopping")
    return RunSpec(stage.endpoints[SOURCE_REGION],
                   tuple(stage.endpoints[region] for region in targets),
                   source.container, source.name, source.size, source.md5, source.sha512,
                   source.kind, workdir, timeout=120 + source.size / 8e6,
                   database_url=database_for_run(bench.cloud.database_url) if xfer else "",
                   xfer_environ=bench.args.xfer_env,
                   profile=workdir / "py-spy.raw" if bench.args.profile else None)


def measure(bench: Bench, stage: Stage, size: int,
            run: Callable[[Window], CopierResult]) -> tuple[CopierResult, dict[str, Any]]:
    """Run one copy and measure it: the row's fields common to every kind of run."""
    window = Window(stage.meter)
    quiet_wait = wait_for_quiet(bench.args.max_quiet_wait)
    reads = swift_log.ReadCounter(bench.source_log)
    reads.start()
    try:
        result = run(window)
    except Exception as exc:  # a failed run is a row, not the end of the session
        result = CopierResult(False, 0.0, 0, "NO", f"{type(exc).__name__}: {exc}")
    busy, softirq, steal = window.machine_seconds
    time.sleep(LOG_SETTLE_S)
    source_reads = reads.stop()
    wall = max(window.wall_seconds, 1e-9)
    fields = {
        "size": size, "wall_seconds": round(window.wall_seconds, 3),
        "copier_cpu_seconds": round(result.cpu_seconds, 3),
        "peak_rss_bytes": result.peak_rss_bytes, "md5_verified": result.md5_verified,
        "busy_cores": round(busy / wall, 2), "softirq_cores": round(softirq / wall, 2),
        "steal_cores": round(steal / wall, 2),
        # CPU of everything else on the machine (other users' tests, the harness itself)
        "other_cores": round(max(0.0, busy - softirq - result.cpu_seconds
                                 - sum(window.cpu_by_process.values())) / wall, 2),
        "quiet_wait_seconds": quiet_wait, "cpu_by_process": window.cpu_by_process,
        "source_bytes_read": swift_log.bytes_read(source_reads),
        "source_read_rate_mb_s": _mb(swift_log.rate_over_reads(source_reads)),
        "detail": result.detail, **result.extra}
    fields["source_windows_mb_s"] = [
        round(rate / 1e6, 2) for rate in swift_log.windowed_rates(source_reads, 5.0)]
    return result, fields


def _mb(rate: float | None) -> float | None:
    return None if rate is None else round(rate / 1e6, 2)


def check_and_empty(bench: Bench, source: Source, regions: tuple[str, ...]) -> tuple[str, bool]:
    """(what each target region holds, whether all hold the whole object); then empties them."""
    kinds, complete = [], True
    for region in regions:
        kind, size = swift_http.large_object_kind(bench.sessions[region], source.container,
                                                  source.name)
        kinds.append(kind)
        complete = complete and size == source.size
        swift_http.empty_account(bench.sessions[region])
    return "+".join(kinds), complete


def make_row(stage: Stage, source: Source, copier: str, repeat: int, result: CopierResult,
             fields: dict[str, Any], target: tuple[str, bool]) -> dict[str, Any]:
    kind, complete = target
    row = {"scenario": stage.scenario, "source": source.label, "source_kind": source.kind,
           "source_segments": source.segments, "copier": copier, "repeat": repeat,
           "ok": result.ok and complete, "target_kind": kind, **fields}
    return report.derive(row)


def describe_row(row: dict[str, Any]) -> str:
    outcome = f"{row['mib_s']} MiB/s" if row["ok"] else f"FAILED {row['detail'][:300]}"
    return (f"{row['scenario']} {row['source']} {row['copier']} #{row['repeat']}: {outcome}, "
            f"target {row['target_kind']}, read {row['source_bytes_read'] / row['size']:.2f}x "
            "the source")


def keep_profile(spec: RunSpec, row: dict[str, Any]) -> None:
    """The summary of a profiled run, in benchmarks/profiles/ (the raw stacks stay in the run's
    directory)."""
    if spec.profile is None or not spec.profile.exists():
        return
    name = spec.workdir.name  # unique per run: scenario, source, copier, targets, repeat
    title = (f"{row['scenario']} {row['source']} {row['copier']} #{row['repeat']}: "
             f"{row['mib_s']} MiB/s under py-spy, {time.strftime('%Y-%m-%d %H:%M')}")
    PROFILES_DIR.mkdir(parents=True, exist_ok=True)
    path = PROFILES_DIR / f"{name}.txt"
    path.write_text(profiling.summary(spec.profile, title, row["copier_cpu_s_per_gib"]))
    say(f"profile summary in {path}")


def run_copy(bench: Bench, stage: Stage, source: Source, copier: str,
             repeat: int) -> dict[str, Any]:
    """One copier, one source, one target region: a row of the main table."""
    workdir = bench.args.state_dir / "runs" / f"{stage.scenario}-{source.kind}-{copier}-{repeat}"
    spec = run_spec(bench, stage, source, workdir, xfer=copier.startswith("xfer"))
    result, fields = measure(bench, stage, source.size,
                             lambda window: run_copier(copier, spec, window, bench.args.xfer_loop,
                                                      bench.args.ab_tree))
    row = make_row(stage, source, copier, repeat, result, fields,
                   check_and_empty(bench, source, spec_regions(spec)))
    say(describe_row(row))
    keep_profile(spec, row)
    return row


def spec_regions(spec: RunSpec) -> tuple[str, ...]:
    return tuple(target.name for target in spec.targets)
