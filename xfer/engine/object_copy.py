"""One copy of one object between regions, in four steps:

    preflight  HEAD source -> expected MD5 -> checksum index (an early, deduplicated outcome)
               -> target must not exist -> plan segments       (engine/preflight.py)
    pipeline   parallel ranged GETs -> segment PUTs -> in-order whole-object hashes
                                                              (engine/pipeline.py)
    verify     whole-object MD5 against the expected one
    publish    manifest PUT (ETag checked by Swift) -> HEAD the result
                                                              (engine/publisher.py)

Nothing is published before the bytes are verified. On any failure or cancel every task of
the copy stops (TaskGroup) and what it wrote is deleted; names carry the job id.
"""

from __future__ import annotations

import asyncio
import time

from xfer.clients.swift import SwiftRegions
from xfer.engine import preflight
from xfer.engine.context import CopyContext
from xfer.engine.inflight import InflightBytes
from xfer.engine.pipeline import Pipeline
from xfer.engine.publisher import Publisher
from xfer.engine.retry import Retrier
from xfer.engine.types import CopyObserver, CopyOutcome, CopySpec
from xfer.errors import CopyFailed
from xfer.settings import Settings


class Copier:
    """Runs copies; all of a process's copies share one bound of buffered bytes."""

    def __init__(self, settings: Settings, regions: SwiftRegions) -> None:
        self.settings = settings
        self.regions = regions
        self.memory = InflightBytes(settings.max_inflight_bytes)
        # set when the process stops: cancelled copies then keep what they wrote
        self.handing_over = False

    def _context(self, spec: CopySpec, observer: CopyObserver) -> CopyContext:
        return CopyContext(spec, self.settings, self.regions[spec.source.region],
                           self.regions[spec.target.region], observer, Retrier(self.settings),
                           self.memory)

    async def copy(self, spec: CopySpec, observer: CopyObserver) -> CopyOutcome:
        ctx = self._context(spec, observer)
        publisher = Publisher(ctx)
        try:
            return await _copy(ctx, publisher)
        except asyncio.CancelledError:
            if not self.handing_over:
                await publisher.clean_up()
            # else: the process is stopping and hands the job back; what was written and
            # recorded stays for the attempt that takes the job over (it resumes from there)
            raise
        except BaseException:
            await publisher.clean_up()
            raise

    async def discard(self, spec: CopySpec, observer: CopyObserver) -> None:
        """Delete what earlier attempts of a job wrote: its recorded segments (`spec.resume`),
        and the target object if it carries this job's stamp."""
        publisher = Publisher(self._context(spec, observer))
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
    pipeline = Pipeline(ctx, publisher, plan, source.head, source.expected_md5)
    digests = await pipeline.run()
    await ctx.observer.verifying()
    if source.expected_md5 is not None and digests.md5 != source.expected_md5:
        raise CopyFailed(
            "checksum_mismatch",
            f"the bytes read from {ctx.spec.source.describe()} have MD5 {digests.md5}, but "
            f"{source.checked_against} says {source.expected_md5}; nothing was published")
    if plan.as_slo:
        etag = await publisher.publish_manifest(plan, pipeline.segment_etags)
    else:
        etag = digests.md5
    await publisher.verify_published(plan, etag)
    return CopyOutcome(
        size=plan.size, md5=digests.md5, sha512=digests.sha512, etag=etag, layout=plan.layout,
        segments=len(plan.segments), md5_checked_against=source.checked_against,
        retries=ctx.retrying.budget.spent, target_project=source.target_project,
        bytes_uploaded=publisher.bytes_uploaded, segments_reused=publisher.segments_reused,
        seconds=time.monotonic() - started)
