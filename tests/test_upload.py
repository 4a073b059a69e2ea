"""`xfer upload`: a local file into several real Swift regions at once, read once, verified."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path

from tests.conftest import MiB, unique
from tests.sources import read_back
from xfer.clients.swift import SwiftClient
from xfer.settings import Settings, regions_variable


async def run_upload(settings: Settings, *args: str) -> tuple[int, str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XFER_")}
    environ.update(XFER_REGIONS=regions_variable(settings.regions.values()),
                   XFER_SEGMENT_SIZE=str(1 * MiB), XFER_CHUNK_SIZE=str(256 * 1024))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xfer.cli", "upload", *args, env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()




async def test_a_file_is_uploaded_to_two_regions_and_verified(
        base_settings: Settings, regions: dict[str, SwiftClient], tmp_path: Path) -> None:
    data = os.urandom(5 * MiB + 321)
    path = tmp_path / "disk.raw"
    path.write_bytes(data)
    container = unique("upload")
    status, out, err = await run_upload(
        base_settings, str(path), "--region", "RegionOne,RegionTwo", "--container", container,
        "--checksum", hashlib.md5(data).hexdigest(), "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["md5"] == hashlib.md5(data).hexdigest()
    assert result["sha512"] == hashlib.sha512(data).hexdigest()
    assert result["verification"] == "end_to_end" and result["segments"] == 6
    assert [t["region"] for t in result["targets"]] == ["RegionOne", "RegionTwo"]
    for region in ("RegionOne", "RegionTwo"):
        assert await read_back(regions[region], container, "disk.raw") == data


async def test_upload_errors_say_what_is_wrong(base_settings: Settings, tmp_path: Path) -> None:
    status, _, err = await run_upload(base_settings, str(tmp_path / "missing.img"),
                                      "--region", "RegionOne", "--container", unique("none"))
    assert status == 1 and "source_not_found" in err and "missing.img" in err
    (tmp_path / "x.img").write_bytes(b"x")
    status, _, err = await run_upload(base_settings, str(tmp_path / "x.img"),
                                      "--region", "Nowhere", "--container", unique("none"))
    assert status == 2 and "Nowhere" in err
