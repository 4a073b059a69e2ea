"""One HTTP/1.1 connection of the bulk data path (clients/bulk_http.py): an asyncio
BufferedProtocol whose reads land in a 64 KiB scratch buffer until a reply head is whole, then
straight in the caller's buffer (recv_into: the kernel's copy, no other); writes handed to
the transport one at a time, each waited for until the transport holds nothing more."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from typing import cast

from xfer.errors import IntegrityError, XferError
from xfer.proto.http1 import MAX_HEAD_BYTES, ChunkedDecoder, FramingError, Origin, ReplyHead, parse_reply_head

SCRATCH = 64 * 1024  # a reply head, and the bodies not received into a caller's buffer
MAX_SMALL_BODY = 4 << 20  # an error or PUT reply body larger than this is not Swift's
# While a body lands in the caller's buffer, the socket is reported readable only once this
# many bytes (or the rest of the body) are in (SO_RCVLOWAT): Swift's proxy sends in 64 KiB
# writes, and each would otherwise wake the event loop for one read (measured: 20,000 reads
# and 1.44 CPU-s per GiB, 4,350 and 0.95 with the mark; `python -m benchmarks.bulk_loopback`).
# Linux (tcp_set_rcvlowat) grows the receive buffer to hold the mark if it is smaller and
# clamps the window to the mark until autotuning grows the buffer, which lets the clamp
# follow: a fresh connection starts with a larger window than without the mark, not a
# smaller one. A peer's close and the end of the body still wake the loop. 0: every byte
# wakes it.
RCVLOWAT = 256 * 1024


@dataclass
class RangeProgress:
    """How many bytes of a ranged read have landed: a retry resumes after them."""

    filled: int = 0


class LinkLost(XferError):
    """The connection failed; `reason` says how (it becomes a TransportError)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Link(asyncio.BufferedProtocol):
    """One connection. Reads land in `scratch` until a reply head is whole, then in the
    destination of the body being read; the transport pauses between the two."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.scratch = memoryview(bytearray(SCRATCH))
        self.lost: LinkLost | None = None
        self.progress = 0  # bytes received in this exchange, and writes drained
        self.waiting = False  # for the network (a reply, a body, a write to drain)
        self.last_progress = 0.0  # loop time of the last progress, or of a wait's start
        self.idle_since = time.monotonic()
        self.released = False  # this exchange gave the link back (kept, or closed)
        self._loop = asyncio.get_running_loop()
        self._head = bytearray()
        self.method = "GET"  # of the request on the wire: a HEAD's reply has no body
        self.reply: ReplyHead | None = None
        self.early = bytearray()  # body bytes that came with the head
        self._sink: BodySink | None = None
        self._wake: asyncio.Future[None] | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self._socket: socket.socket | None = None
        self._lowat = 1

    # --- asyncio callbacks -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.set_write_buffer_limits(high=0, low=0)
        # Not over TLS: the mark counts the socket's bytes, the body's rest is plaintext, and
        # TLS may already hold part of a record it read, so the socket would never reach the
        # mark that the rest of the body asks for (reproduced: a read stalled until its
        # timeout; benchmarks/bulk_loopback.py --schemes https).
        tls = self.transport.get_extra_info("ssl_object") is not None
        self._socket = None if tls else self.transport.get_extra_info("socket")

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.scratch if self._sink is None else self._sink.buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.progress += nbytes
        self.last_progress = self._loop.time()
        try:
            if self._sink is not None:
                self._sink.landed(nbytes)
            elif self.reply is None:
                self._head_bytes(nbytes)
            else:
                raise LinkLost("bytes after the reply before they were asked for")
        except (LinkLost, FramingError, IntegrityError) as exc:
            self.fail(exc if isinstance(exc, LinkLost) else LinkLost(str(exc)))

    def eof_received(self) -> bool:
        if self._sink is not None:
            self._sink.ended()
        self.fail(LinkLost("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(LinkLost(f"connection lost: {exc}" if exc else "connection closed"))
        self._resume_writes()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self.progress += 1
        self.last_progress = self._loop.time()
        self._resume_writes()

    # --- reading ------------------------------------------------------------------------
    def _head_bytes(self, nbytes: int) -> None:
        self._head += self.scratch[:nbytes]
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD_BYTES:
                raise LinkLost(f"a reply head longer than {MAX_HEAD_BYTES} bytes")
            return
        self.reply = parse_reply_head(bytes(self._head[:end]), self.method)
        self.early = self._head[end + 4:]
        self._head = bytearray()
        assert self.transport is not None
        self.transport.pause_reading()  # the caller says where the body goes
        self.wakeup()
        self._resume_writes()  # a PUT answered before its body was whole stops sending

    async def next_event(self) -> None:
        """Until something happened: a reply head, a body's end, or the connection's loss."""
        if self.lost is not None:
            raise self.lost
        self._wake = self._loop.create_future()
        try:
            await self._for_network(self._wake)
        finally:
            self._wake = None
        if self.lost is not None and (self._sink is None or not self._sink.complete):
            raise self.lost

    async def _for_network(self, future: asyncio.Future[None]) -> None:
        """Wait, watched: time spent waiting for the caller (its next buffer) is not a stall."""
        self.waiting, self.last_progress = True, self._loop.time()
        try:
            await future
        finally:
            self.waiting = False

    def wakeup(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def fail(self, lost: LinkLost) -> None:
        if self.lost is None:
            self.lost = lost
        self.wakeup()

    def read_into(self, sink: BodySink) -> None:
        """Let the body flow into `sink`: first what came with the head, then the socket."""
        self._sink = sink
        if self.early:
            early, self.early = bytes(self.early), bytearray()
            sink.feed(early)
        assert self.transport is not None
        if not sink.complete:
            self.wait_for(sink.awaited())
            self.transport.resume_reading()

    def body_done(self) -> None:
        self._sink = None
        self.wait_for(1)

    def wait_for(self, nbytes: int) -> None:
        """Be woken once `nbytes` (at most RCVLOWAT, at least 1) can be read."""
        lowat = max(1, min(RCVLOWAT, nbytes))
        if lowat != self._lowat and self._socket is not None:
            try:
                self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
            except OSError:
                return
            self._lowat = lowat

    # --- writing ------------------------------------------------------------------------
    async def write(self, data: bytes | memoryview) -> None:
        """Hand `data` to the transport and wait until it holds nothing more."""
        if self.lost is not None:
            raise self.lost
        assert self.transport is not None
        self.transport.write(data)
        while self._paused and self.lost is None and self.reply is None:
            self._drained = self._loop.create_future()
            try:
                await self._for_network(self._drained)
            finally:
                self._drained = None
        if self.lost is not None:
            raise self.lost

    def _resume_writes(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def start(self, method: str) -> None:
        self.released = False
        self.method = method
        self.progress = 0
        self.reply = None
        self.early = bytearray()
        self._sink = None
        self.listen()

    def listen(self) -> None:
        """Read again (paused after each reply): a reply head, or, idle, the server's close."""
        if self.transport is not None:
            self.transport.resume_reading()

    @property
    def usable(self) -> bool:
        return (self.lost is None and self.transport is not None
                and not self.transport.is_closing())

    def close(self) -> None:
        """Close; abort when the transport still holds a write: that may be a view of a
        buffer the caller reuses, and the exchange is over."""
        if self.transport is not None:
            if self.transport.get_write_buffer_size():
                self.transport.abort()
            else:
                self.transport.close()


class BodySink:
    """Where a body's bytes land: a caller's buffer (exactly its length), or bytes kept for
    a small reply; chunked bodies pass through `scratch` and a decoder."""

    def __init__(self, link: Link, head: ReplyHead, target: memoryview | None,
                 progress: RangeProgress | None = None) -> None:
        self.link = link
        self.head = head
        self.target = target
        self.progress = progress
        self.kept = bytearray()
        self.filled = 0
        self.complete = head.content_length == 0
        self.decoder = ChunkedDecoder() if head.chunked else None

    def buffer(self) -> memoryview:
        if self.target is not None and self.decoder is None and self.filled < len(self.target):
            return self.target[self.filled:]
        return self.link.scratch

    def landed(self, nbytes: int) -> None:
        if self.target is not None and self.decoder is None and self.filled < len(self.target):
            self._count(nbytes)
            if not self.complete:
                self.link.wait_for(self.awaited())
        else:
            self.feed(bytes(self.link.scratch[:nbytes]))

    def awaited(self) -> int:
        """The bytes still to land in place (1 when they land elsewhere)."""
        if self.target is not None and self.decoder is None:
            return max(1, len(self.target) - self.filled)
        return 1

    def feed(self, data: bytes) -> None:
        """Body bytes that did not land in place (with the head, in scratch, chunked)."""
        if self.decoder is not None:
            pieces, rest = self.decoder.feed(data)
            for piece in pieces:
                self._take(piece)
            if self.decoder.done:
                if rest:
                    raise LinkLost("bytes after a chunked body")
                self._finish()
            return
        self._take(data)

    def _take(self, data: bytes) -> None:
        if self.target is None:
            if len(self.kept) + len(data) > MAX_SMALL_BODY:
                raise LinkLost(f"a reply body of more than {MAX_SMALL_BODY} bytes")
            self.kept += data
            self.filled += len(data)
            self._check_end()
            return
        if self.filled + len(data) > len(self.target):
            raise IntegrityError(f"body longer than the {len(self.target)} bytes asked")
        self.target[self.filled:self.filled + len(data)] = data
        self._count(len(data))

    def _count(self, nbytes: int) -> None:
        self.filled += nbytes
        if self.progress is not None:
            self.progress.filled += nbytes
        self._check_end()

    def _check_end(self) -> None:
        length = self.head.content_length
        if length is not None and self.filled >= length:
            if self.filled > length:
                raise LinkLost("more body bytes than the Content-Length")
            self._finish()

    def _finish(self) -> None:
        self.complete = True
        assert self.link.transport is not None
        self.link.transport.pause_reading()
        self.link.wakeup()

    def ended(self) -> None:
        """The connection's end: the end of a body framed by it."""
        if self.head.content_length is None and self.decoder is None:
            self.complete = True


class Watchdog:
    """Aborts a connection that waited `seconds` for the network without progress: one timer
    per period, not one per read (aiohttp reschedules its read timeout on every read)."""

    def __init__(self, link: Link, seconds: float) -> None:
        self.link = link
        self.seconds = seconds
        self.reason: str | None = None
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(seconds, self._check)

    def _check(self) -> None:
        link, now = self.link, self._loop.time()
        due = link.last_progress + self.seconds
        if link.waiting and now >= due:
            self.reason = f"TimeoutError: no progress for {self.seconds:g} s"
            link.fail(LinkLost(self.reason))
            if link.transport is not None:
                link.transport.abort()
            return
        self._timer = self._loop.call_at(due if link.waiting else now + self.seconds,
                                         self._check)

    def stop(self) -> None:
        self._timer.cancel()
