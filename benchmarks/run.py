"""`make bench`: every copier on the same SLO sources, co-located and over an emulated link.

    .venv/bin/python -m benchmarks.run                       # the full run (20-40 minutes)
    .venv/bin/python -m benchmarks.run --sizes 1 --repeat 1 --scenarios colocated

One session: a fresh local cloud in .devcloud-bench (stopped at the end, also on error or
SIGTERM), random sources uploaded once to RegionOne, each run copying one of them to RegionTwo,
which is emptied after every run. Prints a table and writes benchmarks/results/<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from benchmarks import report, swift_http
from benchmarks.copiers import COPIERS, EXTRA_COPIERS, CopierResult, RunSpec, Window, run_copier
from benchmarks.procstat import CLOCK_TICKS, CpuMeter
from benchmarks.shaping_proxy import RunningProxy, Shape, running_proxy
from xfer.dev import devcloud
from xfer.settings import RegionConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
SCENARIOS = ("colocated", "emulated")
CONTAINER = "images"
SOURCE_REGION, TARGET_REGION = "RegionOne", "RegionTwo"
GiB, MiB = 1 << 30, 1 << 20
QUIET_CORES = 0.3  # busy cores below which the machine counts as quiet before a run
QUIET_MAX_WAIT_S = 45.0


def say(text: str) -> None:
    print(f"bench: {text}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks.run", description=__doc__.split("\n\n")[0])
    listed = lambda text: [item.strip() for item in text.split(",") if item.strip()]  # noqa: E731
    parser.add_argument("--sizes", type=listed, default=["1", "4"], help="GiB, e.g. 1,4")
    parser.add_argument("--copiers", type=listed, default=list(COPIERS),
                        help=f"subset of {','.join(COPIERS + EXTRA_COPIERS)}")
    parser.add_argument("--scenarios", type=listed, default=list(SCENARIOS))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="emulated link round trip")
    parser.add_argument("--rate-mb", type=float, default=50.0,
                        help="emulated link: MB/s per TCP connection and direction")
    parser.add_argument("--xfer-loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="XFER_EVENT_LOOP of xfer-md5 and xfer-md5-sha512")
    parser.add_argument("--xfer-env", action="append", default=[], metavar="XFER_NAME=VALUE",
                        help="an extra setting for every xfer serve (repeatable)")
    parser.add_argument("--source-segment-mib", type=int, default=100)
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".devcloud-bench")
    args = parser.parse_args(argv)
    unknown = [c for c in args.copiers if c not in COPIERS + EXTRA_COPIERS]
    unknown += [s for s in args.scenarios if s not in SCENARIOS]
    if unknown or args.repeat < 1:
        parser.error(f"unknown copier/scenario {unknown} (copiers: {', '.join(COPIERS)}; "
                     f"scenarios: {', '.join(SCENARIOS)}) or --repeat < 1")
    args.sizes = [int(float(s) * GiB) for s in args.sizes]
    if any(not item.startswith("XFER_") or "=" not in item for item in args.xfer_env):
        parser.error("--xfer-env takes XFER_NAME=VALUE")
    args.xfer_env = dict(item.split("=", 1) for item in args.xfer_env)
    return args


def machine_cpu_seconds() -> tuple[float, float, float]:
    """(busy, softirq, steal) CPU seconds of the whole machine since boot, all cores.
    busy excludes steal; softirq (loopback TCP is processed there) is in no process's
    /proc/<pid>/stat, so it is reported on its own."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (
            int(v) for v in stat.readline().split()[1:9])
    busy = user + nice + system + irq + softirq
    return busy / CLOCK_TICKS, softirq / CLOCK_TICKS, steal / CLOCK_TICKS


def busy_core_seconds() -> float:
    return machine_cpu_seconds()[0]


def wait_for_quiet(max_wait: float = QUIET_MAX_WAIT_S) -> float:
    """Wait (bounded) until the machine is nearly idle: other programs on it (test suites)
    would slow a run down. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < max_wait:
        before = busy_core_seconds()
        time.sleep(1.0)
        if busy_core_seconds() - before < QUIET_CORES:
            break
    return round(time.monotonic() - started, 1)


def database_for_run(admin_url: str, name: str) -> str:
    """A fresh database per xfer run: no job of an earlier run can be claimed again."""
    import asyncpg  # xfer's dependency, present in .venv

    async def create() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@contextlib.contextmanager
def region_endpoints(cloud: devcloud.CloudInfo, scenario: str, shape: Shape,
                     workdir: Path) -> Iterator[tuple[dict[str, RegionConfig], list[RunningProxy]]]:
    """How copiers reach both regions: directly, or each through its own shaping proxy."""
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
            auth_url = cluster.auth_url.replace(f":{cluster.ports.proxy}/", f":{proxy.port}/")
            storage_url = swift_http.login(auth_url, cluster.user, cluster.key).storage_url
            if urlsplit(storage_url).port != proxy.port:  # tempauth follows the Host header
                raise RuntimeError(f"{region}: storage URL {storage_url} bypasses the proxy")
            proxies.append(proxy)
            endpoints[region] = RegionConfig(region, auth_url, cluster.user, cluster.key)
        say(f"emulated link ({shape.describe()}): proxies "
            + ", ".join(f"{r} :{e.auth_url.split(':')[2].split('/')[0]}"
                        for r, e in endpoints.items()) + "; storage URLs point at them")
        yield endpoints, proxies


def measured_pids(cloud: devcloud.CloudInfo, proxies: list[RunningProxy]) -> dict[str, int]:
    pids = {p.name: p.pid for p in cloud.processes}
    pids.update({f"shaping-{i}": proxy.pid for i, proxy in enumerate(proxies)})
    return pids


def run_one(args: argparse.Namespace, cloud: devcloud.CloudInfo, scenario: str,
            endpoints: dict[str, RegionConfig], meter: CpuMeter, source: swift_http.Source,
            copier: str, repeat: int, target: swift_http.Session) -> dict[str, Any]:
    workdir = args.state_dir / "runs" / f"{scenario}-{source.size // GiB}g-{copier}-{repeat}"
    workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(workdir).free
    if free < 3 * source.size:
        raise RuntimeError(f"only {free / GiB:.1f} GiB free on disk; stopping")
    database_url = ""
    if copier.startswith("xfer"):
        database_url = database_for_run(cloud.database_url, f"bench_{time.time_ns()}")
    spec = RunSpec(endpoints[SOURCE_REGION], endpoints[TARGET_REGION], source.container,
                   source.name, source.size, source.md5, source.sha512, workdir,
                   timeout=120 + source.size / 8e6, database_url=database_url,
                   xfer_environ=args.xfer_env)
    window = Window(meter)
    quiet_wait = wait_for_quiet()
    machine_before = machine_cpu_seconds()
    try:
        result = run_copier(copier, spec, window, args.xfer_loop)
    except Exception as exc:  # a failed run is a row, not the end of the session
        result = CopierResult(False, 0.0, 0, "NO", f"{type(exc).__name__}: {exc}")
    busy, softirq, steal = (after - before
                            for after, before in zip(machine_cpu_seconds(), machine_before,
                                                     strict=True))
    wall = max(window.wall_seconds, 1e-9)
    kind, size = swift_http.large_object_kind(target, source.container, source.name)
    ok = result.ok and size == source.size
    row = {"scenario": scenario, "size": source.size, "copier": copier, "repeat": repeat,
           "ok": ok, "wall_seconds": round(window.wall_seconds, 3),
           "copier_cpu_seconds": round(result.cpu_seconds, 3),
           "peak_rss_bytes": result.peak_rss_bytes, "md5_verified": result.md5_verified,
           "target_kind": kind, "target_size": size,
           "busy_cores": round(busy / wall, 2), "softirq_cores": round(softirq / wall, 2),
           "steal_cores": round(steal / wall, 2),
           # CPU of everything else on the machine (other users' tests, the harness itself)
           "other_cores": round(max(0.0, busy - softirq - result.cpu_seconds
                                    - sum(window.cpu_by_process.values())) / wall, 2),
           "quiet_wait_seconds": quiet_wait,
           "cpu_by_process": window.cpu_by_process, "detail": result.detail, **result.extra}
    deleted = swift_http.empty_account(target)
    row = report.derive(row)
    say(f"{scenario} {source.size / GiB:g} GiB {copier} #{repeat}: "
        + (f"{row['mib_s']} MiB/s" if ok else f"FAILED {result.detail[:300]}")
        + f", {kind}; removed {deleted} objects from {TARGET_REGION}")
    return row


def session(args: argparse.Namespace, cloud: devcloud.CloudInfo) -> dict[str, Any]:
    floor = report.hashing_floor()
    say("hashing on one core: " + ", ".join(
        f"{name} {v['MB/s']} MB/s ({v['cpu_s_per_gib']} CPU-s/GiB)" for name, v in floor.items()))
    region = cloud.clusters
    source_session = swift_http.login(region[SOURCE_REGION].auth_url,
                                      region[SOURCE_REGION].user, region[SOURCE_REGION].key)
    target_session = swift_http.login(region[TARGET_REGION].auth_url,
                                      region[TARGET_REGION].user, region[TARGET_REGION].key)
    sources = []
    for size in args.sizes:
        started = time.monotonic()
        sources.append(swift_http.upload_random_slo(
            source_session, CONTAINER, f"bench-{size / GiB:g}GiB.raw", size,
            args.source_segment_mib * MiB, seed=size))
        say(f"source {CONTAINER}/{sources[-1].name}: {size / GiB:g} GiB SLO of "
            f"{args.source_segment_mib} MiB segments, md5 {sources[-1].md5}, uploaded in "
            f"{time.monotonic() - started:.1f}s")
    shape = Shape(args.rtt_ms / 1000, args.rate_mb * 1e6)
    rows = []
    for scenario in args.scenarios:
        with region_endpoints(cloud, scenario, shape, args.state_dir) as (endpoints, proxies):
            meter = CpuMeter(measured_pids(cloud, proxies))
            for source in sources:
                for repeat in range(1, args.repeat + 1):
                    for copier in args.copiers:  # interleaved: drift hits every copier alike
                        rows.append(run_one(args, cloud, scenario, endpoints, meter, source,
                                            copier, repeat, target_session))
    return {"floor": floor, "rows": rows, "shape": {"rtt_ms": args.rtt_ms,
                                                   "rate_mb_per_connection": args.rate_mb},
            "sources": [vars(s) for s in sources]}


def print_results(document: dict[str, Any]) -> None:
    floor = document["floor"]
    summary = report.summarise(document["rows"])
    ratios = report.target_ratios(summary, floor)
    document["summary"], document["ratios"] = summary, ratios
    shape = document["shape"]
    print("\n== runs (cpu/GiB: the copier's own CPU-s per GiB; swift/GiB: all Swift servers'; "
          "ceiling: 2 cores / (swift + proxy + copier CPU-s per GiB))")
    print(f"   emulated link: RTT {shape['rtt_ms']:g} ms, "
          f"{shape['rate_mb_per_connection']:g} MB/s per TCP connection and direction")
    print(report.table(document["rows"]))
    print("\n== medians over repeats")
    print(report.summary_table(summary))
    print("\n== hashing on one core (the floor for xfer's own CPU)")
    for name, values in floor.items():
        print(f"   {name:<7} {values['MB/s']:>7.1f} MB/s  {values['cpu_s_per_gib']:.2f} CPU-s/GiB")
    print("\n== targets (as measured)")
    print(report.ratios_table(ratios))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the cloud
    args.state_dir = args.state_dir.absolute()
    say(f"starting a local cloud in {args.state_dir}")
    # Swift and Postgres only: idle Keystone and Glance processes would only add noise.
    cloud = devcloud.up(args.state_dir, openstack=False)
    started = datetime.now(UTC)
    try:
        document: dict[str, Any] = {"started": started.isoformat(), "args": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
        document.update(session(args, cloud))
    finally:
        devcloud.down(args.state_dir)
        for cluster in cloud.clusters.values():  # the objects (GiBs); logs stay
            shutil.rmtree(cluster.devices_dir, ignore_errors=True)
        say("stopped the local cloud and removed its objects")
    print_results(document)
    path = RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    report.write_json(path, document)
    say(f"results in {path}")
    return 0 if all(row["ok"] for row in document["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
