"""The fetch stage of engine v2, shared by a copy's segment PUTs (engine/pipeline.py) and by a
streamed read (engine/stream.py): a byte range cut into chunks, each one ranged GET pinned to
the source version, several in flight, delivered in byte order to every consumer's queue.

    [offset, offset + length)  ->  chunk GETs, at most `ahead` fetched and not yet consumed,
                                   each retried from its first byte not yet received
                               ->  in order: every queue (and a segment's hasher feed)

A chunk's buffer returns to the pool once its last consumer is done with it, so the bytes held
are `ahead` chunks per range being fetched, whatever the object's size.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

from xfer.clients.transport import RangeProgress
from xfer.engine.chunks import BufferPool, Chunk, ChunkQueue, chunk_ranges
from xfer.engine.failures import failing_as
from xfer.engine.hashing import SegmentFeed
from xfer.engine.rate import TokenBucket
from xfer.engine.retry import Retrier
from xfer.engine.sources import SourceReader, SourceState
from xfer.engine.spill import SpillFile


class LowestFirst:
    """At most `size` holders at once; whoever waits with the lowest key goes next.

    A copy's reads wait here keyed by offset: on a link whose capacity all its GETs share,
    the chunk the oldest segment's PUT needs next is not slowed by chunks of later segments
    (measured: docs/benchmarks.md, stop 26)."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()  # equal keys: first come, first served

    async def acquire(self, key: int) -> None:
        if self.free > 0 and not self._waiting:
            self.free -= 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (key, next(self._order), granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # granted just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, granted = heapq.heappop(self._waiting)
            if not granted.done():  # a cancelled waiter's future is done: skip it
                granted.set_result(None)
                return
        self.free += 1


class ChunkFetcher:
    def __init__(self, source: SourceReader, state: SourceState, chunk_size: int,
                 rate: TokenBucket, retrying: Retrier, spill: SpillFile | None = None,
                 buffers: BufferPool | None = None, reads: int | None = None) -> None:
        self.source = source
        self.state = state  # the source version every read is pinned to
        self.chunk_size = chunk_size
        self.rate = rate
        self.retrying = retrying
        self.spill = spill  # where chunks only a hasher feed still needs may wait
        # the process's pool (a copy's), or one of its own (a stream's)
        self.buffers = buffers or BufferPool(chunk_size)
        if self.buffers.size != chunk_size:
            raise ValueError(f"chunks of {chunk_size} bytes from a pool of {self.buffers.size}")
        self.buffers_held = 0  # this fetcher's chunk buffers now
        self.most_buffers_held = 0  # and at most at once
        self.bytes_read = 0  # from the source, all of it
        self.bytes_read_again = 0  # of which in ranges fetched `again` (a copy's catch-ups)
        self.reads = 0  # ranged reads that delivered a chunk
        self.reading = 0  # ranged reads in flight now
        self.most_reading = 0  # the most that were in flight at once
        # a copy's reads at once, lowest offset first (None: as many as its ranges start)
        self.read_slots = None if reads is None else LowestFirst(reads)

    @property
    def peak_buffer_bytes(self) -> int:
        return self.most_buffers_held * self.chunk_size

    async def fetch(self, offset: int, length: int, queues: list[ChunkQueue], ahead: int,
                    feed: SegmentFeed | None = None, again: bool = False) -> None:
        """Deliver [offset, offset + length) to every queue (and `feed`) in order, then None
        to each queue; `again`: these bytes were read before (counted apart)."""
        slots = asyncio.Semaphore(ahead)
        consumed = asyncio.Event()  # a consumer is done with one of this range's chunks
        previous: asyncio.Event | None = None
        async with asyncio.TaskGroup() as group:
            for start, size in chunk_ranges(offset, length, self.chunk_size):
                while slots.locked():
                    # Every buffer of this range is taken. When the hasher alone still needs
                    # one (it is busy with an earlier segment), move that one to disk rather
                    # than stall this range's other consumers until the hasher gets here.
                    candidate = None if feed is None else feed.spill_candidate()
                    if candidate is not None and self.spill is not None:
                        await candidate.spill(self.spill)
                        continue
                    consumed.clear()
                    await consumed.wait()
                await slots.acquire()
                delivered = asyncio.Event()
                group.create_task(self._fetch_chunk(start, size, slots, previous, delivered,
                                                    queues, feed, consumed, again))
                previous = delivered
        for queue in queues:
            queue.put(None)

    async def _fetch_chunk(self, start: int, length: int, slots: asyncio.Semaphore,
                           previous: asyncio.Event | None, delivered: asyncio.Event,
                           queues: list[ChunkQueue], feed: SegmentFeed | None,
                           consumed: asyncio.Event, again: bool) -> None:
        buffer = self.buffers.take()
        self.buffers_held += 1
        self.most_buffers_held = max(self.most_buffers_held, self.buffers_held)
        view = memoryview(buffer)[:length]

        def free() -> None:
            # CPython's selector transport copies what a write could not send at once, so
            # the buffer may be reused as soon as every consumer is done; anything else
            # would show as an ETag or digest mismatch, never as a silent corruption.
            self.buffers.give_back(buffer)
            self.buffers_held -= 1
            slots.release()

        try:
            await self._read(start, view)
            if previous is not None:
                await previous.wait()
        except BaseException:
            free()
            raise
        chunk = Chunk(start, view, holders=len(queues) + (feed is not None), on_free=free,
                      on_done=consumed.set)
        self.bytes_read += length
        self.reads += 1
        if again:
            self.bytes_read_again += length
        if chunk.holders == 0:  # nobody wants it (every target reused its segment, MD5 known)
            free()
        for queue in queues:
            queue.put(chunk)
        if feed is not None:
            feed.put(chunk)
        delivered.set()

    async def _read(self, start: int, view: memoryview) -> None:
        progress = RangeProgress()
        await self.rate.take(len(view))
        if self.read_slots is not None:
            await self.read_slots.acquire(start)
        self.reading += 1
        self.most_reading = max(self.most_reading, self.reading)
        try:
            with failing_as("source", f"read bytes {start}-{start + len(view) - 1} of",
                            self.source.describe()):
                await self.retrying(
                    f"source read at byte {start}",
                    lambda: self.source.read_into(self.state, start + progress.filled,
                                                  view[progress.filled:], progress))
        finally:
            self.reading -= 1
            if self.read_slots is not None:
                self.read_slots.release()
