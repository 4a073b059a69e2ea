"""`make bench`: every copier on the same sources, co-located and over an emulated link, then
fan-out and a rate cap; the goals of issue 11 as ratios, a table and a picture.

    .venv/bin/python -m benchmarks.run                       # the full run (27-40 minutes)
    .venv/bin/python -m benchmarks.run --sizes 1 --repeat 1 --scenarios colocated --sources plain

One session: a fresh local cloud in .devcloud-bench (stopped at the end, also on error or
SIGTERM), random sources uploaded once to RegionOne, each run copying one of them to RegionTwo
(a fan-out job: to RegionTwo and RegionThree), which are emptied after every run. Prints the
runs, their medians and the goals, and writes benchmarks/results/<time>.json and .png.
"""

from __future__ import annotations

import argparse
import math
import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import capped, concurrency, extra_runs, glance_runs, goals, report, swift_http
from benchmarks.copiers import (
    AB_SUFFIX,
    COPIERS,
    EXTRA_COPIERS,
    ApiFeatures,
    RunSpec,
    known_copier,
    probe_xfer,
)
from benchmarks.procstat import CpuMeter
from benchmarks.runs import (
    SECOND_TARGET_REGION,
    SOURCE_REGION,
    TARGET_REGION,
    Bench,
    Stage,
    database_for_run,
    measured_pids,
    region_endpoints,
    run_copy,
    say,
)
from benchmarks.sources import SOURCE_KINDS, Source, upload_source, write_random_file
from xfer import settings as xfer_settings
from xfer.dev import devcloud
from xfer.errors import ConfigError
from xfer.proto import swift
from xfer.settings import RegionConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
SCENARIOS = ("colocated", "emulated", "capped")
CONTAINER = "images"
GiB, MiB = 1 << 30, 1 << 20
GLANCE_IMAGE_SIZE = GiB  # issue 9's comparison: Glance's usual plain 1 GiB image


def secure_hash_choice(text: str) -> tuple[bool, ...]:
    choices = {"true": (True,), "false": (False,), "both": (True, False)}
    if text.lower() not in choices:
        raise argparse.ArgumentTypeError(f"{text!r}: true, false or both")
    return choices[text.lower()]


def glance_key(secure_hash: bool) -> str:
    """Where the results document keeps the image copy comparison with that do_secure_hash."""
    return "glance" if secure_hash else "glance_no_secure_hash"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks.run", description=__doc__.split("\n\n")[0])
    listed = lambda text: [item.strip() for item in text.split(",") if item.strip()]  # noqa: E731
    parser.add_argument("--sizes", type=listed, default=["1"],
                        help="GiB, e.g. 1,4 (slo1024 is at least 2 GiB: two segments)")
    parser.add_argument("--sources", type=listed, default=list(SOURCE_KINDS),
                        help=f"subset of {','.join(SOURCE_KINDS)}")
    parser.add_argument("--copiers", type=listed, default=list(COPIERS),
                        help=f"subset of {','.join(COPIERS + EXTRA_COPIERS)}")
    parser.add_argument("--scenarios", type=listed, default=list(SCENARIOS))
    parser.add_argument("--extra-runs", type=listed, default=list(extra_runs.EXTRA_RUNS),
                        help=f"subset of {','.join(extra_runs.EXTRA_RUNS)}, or none")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--glance-only", action="store_true",
                        help="only the image copy comparison with glance-download (issue 9)")
    parser.add_argument("--glance-secure-hash", type=secure_hash_choice, default=(True, False),
                        help="Glance's do_secure_hash in the image copy comparison: true, false "
                             "or both (default; a cloud each)")
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="emulated link round trip")
    parser.add_argument("--rate-mb", type=float, default=50.0,
                        help="emulated link: MB/s per TCP connection and direction")
    parser.add_argument("--capped-rate-mb", type=float, default=25.0,
                        help="capped link: MB/s per TCP connection and direction")
    parser.add_argument("--capped-total-mb", type=float, default=100.0,
                        help="capped link: MB/s per direction, all connections together")
    parser.add_argument("--capped-sweep", type=capped.sweep_choice,
                        default=capped.sweep_choice(capped.DEFAULT_SWEEP),
                        help="capped link: the xfer runs, CHUNK_MIB:SEGMENTS_IN_FLIGHT,... "
                             f"(default {capped.DEFAULT_SWEEP}); the other copiers asked for run too")
    parser.add_argument("--rate-cap-mb", type=float, default=40.0,
                        help="ratecap: XFER_MAX_RATE_MB of the capped copy")
    parser.add_argument("--rate-cap-seconds", type=float, default=30.0,
                        help="ratecap: how long the capped copy should take (sizes its source)")
    parser.add_argument("--fanout-source", default="plain", choices=list(SOURCE_KINDS),
                        help="fanout: which source (the first one run when not among them)")
    parser.add_argument("--max-quiet-wait", type=float, default=45.0,
                        help="seconds to wait at most for an idle machine before each run")
    parser.add_argument("--xfer-loop", choices=("asyncio", "uvloop"), default="uvloop",
                        help="XFER_EVENT_LOOP of xfer-md5 and xfer-md5-sha512")
    parser.add_argument("--xfer-env", action="append", default=[], metavar="XFER_NAME=VALUE",
                        help="an extra setting for every xfer serve (repeatable)")
    parser.add_argument("--ab-tree", type=Path, default=None, metavar="DIR",
                        help="another xfer source tree (e.g. `git archive COMMIT | tar -x -C "
                             "DIR`): every xfer copier also runs from it, interleaved, as "
                             f"COPIER{AB_SUFFIX}: an A/B of two versions in one session")
    parser.add_argument("--profile", action="store_true",
                        help="sample every xfer run with py-spy (pip install py-spy); summaries "
                             "in benchmarks/profiles/ (profiled runs' CPU is not comparable)")
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".devcloud-bench")
    args = parser.parse_args(argv)
    args.extra_runs = [] if args.extra_runs == ["none"] else args.extra_runs
    unknown = [c for c in args.copiers if not known_copier(c)]
    unknown += [s for s in args.scenarios if s not in SCENARIOS]
    unknown += [s for s in args.sources if s not in SOURCE_KINDS]
    unknown += [r for r in args.extra_runs if r not in extra_runs.EXTRA_RUNS]
    if unknown or args.repeat < 1:
        parser.error(f"unknown {unknown} (copiers: {', '.join(COPIERS + EXTRA_COPIERS)}; "
                     f"scenarios: {', '.join(SCENARIOS)}; sources: {', '.join(SOURCE_KINDS)}; "
                     f"extra runs: {', '.join(extra_runs.EXTRA_RUNS)}) or --repeat < 1")
    args.sizes = [int(float(s) * GiB) for s in args.sizes]
    # The benchmark's cloud keeps Swift's default max_file_size: a 16 GiB plain source was
    # refused with 413 only after the smaller ones had been uploaded.
    if "plain" in args.sources and max(args.sizes) > swift.DEFAULT_MAX_FILE_SIZE:
        parser.error(f"--sizes: a plain source is one Swift object, at most "
                     f"{swift.DEFAULT_MAX_FILE_SIZE / GiB:.0f} GiB (Swift's max_file_size); "
                     f"larger ones are segmented, as Glance stores them: --sources slo100")
    if args.ab_tree is not None:
        if not (args.ab_tree / "xfer" / "cli.py").is_file():
            parser.error(f"--ab-tree {args.ab_tree}: no xfer/cli.py there")
        args.ab_tree = args.ab_tree.absolute()
        args.copiers = [name for copier in args.copiers for name in (
            (copier, copier + AB_SUFFIX) if copier.startswith("xfer") else (copier,))]
    if any(not item.startswith("XFER_") or "=" not in item for item in args.xfer_env):
        parser.error("--xfer-env takes XFER_NAME=VALUE")
    args.xfer_env = dict(item.split("=", 1) for item in args.xfer_env)
    try:  # a setting xfer does not know (XFER_WINDOW_SEGMENTS is gone) stops here, not per run
        args.memory_bound = xfer_settings.from_environ(args.xfer_env).copy_memory_bound
    except ConfigError as exc:
        parser.error(f"--xfer-env: {exc}")
    return args


# What a full `make bench` is; a run that differs in any of these is a subset, said so on its
# picture (a smoke run's numbers are not the benchmark's).
FULL_RUN_ARGS = ("sizes", "sources", "copiers", "scenarios", "extra_runs", "repeat", "profile",
                 "ab_tree")


def is_full_run(args: argparse.Namespace) -> bool:
    defaults = parse_args([])
    return all(getattr(args, name) == getattr(defaults, name) for name in FULL_RUN_ARGS)


def upload(bench: Bench, kind: str, size: int, name: str) -> Source:
    started = time.monotonic()
    source = upload_source(bench.sessions[SOURCE_REGION], SOURCE_KINDS[kind], CONTAINER, name,
                           size, seed=size + len(name))
    say(f"source {CONTAINER}/{name}: {size / GiB:.3g} GiB {SOURCE_KINDS[kind].describe()}, md5 "
        f"{source.md5}, uploaded in {time.monotonic() - started:.1f}s")
    return source


def upload_sources(bench: Bench) -> list[Source]:
    sources = []
    for size in bench.args.sizes:
        for kind in bench.args.sources:
            actual = SOURCE_KINDS[kind].size_for(size)
            if any(s.kind == kind and s.size == actual for s in sources):
                continue  # slo1024 at 1 and 2 GiB asked: both are 2 GiB
            sources.append(upload(bench, kind, actual, f"bench-{kind}-{actual / GiB:g}GiB.raw"))
    return sources


def rate_cap_source(bench: Bench) -> Source:
    """An SLO of 100 MiB segments that takes `--rate-cap-seconds` at the cap."""
    size = math.ceil(bench.args.rate_cap_mb * 1e6 * bench.args.rate_cap_seconds / MiB) * MiB
    return upload(bench, "slo100", size, f"bench-ratecap-{size // MiB}MiB.raw")


def local_file(bench: Bench) -> tuple[Source, Path]:
    """The file `xfer upload` reads: as large as the fan-out source."""
    size = SOURCE_KINDS[bench.args.fanout_source].size_for(bench.args.sizes[0])
    path = bench.args.state_dir / f"bench-file-{size / GiB:g}GiB.raw"
    started = time.monotonic()
    source = write_random_file(path, size, seed=size + 7, container=CONTAINER)
    say(f"local file {path}: {size / GiB:.3g} GiB, md5 {source.md5}, written in "
        f"{time.monotonic() - started:.1f}s")
    return source, path


def probe_xfer_features(bench: Bench) -> ApiFeatures:
    direct = {r: RegionConfig(r, c.auth_url, c.user, c.key) for r, c in bench.cloud.clusters.items()}
    workdir = bench.args.state_dir / "runs" / "probe"
    workdir.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(direct[SOURCE_REGION], (direct[TARGET_REGION],), CONTAINER, "-", 0, "", "",
                   "plain", workdir, 60.0, database_for_run(bench.cloud.database_url),
                   bench.args.xfer_env)
    return probe_xfer(spec)


def say_plan(args: argparse.Namespace, sources: list[Source], unavailable: dict[str, str]) -> None:
    copies = sum(len(capped.stage_copiers(args, scenario)) for scenario in args.scenarios) \
        * len(sources) * args.repeat
    fanouts = sum(len(args.scenarios) * args.repeat for run in ("fanout", "upload")
                  if run in args.extra_runs and run not in unavailable)
    say(f"plan: {copies} copier runs, {fanouts} fan-out comparisons (3 copies or uploads each), "
        f"{'a' if 'ratecap' in args.extra_runs else 'no'} rate-capped copy of "
        f"{args.rate_cap_seconds:g} s"
        + (f", {len(concurrency.COUNTS) + 1} concurrency runs"
           if "concurrency" in args.extra_runs else ""))


def run_stage(bench: Bench, stage: Stage, sources: list[Source], document: dict[str, Any],
              rate_source: Source | None, upload_file: tuple[Source, Path] | None) -> None:
    args = bench.args
    copiers = capped.stage_copiers(args, stage.scenario)
    for source in sources:
        for repeat in range(1, args.repeat + 1):
            # interleaved, in turn forwards and backwards: drift hits every copier alike
            for copier in copiers if repeat % 2 else reversed(copiers):
                document["rows"].append(run_copy(bench, stage, source, copier, repeat))
    if stage.scenario == "capped":
        return  # the link's sweep only
    if "fanout" in args.extra_runs and "fanout" not in document["unavailable"]:
        chosen = [s for s in sources if s.kind == args.fanout_source] or sources[:1]
        for repeat in range(1, args.repeat + 1):
            document["fanout"].append(
                extra_runs.fanout_comparison(bench, stage, chosen[0], repeat))
    if "concurrency" in args.extra_runs and stage.scenario == rate_cap_scenario(args):
        chosen = [s for s in sources if s.kind == args.fanout_source] or sources[:1]
        document.setdefault("concurrency", []).extend(
            concurrency.concurrency_runs(bench, stage, chosen[0]))
    if rate_source is not None and stage.scenario == rate_cap_scenario(args):
        document["rate_cap"] += extra_runs.rate_cap_runs(bench, stage, rate_source)
    if upload_file is not None:
        local, path = upload_file
        startup = extra_runs.upload_startup_chars(bench, stage, args.state_dir)
        for repeat in range(1, args.repeat + 1):
            document["fanout"].append(
                extra_runs.upload_comparison(bench, stage, local, path, repeat, startup))


def rate_cap_scenario(args: argparse.Namespace) -> str:
    return "colocated" if "colocated" in args.scenarios else args.scenarios[0]


def session(bench: Bench, document: dict[str, Any]) -> None:
    args = bench.args
    document["floor"] = floor = report.hashing_floor()
    say("hashing on one core: " + ", ".join(
        f"{name} {v['MB/s']} MB/s ({v['cpu_s_per_gib']} CPU-s/GiB)" for name, v in floor.items()))
    features = bench.features = probe_xfer_features(bench)
    document["features"] = {"request_fields": sorted(features.request_fields),
                            "upload_command": features.upload_command}
    document["unavailable"] = extra_runs.unavailable(features, args.extra_runs)
    for name, why in document["unavailable"].items():
        say(f"{name}: {why}")
    sources = upload_sources(bench)
    rate_source = rate_cap_source(bench) if "ratecap" in args.extra_runs else None
    upload_file = None
    if "upload" in args.extra_runs and "upload" not in document["unavailable"]:
        upload_file = local_file(bench)
    document["sources"] = [vars(s) for s in sources + ([rate_source] if rate_source else [])
                           + ([upload_file[0]] if upload_file else [])]
    say_plan(args, sources, document["unavailable"])
    try:
        for scenario in args.scenarios:
            shape = capped.stage_shape(args, scenario)
            with region_endpoints(bench.cloud, scenario, shape, args.state_dir) as (endpoints,
                                                                                   proxies):
                stage = Stage(scenario, endpoints, CpuMeter(measured_pids(bench.cloud, proxies)))
                run_stage(bench, stage, sources, document, rate_source, upload_file)
    finally:
        if upload_file is not None:
            upload_file[1].unlink(missing_ok=True)


def finish(document: dict[str, Any], args: argparse.Namespace) -> None:
    """Medians and goals into the document; print them."""
    every_xfer_run = xfer_runs(document)
    report.add_beyond_hashes(document["rows"] + every_xfer_run, document["floor"])
    summary = document["summary"] = report.summarise(document["rows"])
    fanout = document["fanout_summary"] = report.summarise_fanout(document["fanout"])
    found = goals.compute_goals(summary, document["floor"], fanout, document["rate_cap"],
                                document["unavailable"], args.memory_bound,
                                document.get(glance_key(True)),
                                document.get(glance_key(False)))
    document["goals"] = goals.as_json(found)
    shape = document["shape"]
    print("\n== runs (cpu/GiB: the copier's own CPU-s per GiB; swift/GiB: all Swift servers'; "
          "read: bytes read from the source region / its size)")
    print(f"   emulated link: RTT {shape['rtt_ms']:g} ms, "
          f"{shape['rate_mb_per_connection']:g} MB/s per TCP connection and direction")
    print(report.table(document["rows"]))
    print("\n== medians over repeats (beyond: xfer's CPU-s/GiB less the one-core cost of its "
          "hashes; loop: its event loop thread's, measured; net/GiB: the kernel's loopback TCP "
          f"(softirq); ceiling: {report.CORES} cores / every CPU-s per GiB of the run)")
    print(report.summary_table(summary))
    if document.get("concurrency"):
        print("\n== concurrency: copies at once, in one xfer serve or two (MiB/s: all of them)")
        print(report.concurrency_table(document["concurrency"]))
    if any(entry["scenario"] == "capped" for entry in summary):
        capped = document["capped_shape"]
        print(f"\n== capped link: RTT {capped['rtt_ms']:g} ms, {capped['rate_mb_per_connection']:g} "
              f"MB/s per connection, {capped['total_mb']:g} MB/s in all (goal: xfer >= 90%)")
        print(report.capped_table(summary, capped["total_mb"]))
    print("\n== xfer's own CPU-s per GiB beyond the one-core cost of its hashes (issue 21: "
          "<= 1.5), every xfer run beside the table above")
    print(report.beyond_hashes_table(every_xfer_run))
    print("\n== hashing on one core (the floor for xfer's own CPU)")
    for name, values in document["floor"].items():
        print(f"   {name:<7} {values['MB/s']:>7.1f} MB/s  {values['cpu_s_per_gib']:.2f} CPU-s/GiB")
    for name, why in document["unavailable"].items():
        print(f"   {name}: {why}")
    print("\n== goals (issue 11), from this run's medians")
    print(goals.goals_table(found))


def xfer_runs(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The xfer runs outside the copier table: fan-out jobs, uploads, capped copies."""
    return [run for comparison in document["fanout"] for run in comparison["runs"]
            ] + document["rate_cap"]


def draw(document: dict[str, Any], path: Path) -> None:
    try:
        from benchmarks import chart  # matplotlib: the `bench` extra, which `make bench` installs
    except ImportError as exc:
        say(f"no picture: {exc} (`make bench` installs the bench extra)")
        return
    chart.draw(document, path)
    say(f"picture in {path}")
    from benchmarks import curves_chart
    curves = path.with_name(f"{path.stem}-curves.png")
    if curves_chart.draw_curves(document, curves):
        say(f"planning curves in {curves}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the cloud
    args.state_dir = args.state_dir.absolute()
    regions = [SOURCE_REGION, TARGET_REGION]
    if {"fanout", "upload"} & set(args.extra_runs):  # both go to two target regions
        regions.append(SECOND_TARGET_REGION)
    started = datetime.now(UTC)
    document: dict[str, Any] = {
        "started": started.isoformat(), "cores": report.CORES, "full_run": is_full_run(args),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "shape": {"rtt_ms": args.rtt_ms, "rate_mb_per_connection": args.rate_mb},
        "capped_shape": {"rtt_ms": args.rtt_ms, "rate_mb_per_connection": args.capped_rate_mb,
                         "total_mb": args.capped_total_mb},
        "rows": [], "fanout": [], "rate_cap": [], "unavailable": {}, "floor": {}}
    if not args.glance_only:
        say(f"starting a local cloud of {len(regions)} regions in {args.state_dir}")
        # Swift and Postgres only: idle Keystone and Glance processes would only add noise.
        cloud = devcloud.up(args.state_dir, [devcloud.ClusterSpec(region) for region in regions],
                            openstack=False)
        try:
            sessions = {region: swift_http.login(c.auth_url, c.user, c.key)
                        for region, c in cloud.clusters.items()}
            session(Bench(args, cloud, sessions), document)
        finally:
            devcloud.down(args.state_dir)
            for cluster in cloud.clusters.values():  # the objects (GiBs); logs stay
                shutil.rmtree(cluster.devices_dir, ignore_errors=True)
            say("stopped the local cloud and removed its objects")
    if "glance" in args.extra_runs:  # a cloud of its own: Keystone, Glance, keystoneauth Swift
        for secure_hash in args.glance_secure_hash:
            try:
                document[glance_key(secure_hash)] = glance_runs.glance_comparison(
                    args.state_dir / "glance", GLANCE_IMAGE_SIZE, args.repeat, secure_hash)
            except Exception as exc:  # the session's other results are still written
                say(f"glance comparison with do_secure_hash {secure_hash} FAILED: {exc}")
                document.setdefault("failed", {})[glance_key(secure_hash)] = str(exc)
    document["session_seconds"] = round((datetime.now(UTC) - started).total_seconds())
    finish(document, args)
    say(f"the session took {document['session_seconds'] / 60:.1f} minutes")
    stem = RESULTS_DIR / started.strftime("%Y%m%dT%H%M%SZ")
    report.write_json(stem.with_suffix(".json"), document)
    say(f"results in {stem.with_suffix('.json')}")
    draw(document, stem.with_suffix(".png"))
    runs = document["rows"] + [r for c in document["fanout"] for r in c["runs"]] + document["rate_cap"]
    glance_ok = all(run["same_checksum"] for key in (glance_key(True), glance_key(False))
                    for run in document.get(key, {}).get("runs", ()) if run["copier"] == "xfer")
    return 0 if all(row["ok"] for row in runs) and glance_ok and not document.get("failed") else 1


if __name__ == "__main__":
    sys.exit(main())
