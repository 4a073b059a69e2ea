"""Issues 9 and 10: the same Glance image copied RegionOne -> RegionTwo, in one cloud
(Keystone, Swift with keystoneauth, a Glance per region), as the same user, in turns, by
- `glance-download`: Glance's own import, reading RegionOne's Glance;
- `glance-download-via-xfer`: the same stock import, reading through xfer's Glance-compatible
  read endpoint (catalog region RegionOne-via-xfer: an xfer serving RegionOne), which reads
  the Swift object with parallel ranged GETs and verifies it before its last byte;
- `xfer`: xfer's own image flow (the xfer of RegionTwo copies Swift to Swift and registers).

For the run through xfer, xfer's /metrics says how long its stream took: the time Glance spent
staging the data; the rest is Glance's own store upload and bookkeeping.

Each run is timed from the request to the target image being `active` (xfer: its job
succeeded, which it ends only once Glance has read the data back and activated the image with
the source's checksum and os_hash_value). What each kept of the source's fields and
properties, and whether the copy's checksum equals the source's, is recorded beside it.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.runs import GiB, say
from xfer.dev import demo, devcloud
from xfer.dev.devcloud.keystone_server import XFER_SERVICE_TYPE, issue_token, via_xfer

SOURCE, TARGET = "RegionOne", "RegionTwo"
ACTIVE_TIMEOUT_S = 900.0
# The fields and properties a copy should keep (demo.PROPERTIES and demo.FIELDS are on it).
KEPT = (*demo.PROPERTIES, *demo.FIELDS, "name")


def glance_comparison(state_dir: Path, size: int, repeat: int,
                      secure_hash: bool = True) -> dict[str, Any]:
    """`secure_hash`: Glance's `do_secure_hash` (default True: Glance reads a location added
    by xfer's flow back whole to compute its checksum and hash; False: it records the
    os_hash_value xfer hands it in `validation_data` and computes no checksum (None), trusting
    xfer's verification)."""
    say(f"glance: starting a cloud with Keystone and Glance in {state_dir} "
        f"(do_secure_hash {secure_hash})")
    cloud = devcloud.up(state_dir, glance_defaults=(("do_secure_hash", str(secure_hash).lower()),))
    try:
        # RegionTwo's xfer runs the flow; RegionOne's fronts RegionOne for glance-download
        with demo.xfer_service(cloud, TARGET), demo.xfer_service(cloud, SOURCE) as front:
            compared = asyncio.run(_compare(cloud, size, repeat, front))
            return {**compared, "do_secure_hash": secure_hash}
    finally:
        devcloud.down(state_dir)
        for cluster in cloud.clusters.values():  # the objects (GiBs); logs stay
            shutil.rmtree(cluster.devices_dir, ignore_errors=True)


COPIERS = ("glance-download", "glance-download-via-xfer", "xfer")


async def _compare(cloud: devcloud.CloudInfo, size: int, repeat: int, front: str
                   ) -> dict[str, Any]:
    assert cloud.keystone is not None
    issued = issue_token(cloud.keystone, cloud.keystone.user("alice"))
    if isinstance(issued, str):
        raise RuntimeError(issued)
    headers = {"X-Auth-Token": issued.token}
    source_glance = demo.catalog_endpoint(issued.body, "image", SOURCE)
    target_glance = demo.catalog_endpoint(issued.body, "image", TARGET)
    xfer = demo.catalog_endpoint(issued.body, XFER_SERVICE_TYPE, TARGET)
    runs: list[dict[str, Any]] = []
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        say(f"glance: uploading a {size / GiB:.2f} GiB image through {SOURCE}'s Glance")
        source, _, _ = await demo.upload_image(http, source_glance, headers, size)
        for attempt in range(repeat):
            for copier in COPIERS:
                if copier == "xfer":
                    run = await _xfer(http, xfer, target_glance, headers, source)
                elif copier == "glance-download":
                    run = await _glance_download(http, target_glance, headers, source, SOURCE)
                else:
                    before = await _stream_totals(http, front)
                    run = await _glance_download(http, target_glance, headers, source,
                                                 via_xfer(SOURCE))
                    run["xfer_stream"] = _stream_delta(before, await _stream_totals(http, front))
                run.update(copier=copier, attempt=attempt, size=size)
                staged = run.get("xfer_stream", {}).get("seconds")
                say(f"glance: {copier:<24} {run['seconds']:6.1f} s  {run['MB/s']:6.1f} MB/s  "
                    f"checksum {_checksum_word(run)}  kept "
                    f"{run['kept']}/{len(KEPT)}"
                    + ("" if staged is None else f"  xfer streamed it in {staged:.1f} s"))
                runs.append(run)
    return {"source": {"size": size, "id": source["id"]}, "runs": runs,
            "summary": _summary(runs)}


def _checksum_word(run: dict[str, Any]) -> str:
    if not run["same_checksum"]:
        return "DIFFERENT"
    return "same" if run.get("checksum_computed", True) else "none (hash same)"


def _measured(source: dict[str, Any], target: dict[str, Any], seconds: float
              ) -> dict[str, Any]:
    def value(image: dict[str, Any], key: str) -> Any:  # tags are a set: order aside
        found = image.get(key)
        return sorted(found) if isinstance(found, list) else found

    kept = [key for key in KEPT if value(target, key) == value(source, key)]
    return {"seconds": round(seconds, 2), "MB/s": round(source["size"] / seconds / 1e6, 1),
            # a Glance with do_secure_hash False computes no checksum for a location's image:
            # the same content is the same os_hash_value and no checksum (images/registered.py)
            "same_checksum": target.get("os_hash_value") == source["os_hash_value"]
            and target.get("checksum") in (source["checksum"], None),
            "checksum_computed": target.get("checksum") is not None,
            "kept": len(kept), "dropped": sorted(set(KEPT) - set(kept)),
            "target_id": target["id"]}


async def _glance_download(http: aiohttp.ClientSession, target_glance: str,
                           headers: dict[str, str], source: dict[str, Any], region: str
                           ) -> dict[str, Any]:
    """Stock glance-download of `source` from catalog region `region`, request to active."""
    body = {"name": source["name"], "disk_format": source["disk_format"],
            "container_format": source["container_format"]}
    started = time.monotonic()
    async with http.post(f"{target_glance}/v2/images", json=body, headers=headers) as response:
        image = await demo.json_reply(response, 201)
    method = {"method": {"name": "glance-download", "glance_image_id": source["id"],
                         "glance_region": region}}
    async with http.post(f"{target_glance}/v2/images/{image['id']}/import", json=method,
                         headers=headers) as response:
        await demo.json_reply(response, 202)
    target = await demo.wait_active(http, target_glance, headers, image["id"],
                                    within=ACTIVE_TIMEOUT_S)
    run = _measured(source, target, time.monotonic() - started)
    await _delete(http, target_glance, headers, image["id"])
    return run


async def _xfer(http: aiohttp.ClientSession, xfer: str, target_glance: str,
                headers: dict[str, str], source: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    # force: the earlier attempts' copies are deleted, but never count on it
    async with http.post(f"{xfer}/v1/images/{source['id']}/copies", headers=headers,
                         json={"source_region": SOURCE, "force": True}) as response:
        await demo.json_reply(response, 201)
        location = response.headers["Location"]
    job = await demo.follow_job(http, xfer + location, headers, quiet=True)
    seconds = time.monotonic() - started
    if job["state"] != "succeeded":
        raise RuntimeError(f"xfer's image copy failed: {job['error']}")
    image_id = job["image"]["target_image_id"]
    async with http.get(f"{target_glance}/v2/images/{image_id}", headers=headers) as response:
        target = await demo.json_reply(response, 200)
    run = _measured(source, target, seconds)
    run["job"] = {k: job.get(k) for k in ("verification", "retries", "layout", "segments_total")}
    await _delete(http, target_glance, headers, image_id)
    return run


async def _delete(http: aiohttp.ClientSession, glance: str, headers: dict[str, str],
                  image_id: str) -> None:
    async with http.delete(f"{glance}/v2/images/{image_id}", headers=headers) as response:
        await demo.json_reply(response, 204)


STREAM_METRICS = {"seconds": "xfer_image_stream_duration_seconds_sum",
                  "bytes": "xfer_image_stream_bytes_total",
                  "ranged_reads": "xfer_image_stream_ranged_reads_total",
                  "streams": "xfer_image_stream_duration_seconds_count"}


async def _stream_totals(http: aiohttp.ClientSession, xfer: str) -> dict[str, float]:
    async with http.get(f"{xfer}/metrics") as response:
        text = await response.text()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines()
                  if line and not line.startswith("#"))
    return {key: float(values.get(name, 0)) for key, name in STREAM_METRICS.items()}


def _stream_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What xfer's stream did during one run: its seconds are Glance's staging time."""
    delta = {key: round(after[key] - before[key], 2) for key in STREAM_METRICS}
    seconds = delta["seconds"]
    delta["MB/s"] = round(delta["bytes"] / seconds / 1e6, 1) if seconds else 0.0
    return delta


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def median(copier: str, pick: Any = lambda run: float(run["MB/s"])) -> float:
        values = sorted(float(pick(run)) for run in runs if run["copier"] == copier)
        return values[len(values) // 2]

    glance, xfer = median("glance-download"), median("xfer")
    through = median("glance-download-via-xfer")
    total = median("glance-download-via-xfer", lambda run: float(run["seconds"]))
    staged = median("glance-download-via-xfer",
                    lambda run: float(run["xfer_stream"]["seconds"]))
    return {"glance-download MB/s": glance, "xfer MB/s": xfer,
            "ratio": round(xfer / glance, 2) if glance else None,
            "glance-download-via-xfer MB/s": through,
            "via-xfer ratio": round(through / glance, 2) if glance else None,
            # through xfer: seconds of the whole import, of which xfer streamed (staging)
            "via-xfer seconds": total, "via-xfer staging seconds": staged}
