"""`xfer demo`: start the local cloud, put a sample image in RegionOne as an SLO, copy it to
RegionTwo through xfer's REST API, show progress, print the verified result, stop everything."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from xfer.clients.swift import SwiftClient
from xfer.dev import devcloud
from xfer.dev.children import stop_child
from xfer.proto import swift
from xfer.settings import MiB, RegionConfig, from_environ

CONTAINER = "images"
IMAGE = "demo-image.raw"
SOURCE_SEGMENT = 20 * MiB


def say(text: str) -> None:
    print(f"xfer demo: {text}", flush=True)


def run_demo(size_mib: int = 200) -> int:
    state_dir = devcloud.default_state_dir().with_name(".devcloud-demo")
    say(f"starting the local cloud (two Swift regions and Postgres) in {state_dir}")
    started = time.monotonic()
    # Swift and Postgres only: the demo copies between Swift regions with tempauth credentials.
    cloud = devcloud.up(state_dir, openstack=False)
    try:
        say(f"local cloud ready in {time.monotonic() - started:.1f}s")
        with xfer_service(cloud) as url:
            return asyncio.run(_copy_through_api(cloud, url, size_mib * MiB))
    finally:
        devcloud.down(state_dir)
        say("stopped the local cloud and xfer")


def listening_url(line: bytes) -> str | None:
    """The URL in the line `xfer serve` writes on stdout once it listens, {"listening": url}."""
    try:
        return str(json.loads(line)["listening"])
    except (ValueError, KeyError, TypeError):
        return None


@contextmanager
def xfer_service(cloud: devcloud.CloudInfo) -> Iterator[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XFER_")}
    environ.update(cloud.environ())
    log_path = cloud.state_dir / "xfer-serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "xfer.cli", "serve", "--port", "0"], env=environ,
            stdout=subprocess.PIPE, stderr=log)
    try:
        assert process.stdout is not None
        url = listening_url(process.stdout.readline())
        if url is None:
            raise SystemExit(f"xfer serve did not start; see {log_path}:\n"
                             + Path(log_path).read_text()[-2000:])
        say(f"xfer serve (PID {process.pid}) listening on {url}; its log: {log_path}")
        yield url
    finally:
        stop_child(process, 20)


async def _upload_source(client: SwiftClient, size: int) -> tuple[str, str]:
    """Random bytes as an SLO in RegionOne; returns (md5, sha512) of the content."""
    await client.put_container(CONTAINER)
    segment_container = CONTAINER + "_segments"
    await client.put_container(segment_container)
    whole_md5, whole_sha512 = hashlib.md5(usedforsecurity=False), hashlib.sha512()
    manifest = []
    for index, offset in enumerate(range(0, size, SOURCE_SEGMENT)):
        chunk = os.urandom(min(SOURCE_SEGMENT, size - offset))
        whole_md5.update(chunk)
        whole_sha512.update(chunk)
        etag = hashlib.md5(chunk, usedforsecurity=False).hexdigest()
        name = f"{IMAGE}/{index:08d}"
        await client.put_object(segment_container, name, chunk, etag)
        manifest.append(swift.ManifestSegment(f"/{segment_container}/{name}", etag, len(chunk)))
    await client.put_manifest(CONTAINER, IMAGE, manifest)
    return whole_md5.hexdigest(), whole_sha512.hexdigest()


async def _copy_through_api(cloud: devcloud.CloudInfo, url: str, size: int) -> int:
    settings = from_environ(cloud.environ())
    async with aiohttp.ClientSession() as http:
        source = SwiftClient(http, settings.region("RegionOne"))
        say(f"uploading a {size / MiB:.0f} MiB sample image to RegionOne as an SLO "
            f"({SOURCE_SEGMENT // MiB} MiB segments)")
        md5, sha512 = await _upload_source(source, size)
        say(f"source {CONTAINER}/{IMAGE}: md5 {md5}")
        body = {"source": {"region": "RegionOne", "container": CONTAINER, "object": IMAGE},
                "target": {"region": "RegionTwo"}, "checksum": md5}
        async with http.post(f"{url}/v1/jobs", json=body) as response:
            job = await response.json()
            if response.status != 201:
                say(f"job refused: {job}")
                return 1
            location = response.headers["Location"]
        say(f"submitted job {job['id']} (POST /v1/jobs -> 201, Location {location})")
        job = await _follow(http, url + location)
        return _report(job, settings.region("RegionTwo"), md5, sha512,
                       await _target_head(http, settings.region("RegionTwo")))


async def _follow(http: aiohttp.ClientSession, job_url: str) -> dict[str, Any]:
    last_line = ""
    while True:
        async with http.get(job_url) as response:
            job: dict[str, Any] = await response.json()
        total, done = job["bytes_total"] or 0, job["bytes_done"] or 0
        percent = 100 * done / total if total else 0.0
        line = f"  {job['state']:<9} {done / MiB:7.1f} / {total / MiB:.1f} MiB  {percent:5.1f}%"
        if line != last_line:
            print(line, flush=True)
            last_line = line
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.5)


async def _target_head(http: aiohttp.ClientSession, region: RegionConfig) -> swift.ObjectHead:
    return await SwiftClient(http, region).head_object(CONTAINER, IMAGE)


def _report(job: dict[str, Any], target: RegionConfig, md5: str, sha512: str,
            head: swift.ObjectHead) -> int:
    if job["state"] != "succeeded":
        say(f"copy FAILED: {job['error']['code']}: {job['error']['message']}")
        return 1
    seconds = (datetime.fromisoformat(job["finished_at"])
               - datetime.fromisoformat(job["started_at"])).total_seconds()
    size = job["bytes_total"]
    verified = job["md5"] == md5 and job["sha512"] == sha512 and head.size == size
    print(
        "\nresult\n"
        f"  target       RegionTwo {target.auth_url.split('/auth')[0]} {CONTAINER}/{IMAGE}\n"
        f"  layout       {job['layout']} of {job['segments_total']} segments, "
        f"ETag {job['etag']}\n"
        f"  size         {size} bytes ({size / MiB:.1f} MiB); target HEAD says {head.size}\n"
        f"  md5          {job['md5']} ({'matches' if job['md5'] == md5 else 'DIFFERS from'} "
        "the source's)\n"
        f"  sha512       {job['sha512'][:32]}... "
        f"({'matches' if job['sha512'] == sha512 else 'DIFFERS'})\n"
        f"  time         {seconds:.2f}s\n"
        f"  throughput   {size / MiB / seconds:.1f} MiB/s\n"
        f"  verified     {'yes' if verified else 'NO'}\n", flush=True)
    return 0 if verified else 1
