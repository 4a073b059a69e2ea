"""The copiers under test, each run as its own process(es) and measured the same way.

    xfer      a fresh `xfer serve --port 0` per run; POST /v1/jobs, then follow the job's
              events (GET /v1/jobs/{id}/events) until it ends (one target, or every target
              in one job)
    rclone    `rclone copyto src:c/o dst:c/o`, default flags or a chunk size
    staged    `swift download` to a file, then `swift upload --use-slo` (glance-download's way)

A copier reports its own CPU seconds and peak RSS; the harness's `Window` times the part that
counts and measures the cloud's processes over exactly that part.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks import profiling
from benchmarks.procstat import (
    ChildUsage,
    CpuMeter,
    cpu_seconds,
    machine_cpu_seconds,
    main_thread_cpu_seconds,
    peak_rss_bytes,
    run_measured,
)
from xfer.dev.children import stop_child
from xfer.dev.demo import listening_url
from xfer.settings import RegionConfig, regions_variable

REPO_ROOT = Path(__file__).resolve().parents[1]
SWIFT_CLI = REPO_ROOT / ".cloud-venv" / "bin" / "swift"
# How often xfer's event stream reads the job (one query): the harness asked for the whole
# job (five queries) every 0.1 s before, 9-10% of xfer's profiled CPU in a copy of a GiB.
EVENTS_POLL_SECONDS = "0.2"
CHUNK_100M = "100M"  # rclone and swiftclient both read this as 100 MiB
RCLONE_SWIFT_CHUNK_SIZE = 5 << 30  # rclone's default: larger files become segmented objects


@dataclass(frozen=True)
class RunSpec:
    source: RegionConfig
    targets: tuple[RegionConfig, ...]  # one, except for a fan-out job
    container: str
    obj: str
    size: int
    md5: str
    sha512: str
    source_kind: str  # "plain", "slo100", ...: what a copier can verify depends on it
    workdir: Path
    timeout: float
    database_url: str = field(default="", repr=False)
    xfer_environ: Mapping[str, str] = field(default_factory=dict)  # extra XFER_* settings
    profile: Path | None = None  # xfer sampled by py-spy into this file (`--profile`)

    @property
    def target(self) -> RegionConfig:
        return self.targets[0]


@dataclass(frozen=True)
class XferOptions:
    """How one xfer run differs from the default service."""

    sha512: bool = True
    loop: str = "asyncio"
    segment_size: int | None = None  # cut segments of this size instead of keeping the source's
    environ: Mapping[str, str] = field(default_factory=dict)  # XFER_* of this run only
    job_fields: Mapping[str, Any] = field(default_factory=dict)  # more fields of the request
    tree: Path | None = None  # run the xfer of this source tree (`--ab-tree`), not this one's
    poll_seconds: float = 0.0  # ask GET /v1/jobs/{id} this often instead of following events


@dataclass
class CopierResult:
    ok: bool
    cpu_seconds: float
    peak_rss_bytes: int
    md5_verified: str  # "yes", "NO", or what the copier checks instead
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Window:
    """The timed part of a run: wall clock, the CPU of the cloud's processes and the whole
    machine's (busy, softirq, steal) over exactly that part; an xfer's start and stop are
    outside it."""

    def __init__(self, meter: CpuMeter) -> None:
        self.meter = meter
        self.wall_seconds = 0.0
        self.cpu_by_process: dict[str, float] = {}
        self.machine_seconds = (0.0, 0.0, 0.0)
        self._started = 0.0

    def __enter__(self) -> Window:
        self.meter.start()
        self.machine_seconds = machine_cpu_seconds()
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall_seconds = time.monotonic() - self._started
        (busy, softirq, steal), before = machine_cpu_seconds(), self.machine_seconds
        self.machine_seconds = (busy - before[0], softirq - before[1], steal - before[2])
        self.cpu_by_process = self.meter.stop()


def clean_environ(extra: Mapping[str, str] = {}) -> dict[str, str]:
    hidden = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("XFER_", "OS_", "ST_", "RCLONE_")) and k not in hidden}
    return {**environ, **extra}


# --- xfer -------------------------------------------------------------------------------

@contextmanager
def xfer_server(environ: Mapping[str, str], log_path: Path,
                tree: Path | None = None) -> Iterator[tuple[int, str]]:
    """`xfer serve --port 0` as a subprocess: yields (PID, base URL); stopped by PID. `tree`:
    the xfer package of that source tree instead (`python -m` looks in its directory first;
    its sql/ is still this one's, the installed package data)."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "xfer.cli", "serve", "--port", "0"], env=dict(environ),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, cwd=tree)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60.0)
        line = process.stdout.readline() if ready else b""
        url = listening_url(line)
        if url is None:
            raise RuntimeError(f"xfer serve did not start ({line!r}); see {log_path}")
        yield process.pid, url
    finally:
        stop_child(process, 30)


def json_request(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            result: dict[str, Any] = json.load(response)
            return result
    except urllib.error.HTTPError as exc:  # xfer's error body says which field and why
        raise RuntimeError(f"{request.method} {url}: {exc.code} {exc.read()[:500]!r}") from exc


def sse_events(lines: Iterable[bytes]) -> Iterator[tuple[str, Any]]:
    """(event name, decoded data) of a text/event-stream; comment lines skipped."""
    name, data = "message", list[str]()
    for raw in lines:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", list[str]()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def follow_job(url: str, job: dict[str, Any], deadline: float) -> dict[str, Any]:
    """The job as its last progress event shows it, once it ended (or at the deadline),
    following GET /v1/jobs/{id}/events; a stream that ends for another reason (its maximum
    duration) is opened again."""
    while job["state"] not in ("succeeded", "failed", "cancelled"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        with urllib.request.urlopen(f"{url}/v1/jobs/{job['id']}/events",
                                    timeout=min(remaining, 60.0)) as response:
            for name, data in sse_events(response):
                if name == "progress":
                    job = data
                elif name == "end":
                    break
    return job


def poll_job(url: str, job: dict[str, Any], deadline: float, every: float) -> dict[str, Any]:
    while job["state"] not in ("succeeded", "failed", "cancelled") \
            and time.monotonic() < deadline:
        time.sleep(every)
        job = json_request(f"{url}/v1/jobs/{job['id']}")
    return job


def job_finished_epoch(job: dict[str, Any]) -> float | None:
    """The job's `finished_at` (the database's clock, the same machine's) as epoch seconds."""
    try:
        return datetime.fromisoformat(job["finished_at"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def xfer_environ(spec: RunSpec, options: XferOptions) -> dict[str, str]:
    return clean_environ({
        "XFER_DATABASE_URL": spec.database_url,
        "XFER_REGIONS": regions_variable((spec.source, *spec.targets)),
        "XFER_VERIFY_SHA512": "true" if options.sha512 else "false",
        "XFER_EVENT_LOOP": options.loop,
        # chunks ahead of the hasher wait in this run's directory, removed with it
        "XFER_SPILL_DIR": str(spec.workdir),
        "XFER_EVENTS_POLL_INTERVAL": EVENTS_POLL_SECONDS,
        **spec.xfer_environ, **options.environ})


def job_request(spec: RunSpec, options: XferOptions) -> dict[str, Any]:
    """The POST /v1/jobs body. Several targets: one fan-out job (`targets`, see
    ApiFeatures.fanout)."""
    body: dict[str, Any] = {
        "source": {"region": spec.source.name, "container": spec.container, "object": spec.obj},
        "checksum": spec.md5, **options.job_fields}
    if len(spec.targets) == 1:
        body["target"] = {"region": spec.target.name}
    else:
        body["targets"] = [{"region": target.name} for target in spec.targets]
    if options.segment_size is not None:
        body["segment_size"] = options.segment_size
    return body


def profiled(pid: int, path: Path | None) -> AbstractContextManager[None]:
    if path is None:
        return nullcontext()
    recording = profiling.recording(pid, path)

    @contextmanager
    def attached() -> Iterator[None]:
        with recording:
            time.sleep(1.0)  # py-spy attaches before the job starts
            yield

    return attached()


def run_xfer(spec: RunSpec, window: Window, options: XferOptions) -> CopierResult:
    body = job_request(spec, options)
    with xfer_server(xfer_environ(spec, options), spec.workdir / "xfer-serve.log",
                     options.tree) as (pid, url):
        cpu_before, rss_idle = cpu_seconds(pid), peak_rss_bytes(pid)
        loop_before = main_thread_cpu_seconds(pid)
        with profiled(pid, spec.profile), window:
            posted = time.time()
            job = json_request(f"{url}/v1/jobs", body)
            if options.poll_seconds:  # the harness's old way, for an A/B of what it costs
                job = poll_job(url, job, time.monotonic() + spec.timeout, options.poll_seconds)
            else:
                job = follow_job(url, job, time.monotonic() + spec.timeout)
        # the stream sees the end up to one of its reads late: the job's own end is exact
        finished = job_finished_epoch(job)
        if finished is not None and finished > posted:
            window.wall_seconds = min(window.wall_seconds, finished - posted)
        cpu = cpu_seconds(pid) - cpu_before
        loop_cpu = main_thread_cpu_seconds(pid) - loop_before
        rss = peak_rss_bytes(pid)
    ok = job["state"] == "succeeded"
    verified = ok and job["md5"] == spec.md5 and bool(job.get("md5_checked_against"))
    if options.sha512:
        verified = verified and job["sha512"] == spec.sha512
    keep = ("state", "layout", "segments_total", "md5_checked_against", "verification",
            "retries", "attempts", "bytes_total", "started_at", "finished_at", "error")
    return CopierResult(ok, cpu, rss, "yes" if verified else "NO",
                        "" if ok else json.dumps(job.get("error")),
                        {"job": {k: job.get(k) for k in keep}, "rss_before_job_bytes": rss_idle,
                         "xfer_pid": pid, "sha512": options.sha512,
                         "loop_thread_cpu_seconds": round(loop_cpu, 3)})


def run_xfer_upload(spec: RunSpec, window: Window, local_file: Path,
                    options: XferOptions) -> CopierResult:
    """`xfer upload FILE --region R1[,R2] --json`: the file to every target region at once."""
    argv = [sys.executable, "-m", "xfer.cli", "upload", str(local_file),
            "--region", ",".join(target.name for target in spec.targets),
            "--container", spec.container, "--object", spec.obj, "--checksum", spec.md5, "--json"]
    result_path = spec.workdir / "xfer-upload.json"
    if spec.profile is not None:
        argv = profiling.record_command(spec.profile, argv)
    with window:
        usage = run_measured(argv, timeout=spec.timeout, env=xfer_environ(spec, options),
                             log_path=spec.workdir / "xfer-upload.log", stdout_path=result_path)
    result = _from_usage(usage, "NO")
    try:
        outcome = json.loads(result_path.read_text())
    except ValueError:
        outcome = {}
    verified = (result.ok and outcome.get("md5") == spec.md5
                and outcome.get("verification") == "end_to_end"
                and (not options.sha512 or outcome.get("sha512") == spec.sha512))
    result.md5_verified = "yes" if verified else "NO"
    result.extra = {"upload": {k: outcome.get(k) for k in ("seconds", "segments", "verification")},
                    "file_read_chars": usage.read_chars, "sha512": options.sha512,
                    "bytes_spilled": outcome.get("bytes_spilled")}
    return result


@dataclass(frozen=True)
class ApiFeatures:
    """What the xfer under test offers, read from its OpenAPI document: the harness runs what
    is there and says which runs are not available."""

    request_fields: frozenset[str]
    upload_command: bool  # `xfer upload FILE --region R1,R2`: fan-out from a local file

    @property
    def fanout(self) -> bool:  # one job, several target regions
        return "targets" in self.request_fields

    @property
    def job_rate_cap(self) -> bool:  # a per-job max_rate_mb below the process's cap
        return "max_rate_mb" in self.request_fields


def probe_xfer(spec: RunSpec) -> ApiFeatures:
    """Start xfer once and read its job request schema; and does `xfer upload` exist?"""
    with xfer_server(xfer_environ(spec, XferOptions()), spec.workdir / "xfer-probe.log") as (_, url):
        document = json_request(f"{url}/v1/openapi.json")
    upload = subprocess.run([sys.executable, "-m", "xfer.cli", "upload", "--help"],
                            env=clean_environ(), capture_output=True, timeout=60, check=False)
    return ApiFeatures(frozenset(job_request_schema(document).get("properties", {})),
                       upload.returncode == 0)


def job_request_schema(document: dict[str, Any]) -> dict[str, Any]:
    """The schema of POST /v1/jobs's body, by its reference: its name is xfer's to change."""
    body = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    schema: dict[str, Any] = body["schema"]
    while "$ref" in schema:  # "#/components/schemas/<name>"
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


# --- rclone -----------------------------------------------------------------------------

def _rclone_config(spec: RunSpec) -> str:
    sections = []
    for name, endpoint in (("src", spec.source), ("dst", spec.target)):
        sections.append(f"[{name}]\ntype = swift\nuser = {endpoint.user}\nkey = {endpoint.key}\n"
                        f"auth = {endpoint.auth_url}\nauth_version = 1\n")
    return "\n".join(sections)


def run_rclone(spec: RunSpec, window: Window, *, chunk_size: str | None) -> CopierResult:
    config = spec.workdir / "rclone.conf"
    config.write_text(_rclone_config(spec))
    config.chmod(0o600)
    obj = f"{spec.container}/{spec.obj}"
    argv = ["rclone", "--config", str(config), "copyto", f"src:{obj}", f"dst:{obj}"]
    if chunk_size:
        argv += ["--swift-chunk-size", chunk_size]
    try:
        with window:
            usage = run_measured(argv, timeout=spec.timeout, env=clean_environ(),
                                 log_path=spec.workdir / "rclone.log")
    finally:
        config.unlink()
    # rclone compares MD5s after a copy when both objects have one: a plain object's ETag.
    # A large object (source SLO, or a target it cut into segments) has none it trusts.
    plain_to_plain = (spec.source_kind == "plain" and chunk_size is None
                      and spec.size <= RCLONE_SWIFT_CHUNK_SIZE)
    return _from_usage(usage, "yes" if plain_to_plain else "no")


# --- staged: download to a file, then upload --------------------------------------------

def _swift_argv(endpoint: RegionConfig, *command: str) -> list[str]:
    return [str(SWIFT_CLI), "-A", endpoint.auth_url, "-U", endpoint.user, "-K", endpoint.key,
            *command]


def run_staged(spec: RunSpec, window: Window) -> CopierResult:
    staging = spec.workdir / "staged.bin"
    download = _swift_argv(spec.source, "download", spec.container, spec.obj, "-o", str(staging))
    upload = _swift_argv(spec.target, "upload", "--use-slo", "--segment-size", CHUNK_100M,
                         "--object-name", spec.obj, spec.container, str(staging))
    try:
        with window:
            fetched = run_measured(download, timeout=spec.timeout, env=clean_environ(),
                                   log_path=spec.workdir / "swift-download.log")
            stored = None
            if fetched.returncode == 0:
                remaining = max(1.0, spec.timeout - fetched.wall_seconds)
                stored = run_measured(upload, timeout=remaining, env=clean_environ(),
                                      log_path=spec.workdir / "swift-upload.log")
    finally:
        staging.unlink(missing_ok=True)
    if stored is None:
        return _from_usage(fetched, "no")
    # swift download checks a plain object's MD5 against its ETag; swift upload checks each
    # segment's against Swift's ETag: a chain, with the bytes on disk in between.
    verified = "download+segments" if spec.source_kind == "plain" else "segments only"
    result = _from_usage(stored, verified)
    result.ok = result.ok and fetched.returncode == 0
    result.cpu_seconds += fetched.cpu_seconds
    result.peak_rss_bytes = max(result.peak_rss_bytes, fetched.peak_rss_bytes)
    result.extra = {"download_seconds": round(fetched.wall_seconds, 2),
                    "upload_seconds": round(stored.wall_seconds, 2)}
    return result


def _from_usage(usage: ChildUsage, verified: str) -> CopierResult:
    ok = usage.returncode == 0
    return CopierResult(ok, usage.cpu_seconds, usage.peak_rss_bytes, verified if ok else "NO",
                        "" if ok else f"exit {usage.returncode}: {usage.output_tail[-600:]}")


COPIERS = ("xfer-md5", "xfer-md5-sha512", "rclone", "rclone-100M", "staged")
# Not run by default: xfer on asyncio's event loop instead of its default uvloop (an A/B of the
# two), and xfer told to cut 16 MiB segments instead of keeping the source's.
# xfer-md5-sha512-polled: the harness asks for the job every 0.1 s, as it did before it
# followed the job's events (what that costs xfer's measured CPU).
EXTRA_COPIERS = ("xfer-md5-asyncio", "xfer-md5-sha512-asyncio", "xfer-md5-16M",
                 "xfer-md5-sha512-polled")


# The capped link's sweep: xfer-md5-sha512 with a chunk size (ranged GET) and a number of
# segments in flight, e.g. xfer-md5-sha512-c16M-s4 (parallel GETs: chunks_ahead + 1 per segment).
SWEEP_COPIER = re.compile(r"xfer-md5-sha512-c(\d+)M-s(\d+)")


def sweep_copier(chunk_mib: int, segments_in_flight: int) -> str:
    return f"xfer-md5-sha512-c{chunk_mib}M-s{segments_in_flight}"


def known_copier(name: str) -> bool:
    return name in COPIERS + EXTRA_COPIERS or SWEEP_COPIER.fullmatch(name) is not None


AB_SUFFIX = "@base"  # an xfer copier run from the `--ab-tree` source tree


def run_copier(name: str, spec: RunSpec, window: Window, xfer_loop: str,
               ab_tree: Path | None = None) -> CopierResult:
    if name.endswith(AB_SUFFIX):
        assert ab_tree is not None, "an @base copier needs --ab-tree"
        name = name.removesuffix(AB_SUFFIX)
        return run_xfer(spec, window, replace(xfer_options(name, xfer_loop), tree=ab_tree))
    if name.startswith("xfer"):
        return run_xfer(spec, window, xfer_options(name, xfer_loop))
    if name == "rclone":
        return run_rclone(spec, window, chunk_size=None)
    if name == "rclone-100M":
        return run_rclone(spec, window, chunk_size=CHUNK_100M)
    if name == "staged":
        return run_staged(spec, window)
    raise ValueError(f"unknown copier {name!r}; known: {', '.join(COPIERS + EXTRA_COPIERS)}")


def xfer_options(name: str, xfer_loop: str) -> XferOptions:
    """What each xfer copier is."""
    if name == "xfer-md5":
        return XferOptions(sha512=False, loop=xfer_loop)
    if name == "xfer-md5-sha512":
        return XferOptions(sha512=True, loop=xfer_loop)
    if name == "xfer-md5-asyncio":
        return XferOptions(sha512=False, loop="asyncio")
    if name == "xfer-md5-sha512-asyncio":
        return XferOptions(sha512=True, loop="asyncio")
    if name == "xfer-md5-16M":
        return XferOptions(sha512=False, loop=xfer_loop, segment_size=16 << 20)
    if name == "xfer-md5-sha512-polled":
        return XferOptions(sha512=True, loop=xfer_loop, poll_seconds=0.1)
    swept = SWEEP_COPIER.fullmatch(name)
    if swept is not None:
        return XferOptions(sha512=True, loop=xfer_loop, environ={
            "XFER_CHUNK_SIZE": str(int(swept[1]) << 20),
            "XFER_SEGMENTS_IN_FLIGHT": swept[2]})
    raise ValueError(f"unknown copier {name!r}; known: {', '.join(COPIERS + EXTRA_COPIERS)}")
