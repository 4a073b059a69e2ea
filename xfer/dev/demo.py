"""`xfer demo`: start the local cloud (Keystone, two Swift regions, a Glance per region,
Postgres), upload an image through RegionOne's Glance as alice, ask the xfer of RegionTwo
(found in alice's catalog) for a copy, show progress, print the target image, stop everything."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from xfer.dev import devcloud
from xfer.dev.children import stop_child
from xfer.dev.devcloud.keystone_server import XFER_SERVICE_TYPE, issue_token
from xfer.settings import MiB

SOURCE, TARGET = "RegionOne", "RegionTwo"
DEMO_IMAGE = "demo-cirros"
UPLOAD_PIECE = 4 * MiB
# What the demo image carries, and what the copy must keep.
PROPERTIES = {"os_distro": "cirros", "os_version": "0.6.2", "hw_disk_bus": "virtio",
              "architecture": "x86_64", "description": "xfer demo image ✓",
              "demo_custom_property": "kept"}
FIELDS = {"min_ram": 256, "min_disk": 1, "tags": ["demo", "xfer"]}


def say(text: str) -> None:
    print(f"xfer demo: {text}", flush=True)


def run_demo(size_mib: int = 200, openstack: str = "") -> int:
    """`openstack`: the openstack command with python-xferclient (make deps: .cli-venv), to
    show the same copy made by `openstack xfer copy create ... --wait` too."""
    state_dir = devcloud.default_state_dir().with_name(".devcloud-demo")
    say(f"starting the local cloud (Keystone, two Swift regions, two Glance, Postgres) in "
        f"{state_dir}")
    started = time.monotonic()
    cloud = devcloud.up(state_dir)
    try:
        say(f"local cloud ready in {time.monotonic() - started:.1f}s")
        with xfer_service(cloud, TARGET):
            copied = asyncio.run(_copy_an_image(cloud, size_mib * MiB))
            if copied != 0 or not openstack:
                return copied
            return copy_with_the_cli(cloud, openstack)
    finally:
        devcloud.down(state_dir)
        say("stopped the local cloud and xfer")


def copy_with_the_cli(cloud: devcloud.CloudInfo, openstack: str) -> int:
    """The same copy as a user makes it: alice's OS_* variables (what `xfer devcloud env`
    prints), RegionTwo the target, the image by name; --force, or xfer would answer with the
    copy just made (same data in the same project: deduplicated)."""
    argv = [openstack, "xfer", "copy", "create", DEMO_IMAGE, "--source-region", SOURCE,
            "--name", f"{DEMO_IMAGE}-cli", "--force", "--wait", "600",
            "-c", "id", "-c", "state", "-c", "target_image_id", "-c", "md5", "-c", "error"]
    say("the same copy with the openstack CLI (python-openstackclient and python-xferclient):")
    print(f"  $ eval \"$(xfer devcloud env --user alice --region {TARGET})\"\n"
          f"  $ openstack {' '.join(shlex.quote(word) for word in argv[1:])}", flush=True)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "XFER_"))}
    environ.update(cloud.openstack_environ("alice", TARGET))
    exit_code = subprocess.run(argv, env=environ, check=False).returncode
    say(f"openstack exited {exit_code}" + ("" if exit_code == 0 else " (docs/cli.md: exit codes)"))
    return exit_code


def listening_url(line: bytes) -> str | None:
    """The URL in the line `xfer serve` writes on stdout once it listens, {"listening": url}."""
    try:
        return str(json.loads(line)["listening"])
    except (ValueError, KeyError, TypeError):
        return None


@contextmanager
def xfer_service(cloud: devcloud.CloudInfo, region: str) -> Iterator[str]:
    """`xfer serve` for `region`, on the port the catalog lists for it."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XFER_")}
    environ.update(cloud.serving_environ(region))
    log_path = cloud.state_dir / f"xfer-serve-{region}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "xfer.cli", "serve"], env=environ,
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


def catalog_endpoint(token_body: dict[str, Any], service_type: str, region: str) -> str:
    for service in token_body["token"]["catalog"]:
        if service["type"] == service_type:
            for endpoint in service["endpoints"]:
                if endpoint["region_id"] == region and endpoint["interface"] == "public":
                    return str(endpoint["url"]).rstrip("/")
    raise SystemExit(f"no {service_type} endpoint for {region} in the catalog")


async def _random_pieces(size: int, md5: Any, sha512: Any) -> AsyncIterator[bytes]:
    for offset in range(0, size, UPLOAD_PIECE):
        piece = os.urandom(min(UPLOAD_PIECE, size - offset))
        md5.update(piece)
        sha512.update(piece)
        yield piece


async def json_reply(response: aiohttp.ClientResponse, *expected: int) -> Any:
    if response.status not in expected:
        raise SystemExit(f"{response.method} {response.url} -> {response.status}: "
                         f"{(await response.text())[:500]}")
    return await response.json() if response.content_type == "application/json" else None


async def upload_image(http: aiohttp.ClientSession, glance: str, headers: dict[str, str],
                        size: int) -> tuple[dict[str, Any], str, str]:
    """An image uploaded through Glance without Content-Length (so a DLO in Swift)."""
    body = {"name": DEMO_IMAGE, "disk_format": "raw", "container_format": "bare",
            "visibility": "private", **FIELDS, **PROPERTIES}
    async with http.post(f"{glance}/v2/images", json=body, headers=headers) as response:
        image = await json_reply(response, 201)
    md5, sha512 = hashlib.md5(usedforsecurity=False), hashlib.sha512()
    async with http.put(f"{glance}/v2/images/{image['id']}/file",
                        data=_random_pieces(size, md5, sha512),
                        headers={**headers, "Content-Type": "application/octet-stream"}
                        ) as response:
        await json_reply(response, 204)
    return await wait_active(http, glance, headers, image["id"]), md5.hexdigest(), \
        sha512.hexdigest()


async def wait_active(http: aiohttp.ClientSession, glance: str, headers: dict[str, str],
                      image_id: str, within: float = 120.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            async with http.get(f"{glance}/v2/images/{image_id}", headers=headers) as response:
                image: dict[str, Any] = await json_reply(response, 200)
            if image["status"] == "active":
                return image
            if image.get("os_glance_failed_import"):  # an import (glance-download) failed
                raise SystemExit(f"image {image_id}: import failed in "
                                 f"{image['os_glance_failed_import']}")
            await asyncio.sleep(0.3)


async def _copy_an_image(cloud: devcloud.CloudInfo, size: int) -> int:
    assert cloud.keystone is not None
    issued = issue_token(cloud.keystone, cloud.keystone.user("alice"))
    if isinstance(issued, str):
        raise SystemExit(issued)
    headers = {"X-Auth-Token": issued.token}
    source_glance = catalog_endpoint(issued.body, "image", SOURCE)
    target_glance = catalog_endpoint(issued.body, "image", TARGET)
    xfer = catalog_endpoint(issued.body, XFER_SERVICE_TYPE, TARGET)
    async with aiohttp.ClientSession() as http:
        say(f"alice uploads a {size / MiB:.0f} MiB image through {SOURCE}'s Glance "
            f"({source_glance}), without Content-Length: a DLO in {SOURCE}'s Swift")
        source, md5, sha512 = await upload_image(http, source_glance, headers, size)
        say(f"source image {source['id']}: active, checksum {source['checksum']}")
        say(f"asking the xfer of {TARGET} (catalog type {XFER_SERVICE_TYPE}: {xfer}) for a "
            f"copy from {SOURCE}")
        async with http.post(f"{xfer}/v1/images/{source['id']}/copies", headers=headers,
                             json={"source_region": SOURCE}) as response:
            job = await json_reply(response, 201)
            location = response.headers["Location"]
        say(f"job {job['id']} (POST /v1/images/{{id}}/copies -> 201, Location {location})")
        started = time.monotonic()
        job = await follow_job(http, xfer + location, headers)
        seconds = time.monotonic() - started
        if job["state"] != "succeeded":
            say(f"copy FAILED: {job['error']['code']}: {job['error']['message']}")
            return 1
        async with http.get(f"{target_glance}/v2/images/{job['image']['target_image_id']}",
                            headers=headers) as response:
            target = await json_reply(response, 200)
    return _report(source, target, md5, sha512, seconds)


async def follow_job(http: aiohttp.ClientSession, job_url: str, headers: dict[str, str],
                     quiet: bool = False) -> dict[str, Any]:
    """Poll the job until it ends, printing a progress line whenever it changes (unless
    `quiet`)."""
    last_line = ""
    while True:
        async with http.get(job_url, headers=headers) as response:
            job: dict[str, Any] = await json_reply(response, 200)
        total, done = job["bytes_total"] or 0, job["bytes_done"] or 0
        percent = 100 * done / total if total else 0.0
        step = job["image"]["step"] or "-"
        line = (f"  {job['state']:<9} step {step:<10} {done / MiB:7.1f} / {total / MiB:.1f} "
                f"MiB  {percent:5.1f}%")
        if line != last_line and not quiet:
            print(line, flush=True)
            last_line = line
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.5)


def _report(source: dict[str, Any], target: dict[str, Any], md5: str, sha512: str,
            seconds: float) -> int:
    def fields_of(image: dict[str, Any]) -> dict[str, Any]:  # tags are a set: order aside
        return {key: sorted(value) if isinstance(value := image.get(key), list) else value
                for key in (*PROPERTIES, *FIELDS)}

    kept, wanted = fields_of(target), fields_of(source)
    same_data = (target["checksum"], target["os_hash_value"]) == (md5, sha512)
    properties_kept = kept == wanted
    print(
        "\ntarget image in RegionTwo\n"
        f"  id             {target['id']} (the source is {source['id']})\n"
        f"  status         {target['status']}\n"
        f"  checksum       {target['checksum']} "
        f"({'matches' if target['checksum'] == md5 else 'DIFFERS from'} the uploaded bytes)\n"
        f"  os_hash_value  {target['os_hash_value'][:32]}... "
        f"({'matches' if target['os_hash_value'] == sha512 else 'DIFFERS'})\n"
        f"  size           {target['size']} bytes\n"
        f"  provenance     source_region={target.get('source_region')} "
        f"source_image_id={target.get('source_image_id')}\n"
        f"  kept           {json.dumps(kept, ensure_ascii=False)}"
        f" ({'all' if properties_kept else 'NOT all'} as in the source)\n"
        f"  direct_url     {target.get('direct_url')}\n"
        f"  time           {seconds:.1f}s from the request to active "
        f"({target['size'] / MiB / seconds:.1f} MiB/s, Glance's own read-back included)\n",
        flush=True)
    return 0 if target["status"] == "active" and same_data and properties_kept else 1
