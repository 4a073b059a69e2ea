"""Before any byte moves: read the source, decide what its MD5 must be, look for an existing
verified copy, check the target, and plan the segments.

Ends either with a plan to carry out or with the outcome of a copy that needs no bytes moved
(deduplicated against the checksum index).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import unquote

from xfer.engine.context import CopyContext
from xfer.engine.failures import failing_as
from xfer.engine.plan import Plan, as_slo, plan_from_source_segments, plan_segments
from xfer.engine.publisher import Publisher
from xfer.engine.types import ObjectRef, TargetOutcome
from xfer.errors import XferError
from xfer.proto import swift

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """The source as read at the start, and what its content MD5 must be."""

    head: swift.ObjectHead
    expected_md5: str | None  # None: nothing independent to compare with (SLO/DLO, no checksum)
    checked_against: str | None  # where `expected_md5` came from, in words


async def read_source(ctx: CopyContext) -> Source:
    src = ctx.spec.source
    with failing_as("source", "read", src.describe()):
        head = await ctx.retrying("source HEAD",
                                  lambda: ctx.source.head_object(src.container, src.object))
    if ctx.spec.expected_md5:
        return Source(head, ctx.spec.expected_md5.lower(), "the requested checksum")
    if head.kind is swift.ObjectKind.PLAIN:
        return Source(head, head.etag, "the source object's ETag")
    return Source(head, None, None)  # an SLO's or DLO's ETag is not the MD5 of its content


async def find_existing_copy(ctx: CopyContext, source: Source, target: Publisher,
                             project: str) -> TargetOutcome | None:
    """Deduplication: the same bytes already verified in the target's region and project,
    and a HEAD shows they are still there with that size."""
    if source.expected_md5 is None:
        return None
    region, size = target.target.ref.region, source.head.size
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
    head = source.head
    if ctx.spec.segment_size is None:
        sizes_and_etags = await _source_segments(ctx, head)
        if sizes_and_etags:
            kept = plan_from_source_segments(sizes_and_etags, limits)
            if kept is not None and kept.size == head.size:
                return kept
    plan = plan_segments(head.size, limits, ctx.spec.segment_size or ctx.settings.segment_size)
    if not plan.as_slo and source.expected_md5 is None and plan.size > 0:
        return as_slo(plan)
    return plan


async def _source_segments(ctx: CopyContext, head: swift.ObjectHead) -> list[tuple[int, str]]:
    src = ctx.spec.source
    with failing_as("source", "list the segments of", src.describe()):
        if head.kind is swift.ObjectKind.SLO:
            manifest = await ctx.retrying(
                "source manifest GET", lambda: ctx.source.get_manifest(src.container, src.object))
            if any(m.range or m.sub_slo or m.inline_data for m in manifest):
                return []  # ranged or nested segments: their ETags are not segment MD5s
            return [(m.size_bytes, m.etag) for m in manifest]
        if head.kind is swift.ObjectKind.DLO and head.dlo_prefix:
            container, _, prefix = unquote(head.dlo_prefix).partition("/")
            listed = await ctx.retrying("source DLO listing",
                                        lambda: ctx.source.list_objects(container, prefix))
            return [(entry.bytes, entry.hash) for entry in listed]
    return []
