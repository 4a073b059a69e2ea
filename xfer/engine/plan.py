"""Pure: an object's size and the target's limits -> the layout of the copy's segments."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xfer.errors import CopyFailed, ErrorCode
from xfer.proto.swift import Limits


@dataclass(frozen=True)
class Segment:
    index: int
    offset: int
    length: int
    etag: str | None = None  # known before the copy when reusing a source SLO's segments

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class Plan:
    size: int
    segments: tuple[Segment, ...]
    as_slo: bool  # False: the whole object is one plain PUT

    @property
    def segment_size(self) -> int:
        return max((s.length for s in self.segments), default=0)

    @property
    def layout(self) -> str:
        """What the target object will be, as jobs and the API name it."""
        return "slo" if self.as_slo else "plain"


def plan_segments(size: int, limits: Limits, preferred_segment_size: int) -> Plan:
    """Cut [0, size) into equal segments (the last may be shorter) that the target accepts.

    The segment size is the preferred one, grown when the object would need more than
    `max_manifest_segments`, and never above `max_file_size`.
    """
    if size < 0:
        raise ValueError("size must not be negative")
    preferred = max(1, min(preferred_segment_size, limits.max_file_size))
    if size <= preferred:
        return Plan(size, (Segment(0, 0, size),), as_slo=False)
    needed = -(-size // limits.max_manifest_segments)  # ceiling division
    segment_size = max(preferred, needed, limits.min_segment_size)
    if segment_size > limits.max_file_size:
        raise CopyFailed(
            ErrorCode.TOO_LARGE_FOR_TARGET,
            f"the object is {size} bytes; the target region accepts at most "
            f"{limits.max_manifest_segments} segments of {limits.max_file_size} bytes",
        )
    segments = tuple(
        Segment(index, offset, min(segment_size, size - offset))
        for index, offset in enumerate(range(0, size, segment_size))
    )
    return Plan(size, segments, as_slo=True)


def plan_from_source_segments(sizes_and_etags: Sequence[tuple[int, str]],
                              limits: Limits) -> Plan | None:
    """Keep a source large object's own segment boundaries, if the target accepts them.

    Keeping them lets the copy reuse the source segments' MD5s as ETags (no per-segment
    hashing) and gives the target SLO the source SLO's ETag; segments are streamed, so their
    size does not change the memory bound. None when the layout does not fit.
    """
    count = len(sizes_and_etags)
    if count < 2 or count > limits.max_manifest_segments:
        return None
    segments = []
    offset = 0
    for index, (length, etag) in enumerate(sizes_and_etags):
        too_small = length < limits.min_segment_size and index != count - 1
        if length <= 0 or length > limits.max_file_size or too_small:
            return None
        segments.append(Segment(index, offset, length, etag))
        offset += length
    return Plan(offset, tuple(segments), as_slo=True)


def as_slo(plan: Plan) -> Plan:
    """The same bytes as an SLO of the plan's segments (one, for a plan that was plain)."""
    return Plan(plan.size, plan.segments, as_slo=True)
