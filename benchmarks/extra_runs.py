"""Runs beyond the copier table: fan-out to two regions, and a copy under a rate cap.

    fanout    one xfer job from RegionOne to RegionTwo and RegionThree, against two
              sequential single-target copies; the source region's proxy log counts what
              each read (fan-out should read the source once)
    ratecap   xfer with XFER_MAX_RATE_MB copying a source sized to take `--rate-cap-seconds`
              at the cap; what it read per second, from the source proxy's log, against the cap
              (and the same with the job's own max_rate_mb once the API has it)
    upload    `xfer upload FILE --region RegionTwo,RegionThree` against two sequential uploads
              of the file: fan-out from a local source; what it read of the file is its rchar
              (/proc/<pid>/io) less that of the same command uploading one byte

    concurrency  1, 2, 4 and 8 copies at once in one xfer serve, and 4 split between two
              (benchmarks/concurrency.py): aggregate MiB/s and peak RSS

Each is skipped, with a line saying why, when the xfer under test does not offer it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.copiers import ApiFeatures, XferOptions, run_xfer, run_xfer_upload
from benchmarks.runs import (
    SECOND_TARGET_REGION,
    TARGET_REGION,
    Bench,
    Stage,
    check_and_empty,
    describe_row,
    keep_profile,
    make_row,
    measure,
    run_spec,
    say,
    spec_regions,
)
from benchmarks.sources import Source, write_random_file

EXTRA_RUNS = ("fanout", "ratecap", "upload", "glance", "concurrency")
FANOUT_TARGETS = (TARGET_REGION, SECOND_TARGET_REGION)
FANOUT_COPIER = "xfer-fanout"  # MD5+SHA-512, as Glance needs both
SEQUENTIAL_COPIER = "xfer-md5-sha512"
RATE_WINDOW_S = 5.0
UPLOAD_CONTAINER = "uploads"


def unavailable(features: ApiFeatures, requested: list[str]) -> dict[str, str]:
    """Requested runs the xfer under test cannot do, and why (printed, kept in the JSON)."""
    missing = {}
    if "fanout" in requested and not features.fanout:
        missing["fanout"] = ("not available: xfer's job request (POST /v1/jobs in "
                             "GET /v1/openapi.json) has no 'targets' field yet")
    if "ratecap" in requested and not features.job_rate_cap:
        missing["ratecap-job"] = ("not available: no per-job 'max_rate_mb' in xfer's job "
                                  "request yet; only the process cap XFER_MAX_RATE_MB is run")
    if "upload" in requested and not features.upload_command:
        missing["upload"] = "not available: `xfer upload` is not a command of this xfer yet"
    return missing


def _xfer_run(bench: Bench, stage: Stage, source: Source, copier: str, repeat: int,
              targets: tuple[str, ...], options: XferOptions) -> dict[str, Any]:
    workdir = (bench.args.state_dir / "runs"
               / f"{stage.scenario}-{source.kind}-{copier}-{'+'.join(targets)}-{repeat}")
    spec = run_spec(bench, stage, source, workdir, targets=targets)
    result, fields = measure(bench, stage, source.size,
                             lambda window: run_xfer(spec, window, options))
    row = make_row(stage, source, copier, repeat, result, fields,
                   check_and_empty(bench, source, spec_regions(spec)))
    row["targets"] = list(targets)
    say(describe_row(row) + f" ({' and '.join(targets)})")
    keep_profile(spec, row)
    return row


def fanout_comparison(bench: Bench, stage: Stage, source: Source, repeat: int) -> dict[str, Any]:
    """One fan-out job against two sequential copies of the same source."""
    options = XferOptions(sha512=True, loop=bench.args.xfer_loop)
    fanout = _xfer_run(bench, stage, source, FANOUT_COPIER, repeat, FANOUT_TARGETS, options)
    sequential = [_xfer_run(bench, stage, source, SEQUENTIAL_COPIER, repeat, (region,), options)
                  for region in FANOUT_TARGETS]
    return _comparison("one job", stage, source, repeat, fanout, sequential)


def _comparison(via: str, stage: Stage, source: Source, repeat: int, fanout: dict[str, Any],
                sequential: list[dict[str, Any]]) -> dict[str, Any]:
    sequential_wall = sum(row["wall_seconds"] for row in sequential)
    ok = fanout["ok"] and all(row["ok"] for row in sequential)
    comparison = {
        "via": via, "scenario": stage.scenario, "source": source.label, "size": source.size,
        "repeat": repeat, "ok": ok, "targets": list(FANOUT_TARGETS),
        "fanout_wall_seconds": fanout["wall_seconds"], "sequential_wall_seconds": sequential_wall,
        "speedup": round(sequential_wall / fanout["wall_seconds"], 3) if ok else None,
        "fanout_source_reads": round(fanout["source_bytes_read"] / source.size, 4),
        "sequential_source_reads": round(
            sum(row["source_bytes_read"] for row in sequential) / source.size, 4),
        # every measured CPU-second of the fan-out run: what a faster one would need per second
        "fanout_other_cores": fanout["other_cores"],
        "fanout_cpu_seconds": round(fanout["copier_cpu_seconds"]
                                    + sum(fanout["cpu_by_process"].values())
                                    + fanout["softirq_cores"] * fanout["wall_seconds"], 2),
        "runs": [fanout, *sequential]}
    say(f"{stage.scenario} {source.label} fan-out ({via}) #{repeat}: "
        + (f"{comparison['speedup']:.2f}x two sequential copies, source read "
           f"{comparison['fanout_source_reads']:.3f}x (sequential "
           f"{comparison['sequential_source_reads']:.3f}x)" if ok else "FAILED"))
    return comparison


def _seconds_between(started: str | None, finished: str | None) -> float | None:
    if not started or not finished:
        return None
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()


def rate_cap_runs(bench: Bench, stage: Stage, source: Source) -> list[dict[str, Any]]:
    """The process cap, and the job's own cap when the API has it; one 30 s copy each."""
    cap = bench.args.rate_cap_mb
    variants = [("process", XferOptions(environ={"XFER_MAX_RATE_MB": f"{cap:g}"}))]
    if bench.features is not None and bench.features.job_rate_cap:
        variants.append(("job", XferOptions(job_fields={"max_rate_mb": cap})))
    rows = []
    for cap_kind, options in variants:
        row = _xfer_run(bench, stage, source, f"xfer-cap-{cap_kind}", 1, (TARGET_REGION,),
                        options)
        job = row.get("job") or {}
        job_seconds = _seconds_between(job.get("started_at"), job.get("finished_at"))
        windows = row["source_windows_mb_s"]
        row.update({
            "cap_kind": cap_kind, "cap_mb_s": cap,
            "achieved_mb_s": row["source_read_rate_mb_s"],
            "wall_mb_s": round(source.size / row["wall_seconds"] / 1e6, 2),
            "job_mb_s": round(source.size / job_seconds / 1e6, 2) if job_seconds else None,
            "window_seconds": RATE_WINDOW_S,
            "slowest_window_mb_s": min(windows, default=None),
            "fastest_window_mb_s": max(windows, default=None)})
        say(f"rate cap ({cap_kind}) {cap:g} MB/s: read {row['achieved_mb_s']} MB/s over "
            f"{row['wall_seconds']:.0f} s ({RATE_WINDOW_S:g} s windows "
            f"{row['slowest_window_mb_s']}-{row['fastest_window_mb_s']} MB/s)")
        rows.append(row)
    return rows


def _upload_run(bench: Bench, stage: Stage, local: Source, local_file: Path, copier: str,
                repeat: int, targets: tuple[str, ...], startup_chars: int) -> dict[str, Any]:
    workdir = (bench.args.state_dir / "runs"
               / f"{stage.scenario}-file-{copier}-{'+'.join(targets)}-{repeat}")
    spec = run_spec(bench, stage, local, workdir, targets=targets, xfer=False)
    options = XferOptions(sha512=True, loop=bench.args.xfer_loop)
    result, fields = measure(bench, stage, local.size,
                             lambda window: run_xfer_upload(spec, window, local_file, options))
    # the source is the file, not RegionOne: what was read of it
    fields["source_bytes_read"] = max(0, result.extra.get("file_read_chars", 0) - startup_chars)
    row = make_row(stage, local, copier, repeat, result, fields,
                   check_and_empty(bench, local, spec_regions(spec)))
    row["targets"] = list(targets)
    if startup_chars:  # not the one-byte upload that measures them
        say(describe_row(row) + f" ({' and '.join(targets)})")
        keep_profile(spec, row)
    return row


def upload_startup_chars(bench: Bench, stage: Stage, workdir: Path) -> int:
    """rchar of `xfer upload` of a one-byte file: Python's own reads (modules, configs)."""
    tiny = write_random_file(workdir / "one-byte.bin", 1, seed=1, container=UPLOAD_CONTAINER)
    row = _upload_run(bench, stage, tiny, workdir / "one-byte.bin", "xfer-upload-1-byte", 0,
                      (TARGET_REGION,), 0)
    chars = int(row["source_bytes_read"]) - 1
    say(f"{stage.scenario}: xfer upload reads {chars} bytes besides its file (a one-byte upload"
        f"{'' if row['ok'] else ', which FAILED: ' + row['detail'][:200]})")
    return chars


def upload_comparison(bench: Bench, stage: Stage, local: Source, local_file: Path, repeat: int,
                      startup_chars: int) -> dict[str, Any]:
    """`xfer upload` to both target regions at once against one region after the other."""
    fanout = _upload_run(bench, stage, local, local_file, "xfer-upload-fanout", repeat,
                         FANOUT_TARGETS, startup_chars)
    sequential = [_upload_run(bench, stage, local, local_file, "xfer-upload", repeat, (region,),
                              startup_chars) for region in FANOUT_TARGETS]
    comparison = _comparison("xfer upload", stage, local, repeat, fanout, sequential)
    comparison["startup_read_chars"] = startup_chars
    return comparison
