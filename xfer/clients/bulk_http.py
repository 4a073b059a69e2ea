"""HTTP/1.1 for the bulk bytes: a ranged GET's body received straight into the caller's
buffer, a streamed PUT's body sent straight from the caller's buffers, over asyncio's own
transports, with keep-alive connections reused.

Measured (issue 21, 1 GiB in 4 MiB reads and 16 MiB PUTs on loopback, the client's CPU):
aiohttp's GET path costs 1.57-1.66 CPU-s/GiB (each socket read is copied by its parser, then
by its stream, then into the buffer, with a timer rescheduled on every read), this one
0.35-0.37 (the kernel's copy into the buffer, one recv_into per wake-up); a PUT 0.74-0.77
against 0.41. Everything else (JSON, manifests, tokens) stays on aiohttp.

A body is written in slices of WRITE_SLICE bytes of the caller's buffer, each only once the
transport holds nothing more (its write buffer limits are 0): a transport may keep what it is
given until the kernel has taken it (uvloop, CPython 3.12+; 3.11 copies the unsent part), so
once a write is drained the caller may reuse its buffer. What a connection holds beyond the
caller's buffers is at most one slice (a copy on 3.11) and 64 KiB of scratch.

A connection that makes no progress (no byte received, no write drained) for
`read_timeout` seconds is aborted.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from multidict import CIMultiDict

from xfer.clients.bulk_link import BodySink, Link, LinkLost, RangeProgress, Watchdog
from xfer.errors import IntegrityError, TransportError, UntrustedCertificate
from xfer.proto.http import Reply, Request
from xfer.proto.http1 import FramingError, Origin, ReplyHead, origin_and_target, request_head

__all__ = ["BulkHttp", "BulkReply", "RangeProgress", "untrusted_certificate"]
WRITE_SLICE = 1 << 20  # what one write hands the transport
IDLE_SECONDS = 15.0  # a kept connection unused for longer is closed (aiohttp's default)


class BulkHttp:
    """Connections for bulk requests, kept alive per origin when `pooled` (an xfer session's;
    a one-off client closes each after its request)."""

    def __init__(self, connect_timeout: float, read_timeout: float, tls: ssl.SSLContext,
                 pooled: bool = True) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.pooled = pooled
        self._idle: dict[Origin, list[Link]] = {}
        self.tls = tls  # xfer.tls.client_context: the configured CAs, hostnames checked
        self.connections_made = 0

    @asynccontextmanager
    async def get(self, service: str, request: Request) -> AsyncIterator[BulkReply]:
        """The reply to a GET once its head is in; its body is read (into a buffer, or as
        bytes) within the block. A kept connection that fails before any reply byte is
        replaced by a fresh one once (the server may have closed it meanwhile)."""
        origin, head = _framed(service, request)
        for fresh in (False, True):
            link = await self._link(service, request, origin, fresh)
            with self._exchange(service, request, link):
                try:
                    await link.write(head)
                    reply = await _reply_head(link)
                except LinkLost:
                    if fresh or link.progress or link.reply is not None:
                        raise
                    continue  # a stale kept connection
                body = BulkReply(link, reply)
                try:
                    yield body
                finally:  # a reply read whole keeps its connection, whatever the caller made of it
                    self._release(link, body.finished)
                return

    async def put_stream(self, service: str, request: Request,
                         views: AsyncIterator[memoryview], length: int) -> Reply:
        """PUT `length` bytes from `views`, in order; each view's buffer may be reused once the
        iterator is asked for the next. A reply that comes before the body is whole (the
        server refused it) is returned as it is."""
        origin, head = _framed(service, request, length)
        link = await self._link(service, request, origin, fresh=False)
        with self._exchange(service, request, link):
            await link.write(head)
            sent = await _send_views(link, views, length)
            reply = await _reply_head(link)
            body = BulkReply(link, reply)
            content = await body.read()
        self._release(link, body.finished and sent == length)
        return Reply(reply.status, body.headers, content)

    async def _link(self, service: str, request: Request, origin: Origin, fresh: bool) -> Link:
        idle = self._idle.get(origin, [])
        while idle and not fresh:
            link = idle.pop()
            if link.usable and time.monotonic() - link.idle_since < IDLE_SECONDS:
                return link
            link.close()
        loop = asyncio.get_running_loop()
        secure = origin.scheme == "https"
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, link = await loop.create_connection(
                    lambda: Link(origin), origin.host, origin.port,
                    ssl=self.tls if secure else None,
                    # SNI, and the name (or IP address) the certificate must be for
                    server_hostname=origin.host if secure else None)
        except ssl.SSLCertVerificationError as exc:
            raise UntrustedCertificate(service, request.method, request.path,
                                       untrusted_certificate(origin.host, origin.port, exc)
                                       ) from exc
        except (OSError, TimeoutError) as exc:
            raise TransportError(service, request.method, request.path,
                                 f"cannot connect: {type(exc).__name__}: {exc}") from exc
        self.connections_made += 1
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return link

    @contextmanager
    def _exchange(self, service: str, request: Request, link: Link) -> Iterator[None]:
        """One request on `link`: its failures as TransportError, the watchdog armed; the link
        closed unless the block gave it back (kept for another request, or closed)."""
        link.start(request.method)
        watchdog = Watchdog(link, self.read_timeout)
        try:
            yield
        except LinkLost as exc:
            reason = watchdog.reason or exc.reason
            raise TransportError(service, request.method, request.path, reason) from None
        except FramingError as exc:
            raise TransportError(service, request.method, request.path, str(exc)) from None
        finally:
            watchdog.stop()
            if not link.released:
                link.close()

    def _release(self, link: Link, reusable: bool) -> None:
        link.body_done()
        link.released = True
        if (self.pooled and reusable and link.usable and link.reply is not None
                and link.reply.keep_alive):
            link.idle_since = time.monotonic()
            link.listen()  # a close (or stray bytes) while idle makes it unusable
            self._idle.setdefault(link.origin, []).append(link)
        else:
            link.close()

    def close(self) -> None:
        for links in self._idle.values():
            for link in links:
                link.close()
        self._idle.clear()


class BulkReply:
    """A reply whose head is in and whose body is still on the connection."""

    def __init__(self, link: Link, head: ReplyHead) -> None:
        self.link = link
        self.head = head
        self.status = head.status
        self.headers: CIMultiDict[str] = CIMultiDict(head.headers)
        self.finished = False  # the body was read to its end: the connection may be reused

    async def read_into(self, buffer: memoryview, progress: RangeProgress | None = None) -> None:
        """Receive the body into `buffer`, which it must fill exactly; `progress` counts the
        bytes as they land (so a read that fails half-way says how far it got)."""
        length = self.head.content_length
        if length is not None and length != len(buffer):
            raise IntegrityError(f"a body of {length} bytes for the {len(buffer)} bytes asked")
        sink = BodySink(self.link, self.head, buffer, progress)
        await self._drain(sink)
        if sink.filled != len(buffer):
            raise IntegrityError(f"body ended after {sink.filled} of {len(buffer)} bytes")

    async def read(self) -> bytes:
        sink = BodySink(self.link, self.head, None)
        await self._drain(sink)
        return bytes(sink.kept)

    async def _drain(self, sink: BodySink) -> None:
        try:
            self.link.read_into(sink)
            while not sink.complete:
                await self.link.next_event()
        finally:
            self.link.body_done()
        self.finished = self.head.content_length is not None or sink.decoder is not None


async def _reply_head(link: Link) -> ReplyHead:
    while link.reply is None:
        await link.next_event()
    return link.reply


async def _send_views(link: Link, views: AsyncIterator[memoryview], length: int) -> int:
    """Write the views in slices; stop early when the server has answered already."""
    sent = 0
    async for view in views:
        if sent + len(view) > length:
            raise IntegrityError(f"streamed body longer than its {length} bytes")
        for start in range(0, len(view), WRITE_SLICE):
            if link.reply is not None:
                return sent
            piece = view[start:start + WRITE_SLICE]
            await link.write(piece)
            sent += len(piece)
    if sent != length:
        raise IntegrityError(f"streamed body ended after {sent} of {length} bytes")
    return sent


def untrusted_certificate(host: str, port: int | None, error: BaseException) -> str:
    """Why a TLS handshake failed verification, with the setting that decides it."""
    detail = getattr(error, "verify_message", "") or str(error)
    return (f"the TLS certificate of {host}:{port} is not trusted ({detail}): xfer trusts "
            f"the CAs in XFER_CA_FILE, or the system's when it is empty")


def _framed(service: str, request: Request, length: int | None = None) -> tuple[Origin, bytes]:
    """Where the request goes, and its head."""
    try:
        origin, target = origin_and_target(request.url, request.params)
        return origin, request_head(request.method, origin, target, request.headers, length)
    except FramingError as exc:
        raise TransportError(service, request.method, request.path, str(exc)) from None
