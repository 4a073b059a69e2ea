"""The data pipeline of one copy (engine v2): each target segment is one streaming PUT, fed in
order by ranged GETs of one chunk each, within a memory bound that does not depend on the
segment size.

    per segment in flight (at most `segments_in_flight` + `segments_ahead`, started in
    order; at most `segments_in_flight` with their PUTs open, the others fetching ahead):
        chunk GETs, at most `chunks_ahead` not yet consumed, each retried from the first byte
        not yet received, pinned to the source version (If-Match); at most
        `reads_in_flight` for the copy, the lowest offset first
          -> in order to: the segment's PUT body (with the source segment's MD5 as ETag when
             its boundaries are kept, so Swift checks it), the segment's own MD5 (when no ETag
             was known: compared with the one Swift returns), and the whole-object hasher
    the hasher: whole-object MD5 (+ SHA-512), segment after segment; it waits at a segment's
        end for its PUT to be accepted, and forgets an attempt that failed

A failed PUT cannot be replayed from a stream: the segment is fetched and sent again. The
chunk GETs are engine/fetch.py's, the stage a streamed read (engine/stream.py) shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

from xfer.engine.chunks import ChunkQueue, views_of
from xfer.engine.context import CopyContext
from xfer.engine.failures import describe_failure, first_failure
from xfer.engine.fetch import ChunkFetcher
from xfer.engine.hashing import EMPTY_DIGESTS, Digests, SegmentFeed, hash_in_order
from xfer.engine.plan import Plan, Segment
from xfer.engine.publisher import Publisher
from xfer.engine.sources import SourceState
from xfer.engine.spill import SpillFile
from xfer.errors import BodyRejected, CopyFailed, ErrorCode, XferError


class Pipeline:
    def __init__(self, ctx: CopyContext, publishers: list[Publisher], plan: Plan,
                 state: SourceState, expected_md5: str | None,
                 reuse_recorded: bool = True) -> None:
        self.ctx = ctx
        self.publishers = publishers  # the targets; one that fails drops out, the others go on
        self.plan = plan
        self.state = state  # the source version every read is pinned to
        self.expected_md5 = expected_md5
        # False on a second reading: what the first wrote is overwritten, not trusted
        self.reuse_recorded = reuse_recorded
        self.segment_etags: dict[int, str] = {}
        self.spill = SpillFile(ctx.settings.spill_dir, ctx.settings.chunk_size)
        self.fetcher = ChunkFetcher(ctx.source, state, ctx.settings.chunk_size, ctx.rate,
                                    ctx.retrying, self.spill, ctx.buffers,
                                    reads=ctx.settings.reads_in_flight)
        # A segment fetched ahead waits here for its PUTs, its first chunks already in.
        self.put_lanes = asyncio.Semaphore(ctx.settings.segments_in_flight)
        self.putting = 0  # segments with their PUTs open now
        self.most_putting = 0  # and at most at once

    async def aclose(self) -> None:
        self.spill.close()

    async def run(self) -> Digests:
        settings = self.ctx.settings
        feeds: asyncio.Queue[SegmentFeed | None] = asyncio.Queue()
        lanes = asyncio.Semaphore(settings.segments_in_flight + settings.segments_ahead)
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
            return self.expected_md5 or (EMPTY_DIGESTS.md5 if segment.length == 0 else None)
        return None

    async def _segment(self, segment: Segment, feed: SegmentFeed, lanes: asyncio.Semaphore,
                       taken: int) -> None:
        """Write a segment to every target. The first attempt that some target stores also
        fed the hasher; a target that failed gets the segment again on its own (read again:
        a stream cannot be replayed), now declaring the MD5 the first attempt found."""
        try:
            pending = [publisher for publisher in self.publishers if publisher.active]
            declared = self.declared_etag(segment)
            feeding: SegmentFeed | None = feed
            tries: dict[Publisher, int] = {}
            attempt = 0
            while pending:
                attempt += 1
                await self.ctx.observer.segment_started(segment, attempt)
                try:
                    etag, failures = await self._attempt(segment, feeding, pending, declared)
                except CopyFailed as exc:  # the source failed for good: the whole copy fails
                    await self.ctx.observer.segment_failed(segment, attempt, exc)
                    raise
                if len(failures) < len(pending):  # stored somewhere: these bytes were right
                    feeding, declared = None, etag
                    self.segment_etags[segment.index] = etag
                await self._failed(segment, attempt, failures, tries)
                pending = [publisher for publisher in failures if publisher.active]
            if not any(publisher.active for publisher in self.publishers):
                raise next(p.failure for p in self.publishers if p.failure is not None)
            await self.ctx.observer.segment_written(segment, self.segment_etags[segment.index])
            # The segment's lane and share of memory go back once the hasher is through it,
            # not before: a hasher that lags (it takes segments in order, on a busy machine)
            # then holds back new segments instead of sending them all through the spill
            # file. Measured (issue 21, 1 GiB plain source, 2 loaded cores): 97-98% of the
            # bytes were written to the spill file and read back when the lane went back
            # as soon as the PUT was done, the rest of the segment spilled to free it.
            await feed.hashed.wait()
        finally:
            self.ctx.memory.give_back(taken)
            lanes.release()

    async def _failed(self, segment: Segment, attempt: int,
                      failures: dict[Publisher, XferError], tries: dict[Publisher, int]) -> None:
        """After an attempt at a segment: report it failed (when some target did not store
        it), then wait to try those targets again, or fail them."""
        if not failures:
            return
        publisher, exc = next(iter(failures.items()))
        # the code the segment would fail the copy with, and what happened (not "gave up")
        code = self._blame(segment, publisher, exc).code
        await self.ctx.observer.segment_failed(segment, attempt, CopyFailed(code, str(exc)))
        for publisher, exc in failures.items():
            tries[publisher] = tries.get(publisher, 0) + 1
            retry = isinstance(exc, BodyRejected) or exc.retryable
            if not (retry and await self.ctx.retrying.another_try(
                    tries[publisher], f"segment {segment.index} to "
                    f"{publisher.target.ref.region}", exc)):
                publisher.failure = self._blame(segment, publisher, exc)

    def _blame(self, segment: Segment, publisher: Publisher, exc: XferError) -> CopyFailed:
        """Who failed when a segment kept failing: bytes refused against the source's own
        MD5 were read damaged; anything else is the target's."""
        target = publisher.target.ref.describe()
        if isinstance(exc, CopyFailed):
            return exc
        if isinstance(exc, BodyRejected) and segment.etag is not None:
            return describe_failure(
                "source", f"read segment {segment.index} (its bytes do not match the source "
                f"segment's MD5 {segment.etag}) of", self.ctx.source.describe(), exc)
        if isinstance(exc, BodyRejected) and not self.plan.as_slo and self.expected_md5:
            return CopyFailed(ErrorCode.CHECKSUM_MISMATCH, (
                f"every reading of {self.ctx.source.describe()} had another MD5 than "
                f"{self.expected_md5}, so {target} refused it; nothing was published ({exc})"))
        return describe_failure("target", f"write segment {segment.index} of", target, exc)

    async def _attempt(self, segment: Segment, feed: SegmentFeed | None,
                       targets: list[Publisher], declared: str | None
                       ) -> tuple[str, dict[Publisher, XferError]]:
        """Fetch a segment once, in order, into the PUT of each target (a target that fails
        does not stop the others), its MD5 when none is declared, and the hasher when `feed`
        is given. Returns that MD5 and the targets that did not store it. A segment an
        earlier attempt of the job wrote and that Swift still holds is not sent again."""
        reused = {p: etag for p in targets if (etag := await self._reusable(p, segment))}
        puts = {p: ChunkQueue() for p in targets if p not in reused}
        md5_queue = None if declared else ChunkQueue()
        queues: list[ChunkQueue] = [*puts.values(), *([md5_queue] if md5_queue else [])]
        stored: dict[Publisher, str | XferError] = {}
        accepted = False
        try:
            async with asyncio.TaskGroup() as group:
                # no feed: a catch-up for some targets, the hasher had these bytes already
                group.create_task(self.fetcher.fetch(
                    segment.offset, segment.length, queues, self.ctx.settings.chunks_ahead,
                    feed, again=feed is None))
                digest = group.create_task(_md5_of(md5_queue)) if md5_queue else None
                if puts:
                    group.create_task(self._puts(puts, segment, declared, stored))
            computed = digest.result() if digest else declared
            assert computed is not None
            failures: dict[Publisher, XferError] = {}
            for publisher in targets:
                written = reused.get(publisher) or stored[publisher]
                if isinstance(written, XferError):
                    failures[publisher] = written
                elif written != computed:
                    if publisher in reused:  # the earlier attempt's segment holds other bytes
                        publisher.distrust(segment)
                    failures[publisher] = BodyRejected(
                        f"segment {segment.index}: {publisher.target.ref.region} holds ETag "
                        f"{written}, the bytes read have MD5 {computed}")
            accepted = len(failures) < len(targets)
            return computed, failures
        except BaseExceptionGroup as failures_group:
            raise first_failure(failures_group) from None
        finally:
            if feed is not None:  # None: a catch-up for some targets, the hasher has the bytes
                feed.end_attempt(accepted)
            for queue in queues:
                queue.close()

    async def _puts(self, puts: dict[Publisher, ChunkQueue], segment: Segment,
                    declared: str | None, stored: dict[Publisher, str | XferError]) -> None:
        """The attempt's PUTs, one per target, once a PUT lane is free (first come, first
        served; a segment fetched ahead already holds its first chunks)."""
        async with self.put_lanes:
            self.putting += 1
            self.most_putting = max(self.most_putting, self.putting)
            try:
                async with asyncio.TaskGroup() as group:
                    for publisher, queue in puts.items():
                        group.create_task(self._put(publisher, segment, queue, declared,
                                                    stored))
            finally:
                self.putting -= 1

    async def _put(self, publisher: Publisher, segment: Segment, queue: ChunkQueue,
                   declared: str | None, stored: dict[Publisher, str | XferError]) -> None:
        """One target's PUT; its failure is kept for the caller, and the chunks meant for it
        are released as they come, so that the other targets go on."""
        views = views_of(queue)
        try:
            stored[publisher] = await publisher.put_segment(self.plan, segment, views, declared)
        except XferError as exc:
            stored[publisher] = exc
            queue.close()
            await views.aclose()

    async def _reusable(self, publisher: Publisher, segment: Segment) -> str | None:
        if not (self.reuse_recorded and self.plan.as_slo):
            return None
        return await publisher.reusable(segment)


async def _md5_of(queue: ChunkQueue) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    while (chunk := await queue.get()) is not None:
        try:
            await asyncio.to_thread(digest.update, chunk.view)
        finally:
            chunk.done()
    return digest.hexdigest()
