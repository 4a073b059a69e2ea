"""Logs are JSON lines; every line about a job carries its id; no line carries a token; the
server writes nothing else."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import sys
from pathlib import Path

import aiohttp

from tests.conftest import MiB, Service, unique
from tests.sources import payload, put_plain
from tests.test_workers import worker_environ
from xfer.clients.swift import SwiftClient
from xfer.dev.demo import listening_url
from xfer.logs import json_handler
from xfer.settings import Settings


async def test_job_lines_carry_the_job_id_and_never_a_token(
        service: Service, regions: dict[str, SwiftClient]):
    stream = io.StringIO()
    handler = json_handler(stream)
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        container = unique("logs")
        await put_plain(regions["RegionOne"], container, "image", payload(2 * MiB))
        ok = await service.copy({"source": {"region": "RegionOne", "container": container,
                                            "object": "image"},
                                 "target": {"region": "RegionTwo"}})
        failed = await service.copy({"source": {"region": "RegionOne", "container": container,
                                                "object": "missing"},
                                     "target": {"region": "RegionTwo"}})
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines and all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
    worker_lines = [line for line in lines if line["logger"] == "xfer.jobs.worker"]
    assert {line.get("job_id") for line in worker_lines} == {ok["id"], failed["id"]}
    assert any(line["message"].startswith("job succeeded") for line in worker_lines)
    assert any("source_not_found" in line["message"] for line in worker_lines)
    tokens = {(await client.credentials()).token for client in regions.values()}
    text = stream.getvalue()
    assert not any(token in text for token in tokens)


async def test_serve_writes_json_lines_only_and_one_per_client_error(settings: Settings,
                                                                      tmp_path: Path):
    """`xfer serve` as it runs: one JSON line on stdout (its URL), JSON log lines on stderr,
    one line without a traceback for each client error, whatever layer refused it."""
    environ = worker_environ(settings, "serve-logs")
    stderr = await asyncio.to_thread((tmp_path / "stderr").open, "wb")
    with stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xfer.cli", "serve", "--port", "0", env=environ,
            stdout=asyncio.subprocess.PIPE, stderr=stderr)
    try:
        assert process.stdout is not None
        async with asyncio.timeout(60):
            url = listening_url(await process.stdout.readline())
        assert url is not None
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/v1/jobs", json={"source": 1}) as response:
                assert response.status == 400
            async with http.get(f"{url}/v1/jobs/{'x' * 9000}") as response:
                assert response.status == 400 and response.content_type == "application/json"
            async with http.get(f"{url}/v1/nothing") as response:
                assert response.status == 404
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest = await process.stdout.read() if process.stdout else b""
            await process.wait()
    assert rest == b""  # the URL was the only line on stdout
    lines = [json.loads(line) for line in (tmp_path / "stderr").read_text().splitlines()]
    # the handlers' errors, and the HTTP parser's (the request line over its limit)
    client_errors = [line for line in lines
                     if line["logger"] in ("xfer.web.errors", "xfer.web.server")]
    assert len(client_errors) == 3 and all(line["level"] == "info" for line in client_errors)
    assert not [line for line in lines if "exception" in line]
