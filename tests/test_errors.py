"""Every error reply is JSON with the right 4xx, and one log line: what aiohttp's protocol
handler refuses before any middleware runs (sent here over a raw loopback socket), what the
handlers refuse, and an exception nobody expected."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest

from tests.conftest import Service
from tests.test_observe import api_only
from xfer.logs import json_handler
from xfer.settings import Settings
from xfer.web import api

GOOD = {"source": {"region": "RegionOne", "container": "c", "object": "o"},
        "target": {"region": "RegionTwo"}}


async def raw_exchange(service: Service, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; (status, headers, body) of the reply, read to the close."""
    address = urlsplit(service.url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            reply = await reader.read()
    finally:
        writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in
               (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def json_error(headers: dict[str, str], body: bytes) -> dict:
    assert headers["content-type"].startswith("application/json"), headers
    document = json.loads(body)
    assert set(document) == {"error"} and {"code", "message"} <= set(document["error"])
    return document["error"]


@pytest.fixture
def json_log() -> Iterator[Callable[[], list[dict]]]:
    """The service's log as xfer writes it (JSON lines): a function giving the lines so far
    and forgetting them."""
    stream = io.StringIO()
    handler = json_handler(stream)
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def lines() -> list[dict]:
        text = stream.getvalue()
        stream.seek(0)
        stream.truncate()
        return [json.loads(line) for line in text.splitlines()]

    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


def error_lines(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["logger"] in ("xfer.web.errors", "xfer.web.server")]


MALFORMED = {
    "request line too long": b"GET /v1/jobs/" + b"0" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "header too long": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
    "header name too long": b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"N" * 9000 + b": v\r\n\r\n",
    "too many headers": b"GET /healthz HTTP/1.1\r\n"
                        + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n",
    "no HTTP": b"HELLO THERE\r\n\r\n",
    "bad version": b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
    "bad method": b"G@T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "NUL in the target": b"GET /v1/jobs/\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad header line": b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    "bad content length": b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "two content lengths": b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                           b"Content-Length: 2\r\n\r\n{}",
    "bad chunk": b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"zz\r\n{}\r\n0\r\n\r\n",
}


async def test_malformed_http_is_answered_in_json_with_one_log_line(
        settings: Settings, json_log: Callable[[], list[dict]]):
    async with api_only(settings) as (service, _):
        json_log()
        for case, request in MALFORMED.items():
            status, headers, body = await raw_exchange(service, request)
            assert 400 <= status < 500, case
            error = json_error(headers, body)
            assert error["code"] in ("bad_http_request", "invalid_request"), (case, error)
            assert "Traceback" not in body.decode()
            lines = json_log()
            assert len(error_lines(lines)) == 1 and error_lines(lines)[0]["level"] == "info", case
            assert not [line for line in lines if "exception" in line], case
            assert not [line for line in lines if line["logger"].startswith("aiohttp")], case


JOB_IDS = ["0" * 8000, "%00", "%FF%FE", "%ED%A0%80", "..%2F..", "%2E%2E", "%C3%A9" * 100,
           "{00000000-0000-0000-0000-000000000000", "urn:uuid:" + "0" * 32, "0" * 31, "-" * 36]


async def test_any_job_id_that_is_no_job_is_a_json_404(settings: Settings):
    async with api_only(settings) as (service, _):
        for job_id in JOB_IDS:
            for method, suffix in [("GET", ""), ("POST", "/cancel"), ("GET", "/events")]:
                request = (f"{method} /v1/jobs/{job_id}{suffix} HTTP/1.1\r\nHost: x\r\n"
                           "Connection: close\r\n\r\n")
                status, headers, body = await raw_exchange(service, request.encode())
                assert status == 404, (job_id[:20], suffix, body)
                assert json_error(headers, body)["code"] == "not_found"


async def test_replies_carry_the_request_id_and_client_errors_log_one_line(
        service: Service, json_log: Callable[[], list[dict]]):
    async with service.http.post(f"{service.url}/v1/jobs",
                                 json={**GOOD, "segment_size": 10**30}) as response:
        assert response.status == 400
        assert (await response.json())["error"]["field"] == "segment_size"
        request_id = response.headers["X-Request-Id"]
    async with service.http.get(f"{service.url}/healthz") as response:
        assert response.headers["X-Request-Id"] != request_id
    (logged,) = error_lines(json_log())
    assert logged["request_id"] == request_id and "exception" not in logged
    assert "segment_size" in logged["message"] and "400" in logged["message"]


async def test_an_unexpected_error_is_a_json_500_naming_the_request(
        settings: Settings, json_log: Callable[[], list[dict]]):
    async def broken(job_id: uuid.UUID) -> None:
        raise RuntimeError("a bug")

    job = uuid.uuid4()
    async with api_only(settings) as (service, runner):
        runner.app[api.STORE].job_detail = broken  # type: ignore[method-assign]
        json_log()
        async with service.http.get(f"{service.url}/v1/jobs/{job}") as response:
            assert response.status == 500
            error = (await response.json())["error"]
            request_id = response.headers["X-Request-Id"]
    assert error["code"] == "internal_error" and request_id in error["message"]
    assert "RuntimeError" not in error["message"] and "a bug" not in error["message"]
    lines = json_log()
    (logged,) = error_lines(lines)
    assert [line for line in lines if "exception" in line] == [logged]  # the one line
    assert logged["level"] == "error" and "RuntimeError: a bug" in logged["exception"]
    assert (logged["request_id"], logged["job_id"]) == (request_id, str(job))
