"""The pure parts of the Glance-compatible read endpoint: Range headers (a property test over
every form and size), and engine/stream.py over a real local file: bytes in order, the whole
object verified before its last byte, a mismatch or a changing source cut short."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from xfer.clients.swift import SwiftRegions
from xfer.clients.transport import (
    WRITE_SLICE,
    BufferPayload,
    detached_slices,
)
from xfer.engine.hashing import Digests
from xfer.engine.object_copy import Copier
from xfer.engine.rate import TokenBucket
from xfer.engine.retry import Retrier
from xfer.engine.sources import FileSource, SourceState
from xfer.engine.stream import Backlog, StreamOutcome, Writer, stream_verified
from xfer.errors import CopyFailed, RangeNotSatisfiable, RequestError
from xfer.proto.http import ByteRange, parse_range
from xfer.settings import Settings

CHUNK = 64 * 1024
WRITE_TIMEOUT = 10.0
sizes = st.integers(min_value=0, max_value=10**6)
offsets = st.integers(min_value=0, max_value=2 * 10**6)


@given(size=sizes, first=offsets, last=offsets)
def test_a_first_last_range_is_clamped_to_the_body_or_refused(size: int, first: int,
                                                              last: int) -> None:
    header = f"bytes={first}-{last}"
    if last < first:
        with pytest.raises(RequestError, match="before its first byte"):
            parse_range(header, size)
    elif first >= size:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(header, size)
    else:
        assert parse_range(header, size) == ByteRange(first, min(last, size - 1) - first + 1,
                                                      size)


@given(size=sizes, first=offsets)
def test_an_open_range_runs_to_the_end(size: int, first: int) -> None:
    if first >= size:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(f"bytes={first}-", size)
    else:
        chosen = parse_range(f"bytes={first}-", size)
        assert chosen == ByteRange(first, size - first, size)
        assert chosen.whole == (first == 0)


@given(size=sizes, suffix=offsets)
def test_a_suffix_range_is_the_last_bytes(size: int, suffix: int) -> None:
    if suffix == 0 or size == 0:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(f"bytes=-{suffix}", size)
    else:
        length = min(suffix, size)
        chosen = parse_range(f"bytes=-{suffix}", size)
        assert chosen == ByteRange(size - length, length, size)
        assert chosen.content_range() == f"bytes {size - length}-{size - 1}/{size}"


@pytest.mark.parametrize("header", [
    "", "bytes", "bytes=", "bytes=-", "bytes=1-2,4-5", "bytes=a-b", "bytes=1-b", "items=0-1",
    "bytes=+1-2", "bytes=1.0-2", "bytes= 1-2", "bytes=" + "1" * 21 + "-",
    "bytes=-" + "1" * 21, "bytes=0x10-",
])
def test_anything_but_one_byte_range_is_an_error_naming_the_form(header: str) -> None:
    with pytest.raises(RequestError) as raised:
        parse_range(header, 100)
    assert raised.value.field == "Range" and not isinstance(raised.value, RangeNotSatisfiable)


def test_no_header_is_the_whole_body_and_the_unit_is_case_insensitive() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("Bytes=2-3", 10) == ByteRange(2, 2, 10)


class Collected:
    def __init__(self) -> None:
        self.body = bytearray()
        self.writes = 0

    async def write(self, data: memoryview | bytes) -> None:
        self.body += data
        self.writes += 1


async def stream(path: Path, start: int, length: int | None, expected: Digests | None,
                 out: Collected, ahead: int = 4) -> bool:
    source = FileSource(str(path))
    state = await source.state()
    outcome = await stream_verified(
        source, state, start, state.size - start if length is None else length, expected,
        out.write, chunk_size=CHUNK, ahead=ahead, rate=TokenBucket(None, CHUNK),
        retrying=Retrier(Settings()), write_timeout=WRITE_TIMEOUT)
    assert outcome.bytes_sent == len(out.body)
    assert outcome.most_reading <= ahead
    return outcome.verified


def image_path(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "image"
    path.write_bytes(data)
    return path


async def file_of(tmp_path: Path, data: bytes) -> tuple[Path, FileSource, SourceState]:
    """`data` in a file, as a source, and the version of it every read is pinned to."""
    path = image_path(tmp_path, data)
    source = FileSource(str(path))
    return path, source, await source.state()


async def stream_whole(source: FileSource, state: SourceState, data: bytes, write: Writer, *,
                       ahead: int = 2, chunk_size: int = CHUNK,
                       write_timeout: float = WRITE_TIMEOUT,
                       backlog: Backlog | None = None) -> StreamOutcome:
    """stream_verified of the whole file, expected to hash to `data`'s digests."""
    return await stream_verified(source, state, 0, state.size, digests(data), write,
                                 chunk_size=chunk_size, ahead=ahead,
                                 rate=TokenBucket(None, CHUNK), retrying=Retrier(Settings()),
                                 write_timeout=write_timeout, backlog=backlog)


def digests(data: bytes) -> Digests:
    return Digests(hashlib.md5(data).hexdigest(), hashlib.sha512(data).hexdigest())


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, 5 * CHUNK + 17])
async def test_the_whole_file_streams_in_order_and_verifies(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = image_path(tmp_path, data)
    out = Collected()
    assert await stream(path, 0, None, digests(data), out) is True
    assert bytes(out.body) == data


@pytest.mark.parametrize("wrong", ["md5", "sha512"])
async def test_a_mismatch_is_cut_before_the_last_byte(tmp_path: Path, wrong: str) -> None:
    data = os.urandom(3 * CHUNK + 5)
    path = image_path(tmp_path, data)
    right = digests(data)
    other = digests(data + b"x")
    expected = Digests(other.md5, right.sha512) if wrong == "md5" else Digests(right.md5,
                                                                             other.sha512)
    out = Collected()
    with pytest.raises(CopyFailed) as raised:
        await stream(path, 0, None, expected, out)
    assert raised.value.code == "checksum_mismatch"
    assert bytes(out.body) == data[:-1]  # everything but the last byte


async def test_an_empty_file_with_another_checksum_sends_nothing_and_fails(tmp_path: Path
                                                                           ) -> None:
    path = image_path(tmp_path, b"")
    out = Collected()
    with pytest.raises(CopyFailed):
        await stream(path, 0, None, digests(b"x"), out)
    assert out.body == b""


async def test_a_range_is_sent_exactly_and_not_hashed(tmp_path: Path) -> None:
    data = os.urandom(4 * CHUNK)
    path = image_path(tmp_path, data)
    out = Collected()
    # the expected digests are of other data: a range is pinned, not hashed
    assert await stream(path, CHUNK - 3, 2 * CHUNK, digests(b"other"), out) is False
    assert bytes(out.body) == data[CHUNK - 3:3 * CHUNK - 3]


async def test_a_file_changing_under_the_stream_ends_it_as_source_changed(tmp_path: Path
                                                                          ) -> None:
    data = os.urandom(8 * CHUNK)
    path, source, state = await file_of(tmp_path, data)
    out = Collected()

    async def write_then_change(view: memoryview | bytes) -> None:
        await out.write(view)
        if out.writes == 1:
            os.utime(path, ns=(1, 1))  # another version: its mtime differs

    with pytest.raises(CopyFailed) as raised:
        await stream_whole(source, state, data, write_then_change)
    assert raised.value.code == "source_changed"
    assert len(out.body) < len(data)


class KeepingWriter:
    """A writer that keeps what it is given, uncopied, until the end, as a transport may
    (uvloop, CPython 3.12's selector transport keep a reference to unsent data)."""

    def __init__(self) -> None:
        self.kept: list[memoryview | bytes] = []

    async def write(self, data: memoryview | bytes) -> None:
        self.kept.append(data)
        await asyncio.sleep(0)  # let the reads run ahead and reuse their buffers

    def body(self) -> bytes:
        return b"".join(bytes(piece) for piece in self.kept)


@pytest.mark.parametrize("ahead", [1, 2, 4])
async def test_a_writer_that_keeps_what_it_is_given_still_holds_the_bytes_sent(
        tmp_path: Path, ahead: int) -> None:
    """Chunk buffers are reused once written: the writer must get copies, or the bytes it
    still holds would change under it after they were hashed."""
    data = os.urandom(12 * CHUNK + 3)
    _, source, state = await file_of(tmp_path, data)
    writer = KeepingWriter()
    outcome = await stream_whole(source, state, data, writer.write, ahead=ahead)
    assert outcome.verified and writer.body() == data


@given(size=st.integers(min_value=0, max_value=3 * WRITE_SLICE + 7))
def test_detached_slices_are_copies_that_join_to_the_view(size: int) -> None:
    buffer = bytearray(os.urandom(size))
    pieces = list(detached_slices(memoryview(buffer)))
    original = bytes(buffer)
    buffer[:] = bytes(size)  # the buffer reused: what was handed over must not change
    assert b"".join(pieces) == original
    assert all(isinstance(piece, bytes) and 0 < len(piece) <= WRITE_SLICE for piece in pieces)


async def test_buffer_bodies_hand_their_writer_copies() -> None:
    """The Swift request side of the same rule: a buffer body's owner reuses it once the
    request is done (streamed PUTs: tests/test_bulk_http.py)."""
    buffer = bytearray(os.urandom(3 * WRITE_SLICE + 5))
    original = bytes(buffer)
    whole = KeepingWriter()
    await BufferPayload(buffer).write(whole)
    buffer[:] = bytes(len(buffer))
    assert whole.body() == original


async def test_a_reader_that_takes_nothing_is_cut_off_as_reader_stalled(tmp_path: Path
                                                                        ) -> None:
    data = os.urandom(4 * CHUNK)
    _, source, state = await file_of(tmp_path, data)
    out = Collected()

    async def stall_after_one(data: memoryview | bytes) -> None:
        if out.writes:
            await asyncio.Event().wait()  # never takes another byte
        await out.write(data)

    began = asyncio.get_running_loop().time()
    with pytest.raises(CopyFailed) as raised:
        await stream_whole(source, state, data, stall_after_one, write_timeout=0.2)
    assert raised.value.code == "reader_stalled" and "XFER_STREAM_WRITE_TIMEOUT" in str(
        raised.value)
    assert 0.2 <= asyncio.get_running_loop().time() - began < 5
    assert bytes(out.body) == data[:CHUNK]


async def test_a_stream_waiting_for_the_budget_has_promised_its_reader_nothing(
        tmp_path: Path) -> None:
    """Streams share the copies' budget of buffered bytes: one that must wait for its share
    does so before `start_reply` sends the reply's headers, and gets it once a stalled
    stream is cut off."""
    data = os.urandom(4 * CHUNK)
    path = image_path(tmp_path, data)
    settings = Settings(stream_reads=2, stream_chunk_size=CHUNK, max_inflight_bytes=2 * CHUNK,
                        stream_write_timeout=0.5)
    started: list[str] = []
    first_started = asyncio.Event()

    def starting(name: str) -> Callable[[], Awaitable[None]]:
        async def start_reply() -> None:
            started.append(name)
            first_started.set()
        return start_reply

    async def whole(state: SourceState) -> tuple[int, int]:
        return 0, state.size

    async def stalled(_: memoryview | bytes) -> None:
        await asyncio.Event().wait()

    out = Collected()
    async with aiohttp.ClientSession() as http:
        copier = Copier(settings, SwiftRegions(http, {}))
        first = asyncio.create_task(copier.stream(FileSource(str(path)), digests(data), stalled,
                                                  whole, starting("stalled")))
        await first_started.wait()
        second = asyncio.create_task(copier.stream(FileSource(str(path)), digests(data),
                                                   out.write, whole, starting("patient")))
        waits = 0
        while not first.done():  # however slow the machine: not before the first gave back
            assert started == ["stalled"]  # the second waits for the budget, headers unsent
            waits += 1
            await asyncio.sleep(0.02)
        assert waits > 1
        with pytest.raises(CopyFailed, match="took no bytes"):
            await first
        outcome = await second
    assert started == ["stalled", "patient"]
    assert outcome.verified and bytes(out.body) == data


@pytest.mark.parametrize("recorded", ["", "x"])
async def test_an_empty_source_is_checked_before_its_reply_starts(tmp_path: Path,
                                                                  recorded: str) -> None:
    """Headers alone are a whole empty reply: an empty source whose record says other data is
    refused before `start_reply` sends them; one that says nothing is served."""
    path = image_path(tmp_path, b"")
    started: list[int] = []

    async def whole(state: SourceState) -> tuple[int, int]:
        return 0, state.size

    async def start_reply() -> None:
        started.append(1)

    out = Collected()
    async with aiohttp.ClientSession() as http:
        copier = Copier(Settings(stream_chunk_size=CHUNK), SwiftRegions(http, {}))
        if recorded:
            with pytest.raises(CopyFailed) as raised:
                await copier.stream(FileSource(str(path)), digests(recorded.encode()),
                                    out.write, whole, start_reply)
            assert raised.value.code == "checksum_mismatch" and started == []
        else:
            outcome = await copier.stream(FileSource(str(path)), digests(b""), out.write, whole,
                                          start_reply)
            assert outcome.verified and started == [1]
    assert out.body == b""


# --- a slow reader over real HTTP: cut off only when it takes nothing ---------------------

SMALL_SOCKET_BUFFER = 16 * 1024


class SlowReader:
    """An HTTP client that takes `pace` bytes every 20 ms, or stops after `stop_after` bytes,
    through small socket buffers, so the server's writes wait for it."""

    def __init__(self, pace: int, stop_after: int | None = None) -> None:
        self.pace, self.stop_after = pace, stop_after
        self.received = bytearray()

    async def read(self, port: int) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_SOCKET_BUFFER)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: x\r\n"
                                          b"Connection: close\r\n\r\n")
            while self.stop_after is None or len(self.received) < self.stop_after:
                await asyncio.sleep(0.02)
                piece = await loop.sock_recv(sock, self.pace)
                if not piece:
                    return
                self.received += piece
            await asyncio.sleep(3600)  # takes nothing more; cancelled by the test
        finally:
            sock.close()


async def serve_to(reader: SlowReader, path: Path, data: bytes, write_timeout: float,
                   with_backlog: bool) -> StreamOutcome | CopyFailed:
    """What engine/stream.py does for the Glance front, to one slow reader, over loopback."""
    ended: list[StreamOutcome | CopyFailed] = []
    has_ended = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        assert transport is not None
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                                      SMALL_SOCKET_BUFFER)
        response = web.StreamResponse()
        response.content_length = len(data)
        await response.prepare(request)
        source = FileSource(str(path))
        try:
            ended.append(await stream_whole(
                source, await source.state(), data, response.write, chunk_size=8 * CHUNK,
                write_timeout=write_timeout,
                backlog=transport.get_write_buffer_size if with_backlog else None))
        except CopyFailed as exc:
            ended.append(exc)
            transport.close()
            return response
        finally:
            has_ended.set()
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        async with asyncio.timeout(30):
            reading = asyncio.create_task(reader.read(port))
            await has_ended.wait()
            if isinstance(ended[0], CopyFailed):
                reading.cancel()  # a reader that stopped would wait for ever
            with contextlib.suppress(asyncio.CancelledError):
                await reading  # a served one reads to the end: the server closes
    finally:
        await runner.cleanup()
    return ended[0]


async def test_a_slow_but_steady_reader_is_served_to_the_end(tmp_path: Path) -> None:
    """About 250 KB/s: each 512 KiB write waits about two seconds for it, longer than the
    second of patience, but the reader keeps taking bytes, so the deadline keeps moving on."""
    data = os.urandom(16 * CHUNK)
    path = image_path(tmp_path, data)
    reader = SlowReader(pace=5000)
    ended = await serve_to(reader, path, data, write_timeout=1.0, with_backlog=True)
    assert isinstance(ended, StreamOutcome) and ended.verified, ended
    assert reader.received.endswith(data)  # the reply's headers, then every byte

    cut = await serve_to(SlowReader(pace=5000), path, data, write_timeout=1.0,
                         with_backlog=False)  # no backlog to watch: each write has 1 s
    assert isinstance(cut, CopyFailed) and cut.code == "reader_stalled"


async def test_a_reader_that_stops_taking_bytes_is_cut_off(tmp_path: Path) -> None:
    data = os.urandom(16 * CHUNK)
    path = image_path(tmp_path, data)
    reader = SlowReader(pace=5000, stop_after=100_000)
    began = asyncio.get_running_loop().time()
    ended = await serve_to(reader, path, data, write_timeout=1.0, with_backlog=True)
    assert isinstance(ended, CopyFailed) and ended.code == "reader_stalled", ended
    assert asyncio.get_running_loop().time() - began < 10
    assert 100_000 <= len(reader.received) < len(data)
