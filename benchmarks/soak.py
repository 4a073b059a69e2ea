"""`make soak` (issue 17, section 6): two `xfer serve` processes on one database, 50 image
copies asked at once by users of 3 projects, against a local cloud of its own. Checked from
outside: every job succeeded and was claimed once (the serve logs), each source has exactly one
copy in the target Glance, active with the source's checksum and os_hash_value, and the target
region holds nothing else the run made (Glance and Swift listed per project: no other image,
no other container, no byte beyond the images' data); no trust is left in Keystone.
Measured: `GET /v1/jobs` latency sampled during the run (p50, p99), peak RSS of each serve.

    make soak                                   # or, with other numbers:
    .venv/bin/python -m benchmarks.soak --copies 20 --min-mib 8 --max-mib 16

Bounded (--deadline, 720 s by default, besides the Makefile's timeout); prints a summary and
writes benchmarks/results/soak-<time>.json; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.procstat import peak_rss_bytes
from benchmarks.soak_cloud import Project, make_projects, upload_sources
from xfer.dev import devcloud
from xfer.dev.children import stop_child
from xfer.dev.demo import listening_url
from xfer.dev.devcloud.holdings import Holdings, holdings
from xfer.settings import MiB

SOURCE, TARGET = "RegionOne", "RegionTwo"
RESULTS = Path(__file__).with_name("results")
SAMPLE_EVERY_S = 0.2
SERVES = ("soak-a", "soak-b")
TRUSTS_SETTLE_S = 30.0


def say(text: str) -> None:
    print(f"soak: {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=50)
    parser.add_argument("--min-mib", type=int, default=8)
    parser.add_argument("--max-mib", type=int, default=32)
    parser.add_argument("--segment-mib", type=int, default=4, help="XFER_SEGMENT_SIZE")
    parser.add_argument("--deadline", type=float, default=720.0, help="seconds for the copies")
    args = parser.parse_args(argv)
    # `timeout` (make soak) sends SIGTERM: stop the cloud and the serves on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    state_dir = Path(tempfile.mkdtemp(prefix="xfer-soak-"))
    state_dir.chmod(0o755)  # the embedded Postgres runs as its own user (tests/conftest.py)
    try:
        started = time.monotonic()
        cloud = devcloud.up(state_dir)
        say(f"local cloud up in {time.monotonic() - started:.0f} s ({state_dir})")
        result = asyncio.run(soak(cloud, args))
    finally:
        devcloud.down(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"soak-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_summary(result, out)
    return 0 if not result["problems"] else 1


async def soak(cloud: devcloud.CloudInfo, args: argparse.Namespace) -> dict[str, Any]:
    projects = await asyncio.to_thread(make_projects, cloud, 3)
    rng = random.Random(17)
    sizes = [rng.randint(args.min_mib * MiB, args.max_mib * MiB) for _ in range(args.copies)]
    started = time.monotonic()
    sources = await upload_sources(cloud, projects, sizes, SOURCE)
    say(f"{len(sources)} source images ({sum(sizes) / MiB:.0f} MiB) uploaded in "
        f"{time.monotonic() - started:.0f} s")
    before = {p.name: await asyncio.to_thread(held, cloud, p) for p in projects}
    serves = [serve(cloud, name, args.segment_mib * MiB) for name in SERVES]
    try:
        urls = [url for _, url, _ in serves]
        async with aiohttp.ClientSession() as http:
            run = await copy_all(http, urls, sources, args.deadline)
        peaks = {name: peak_rss_bytes(process.pid) for (process, _, _), name
                 in zip(serves, SERVES, strict=True)}
    finally:
        for process, _, _ in serves:
            stop_child(process, 30)
    claims = Counter(job for _, _, log in serves for job in claimed_jobs(log))
    checks = await asyncio.to_thread(check_outcome, cloud, projects, before, run, claims)
    return {"copies": args.copies, "projects": len(projects), "sizes_mib": [args.min_mib,
            args.max_mib], "source_bytes": sum(sizes), "segment_bytes": args.segment_mib * MiB,
            "serve_processes": len(SERVES), **run["measured"], "peak_rss_mib": {
                name: round(peak / MiB, 1) for name, peak in peaks.items()}, **checks}


def serve(cloud: devcloud.CloudInfo, name: str, segment_size: int
          ) -> tuple[subprocess.Popen[bytes], str, Path]:
    """An `xfer serve` of RegionTwo on a free port, the run's database: (it, its URL, its log)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XFER_")}
    environ.update(cloud.serving_environ(TARGET))
    environ.update({"XFER_WORKER_ID": name, "XFER_SEGMENT_SIZE": str(segment_size)})
    log_path = cloud.state_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "xfer.cli", "serve", "--port", "0"],
                                   env=environ, stdout=subprocess.PIPE, stderr=log)
    assert process.stdout is not None
    url = listening_url(process.stdout.readline())
    if url is None:
        stop_child(process, 5)
        raise SystemExit(f"xfer serve {name} did not start:\n{log_path.read_text()[-2000:]}")
    return process, url, log_path


async def copy_all(http: aiohttp.ClientSession, urls: list[str], sources: list[dict[str, Any]],
                   deadline: float) -> dict[str, Any]:
    """Every copy asked at once (alternating between the serves), `GET /v1/jobs` sampled
    until all have ended or `deadline` passed: the jobs as they ended, and the samples."""
    started = time.monotonic()
    submitted = await asyncio.gather(*(
        submit(http, urls[index % len(urls)], source) for index, source in enumerate(sources)))
    latencies: list[float] = []
    jobs: dict[str, dict[str, Any]] = {}
    async with asyncio.timeout(deadline):
        while len(jobs) < len(submitted):
            for index, (job_id, source) in enumerate(submitted):
                if job_id not in jobs:
                    began = time.monotonic()
                    page = await get_json(http, f"{urls[index % len(urls)]}/v1/jobs",
                                          source["token"])
                    latencies.append(time.monotonic() - began)
                    jobs.update({job["id"]: job for job in page["jobs"]
                                 if job["state"] in ("succeeded", "failed", "cancelled")})
                    await asyncio.sleep(SAMPLE_EVERY_S)
    wall = time.monotonic() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return {"jobs": {job_id: (jobs[job_id], source) for job_id, source in submitted},
            "measured": {"wall_seconds": round(wall, 1), "list_jobs_samples": len(latencies),
                         "list_jobs_p50_ms": round(quantiles[49] * 1000, 1),
                         "list_jobs_p99_ms": round(quantiles[98] * 1000, 1),
                         "list_jobs_max_ms": round(max(latencies) * 1000, 1)}}


async def submit(http: aiohttp.ClientSession, url: str, source: dict[str, Any]
                 ) -> tuple[str, dict[str, Any]]:
    async with http.post(f"{url}/v1/images/{source['id']}/copies",
                         json={"source_region": SOURCE},
                         headers={"X-Auth-Token": source["token"]}) as response:
        body = await response.json()
        if response.status != 201:
            raise SystemExit(f"copy of {source['id']}: {response.status} {body}")
    return body["id"], source


async def get_json(http: aiohttp.ClientSession, url: str, token: str) -> Any:
    async with http.get(url, params={"limit": "100"}, headers={"X-Auth-Token": token}
                        ) as response:
        if response.status != 200:
            raise SystemExit(f"GET {url}: {response.status} {await response.text()}")
        return await response.json()


def claimed_jobs(log_path: Path) -> list[str]:
    lines = [json.loads(line) for line in log_path.read_text().splitlines()
             if line.startswith("{")]
    return [line["job_id"] for line in lines if line["message"].startswith("claimed job")]


def held(cloud: devcloud.CloudInfo, project: Project) -> Holdings:
    return holdings(cloud, project.token(), project.id, TARGET)


def check_outcome(cloud: devcloud.CloudInfo, projects: list[Project],
                  before: dict[str, Holdings], run: dict[str, Any], claims: Counter[str]
                  ) -> dict[str, Any]:
    """What the run left, from Glance, Swift and Keystone; `problems` lists every check that
    failed (empty: all held)."""
    problems: list[str] = []
    jobs = run["jobs"]
    states = Counter(job["state"] for job, _ in jobs.values())
    if states != Counter(succeeded=len(jobs)):
        problems.append(f"job states {dict(states)}: " + "; ".join(
            f"{job['id']}: {job['error']}" for job, _ in jobs.values() if job["error"]))
    attempts = Counter(job["attempts"] for job, _ in jobs.values())
    if set(attempts) != {1}:
        problems.append(f"attempts {dict(attempts)}")
    if claims != Counter(dict.fromkeys(jobs, 1)):
        problems.append(f"claims: {sum(claims.values())} for {len(jobs)} jobs, "
                        f"{[job for job, n in claims.items() if n != 1]} claimed more than once")
    expected = {job["image"]["target_image_id"]: (job, source) for job, source in jobs.values()}
    left = Holdings(TARGET, {}, {})
    for project in projects:
        made = held(cloud, project).since(before[project.name])
        mine = {i: s for i, (job, s) in expected.items() if s["project"] == project.name}
        problems += copies_problems(made, mine)
        left = merge(left, leftover(made, mine))
    trusts = live_trusts_after(projects)
    if trusts:
        problems.append(f"live trusts after the run: {trusts}")
    return {"job_states": dict(states), "claims": sum(claims.values()),
            "images_made": len(expected), "left_behind": left.counts(),
            "live_trusts": trusts, "problems": problems}


def copies_problems(made: Holdings, mine: dict[str, dict[str, Any]]) -> list[str]:
    """Each of the project's copies is there once, active, holding its source's bytes."""
    problems = []
    for image_id, source in mine.items():
        if made.images.get(image_id) != "active":
            problems.append(f"copy {image_id} of {source['id']}: {made.images.get(image_id)}")
        data = dict(made.objects.get(f"glance_{image_id}", {}))
        if data.pop(image_id, None) is None or sum(data.values()) not in (0, source["size"]):
            problems.append(f"glance_{image_id} holds {made.objects.get(f'glance_{image_id}')}")
    return problems


def leftover(made: Holdings, mine: dict[str, dict[str, Any]]) -> Holdings:
    """What the run made beyond its copies and their containers."""
    return Holdings(TARGET, {i: s for i, s in made.images.items() if i not in mine},
                    {c: o for c, o in made.objects.items()
                     if c.removeprefix("glance_") not in mine})


def merge(one: Holdings, other: Holdings) -> Holdings:
    return Holdings(TARGET, {**one.images, **other.images}, {**one.objects, **other.objects})


def live_trusts_after(projects: list[Project]) -> int:
    """The users' trusts, once none is left or TRUSTS_SETTLE_S passed (ending a trust is a
    duty run after the job's end)."""
    deadline = time.monotonic() + TRUSTS_SETTLE_S
    while True:
        count = sum(project.live_trusts() for project in projects)
        if count == 0 or time.monotonic() > deadline:
            return count
        time.sleep(0.5)


def print_summary(result: dict[str, Any], out: Path) -> None:
    say(f"{result['copies']} copies ({result['source_bytes'] / MiB:.0f} MiB) from "
        f"{result['projects']} projects through {result['serve_processes']} serve processes "
        f"in {result['wall_seconds']} s: {result['job_states']}, {result['claims']} claims")
    say(f"GET /v1/jobs during the run: p50 {result['list_jobs_p50_ms']} ms, p99 "
        f"{result['list_jobs_p99_ms']} ms, max {result['list_jobs_max_ms']} ms "
        f"({result['list_jobs_samples']} samples)")
    say(f"peak RSS: {result['peak_rss_mib']} MiB; left behind in {TARGET}: "
        f"{result['left_behind']}; live trusts: {result['live_trusts']}")
    for problem in result["problems"]:
        say(f"PROBLEM: {problem}")
    say(f"written to {out}")


if __name__ == "__main__":
    sys.exit(main())
