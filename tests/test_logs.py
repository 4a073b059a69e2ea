"""Logs are JSON lines; every line about a job carries its id; no line carries a token."""

from __future__ import annotations

import io
import json
import logging

from tests.conftest import MiB, Service, unique
from tests.sources import payload, put_plain
from xfer.clients.swift import SwiftClient
from xfer.logs import json_handler


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
