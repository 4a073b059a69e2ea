"""Issue 16, section 4: the server does not hold a connection for a client that sends nothing.
Over raw sockets (asyncio streams) against `serve` as `xfer serve` runs it, with Keystone and
short limits: a head sent slowly or not at all is closed unanswered within
XFER_HEADER_TIMEOUT, a body that stalls (chunked or with a Content-Length) after a valid token
is a JSON 408 and a close within XFER_BODY_TIMEOUT, one client's connections beyond
XFER_MAX_CLIENT_CONNECTIONS are closed as they come; meanwhile other requests are served. And
a slow but steady reader of the Glance-compatible front gets its whole image, however much
longer than those limits it takes. Every test stops by itself: each wait has a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from keystoneauth1 import session as ksa_session

from tests.conftest import MiB, Service, keystone_settings, running_service
from tests.test_cloud_keystone_glance import upload, user_session
from tests.test_glance_download import SOURCE, front_settings  # noqa: F401 (a fixture)
from xfer.dev import devcloud
from xfer.settings import Settings
from xfer.web.server import ClientConnections

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 1.5
PER_CLIENT = 8
# How late a close may come after its bound on two busy cores (load 10 and more seen).
SLACK = 2.5
LIMITS = {"header_timeout": HEADER_TIMEOUT, "body_timeout": BODY_TIMEOUT,
          "max_client_connections": PER_CLIENT}


def test_each_client_holds_at_most_its_limit_and_the_log_says_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    clients = ClientConnections(limit=2)
    first, second, third, other = object(), object(), object(), object()
    assert clients.admit(first, "10.0.0.1") and clients.admit(second, "10.0.0.1")
    assert not clients.admit(third, "10.0.0.1") and not clients.admit(object(), "10.0.0.1")
    assert clients.admit(other, "10.0.0.2")  # another client has its own limit
    assert len([r for r in caplog.records if "10.0.0.1 holds 2" in r.getMessage()]) == 1
    clients.release(third)  # never admitted: nothing to give back
    assert clients.holding("10.0.0.1") == 2
    clients.release(first)
    assert clients.holding("10.0.0.1") == 1 and clients.admit(third, "10.0.0.1")
    for connection in (second, third, other):
        clients.release(connection)
    assert clients.holding("10.0.0.1") == clients.holding("10.0.0.2") == 0
    unlimited = ClientConnections(limit=0)
    assert all(unlimited.admit(object(), "10.0.0.1") for _ in range(1000))


@pytest.fixture(scope="module")
def tokens(cloud: devcloud.CloudInfo) -> Iterator[dict[str, str]]:
    """alice's (a member: image copies) and admin's (object copies) tokens."""
    sessions = {name: user_session(cloud, name) for name in ("alice", "admin")}
    yield {name: str(session.get_token()) for name, session in sessions.items()}
    for session in sessions.values():
        session.session.close()


@pytest.fixture
async def xfer(settings: Settings, cloud: devcloud.CloudInfo) -> AsyncIterator[Service]:
    async with running_service(keystone_settings(settings, cloud, "RegionTwo", **LIMITS)
                               ) as running:
        yield running


async def connect(service: Service, client: str = "127.0.0.1"
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = service.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port), local_addr=(client, 0))


async def until_closed(reader: asyncio.StreamReader, deadline: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (time.monotonic()).
    A connection closed before the server read what was sent on it is reset: a close too."""
    received = b""
    async with asyncio.timeout(deadline):
        try:
            while piece := await reader.read(65536):
                received += piece
        except ConnectionResetError:
            pass
    return received, time.monotonic()


async def served(service: Service, token: str, client: str = "127.0.0.1") -> int:
    """The status of an ordinary request (GET /v1/regions) from `client`."""
    connector = aiohttp.TCPConnector(local_addr=(client, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(f"{service.url}/v1/regions", headers={"X-Auth-Token": token},
                            timeout=aiohttp.ClientTimeout(total=20)) as response:
            await response.read()
            return response.status


def head(method: str, path: str, token: str, *more: str) -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: xfer", f"X-Auth-Token: {token}",
                        "Content-Type: application/json", *more, "", ""]).encode()


def json_reply(received: bytes) -> tuple[int, dict[str, str], dict]:
    status_and_headers, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = status_and_headers.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in
               (line.partition(":") for line in header_lines)}
    assert headers["content-type"].startswith("application/json"), received[:300]
    return int(status_line.split()[1]), headers, json.loads(body)


@pytest.mark.integration
async def test_a_head_sent_slowly_or_not_at_all_is_closed_unanswered(
        xfer: Service, tokens: dict[str, str]) -> None:
    silent_reader, silent = await connect(xfer)
    slow_reader, slow = await connect(xfer)
    began = time.monotonic()

    async def trickle() -> None:  # a byte every 0.1 s, never the end of the head
        for byte in b"GET /v1/regions HTTP/1.1\r\nHost: xfer\r\nX-Slow: " + b"x" * 1000:
            slow.write(bytes([byte]))
            await asyncio.sleep(0.1)

    trickling = asyncio.create_task(trickle())
    try:
        assert await served(xfer, tokens["alice"]) == 200  # meanwhile
        for reader in (silent_reader, slow_reader):
            received, closed_at = await until_closed(reader, HEADER_TIMEOUT + SLACK + 5)
            closed_after = closed_at - began
            assert received == b""  # closed, unanswered
            assert HEADER_TIMEOUT - 0.2 <= closed_after <= HEADER_TIMEOUT + SLACK, closed_after
    finally:
        trickling.cancel()
        silent.close()
        slow.close()


@pytest.mark.integration
@pytest.mark.parametrize("framing", ["chunked", "content-length"])
async def test_a_body_that_stalls_after_a_valid_token_is_a_408_and_a_close(
        xfer: Service, tokens: dict[str, str], framing: str) -> None:
    if framing == "chunked":  # an image copy, begun as chunks; the last never comes
        request = head("POST", f"/v1/images/{uuid.uuid4()}/copies", tokens["alice"],
                       "Transfer-Encoding: chunked") + b'9\r\n{"source_\r\n'
    else:  # an object copy of 200 bytes, of which 20 come
        request = head("POST", "/v1/jobs", tokens["admin"], "Content-Length: 200") + b"{" * 20
    reader, writer = await connect(xfer)
    try:
        writer.write(request)
        began = time.monotonic()
        assert await served(xfer, tokens["alice"]) == 200  # meanwhile
        received, closed_at = await until_closed(reader, BODY_TIMEOUT + SLACK + 10)
        closed_after = closed_at - began
    finally:
        writer.close()
    status, headers, reply = json_reply(received)
    assert (status, reply["error"]["code"], reply["error"]["field"]) == (408, "body_timeout",
                                                                         "body"), reply
    assert headers["connection"].lower() == "close"
    # after the token check (Keystone) the body has its whole bound
    assert BODY_TIMEOUT - 0.2 <= closed_after <= BODY_TIMEOUT + SLACK, closed_after


@pytest.mark.integration
async def test_one_clients_connections_beyond_its_limit_are_closed_as_they_come(
        xfer: Service, tokens: dict[str, str]) -> None:
    """200 connections from 127.0.0.1 that begin a head and stall: PER_CLIENT are held until
    the header timeout, the others closed at once; 127.0.0.2 is served meanwhile, and
    127.0.0.1 again once its connections are gone."""
    connected, all_made = 0, asyncio.Event()

    async def slow_head() -> tuple[bytes, float]:
        """What the connection got and how long it lasted from the moment it was made (some
        wait for the listen queue: 200 is above its 128)."""
        nonlocal connected
        reader, writer = await connect(xfer)
        made = time.monotonic()
        connected += 1
        if connected == 200:
            all_made.set()
        try:
            writer.write(b"GET /v1/regions HTTP/1.1\r\nHost: xfer\r\n")  # and nothing more
            received, closed_at = await until_closed(reader, HEADER_TIMEOUT + SLACK + 10)
            return received, closed_at - made
        finally:
            writer.close()

    heads = [asyncio.create_task(slow_head()) for _ in range(200)]
    try:
        async with asyncio.timeout(30):
            await all_made.wait()
        assert await served(xfer, tokens["alice"], client="127.0.0.2") == 200
        ends = await asyncio.gather(*heads)
    finally:
        for head_task in heads:
            head_task.cancel()
    assert all(received == b"" for received, _ in ends)
    lasted = sorted(seconds for _, seconds in ends)
    at_once = [t for t in lasted if t < HEADER_TIMEOUT - 0.2]
    held = [t for t in lasted if t >= HEADER_TIMEOUT - 0.2]
    assert len(held) == PER_CLIENT and len(at_once) == 200 - PER_CLIENT, lasted
    assert max(held) <= HEADER_TIMEOUT + SLACK and max(at_once) < 1.0, lasted
    assert await served(xfer, tokens["alice"]) == 200


# --- the Glance-compatible front: a slow but steady reader is not cut by these limits --------

SMALL_SOCKET_BUFFER = 16 * 1024


@pytest.mark.integration
async def test_a_slow_but_steady_reader_of_the_front_gets_the_whole_image(
        front_settings: Settings, cloud: devcloud.CloudInfo) -> None:  # noqa: F811
    alice: ksa_session.Session = user_session(cloud, "alice")
    try:
        data = os.urandom(6 * MiB)
        image = await asyncio.to_thread(upload, alice, SOURCE, data)
        token = await asyncio.to_thread(alice.get_token)
    finally:
        alice.session.close()
    async with running_service(front_settings.with_overrides(**LIMITS)) as front:
        host, port = front.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_SOCKET_BUFFER)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            writer.write(head("GET", f"/v2/images/{image['id']}/file", str(token),
                              "Connection: close"))
            began = time.monotonic()
            received = b""
            async with asyncio.timeout(120):
                while piece := await reader.read(16 * 1024):  # about 1.6 MB/s at most
                    received += piece
                    await asyncio.sleep(0.01)
            took = time.monotonic() - began
        finally:
            writer.close()
    status_and_headers, _, body = received.partition(b"\r\n\r\n")
    assert status_and_headers.startswith(b"HTTP/1.1 200"), status_and_headers
    assert body == data
    assert took > 2 * max(HEADER_TIMEOUT, BODY_TIMEOUT), took  # longer than every limit
