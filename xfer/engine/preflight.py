"""Before any byte moves: read the source, decide what its MD5 must be, look for an existing
verified copy, check the target, and plan the segments.

Ends either with a plan to carry out or with the outcome of a copy that needs no bytes moved
(deduplicated against the checksum index).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import unquote

from xfer.engine.context import CopyContext
from xfer.engine.failures import failing_as
from xfer.engine.plan import Plan, as_slo, plan_from_source_segments, plan_segments
from xfer.engine.types import CopyOutcome, ObjectRef, Verification
from xfer.errors import XferError
from xfer.proto import swift

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """The source as read at the start, and what its content MD5 must be."""

    head: swift.ObjectHead
    expected_md5: str | None  # None: nothing independent to compare with (SLO/DLO, no checksum)
    checked_against: str | None  # where `expected_md5` came from, in words
    target_project: str  # the target account (AUTH_...), the checksum index's scope


async def read_source(ctx: CopyContext) -> Source:
    src, dst = ctx.spec.source, ctx.spec.target
    with failing_as("source", "read", src.describe()):
        head = await ctx.retrying("source HEAD",
                                  lambda: ctx.source.head_object(src.container, src.object))
    if ctx.spec.expected_md5:
        expected, checked_against = ctx.spec.expected_md5.lower(), "the requested checksum"
    elif head.kind is swift.ObjectKind.PLAIN:
        expected, checked_against = head.etag, "the source object's ETag"
    else:  # an SLO's or DLO's ETag is not the MD5 of its content
        expected, checked_against = None, None
    with failing_as("target", "authenticate to", dst.region):
        credentials = await ctx.retrying("target auth", ctx.target.credentials)
    project = credentials.storage_url.rstrip("/").rsplit("/", 1)[-1]
    return Source(head, expected, checked_against, project)


async def find_existing_copy(ctx: CopyContext, source: Source,
                             started: float) -> CopyOutcome | None:
    """Deduplication: the same bytes already verified in the target region and project,
    and a HEAD shows they are still there with that size."""
    if source.expected_md5 is None:
        return None
    region, size = ctx.spec.target.region, source.head.size
    known = await ctx.observer.find_verified_copy(source.expected_md5, size, region,
                                                  source.target_project)
    if known is None:
        return None
    try:
        head = await ctx.target.head_object(known.container, known.object)
    except XferError:
        return None  # deleted or unreadable since: copy for real
    if head.size != size:
        return None
    log.info("deduplicated: %s/%s in %s already holds these bytes", known.container,
             known.object, region)
    return CopyOutcome(
        size=size, md5=source.expected_md5, sha512=known.sha512, etag=head.etag,
        layout="plain" if head.kind is swift.ObjectKind.PLAIN else "slo", segments=0,
        md5_checked_against="the checksum index", verification=Verification.END_TO_END,
        retries=ctx.retrying.budget.spent,
        target_project=source.target_project, bytes_uploaded=0, segments_reused=0,
        seconds=time.monotonic() - started,
        existing=ObjectRef(region, known.container, known.object))


async def plan_copy(ctx: CopyContext, source: Source) -> Plan:
    """Keep a large source's segment boundaries when the target accepts them (their MD5s
    are then known, and the target SLO gets the source's ETag); else cut equal segments.

    A plain target is one PUT that publishes as it ends, so it is written only when its MD5
    is known beforehand (Swift then refuses other bytes); otherwise a one-segment SLO."""
    with failing_as("target", "read the limits of", ctx.spec.target.region):
        limits = await ctx.retrying("target /info", ctx.target.limits)
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
