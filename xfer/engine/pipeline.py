"""The data pipeline of one copy (engine v2): each target segment is one streaming PUT, fed in
order by ranged GETs of one chunk each, within a memory bound that does not depend on the
segment size.

    per segment in flight (at most `segments_in_flight`, started in order):
        chunk GETs, at most `chunks_ahead` not yet consumed, each retried from the first byte
        not yet received, pinned to the source version (If-Match)
          -> in order to: the segment's PUT body (with the source segment's MD5 as ETag when
             its boundaries are kept, so Swift checks it), the segment's own MD5 (when no ETag
             was known: compared with the one Swift returns), and the whole-object hasher
    the hasher: whole-object MD5 (+ SHA-512), segment after segment; it waits at a segment's
        end for its PUT to be accepted, and forgets an attempt that failed

A failed PUT cannot be replayed from a stream: the segment is fetched and sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from xfer.clients.transport import RangeProgress
from xfer.engine.chunks import (
    BufferPool,
    Chunk,
    ChunkQueue,
    chunk_ranges,
    release_queued,
    views_of,
)
from xfer.engine.context import CopyContext
from xfer.engine.failures import describe_failure, failing_as, first_failure
from xfer.engine.hashing import Digests, SegmentFeed, hash_in_order
from xfer.engine.plan import Plan, Segment
from xfer.engine.publisher import Publisher
from xfer.engine.spill import SpillFile
from xfer.errors import BodyRejected, CopyFailed, XferError
from xfer.proto import swift

EMPTY_MD5 = hashlib.md5(b"", usedforsecurity=False).hexdigest()


class Pipeline:
    def __init__(self, ctx: CopyContext, publisher: Publisher, plan: Plan,
                 head: swift.ObjectHead, expected_md5: str | None,
                 reuse_recorded: bool = True) -> None:
        self.ctx = ctx
        self.publisher = publisher
        self.plan = plan
        self.head = head
        self.expected_md5 = expected_md5
        # False on a second reading: what the first wrote is overwritten, not trusted
        self.reuse_recorded = reuse_recorded
        self.segment_etags: dict[int, str] = {}
        self.buffers = BufferPool(ctx.settings.chunk_size)
        self.spill = SpillFile(ctx.settings.spill_dir, ctx.settings.chunk_size)

    async def aclose(self) -> None:
        self.spill.close()

    async def run(self) -> Digests:
        settings = self.ctx.settings
        feeds: asyncio.Queue[SegmentFeed | None] = asyncio.Queue()
        lanes = asyncio.Semaphore(settings.segments_in_flight)
        try:
            async with contextlib.aclosing(self), asyncio.TaskGroup() as group:
                hashing = group.create_task(
                    hash_in_order(feeds, settings.verify_sha512, settings.chunk_size))
                for segment in self.plan.segments:
                    # In order: this copy's oldest segment never waits behind its newer ones.
                    await lanes.acquire()
                    taken = await self.ctx.memory.take(
                        min(segment.length, settings.segment_memory_bound))
                    feed = SegmentFeed(segment.offset, segment.length)
                    feeds.put_nowait(feed)
                    group.create_task(self._segment(segment, feed, lanes, taken))
                feeds.put_nowait(None)
        except BaseExceptionGroup as failures:
            raise first_failure(failures) from None
        return hashing.result()

    def declared_etag(self, segment: Segment) -> str | None:
        """The MD5 a segment's PUT declares, so that Swift refuses other bytes: the source
        segment's (kept boundaries), or the whole object's for a plain copy (which publishes
        at once: preflight makes a copy plain only when that MD5 is known)."""
        if segment.etag is not None:
            return segment.etag
        if not self.plan.as_slo:
            return self.expected_md5 or (EMPTY_MD5 if segment.length == 0 else None)
        return None

    async def _segment(self, segment: Segment, feed: SegmentFeed, lanes: asyncio.Semaphore,
                       taken: int) -> None:
        try:
            with self._blamed(segment):
                etag = await self.ctx.retrying(
                    f"segment {segment.index}", lambda: self._attempt(segment, feed),
                    retry_on=lambda exc: isinstance(exc, BodyRejected) or exc.retryable)
            self.segment_etags[segment.index] = etag
            await self.ctx.observer.segment_written(segment, etag)
        finally:
            self.ctx.memory.give_back(taken)
            lanes.release()

    @contextmanager
    def _blamed(self, segment: Segment) -> Iterator[None]:
        """Who failed when a segment kept failing: bytes refused against the source's own
        MD5 were read damaged; anything else is the target's."""
        try:
            yield
        except CopyFailed:
            raise
        except BodyRejected as exc:
            if segment.etag is not None:
                raise describe_failure(
                    "source", f"read segment {segment.index} (its bytes do not match the source "
                    f"segment's MD5 {segment.etag}) of", self.ctx.spec.source.describe(),
                    exc) from exc
            if not self.plan.as_slo and self.expected_md5 is not None:
                raise CopyFailed("checksum_mismatch", (
                    f"every reading of {self.ctx.spec.source.describe()} had another MD5 than "
                    f"{self.expected_md5}, so the target refused it; nothing was published "
                    f"({exc})")) from exc
            raise describe_failure("target", f"write segment {segment.index} of",
                                   self.ctx.spec.target.describe(), exc) from exc
        except XferError as exc:
            raise describe_failure("target", f"write segment {segment.index} of",
                                   self.ctx.spec.target.describe(), exc) from exc

    async def _attempt(self, segment: Segment, feed: SegmentFeed) -> str:
        """Fetch a segment once, in order, into its PUT, its MD5 and the hasher; the ETag
        written. A segment an earlier attempt of the job wrote and that Swift still holds is
        read for the hasher but not sent again."""
        reused_etag = await self._reusable(segment)
        declared = self.declared_etag(segment)
        put_queue: ChunkQueue | None = None if reused_etag else asyncio.Queue()
        md5_queue: ChunkQueue | None = None if declared else asyncio.Queue()
        queues = [queue for queue in (put_queue, md5_queue) if queue is not None]
        accepted = False
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._fetch_in_order(segment, queues, feed))
                digest = group.create_task(_md5_of(md5_queue)) if md5_queue else None
                put = group.create_task(self.publisher.put_segment(
                    self.plan, segment, views_of(put_queue), declared)) if put_queue else None
            computed = digest.result() if digest else declared
            written = put.result() if put else reused_etag
            if written != computed:
                if put is None:  # the earlier attempt's segment holds other bytes
                    self.publisher.distrust(segment)
                raise BodyRejected(f"segment {segment.index}: Swift holds ETag {written}, the "
                                   f"bytes read have MD5 {computed}")
            accepted = True
            assert written is not None
            return written
        except BaseExceptionGroup as failures:
            raise first_failure(failures) from None
        finally:
            feed.end_attempt(accepted)
            for queue in queues:
                release_queued(queue)

    async def _reusable(self, segment: Segment) -> str | None:
        if not (self.reuse_recorded and self.plan.as_slo):
            return None
        return await self.publisher.reusable(segment)

    async def _fetch_in_order(self, segment: Segment, queues: list[ChunkQueue],
                              feed: SegmentFeed) -> None:
        slots = asyncio.Semaphore(self.ctx.settings.chunks_ahead)
        consumed = asyncio.Event()  # a consumer is done with one of this segment's chunks
        previous: asyncio.Event | None = None
        async with asyncio.TaskGroup() as group:
            for start, length in chunk_ranges(segment.offset, segment.length,
                                              self.ctx.settings.chunk_size):
                while slots.locked():
                    # Every buffer of this segment is taken. When the hasher alone still
                    # needs one (it is busy with an earlier segment), move that one to disk
                    # rather than stall this segment's PUT until the hasher gets here.
                    candidate = feed.spill_candidate()
                    if candidate is not None:
                        await candidate.spill(self.spill)
                        continue
                    consumed.clear()
                    await consumed.wait()
                await slots.acquire()
                delivered = asyncio.Event()
                group.create_task(self._fetch_chunk(start, length, slots, previous, delivered,
                                                    queues, feed, consumed))
                previous = delivered
        for queue in queues:
            queue.put_nowait(None)

    async def _fetch_chunk(self, start: int, length: int, slots: asyncio.Semaphore,
                           previous: asyncio.Event | None, delivered: asyncio.Event,
                           queues: list[ChunkQueue], feed: SegmentFeed,
                           consumed: asyncio.Event) -> None:
        buffer = self.buffers.take()
        view = memoryview(buffer)[:length]

        def free() -> None:
            # CPython's selector transport copies what a write could not send at once, so
            # the buffer may be reused as soon as every consumer is done; anything else
            # would show as an ETag mismatch, never as a silent corruption.
            self.buffers.give_back(buffer)
            slots.release()

        try:
            await self._read(start, view)
            if previous is not None:
                await previous.wait()
        except BaseException:
            free()
            raise
        chunk = Chunk(start, view, holders=len(queues) + 1, on_free=free,
                      on_done=consumed.set)
        for queue in queues:
            queue.put_nowait(chunk)
        feed.put(chunk)
        delivered.set()

    async def _read(self, start: int, view: memoryview) -> None:
        src = self.ctx.spec.source
        progress = RangeProgress()
        await self.ctx.rate.take(len(view))
        with failing_as("source", f"read bytes {start}-{start + len(view) - 1} of",
                        src.describe()):
            await self.ctx.retrying(
                f"source GET at byte {start}",
                lambda: self.ctx.source.read_range_into(
                    src.container, src.object, start + progress.filled, self.head.size,
                    view[progress.filled:], if_match=self.head.etag, progress=progress))


async def _md5_of(queue: ChunkQueue) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    while (chunk := await queue.get()) is not None:
        try:
            await asyncio.to_thread(digest.update, chunk.view)
        finally:
            chunk.done()
    return digest.hexdigest()
