"""One copy of one object between regions, in four steps:

    preflight  HEAD source -> expected MD5 -> checksum index (an early, deduplicated outcome)
               -> target must not exist -> plan segments       (engine/preflight.py)
    pipeline   parallel ranged GETs -> segment PUTs -> in-order whole-object hashes
                                                              (engine/pipeline.py)
    verify     whole-object MD5 against the expected one (read once more on a mismatch),
               and the source still the version every ranged GET was pinned to (If-Match)
    publish    manifest PUT (ETag checked by Swift) -> HEAD the result
                                                              (engine/publisher.py)

Nothing is published before the bytes are verified. On any failure or cancel every task of
the copy stops (TaskGroup) and what it wrote is deleted; names carry the job id.
"""

from __future__ import annotations

import asyncio
import logging
import time

from xfer.clients.swift import SwiftRegions
from xfer.engine import preflight
from xfer.engine.context import CopyContext
from xfer.engine.failures import failing_as
from xfer.engine.hashing import Digests
from xfer.engine.inflight import InflightBytes
from xfer.engine.pipeline import Pipeline
from xfer.engine.plan import Plan
from xfer.engine.publisher import Publisher
from xfer.engine.rate import RateShares, TokenBucket
from xfer.engine.retry import Retrier
from xfer.engine.types import CopyObserver, CopyOutcome, CopySpec, Verification
from xfer.errors import CopyFailed, SourceChanged
from xfer.settings import Settings

log = logging.getLogger(__name__)


class Copier:
    """Runs copies; all of a process's copies share one bound of buffered bytes."""

    def __init__(self, settings: Settings, regions: SwiftRegions) -> None:
        self.settings = settings
        self.regions = regions
        self.memory = InflightBytes(settings.max_inflight_bytes)
        self.rates = RateShares(settings.max_rate_mb * 1e6 or None, settings.chunk_size)
        # set when the process stops: cancelled copies then keep what they wrote
        self.handing_over = False

    def _context(self, spec: CopySpec, observer: CopyObserver,
                 rate: TokenBucket) -> CopyContext:
        return CopyContext(spec, self.settings, self.regions[spec.source.region],
                           self.regions[spec.target.region], observer, Retrier(self.settings),
                           self.memory, rate)

    async def copy(self, spec: CopySpec, observer: CopyObserver) -> CopyOutcome:
        with self.rates.bucket(spec.max_rate) as rate:
            return await self._copy(self._context(spec, observer, rate))

    async def _copy(self, ctx: CopyContext) -> CopyOutcome:
        publisher = Publisher(ctx)
        try:
            return await _copy(ctx, publisher)
        except asyncio.CancelledError:
            if not (self.handing_over or ctx.observer.handing_over):
                await publisher.clean_up()
            # else: the process is stopping, or this copy's job goes to another attempt; what
            # was written and recorded stays for the attempt that takes it over (it resumes)
            raise
        except BaseException:
            await publisher.clean_up()
            raise

    async def discard(self, spec: CopySpec, observer: CopyObserver) -> None:
        """Delete what earlier attempts of a job wrote: its recorded segments (`spec.resume`),
        and the target object if it carries this job's stamp."""
        publisher = Publisher(self._context(spec, observer, TokenBucket(None, 0)))
        await publisher.adopt_published()
        await publisher.clean_up()


async def _copy(ctx: CopyContext, publisher: Publisher) -> CopyOutcome:
    started = time.monotonic()
    source = await preflight.read_source(ctx)
    deduplicated = await preflight.find_existing_copy(ctx, source, started)
    if deduplicated is None or deduplicated.existing != ctx.spec.target:
        # xfer never overwrites, deduplicated or not: a job must not succeed naming a
        # target that holds other bytes (the indexed copy itself is the one exception)
        await publisher.refuse_existing_target()
    if deduplicated is not None:
        return deduplicated
    plan = await preflight.plan_copy(ctx, source)
    await ctx.observer.planned(plan)
    await publisher.create_containers()
    pipeline, digests = await _transfer_verified(ctx, publisher, plan, source)
    await _check_source_unchanged(ctx, source)
    if plan.as_slo:
        etag = await publisher.publish_manifest(plan, pipeline.segment_etags)
    else:
        etag = digests.md5
    await publisher.verify_published(plan, etag)
    return CopyOutcome(
        size=plan.size, md5=digests.md5, sha512=digests.sha512, etag=etag, layout=plan.layout,
        segments=len(plan.segments), md5_checked_against=source.checked_against,
        verification=(Verification.END_TO_END if source.expected_md5 is not None
                      else Verification.SOURCE_PINNED),
        retries=ctx.retrying.budget.spent, target_project=source.target_project,
        bytes_uploaded=publisher.bytes_uploaded, segments_reused=publisher.segments_reused,
        seconds=time.monotonic() - started,
        peak_buffer_bytes=pipeline.buffers.allocated * pipeline.buffers.size,
        bytes_spilled=pipeline.spill.bytes_spilled)


async def _transfer_verified(ctx: CopyContext, publisher: Publisher, plan: Plan,
                             source: preflight.Source) -> tuple[Pipeline, Digests]:
    """Move the bytes and check the whole-object MD5. A mismatch is read once more, all of
    it (a byte flipped on the way is likelier than a source that lies about its MD5), at the
    cost of one retry; two readings that disagree with the expected MD5 fail the copy."""
    expected = source.expected_md5
    seen: list[str] = []
    for reading in range(2):
        pipeline = Pipeline(ctx, publisher, plan, source.head, expected,
                            reuse_recorded=reading == 0)
        digests = await pipeline.run()
        if reading == 0:
            await ctx.observer.verifying()
        if expected is None or digests.md5 == expected:
            return pipeline, digests
        seen.append(digests.md5)
        if not ctx.retrying.budget.spend():
            break
        log.warning("the bytes read have MD5 %s, not %s: reading the source once more",
                    digests.md5, expected)
    readings = " and then ".join(seen)
    raise CopyFailed(
        "checksum_mismatch",
        f"{len(seen)} reading(s) of {ctx.spec.source.describe()} gave MD5 {readings}, but "
        f"{source.checked_against} says {expected}; nothing was published")


async def _check_source_unchanged(ctx: CopyContext, source: preflight.Source) -> None:
    """Every ranged GET was pinned to the version seen at the start; a last HEAD makes sure
    it is still that version before the copy is published as its twin."""
    src = ctx.spec.source
    with failing_as("source", "read", src.describe()):
        head = await ctx.retrying("source HEAD",
                                  lambda: ctx.source.head_object(src.container, src.object))
        if (head.etag, head.size) != (source.head.etag, source.head.size):
            raise SourceChanged(f"ETag {source.head.etag} and {source.head.size} bytes at the "
                                f"start, ETag {head.etag} and {head.size} bytes now")
