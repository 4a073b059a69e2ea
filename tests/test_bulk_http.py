"""The bulk data path's HTTP/1.1 client (clients/bulk_http.py) against real Swift, and, for
framings Swift does not send (chunked bodies, an idle connection closed by the server), an
aiohttp web server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvloop
from aiohttp import web

from tests.conftest import MiB, md5, unique
from tests.sources import payload, put_plain, read_back
from xfer.clients import bulk_link
from xfer.clients.bulk_http import BulkHttp, RangeProgress
from xfer.clients.swift import SwiftClient
from xfer.clients.transport import http_session
from xfer.dev.devcloud.tls import issue, make_ca
from xfer.errors import IntegrityError, RemoteError, SourceChanged, TransportError
from xfer.proto.http import Request
from xfer.settings import Settings
from xfer.tls import client_context


async def test_ranged_gets_land_in_place_on_one_kept_connection(
        regions: dict[str, SwiftClient]) -> None:
    client = regions["RegionOne"]
    container, name, data = unique("bulk-get"), "o", payload(3 * MiB + 17)
    await put_plain(client, container, name, data)
    etag = (await client.head_object(container, name)).etag
    made = client.bulk.connections_made
    for start, length in ((0, MiB), (MiB, 2 * MiB), (3 * MiB, 17), (5, 1)):
        buffer = memoryview(bytearray(length))
        progress = RangeProgress()
        await client.read_range_into(container, name, start, len(data), buffer, if_match=etag,
                                     progress=progress)
        assert bytes(buffer) == data[start:start + length] and progress.filled == length
    assert client.bulk.connections_made - made <= 1  # kept alive from one GET to the next


async def test_error_replies_are_read_whole_and_keep_the_connection(
        regions: dict[str, SwiftClient]) -> None:
    client = regions["RegionOne"]
    container, name, data = unique("bulk-err"), "o", payload(1000)
    await put_plain(client, container, name, data)
    made = client.bulk.connections_made
    with pytest.raises(SourceChanged):  # 412: another version than the one pinned
        await client.read_range_into(container, name, 0, 1000, memoryview(bytearray(10)),
                                     if_match="0" * 32)
    with pytest.raises(RemoteError) as missing:
        await client.read_range_into(container, "nothing", 0, 10, memoryview(bytearray(10)))
    assert missing.value.status == 404
    buffer = memoryview(bytearray(10))
    await client.read_range_into(container, name, 990, 1000, buffer)
    assert bytes(buffer) == data[990:]
    assert client.bulk.connections_made - made <= 1


async def reused_buffer(data: bytes, view_size: int) -> AsyncIterator[memoryview]:
    """`data` as views of one buffer that is overwritten as soon as the next view is asked
    for, as the engine's chunk pool does."""
    buffer = bytearray(view_size)
    for start in range(0, len(data), view_size):
        piece = data[start:start + view_size]
        buffer[:len(piece)] = piece
        yield memoryview(buffer)[:len(piece)]
        buffer[:] = bytes(view_size)  # the next chunk's bytes would land here


async def put_and_read(client: SwiftClient, size: int) -> None:
    container, name, data = unique("bulk-put"), "o", payload(size)
    await client.put_container(container)
    stored = await client.put_streamed(container, name, reused_buffer(data, 3 * MiB + 5),
                                       len(data), md5(data))
    assert stored == md5(data)
    assert await read_back(client, container, name) == data


async def test_a_streamed_put_sends_each_view_before_its_buffer_is_reused(
        regions: dict[str, SwiftClient]) -> None:
    await put_and_read(regions["RegionTwo"], 7 * MiB + 3)  # RegionTwo takes 8 MiB at most


def test_the_same_holds_on_uvloop_whose_transport_keeps_what_it_is_given(
        base_settings: Settings) -> None:
    async def main() -> None:
        async with http_session(base_settings) as http:
            await put_and_read(SwiftClient(http, base_settings.regions["RegionTwo"]), 6 * MiB)

    uvloop.run(main())


async def test_waiting_for_the_next_view_is_not_a_stall(base_settings: Settings) -> None:
    data = os.urandom(2 * MiB)

    async def slow() -> AsyncIterator[memoryview]:
        for start in (0, MiB):
            yield memoryview(data)[start:start + MiB]
            await asyncio.sleep(0.6)  # longer than the read timeout below

    async with http_session(base_settings.with_overrides(read_timeout=0.4)) as http:
        client = SwiftClient(http, base_settings.regions["RegionTwo"])
        container = unique("bulk-slow")
        await client.put_container(container)
        assert await client.put_streamed(container, "o", slow(), len(data), md5(data)) == md5(data)


async def test_a_streamed_body_of_the_wrong_length_is_refused(
        regions: dict[str, SwiftClient]) -> None:
    client = regions["RegionTwo"]
    container = unique("bulk-len")
    await client.put_container(container)
    data = payload(1000)
    with pytest.raises(IntegrityError):
        await client.put_streamed(container, "o", reused_buffer(data, 300), 999, None)
    with pytest.raises(IntegrityError):
        await client.put_streamed(container, "o", reused_buffer(data, 300), 1001, None)


# --- framings Swift does not send: a web server of our own -------------------------------

@pytest.fixture
async def web_server() -> AsyncIterator[str]:
    body = bytes(range(256)) * 1000

    async def chunked(request: web.Request) -> web.StreamResponse:
        reply = web.StreamResponse(status=int(request.query.get("status", 206)))
        reply.enable_chunked_encoding()
        await reply.prepare(request)
        for start in range(0, len(body), 10_000):
            await reply.write(body[start:start + 10_000])
        await reply.write_eof()
        return reply

    async def fixed(request: web.Request) -> web.Response:
        return web.Response(body=body, status=206)

    app = web.Application()
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/fixed", fixed)
    runner = web.AppRunner(app, keepalive_timeout=0.05)  # closes idle connections at once
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_chunked_body_is_undone_into_the_buffer(web_server: str) -> None:
    bulk = BulkHttp(5.0, 5.0, client_context(Settings()))
    try:
        buffer = memoryview(bytearray(256_000))
        async with bulk.get("test", Request("GET", f"{web_server}/chunked")) as reply:
            assert reply.status == 206
            await reply.read_into(buffer)
        assert hashlib.md5(buffer).digest() == hashlib.md5(bytes(range(256)) * 1000).digest()
        async with bulk.get("test", Request("GET", f"{web_server}/chunked?status=500")) as reply:
            assert reply.status == 500 and await reply.read() == bytes(range(256)) * 1000
        with pytest.raises(IntegrityError):  # a body longer than asked
            async with bulk.get("test", Request("GET", f"{web_server}/chunked")) as reply:
                await reply.read_into(memoryview(bytearray(1000)))
    finally:
        bulk.close()


TRICKLED = bytes(range(256)) * 1000


@contextlib.asynccontextmanager
async def trickling(body: bytes = TRICKLED, piece: int = 10_000,
                    tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """A server sending `body` in writes of `piece` bytes, 5 ms apart, keeping the connection
    alive after it (so that only its bytes, not the server's close, can end a read)."""

    async def trickle(request: web.Request) -> web.StreamResponse:
        reply = web.StreamResponse(status=206)
        reply.content_length = len(body)
        await reply.prepare(request)
        for start in range(0, len(body), piece):
            await reply.write(body[start:start + piece])
            await asyncio.sleep(0.005)
        return reply

    app = web.Application()
    app.router.add_get("/trickle", trickle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    try:
        scheme = "http" if tls is None else "https"
        yield f"{scheme}://127.0.0.1:{runner.addresses[0][1]}/trickle"
    finally:
        await runner.cleanup()


async def read_whole(bulk: BulkHttp, url: str, size: int) -> bytes:
    """A body of `size` bytes read in place; its socket then wakes for every byte again, so
    that the next reply head (or the server's close) is seen."""
    buffer = memoryview(bytearray(size))
    async with bulk.get("test", Request("GET", url)) as reply:
        await reply.read_into(buffer)
        assert reply.link.transport is not None
        sock = reply.link.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1
    return bytes(buffer)


async def test_a_body_in_small_pieces_lands_whole_though_its_tail_is_below_the_low_mark(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk_link, "RCVLOWAT", 64_000)  # a body of 4 marks less 6,000 bytes
    bulk = BulkHttp(5.0, 2.0, client_context(Settings()))  # a read waiting in vain: 2 s
    try:
        async with trickling() as url:
            assert await read_whole(bulk, url, len(TRICKLED)) == TRICKLED
    finally:
        bulk.close()


async def test_a_body_over_tls_is_read_without_a_low_mark(tmp_path: Path) -> None:
    """The mark counts the socket's bytes and the body's rest is plaintext: TLS holding part
    of a record it read would leave the socket short of the mark for good (a 4 MiB body in
    64 KiB writes, as Swift's proxy sends, stalled until the read timeout). Over TLS the
    socket keeps waking for every byte."""
    body = bytes(range(256)) * (16 * 1024)  # 4 MiB
    ca = make_ca(tmp_path)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certificate = issue(ca, tmp_path)
    server_side.load_cert_chain(certificate.cert_file, certificate.key_file)
    bulk = BulkHttp(5.0, 2.0, ssl.create_default_context(cafile=str(ca.cert_file)))
    try:
        async with trickling(body, 64 * 1024, server_side) as url:
            assert await read_whole(bulk, url, len(body)) == body
    finally:
        bulk.close()


async def test_a_connection_the_server_closed_while_idle_is_not_reused(web_server: str) -> None:
    bulk = BulkHttp(5.0, 5.0, client_context(Settings()))
    try:
        for _ in range(3):
            buffer = memoryview(bytearray(256_000))
            async with bulk.get("test", Request("GET", f"{web_server}/fixed")) as reply:
                await reply.read_into(buffer)
            assert bytes(buffer[:256]) == bytes(range(256))
            await asyncio.sleep(0.3)  # the server closes the kept connection meanwhile
        assert bulk.connections_made == 3
    finally:
        bulk.close()


async def test_no_server_is_a_transport_error() -> None:
    bulk = BulkHttp(1.0, 1.0, client_context(Settings()))
    with pytest.raises(TransportError) as failed:
        async with bulk.get("test", Request("GET", "http://127.0.0.1:1/x")):
            pass
    assert "cannot connect" in str(failed.value) and failed.value.retryable
