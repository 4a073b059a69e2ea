"""Concurrency curves (`--extra-runs concurrency`): N copies of one source at once, each to its
own target object, in one `xfer serve` (N = 1, 2, 4, 8; XFER_MAX_CONCURRENT_COPIES = N, the
process's memory budget left at its default), and 4 copies split between 2 `xfer serve` on one
database (each takes 2 at once). Measured like a copier run, over all the copies: aggregate
MiB/s (N x size / from the first request to the last job's end), xfer's CPU (every process),
the highest peak RSS of a process, and each process's.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from benchmarks import swift_http
from benchmarks.copiers import (
    CopierResult,
    RunSpec,
    Window,
    XferOptions,
    follow_job,
    job_finished_epoch,
    job_request,
    json_request,
    xfer_environ,
    xfer_server,
)
from benchmarks.procstat import cpu_seconds, peak_rss_bytes
from benchmarks.runs import (
    Bench,
    Stage,
    describe_row,
    make_row,
    measure,
    run_spec,
    say,
)
from benchmarks.sources import Source

COUNTS = (1, 2, 4, 8)  # copies in one process
SPLIT = (2, 4)  # processes, copies in all


def concurrency_runs(bench: Bench, stage: Stage, source: Source) -> list[dict[str, Any]]:
    shapes = [(1, count) for count in COUNTS] + [SPLIT]
    return [_run(bench, stage, source, processes, copies) for processes, copies in shapes]


def _run(bench: Bench, stage: Stage, source: Source, processes: int,
         copies: int) -> dict[str, Any]:
    copier = f"xfer-{processes}x{copies // processes}"
    workdir = bench.args.state_dir / "runs" / f"{stage.scenario}-{source.kind}-{copier}"
    spec = run_spec(bench, stage, source, workdir)
    options = XferOptions(sha512=True, loop=bench.args.xfer_loop, environ={
        "XFER_MAX_CONCURRENT_COPIES": str(copies // processes)})
    result, fields = measure(bench, stage, source.size * copies,
                             lambda window: _copies(spec, window, options, processes, copies))
    session = bench.sessions[spec.target.name]
    kinds = [swift_http.large_object_kind(session, source.container, _target(source.name, i))
             for i in range(copies)]
    swift_http.empty_account(session)
    complete = all(size == source.size for _, size in kinds)
    row = make_row(stage, source, copier, 1, result, fields,
                   ("+".join(sorted({kind for kind, _ in kinds})), complete))
    row.update(processes=processes, copies=copies)
    say(describe_row(row) + f" ({copies} copies, {processes} process(es), peak RSS "
        f"{[round(r / 2**20) for r in result.extra['rss_per_process_bytes']]} MiB)")
    return row


def _target(name: str, index: int) -> str:
    return f"{name}-copy{index}"


def _copies(spec: RunSpec, window: Window, options: XferOptions, processes: int,
            copies: int) -> CopierResult:
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(xfer_server(
            xfer_environ(spec, options), spec.workdir / f"xfer-serve-{index}.log"))
            for index in range(processes)]
        before = [cpu_seconds(pid) for pid, _ in servers]
        deadline = time.monotonic() + spec.timeout * copies
        with window:
            posted = time.time()
            jobs = []
            for index in range(copies):  # in turn to each process (any of them may claim it)
                _, url = servers[index % processes]
                body = job_request(spec, options)
                body["target"] = {**body["target"], "object": _target(spec.obj, index)}
                jobs.append((url, json_request(f"{url}/v1/jobs", body)))
            ended = [follow_job(url, job, deadline) for url, job in jobs]
        finished = [job_finished_epoch(job) for job in ended]
        if all(end is not None for end in finished):
            last = max(end for end in finished if end is not None)
            window.wall_seconds = min(window.wall_seconds, last - posted)
        cpu = sum(cpu_seconds(pid) - start for (pid, _), start in zip(servers, before, strict=True))
        rss = [peak_rss_bytes(pid) for pid, _ in servers]
    ok = all(job["state"] == "succeeded" for job in ended)
    verified = ok and all(job["md5"] == spec.md5 and job["sha512"] == spec.sha512
                          for job in ended)
    failed = [job.get("error") for job in ended if job["state"] != "succeeded"]
    return CopierResult(ok, cpu, max(rss), "yes" if verified else "NO",
                        "" if ok else str(failed[:2]),
                        {"rss_per_process_bytes": rss, "processes": processes,
                         "copies": copies})
