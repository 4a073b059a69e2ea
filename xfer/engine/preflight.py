"""Before any byte moves: read the source, decide what its MD5 must be, look for an existing
verified copy, check the target, and plan the segments.

Ends either with a plan to carry out or with the outcome of a copy that needs no bytes moved
(deduplicated against the checksum index).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from xfer.engine.context import CopyContext
from xfer.engine.failures import failing_as
from xfer.engine.plan import Plan, as_slo, plan_from_source_segments, plan_segments
from xfer.engine.publisher import Publisher
from xfer.engine.sources import SourceState
from xfer.engine.types import ObjectRef, TargetOutcome
from xfer.errors import CopyFailed, XferError
from xfer.proto import swift

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """The source as read at the start, and what its content MD5 must be."""

    state: SourceState
    expected_md5: str | None  # None: nothing independent to compare with (SLO/DLO, no checksum)
    checked_against: str | None  # where `expected_md5` came from, in words


async def read_source(ctx: CopyContext) -> Source:
    with failing_as("source", "read", ctx.source.describe()):
        state = await ctx.retrying("source HEAD", ctx.source.state)
    expected = ctx.spec.expected_md5
    if expected:
        if state.content_md5 is not None and state.content_md5 != expected.lower():
            # Swift's ETag of a plain object is the MD5 of the bytes it stores: they are not
            # those the expected checksum describes, and reading them cannot change that.
            raise CopyFailed(
                "source_not_as_recorded",
                f"{ctx.source.describe()} holds bytes with MD5 {state.content_md5} (Swift's "
                f"ETag), but {ctx.spec.expected_md5_from} is {expected.lower()}: the source's "
                f"data is not what its record says; nothing was copied")
        return Source(state, expected.lower(), ctx.spec.expected_md5_from)
    if state.content_md5 is not None:
        return Source(state, state.content_md5, "the source object's ETag")
    return Source(state, None, None)


async def find_existing_copy(ctx: CopyContext, source: Source, target: Publisher,
                             project: str) -> TargetOutcome | None:
    """Deduplication: the same bytes already verified in the target's region and project,
    and a HEAD shows they are still there with that size."""
    if source.expected_md5 is None or not ctx.spec.deduplicate:
        return None
    region, size = target.target.ref.region, source.state.size
    known = await ctx.observer.find_verified_copy(source.expected_md5, size, region, project)
    if known is None:
        return None
    try:
        head = await target.client.head_object(known.container, known.object)
    except XferError:
        return None  # deleted or unreadable since: copy for real
    if head.size != size:
        return None
    log.info("deduplicated: %s/%s in %s already holds these bytes", known.container,
             known.object, region)
    existing = ObjectRef(region, known.container, known.object)
    return TargetOutcome(ref=target.target.ref, etag=head.etag,
                         layout="plain" if head.kind is swift.ObjectKind.PLAIN else "slo",
                         project=project, bytes_uploaded=0, segments_reused=0,
                         existing=existing, indexed_sha512=known.sha512)


def strictest(all_limits: list[swift.Limits]) -> swift.Limits:
    """Limits every target accepts: a plan must fit each of them."""
    return swift.Limits(
        max_file_size=min(limits.max_file_size for limits in all_limits),
        max_manifest_segments=min(limits.max_manifest_segments for limits in all_limits),
        max_manifest_size=min(limits.max_manifest_size for limits in all_limits),
        min_segment_size=max(limits.min_segment_size for limits in all_limits))


async def plan_copy(ctx: CopyContext, source: Source, limits: swift.Limits) -> Plan:
    """Keep a large source's segment boundaries when the targets accept them (their MD5s
    are then known, and the target SLOs get the source's ETag); else cut equal segments.

    A plain target is one PUT that publishes as it ends, so it is written only when its MD5
    is known beforehand (Swift then refuses other bytes); otherwise a one-segment SLO."""
    size = source.state.size
    if ctx.spec.segment_size is None:
        sizes_and_etags = await _source_segments(ctx, source.state)
        if sizes_and_etags:
            kept = plan_from_source_segments(sizes_and_etags, limits)
            if kept is not None and kept.size == size:
                return kept
    plan = plan_segments(size, limits, ctx.spec.segment_size or ctx.settings.segment_size)
    if not plan.as_slo and source.expected_md5 is None and plan.size > 0:
        return as_slo(plan)
    return plan


async def _source_segments(ctx: CopyContext, state: SourceState) -> list[tuple[int, str]]:
    with failing_as("source", "list the segments of", ctx.source.describe()):
        return await ctx.retrying("source segments", lambda: ctx.source.segments(state))
