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
from collections.abc import Awaitable, Callable
from typing import Protocol

from xfer.clients.swift import SwiftClient, SwiftRegions
from xfer.engine import preflight
from xfer.engine.chunks import BufferPool
from xfer.engine.context import CopyContext
from xfer.engine.failures import failing_as
from xfer.engine.hashing import Digests
from xfer.engine.inflight import InflightBytes
from xfer.engine.pipeline import Pipeline
from xfer.engine.plan import Plan
from xfer.engine.publisher import Publisher
from xfer.engine.rate import RateShares, TokenBucket
from xfer.engine.retry import Retrier
from xfer.engine.sources import SourceReader, SourceState, SwiftSource
from xfer.engine.stream import Backlog, StreamOutcome, Writer, check_empty, stream_verified
from xfer.engine.types import (
    CopyObserver,
    CopyOutcome,
    CopySpec,
    FanOutOutcome,
    TargetOutcome,
    Verification,
)
from xfer.errors import CopyFailed, ErrorCode, SourceChanged
from xfer.proto import swift
from xfer.settings import Settings

log = logging.getLogger(__name__)


class RegionClients(Protocol):
    """The Swift client of each region by name (clients.swift.SwiftRegions, or a job's own)."""

    def __getitem__(self, name: str) -> SwiftClient: ...



class Copier:
    """Runs copies; all of a process's copies share one bound of buffered bytes and one rate
    cap."""

    def __init__(self, settings: Settings, regions: SwiftRegions) -> None:
        self.settings = settings
        self.regions = regions
        self.memory = InflightBytes(settings.max_inflight_bytes)
        self.buffers = BufferPool(settings.chunk_size)  # the copies' chunks, within `memory`
        self.rates = RateShares(settings.max_rate_mb * 1e6 or None, settings.chunk_size)
        # set when the process stops: cancelled copies then keep what they wrote
        self.handing_over = False

    def _context(self, spec: CopySpec, observer: CopyObserver, rate: TokenBucket,
                 source: SourceReader | None, clients: RegionClients) -> CopyContext:
        if source is None:
            if spec.source is None:
                raise ValueError(f"copy {spec.job_id} names no source object and got no reader")
            source = SwiftSource(clients[spec.source.region], spec.source)
        return CopyContext(spec, self.settings, source, observer, Retrier(self.settings),
                           self.memory, self.buffers, rate)

    def _publishers(self, ctx: CopyContext, clients: RegionClients) -> list[Publisher]:
        return [Publisher(ctx, target, clients[target.ref.region])
                for target in ctx.spec.targets]

    async def copy(self, spec: CopySpec, observer: CopyObserver,
                   clients: RegionClients | None = None) -> CopyOutcome:
        """A copy to its one target; raises CopyFailed when it fails."""
        return (await self.copy_to_all(spec, observer, clients=clients)).single()

    async def copy_to_all(self, spec: CopySpec, observer: CopyObserver,
                          source: SourceReader | None = None,
                          clients: RegionClients | None = None) -> FanOutOutcome:
        """Read the source once (`spec.source` in Swift, unless another reader is given),
        write every target: each target that fails is cleaned up and reported in the
        outcome, and only when all fail does the copy raise. `clients`: the Swift client
        of each region named, when not the operator's (an image copy acts as its user)."""
        clients = clients or self.regions
        with self.rates.bucket(spec.max_rate) as rate:
            ctx = self._context(spec, observer, rate, source, clients)
            publishers = self._publishers(ctx, clients)
            try:
                outcome = await _copy(ctx, publishers)
            except asyncio.CancelledError:
                if not (self.handing_over or observer.handing_over):
                    await _clean_up(publishers)
                # else: the process is stopping, or this copy's job goes to another attempt;
                # what was written and recorded stays for the attempt that takes it over
                raise
            except BaseException:
                await _clean_up(publishers)
                raise
            await _clean_up([p for p in publishers if p.failure is not None])
            return outcome

    async def stream(self, source: SourceReader, expected: Digests | None, write: Writer,
                     choose: Callable[[SourceState], Awaitable[tuple[int, int]]],
                     start_reply: Callable[[], Awaitable[None]],
                     backlog: Backlog | None = None) -> StreamOutcome:
        """Stream a range of `source` to `write` with `stream_reads` ranged reads of
        `stream_chunk_size` in flight, within the process's bounds on buffered bytes and rate
        like any copy. `choose` sees the source's size and version before any byte is read
        and returns (start, length) (it may answer a Range, or refuse the source); then
        `start_reply` sends the headers. The whole object is verified against `expected`
        before its last byte (engine/stream.py), an empty one before `start_reply`. The
        budget's share is taken after the source answered and before `start_reply`: a
        stream that must wait for it has promised its reader nothing yet, and a source that
        is gone is said at once."""
        settings = self.settings
        ahead, chunk_size = settings.stream_reads, settings.stream_chunk_size
        retrying = Retrier(settings)
        with failing_as("source", "read", source.describe()):
            state = await retrying("source HEAD", source.state)
        start, length = await choose(state)
        if state.size == 0 and expected is not None:
            check_empty(expected, source.describe())
        taken = await self.memory.take(ahead * chunk_size)
        try:
            await start_reply()
            with self.rates.bucket(None) as rate:
                return await stream_verified(source, state, start, length, expected, write,
                                             chunk_size=chunk_size, ahead=ahead, rate=rate,
                                             retrying=retrying,
                                             write_timeout=settings.stream_write_timeout,
                                             backlog=backlog)
        finally:
            self.memory.give_back(taken)


async def _clean_up(publishers: list[Publisher]) -> None:
    async with asyncio.TaskGroup() as group:
        for publisher in publishers:
            group.create_task(publisher.clean_up())


async def _each(publishers: list[Publisher], step: Callable[[Publisher], Awaitable[None]]) -> None:
    """Run a step for every active target at once; a target whose step fails drops out."""

    async def run(publisher: Publisher) -> None:
        try:
            await step(publisher)
        except CopyFailed as failure:
            publisher.failure = failure

    async with asyncio.TaskGroup() as group:
        for publisher in publishers:
            if publisher.active:
                group.create_task(run(publisher))
    if not any(p.active or p.existing is not None for p in publishers):
        raise next(p.failure for p in publishers if p.failure is not None)


async def _copy(ctx: CopyContext, publishers: list[Publisher]) -> FanOutOutcome:
    started = time.monotonic()
    source = await preflight.read_source(ctx)
    projects: dict[Publisher, str] = {}

    async def check_target(publisher: Publisher) -> None:
        projects[publisher] = await publisher.project()
        found = await preflight.find_existing_copy(ctx, source, publisher, projects[publisher])
        if found is None or found.existing != publisher.target.ref:
            # xfer never overwrites, deduplicated or not: a job must not succeed naming a
            # target that holds other bytes (the indexed copy itself is the one exception)
            await publisher.refuse_existing_target()
        publisher.existing = found

    await _each(publishers, check_target)
    if not any(p.active for p in publishers):  # every target already holds these bytes
        return _outcome(ctx, source, publishers, projects, started, None, None)
    all_limits: dict[Publisher, swift.Limits] = {}

    async def read_limits(publisher: Publisher) -> None:
        all_limits[publisher] = await publisher.limits()

    await _each(publishers, read_limits)
    plan = await preflight.plan_copy(ctx, source, preflight.strictest(list(all_limits.values())))
    await ctx.observer.planned(plan)
    await _each(publishers, lambda publisher: publisher.create_containers())
    pipeline, digests = await _transfer_verified(ctx, publishers, plan, source)
    await _check_source_unchanged(ctx, source)

    async def publish(publisher: Publisher) -> None:
        if plan.as_slo:
            etag = await publisher.publish_manifest(plan, pipeline.segment_etags)
        else:
            etag = digests.md5
        await publisher.verify_published(plan, etag)
        publisher.published_etag = etag

    await _each(publishers, publish)
    return _outcome(ctx, source, publishers, projects, started, plan, (pipeline, digests))


def _outcome(ctx: CopyContext, source: preflight.Source, publishers: list[Publisher],
             projects: dict[Publisher, str], started: float, plan: Plan | None,
             transfer: tuple[Pipeline, Digests] | None) -> FanOutOutcome:
    results: list[TargetOutcome | CopyFailed] = []
    for publisher in publishers:
        if publisher.failure is not None:
            results.append(publisher.failure)
        elif publisher.existing is not None:
            results.append(publisher.existing)
        else:
            assert plan is not None and publisher.published_etag is not None
            results.append(TargetOutcome(
                ref=publisher.target.ref, etag=publisher.published_etag, layout=plan.layout,
                project=projects[publisher], bytes_uploaded=publisher.bytes_uploaded,
                segments_reused=publisher.segments_reused))
    if transfer is None:  # deduplicated everywhere: the index vouches for the bytes
        assert source.expected_md5 is not None
        indexed = next(p.existing for p in publishers if p.existing is not None)
        md5, sha512 = source.expected_md5, indexed.indexed_sha512
        verification = Verification.END_TO_END
        checked_against: str | None = "the checksum index"
        segments = peak = spilled = read = catch_up = reading = putting = 0
    else:
        pipeline, digests = transfer
        md5, sha512 = digests.md5, digests.sha512
        verification = (Verification.END_TO_END if source.expected_md5 is not None
                        else Verification.SOURCE_PINNED)
        checked_against = source.checked_against
        segments = len(pipeline.plan.segments)
        peak = pipeline.fetcher.peak_buffer_bytes
        spilled, read = pipeline.spill.bytes_spilled, pipeline.fetcher.bytes_read
        catch_up = pipeline.fetcher.bytes_read_again
        reading, putting = pipeline.fetcher.most_reading, pipeline.most_putting
    return FanOutOutcome(
        size=source.state.size, md5=md5, sha512=sha512, md5_checked_against=checked_against,
        verification=verification, segments=segments, retries=ctx.retrying.budget.spent,
        seconds=time.monotonic() - started, peak_buffer_bytes=peak, bytes_spilled=spilled,
        bytes_read=read, bytes_read_for_catch_up=catch_up, targets=tuple(results),
        most_reading=reading, most_putting=putting)


async def _transfer_verified(ctx: CopyContext, publishers: list[Publisher], plan: Plan,
                             source: preflight.Source) -> tuple[Pipeline, Digests]:
    """Move the bytes and check the whole-object MD5. A mismatch is read once more, all of
    it (a byte flipped on the way is likelier than a source that lies about its MD5), at the
    cost of one retry; two readings that disagree with the expected MD5 fail the copy."""
    expected = source.expected_md5
    seen: list[str] = []
    for reading in range(2):
        pipeline = Pipeline(ctx, publishers, plan, source.state, expected,
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
    if len(seen) == 2 and seen[0] == seen[1] and source.state.content_md5 is None:
        # Two readings of the same pinned version agree, and Swift cannot say what it stores
        # (an SLO or a DLO): the source holds those bytes, and it is its record that
        # disagrees. (A plain object's ETag is what Swift stores: readings that disagree with
        # it were damaged on the way, the same way twice, and preflight checked the record.)
        raise CopyFailed(
            ErrorCode.SOURCE_NOT_AS_RECORDED,
            f"two readings of {ctx.source.describe()} gave MD5 {seen[0]}, but "
            f"{source.checked_against} is {expected}: the source's data is not what its "
            f"record says; nothing was published")
    readings = " and then ".join(seen)
    raise CopyFailed(
        ErrorCode.CHECKSUM_MISMATCH,
        f"{len(seen)} reading(s) of {ctx.source.describe()} gave MD5 {readings}, but "
        f"{source.checked_against} says {expected}; nothing was published")


async def _check_source_unchanged(ctx: CopyContext, source: preflight.Source) -> None:
    """Every ranged GET was pinned to the version seen at the start; a last HEAD makes sure
    it is still that version before the copy is published as its twin."""
    with failing_as("source", "read", ctx.source.describe()):
        now = await ctx.retrying("source HEAD", ctx.source.state)
        start = source.state
        if (now.version, now.size) != (start.version, start.size):
            raise SourceChanged(f"version {start.version} and {start.size} bytes at the "
                                f"start, version {now.version} and {now.size} bytes now")
