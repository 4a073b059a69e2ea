"""A verified stream of one source's bytes, in order, to a writer (the Glance-compatible read
endpoint, web/glance_front.py): the copies' fetch stage (engine/fetch.py) with one consumer
instead of segment PUTs.

    chunk GETs, `ahead` in flight, pinned to the source version
      -> in order: the writer, and (for the whole object) MD5 + SHA-512 in two threads
    the last byte is held back until both digests match the expected ones

A reader that cannot tell a short body from a whole one (Glance's glance-download checks only
the size) thus never receives all the bytes of data that did not verify: on a mismatch, or a
source that changed, the stream ends one byte short and the caller breaks the connection.

Memory: `ahead` chunks, whatever the object's size, plus the slice of a chunk the writer's
transport holds; a slow writer or hasher stalls the reads, a reader that takes nothing for
`write_timeout` seconds ends the stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from xfer.clients.transport import detached_slices
from xfer.engine.chunks import ChunkQueue
from xfer.engine.failures import first_failure
from xfer.engine.fetch import ChunkFetcher
from xfer.engine.hashing import EMPTY_DIGESTS, Digests, StreamHasher
from xfer.engine.rate import TokenBucket
from xfer.engine.retry import Retrier
from xfer.engine.sources import SourceReader, SourceState
from xfer.errors import CopyFailed, ErrorCode

Writer = Callable[[memoryview | bytes], Awaitable[None]]
# Bytes given to a writer that its reader has not taken yet (an HTTP transport's buffer).
Backlog = Callable[[], int]


@dataclass(frozen=True)
class StreamOutcome:
    bytes_sent: int
    seconds: float
    reads: int  # ranged reads of the source
    most_reading: int  # the most ranged reads in flight at once
    verified: bool  # the whole object was hashed and matched the expected digests


async def stream_verified(source: SourceReader, state: SourceState, start: int, length: int,
                          expected: Digests | None, write: Writer, *, chunk_size: int,
                          ahead: int, rate: TokenBucket, retrying: Retrier,
                          write_timeout: float, backlog: Backlog | None = None
                          ) -> StreamOutcome:
    """Write bytes [start, start + length) of `state` to `write`, in order. When they are the
    whole object and `expected` is given, they are verified (MD5, and SHA-512 when expected
    has one) and the last byte is written only if they match: CopyFailed
    ("checksum_mismatch") otherwise, as for any source error ("source_changed", ...), and
    for a writer whose reader takes nothing for `write_timeout` seconds ("reader_stalled";
    `backlog` tells whether it took any)."""
    began = time.monotonic()
    verify = expected is not None and start == 0 and length == state.size
    fetcher = ChunkFetcher(source, state, chunk_size, rate, retrying)
    to_writer = ChunkQueue()
    to_hasher = ChunkQueue() if verify else None
    queues = [to_writer, *([to_hasher] if to_hasher is not None else [])]
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(fetcher.fetch(start, length, queues, ahead))
            hashing = (group.create_task(_digests(to_hasher, expected))
                       if to_hasher is not None and expected is not None else None)
            sending = group.create_task(_send(to_writer, write, start + length, verify,
                                              write_timeout, backlog))
    except BaseExceptionGroup as failures:
        raise first_failure(failures) from None
    finally:
        for queue in queues:
            queue.close()
    held = sending.result()
    if hashing is not None and expected is not None:
        _check(hashing.result(), expected, source.describe())
    if held:
        await _write_within(write, held, write_timeout, backlog)
    return StreamOutcome(length, time.monotonic() - began, fetcher.reads,
                         fetcher.most_reading, verify)


async def _send(queue: ChunkQueue, write: Writer, end: int, hold_last: bool,
                write_timeout: float, backlog: Backlog | None) -> bytes:
    """Every chunk to the writer, as it comes, in copies (the chunk's buffer is reused once
    it is done); with `hold_last`, the very last byte is kept back and returned."""
    while (chunk := await queue.get()) is not None:
        try:
            last = hold_last and chunk.end == end
            for piece in detached_slices(chunk.view[:-1] if last else chunk.view):
                await _write_within(write, piece, write_timeout, backlog)
            if last:
                return bytes(chunk.view[-1:])
        finally:
            chunk.done()
    return b""


async def _write_within(write: Writer, data: bytes, seconds: float,
                        backlog: Backlog | None) -> None:
    """A reader that takes nothing for `seconds` is cut off: it would otherwise hold its
    chunks, out of the budget copies share, for as long as it likes. A write waits until the
    reader has taken most of it, so a slow reader's write may last longer: its deadline moves
    on whenever the writer's `backlog` shrank. Without one, each write has `seconds`."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(seconds) as deadline:
            watch = None if backlog is None else _ProgressWatch(loop, deadline, seconds, backlog)
            try:
                await write(data)
            finally:
                if watch is not None:
                    watch.stop()
    except TimeoutError:
        raise CopyFailed(ErrorCode.READER_STALLED,
                         f"the reader took no bytes for {seconds:g} s, so the stream was cut "
                         f"(XFER_STREAM_WRITE_TIMEOUT)") from None


class _ProgressWatch:
    """Moves a write's deadline on while the reader takes bytes: checks the writer's backlog a
    few times per period, from the event loop's timers (no task of its own)."""

    CHECKS_PER_PERIOD = 4

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: asyncio.Timeout,
                 seconds: float, backlog: Backlog) -> None:
        self.loop, self.deadline, self.seconds, self.backlog = loop, deadline, seconds, backlog
        self.last = backlog()
        self.handle = loop.call_later(seconds / self.CHECKS_PER_PERIOD, self._check)

    def _check(self) -> None:
        now = self.backlog()
        if now < self.last:  # the reader took some: a new period from now
            self.deadline.reschedule(self.loop.time() + self.seconds)
        self.last = now
        self.handle = self.loop.call_later(self.seconds / self.CHECKS_PER_PERIOD, self._check)

    def stop(self) -> None:
        self.handle.cancel()


async def _digests(queue: ChunkQueue, expected: Digests) -> Digests:
    hasher = StreamHasher(with_sha512=expected.sha512 is not None)
    while (chunk := await queue.get()) is not None:
        try:
            await hasher.update(chunk.view)
        finally:
            chunk.done()
    return hasher.digests()


def check_empty(expected: Digests, where: str) -> None:
    """An empty source has no last byte to hold back: its reply, headers alone, is whole as
    soon as it starts, so it is checked against the digests of nothing before that."""
    _check(EMPTY_DIGESTS, expected, where)


def _check(found: Digests, expected: Digests, where: str) -> None:
    if found.md5 != expected.md5.lower():
        raise CopyFailed(ErrorCode.CHECKSUM_MISMATCH,
                         f"the bytes of {where} have MD5 {found.md5}, but the image records "
                         f"checksum {expected.md5}: the stored data does not match its image "
                         f"record")
    if expected.sha512 is not None and found.sha512 != expected.sha512.lower():
        raise CopyFailed(ErrorCode.CHECKSUM_MISMATCH,
                         f"the bytes of {where} have SHA-512 {found.sha512}, but the image "
                         f"records os_hash_value {expected.sha512}: the stored data does not "
                         f"match its image record")
