"""A fault-injecting HTTP proxy in front of one real Swift proxy, for tests (stdlib only).

One request per connection: the request's `Connection` header becomes `close`, and so does
the response's, so every client request arrives on a fresh connection whose request line and
headers are parsed here. Request bodies are piped through unchanged; a response body may be
damaged by the first matching rule:

    status          answer `status` with an empty body, without forwarding
    reset_after     forward `at` body bytes, then abort the connection with an RST
    truncate_after  forward `at` body bytes, then close cleanly (FIN) short of Content-Length
    stall_after     forward `at` body bytes, then send nothing for `seconds`, then close
    flip_byte_at    flip the lowest bit of body byte `at`

A rule matches on method and a regex searched in the request target (path and query), and
optionally only requests carrying a `Range` header. It applies at most `times` times and
counts in `fired` how often it did. Body faults apply only to 2xx replies with a
Content-Length above `at`, so an error reply or a short body never spends one.

    async with FaultProxy("127.0.0.1", swift_port) as proxy:
        burst = proxy.add(status("GET", r"/images/disk\\.raw$", 503, times=3))
        ... point a client at proxy.url ...
        assert burst.fired == 3
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

FaultKind = Literal["status", "reset_after", "truncate_after", "stall_after", "flip_byte_at"]
CHUNK = 64 * 1024
# A peer went away or spoke broken HTTP: the exchange ends, there is nobody to answer.
LINK_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection"})


@dataclass
class Fault:
    kind: FaultKind
    method: str
    path: str  # regex, searched in the request target (path and query)
    times: int = 1
    ranged: bool = False  # only requests with a Range header
    at: int = 0  # body byte offset, for the body faults
    status: int = 503
    seconds: float = 0.0
    fired: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    def matches(self, method: str, target: str, has_range: bool) -> bool:
        return (self.fired < self.times and method == self.method
                and (has_range or not self.ranged) and self._pattern.search(target) is not None)


def status(method: str, path: str, code: int = 503, *, times: int = 1,
           ranged: bool = False) -> Fault:
    return Fault("status", method, path, times, ranged, status=code)


def reset_after(method: str, path: str, at: int, *, times: int = 1, ranged: bool = False) -> Fault:
    return Fault("reset_after", method, path, times, ranged, at=at)


def truncate_after(method: str, path: str, at: int, *, times: int = 1,
                   ranged: bool = False) -> Fault:
    return Fault("truncate_after", method, path, times, ranged, at=at)


def stall_after(method: str, path: str, at: int, seconds: float, *, times: int = 1,
                ranged: bool = False) -> Fault:
    return Fault("stall_after", method, path, times, ranged, at=at, seconds=seconds)


def flip_byte_at(method: str, path: str, at: int, *, times: int = 1,
                 ranged: bool = False) -> Fault:
    return Fault("flip_byte_at", method, path, times, ranged, at=at)


@dataclass
class Head:
    """A request or response head: the start line and the header fields in order."""

    start_line: str
    fields: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.fields if k.lower() == lowered), None)

    @property
    def status(self) -> int:  # of a response
        return int(self.start_line.split()[1])

    def encode(self) -> bytes:
        """The head with `Connection: close` in place of any hop-by-hop connection fields."""
        kept = [f"{k}: {v}" for k, v in self.fields if k.lower() not in HOP_BY_HOP]
        return "\r\n".join([self.start_line, *kept, "Connection: close", "", ""]).encode("latin-1")


@dataclass(frozen=True)
class Framing:
    """How a body ends: after `length` bytes, after the last chunk, or at end of stream."""

    kind: Literal["none", "length", "chunked", "eof"]
    length: int = 0


@dataclass(frozen=True)
class Exchange:
    method: str
    target: str
    status: int
    fault: FaultKind | None


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.faults: list[Fault] = []
        self.exchanges: deque[Exchange] = deque(maxlen=10_000)  # for assertions and debugging
        self.errors: list[BaseException] = []  # the proxy's own bugs, raised on exit
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def port(self) -> int:
        assert self._server is not None, "the proxy is not running"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        self._closing = True
        assert self._server is not None
        self._server.close()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        if exc is None and self.errors:
            raise AssertionError(f"the fault proxy failed: {self.errors[0]!r}") from self.errors[0]

    # --- one connection, one exchange -------------------------------------------------------

    async def _serve(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            try:
                if not self._closing:
                    # drain() then waits until every byte reached the kernel: body faults cut
                    # exactly where they say.
                    client_writer.transport.set_write_buffer_limits(high=0)
                    await self._exchange(client_reader, client_writer)
            except* LINK_ERRORS:
                pass
            except* Exception as failures:
                self.errors.extend(failures.exceptions)
        except asyncio.CancelledError:
            # Only __aexit__ cancels a handler (a stall, say). End normally: Python 3.11's
            # stream server logs a cancelled handler task as an "unhandled exception".
            if not self._closing:
                raise
        finally:
            await _close(client_writer)
            self._handlers.discard(handler)

    async def _exchange(self, client_reader: asyncio.StreamReader,
                        client_writer: asyncio.StreamWriter) -> None:
        request = await _read_head(client_reader)
        method, target = request.start_line.split()[:2]
        fault = self._request_fault(method, target, request)
        if fault is not None:
            await _copy_body(client_reader, None, _request_framing(request))
            reason = f"HTTP/1.1 {fault.status} Injected Fault"
            client_writer.write(Head(reason, [("Content-Length", "0")]).encode())
            await client_writer.drain()
            self.exchanges.append(Exchange(method, target, fault.status, fault.kind))
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        try:
            upstream_writer.write(request.encode())
            async with asyncio.TaskGroup() as group:
                sending = group.create_task(
                    _send_request_body(client_reader, upstream_writer, _request_framing(request)))
                await self._relay_response(method, target, request, upstream_reader,
                                           client_writer)
                sending.cancel()  # an early reply: the rest of the request body is not wanted
        finally:
            await _close(upstream_writer)

    def _request_fault(self, method: str, target: str, request: Head) -> Fault | None:
        has_range = request.header("Range") is not None
        for fault in self.faults:
            if fault.kind == "status" and fault.matches(method, target, has_range):
                fault.fired += 1
                return fault
        return None

    def _body_fault(self, method: str, target: str, request: Head, reply_status: int,
                    framing: Framing) -> Fault | None:
        if reply_status // 100 != 2 or framing.kind != "length":
            return None
        has_range = request.header("Range") is not None
        for fault in self.faults:
            if (fault.kind != "status" and fault.at < framing.length
                    and fault.matches(method, target, has_range)):
                fault.fired += 1
                return fault
        return None

    async def _relay_response(self, method: str, target: str, request: Head,
                              upstream: asyncio.StreamReader,
                              client: asyncio.StreamWriter) -> None:
        response = await _read_head(upstream)
        while 100 <= response.status < 200:  # 100 Continue and the like: pass them on
            client.write(response.encode())
            response = await _read_head(upstream)
        framing = _response_framing(method, response)
        fault = self._body_fault(method, target, request, response.status, framing)
        self.exchanges.append(Exchange(method, target, response.status,
                                       fault.kind if fault else None))
        client.write(response.encode())
        await client.drain()
        if fault is None:
            await _copy_body(upstream, client, framing)
        else:
            await _faulty_body(upstream, client, framing.length, fault)


async def _send_request_body(client: asyncio.StreamReader, upstream: asyncio.StreamWriter,
                             framing: Framing) -> None:
    """Upstream may answer early and close: its reply, not this broken pipe, is the outcome."""
    try:
        await _copy_body(client, upstream, framing)
    except ConnectionError:
        pass


async def _faulty_body(upstream: asyncio.StreamReader, client: asyncio.StreamWriter,
                       length: int, fault: Fault) -> None:
    sent = 0
    while sent < length:
        chunk = await upstream.read(min(CHUNK, length - sent))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", length - sent)
        if fault.kind != "flip_byte_at" and sent + len(chunk) >= fault.at:
            client.write(chunk[:fault.at - sent])
            await client.drain()
            await _cut(client, fault)
            return
        if fault.kind == "flip_byte_at" and sent <= fault.at < sent + len(chunk):
            damaged = bytearray(chunk)
            damaged[fault.at - sent] ^= 0x01
            chunk = bytes(damaged)
        client.write(chunk)
        await client.drain()
        sent += len(chunk)


async def _cut(client: asyncio.StreamWriter, fault: Fault) -> None:
    if fault.kind == "reset_after":
        sock = client.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.transport.abort()
    elif fault.kind == "stall_after":
        await asyncio.sleep(fault.seconds)
    # truncate_after, and a stall once over: the caller closes cleanly (FIN)


# --- HTTP/1.1 framing -------------------------------------------------------------------------

async def _read_head(reader: asyncio.StreamReader) -> Head:
    raw = await reader.readuntil(b"\r\n\r\n")
    start_line, *lines = raw.decode("latin-1").split("\r\n")[:-2]
    fields = []
    for line in lines:
        name, separator, value = line.partition(":")
        if not separator:
            raise ValueError(f"malformed header line {line!r}")
        fields.append((name.strip(), value.strip()))
    return Head(start_line, fields)


def _request_framing(request: Head) -> Framing:
    if "chunked" in (request.header("Transfer-Encoding") or "").lower():
        return Framing("chunked")
    return Framing("length", int(request.header("Content-Length") or 0))


def _response_framing(method: str, response: Head) -> Framing:
    if method == "HEAD" or response.status in (204, 304):
        return Framing("none")
    if "chunked" in (response.header("Transfer-Encoding") or "").lower():
        return Framing("chunked")
    length = response.header("Content-Length")
    if length is not None:
        return Framing("length", int(length))
    return Framing("eof")


async def _copy_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None,
                     framing: Framing) -> None:
    """Copy one body as framed; with no writer, read and discard it."""
    if framing.kind == "length":
        await _copy_exactly(reader, writer, framing.length)
    elif framing.kind == "chunked":
        await _copy_chunked(reader, writer)
    elif framing.kind == "eof":
        while chunk := await reader.read(CHUNK):
            await _send(writer, chunk)


async def _copy_exactly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None,
                        length: int) -> None:
    remaining = length
    while remaining:
        chunk = await reader.read(min(CHUNK, remaining))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", remaining)
        await _send(writer, chunk)
        remaining -= len(chunk)


async def _copy_chunked(reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter | None) -> None:
    while True:
        size_line = await reader.readuntil(b"\r\n")
        await _send(writer, size_line)
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            break
        await _copy_exactly(reader, writer, size + 2)  # the chunk and its CRLF
    while True:  # trailer fields, up to the empty line
        line = await reader.readuntil(b"\r\n")
        await _send(writer, line)
        if line == b"\r\n":
            return


async def _send(writer: asyncio.StreamWriter | None, data: bytes) -> None:
    if writer is not None:
        writer.write(data)
        await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
