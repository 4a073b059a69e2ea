"""The data pipeline of one copy: segments read, written and hashed, within the memory bound.

    one task per segment (at most `window` alive): ranged GET into a buffer -> segment MD5
        -> PUT with that MD5 as ETag (Swift checks it) -> offer the buffer to the hasher
    the in-order hasher: whole-object MD5 (+ SHA-512) over the bytes in order
"""

from __future__ import annotations

import asyncio

from xfer.engine.context import CopyContext
from xfer.engine.failures import failing_as, first_failure
from xfer.engine.hashing import Digests, InOrderHasher, md5_hex_off_loop
from xfer.engine.plan import Plan, Segment, window_for
from xfer.engine.publisher import Publisher
from xfer.errors import BodyRejected
from xfer.proto import swift


class Pipeline:
    def __init__(self, ctx: CopyContext, publisher: Publisher, plan: Plan,
                 head: swift.ObjectHead, expected_md5: str | None,
                 reuse_recorded: bool = True) -> None:
        self.ctx = ctx
        # False on a second reading: what the first wrote is overwritten, not trusted
        self.reuse_recorded = reuse_recorded
        self.publisher = publisher
        self.plan = plan
        self.head = head
        self.expected_md5 = expected_md5
        self.segment_etags: dict[int, str] = {}
        # buffers of finished segments, for the next ones: at most the window's worth
        self.spare_buffers: list[bytearray] = []

    async def run(self) -> Digests:
        plan = self.plan
        window = window_for(plan, self.ctx.settings.copy_memory_bound)
        hasher = InOrderHasher(plan.size, window * max(1, plan.segment_size),
                               self.ctx.settings.verify_sha512)
        slots = asyncio.Semaphore(window)
        try:
            async with asyncio.TaskGroup() as group:
                hashing = group.create_task(hasher.run())
                for segment in plan.segments:
                    # In order: this copy's oldest segment never waits behind its newer ones.
                    await slots.acquire()
                    taken = await self.ctx.memory.take(segment.length)
                    group.create_task(self._segment(segment, hasher, slots, taken))
        except BaseExceptionGroup as failures:
            raise first_failure(failures) from None
        return hashing.result()

    async def _segment(self, segment: Segment, hasher: InOrderHasher,
                       slots: asyncio.Semaphore, taken: int) -> None:
        try:
            whole = self.spare_buffers.pop() if self.spare_buffers else bytearray(
                self.plan.segment_size)
            buffer = memoryview(whole)[:segment.length]
            with failing_as(*self._blame_for_refused_bytes(segment)):
                etag = await self.ctx.retrying(
                    f"segment {segment.index} (read again: Swift refused its bytes)",
                    lambda: self._fetch_and_upload(segment, buffer),
                    retry_on=lambda exc: isinstance(exc, BodyRejected))
            # Hashed only once the target accepted the bytes: a refetch never hashes twice.
            hasher.offer(segment.offset, buffer)
            if etag is not None:
                self.segment_etags[segment.index] = etag
                await self.ctx.observer.segment_written(segment, etag)
            await hasher.wait_hashed(segment.end)
            # Uploaded and hashed: nothing reads it any more. Reusing it spares the kernel
            # mapping and zeroing fresh pages for every segment (measured: page faults and
            # clear_page were a visible share of xfer's CPU).
            buffer.release()
            self.spare_buffers.append(whole)
        finally:
            self.ctx.memory.give_back(taken)
            slots.release()

    def _blame_for_refused_bytes(self, segment: Segment) -> tuple[str, str, str]:
        """Who to blame when Swift keeps refusing a segment's bytes."""
        if segment.etag is not None:  # the source's own MD5 of these bytes
            return ("source", f"read segment {segment.index} (its bytes do not match the source "
                    f"segment's MD5 {segment.etag}) of", self.ctx.spec.source.describe())
        return ("target", f"write segment {segment.index} of", self.ctx.spec.target.describe())

    async def _fetch_and_upload(self, segment: Segment, buffer: memoryview) -> str | None:
        """One pass over a segment: ranged GET (retried), then PUT (retried). Returns the ETag
        written, or None when a plain copy's bytes do not match the expected MD5 (the copy
        then fails as checksum_mismatch without publishing)."""
        src = self.ctx.spec.source
        if segment.length:
            with failing_as("source", f"read bytes {segment.offset}-{segment.end - 1} of",
                            src.describe()):
                await self.ctx.retrying(
                    f"source GET segment {segment.index}",
                    lambda: self.ctx.source.read_range_into(
                        src.container, src.object, segment.offset, self.head.size, buffer,
                        if_match=self.head.etag))
        etag = segment.etag or await md5_hex_off_loop(buffer)
        if not self.plan.as_slo and self.expected_md5 is not None and etag != self.expected_md5:
            return None  # one plain PUT would publish at once: never send unverified bytes
        if self.plan.as_slo and self.reuse_recorded and await self.publisher.reusable(
                segment, etag):
            return etag
        await self.publisher.put_segment(self.plan, segment, buffer, etag)
        return etag
