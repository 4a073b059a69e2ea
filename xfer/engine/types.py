"""What a copy is: its request, its outcome, and how it reports to whoever runs it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from xfer.engine.plan import Plan, Segment
from xfer.errors import CopyFailed


@dataclass(frozen=True)
class ObjectRef:
    region: str
    container: str
    object: str

    def describe(self) -> str:
        return f"{self.container}/{self.object} in {self.region}"


class Verification(StrEnum):
    """How far a finished copy was verified."""

    # the whole-object MD5 of the bytes read equals an independent value: the requested
    # checksum, or a plain source object's ETag (Swift's MD5 of what it stores)
    END_TO_END = "end_to_end"
    # an SLO or DLO without a requested checksum: the bytes were hashed and every read was
    # pinned to the version seen at the start, but there was nothing independent to compare
    SOURCE_PINNED = "source_pinned"


@dataclass(frozen=True)
class TargetSpec:
    ref: ObjectRef
    segment_container: str  # where its segments go (a job's default: the target's container)

    def segment_name(self, job_id: str, index: int) -> str:
        return f"{self.ref.object}.xfer-segments/{job_id}/{index:08d}"


@dataclass(frozen=True)
class CopySpec:
    """One source read once, written to `target` and to each of `more_targets`."""

    job_id: str
    # The Swift object read; None: the copy reads the SourceReader it is given (a local file,
    # an image through its Glance), which names itself.
    source: ObjectRef | None
    target: ObjectRef
    segment_container: str  # where the target's segments go (the job's default: its container)
    expected_md5: str | None = None
    expected_md5_from: str = "the requested checksum"  # what says so, in words
    segment_size: int | None = None
    max_rate: float | None = None  # bytes per second this copy may read, below the process's
    # Segments an earlier attempt of this job wrote to every target and recorded: checked
    # with a HEAD and not uploaded again when they still match.
    resume: tuple[Segment, ...] = ()
    more_targets: tuple[TargetSpec, ...] = ()
    # False: always write the object named, even when the index knows the same bytes
    # elsewhere (a Glance image needs data of its own: Glance deletes a failed image's data)
    deduplicate: bool = True

    @property
    def targets(self) -> tuple[TargetSpec, ...]:
        return (TargetSpec(self.target, self.segment_container), *self.more_targets)

    def segment_name(self, index: int) -> str:
        return self.targets[0].segment_name(self.job_id, index)


@dataclass(frozen=True)
class TargetOutcome:
    """What one target of a copy holds now."""

    ref: ObjectRef
    etag: str  # as Swift reports it
    layout: str  # "slo" or "plain"
    project: str  # the Swift account it landed in (AUTH_...)
    bytes_uploaded: int
    segments_reused: int
    existing: ObjectRef | None = None  # deduplicated: this verified copy already held them
    indexed_sha512: str | None = None  # deduplicated: the SHA-512 the checksum index knows


@dataclass(frozen=True)
class FanOutOutcome:
    """A copy to one or more targets: what was read, and each target's result (a target that
    failed does not fail the others)."""

    size: int
    md5: str
    sha512: str | None
    md5_checked_against: str | None
    verification: Verification
    segments: int
    retries: int
    seconds: float
    peak_buffer_bytes: int
    bytes_spilled: int
    bytes_read: int  # from the source: once for all targets, plus the catch-ups below
    bytes_read_for_catch_up: int  # read again for one target whose PUT had failed
    targets: tuple[TargetOutcome | CopyFailed, ...]
    most_reading: int = 0  # ranged reads of the source in flight at once, at most
    most_putting: int = 0  # segments with their PUTs open at once, at most

    def single(self) -> CopyOutcome:
        """The outcome of a copy with one target; raises that target's failure."""
        (result,) = self.targets
        if isinstance(result, CopyFailed):
            raise result
        return CopyOutcome(
            size=self.size, md5=self.md5, sha512=self.sha512, etag=result.etag,
            layout=result.layout, segments=self.segments,
            md5_checked_against=self.md5_checked_against, verification=self.verification,
            retries=self.retries, target_project=result.project,
            bytes_uploaded=result.bytes_uploaded, segments_reused=result.segments_reused,
            seconds=self.seconds, existing=result.existing,
            peak_buffer_bytes=self.peak_buffer_bytes, bytes_spilled=self.bytes_spilled,
            most_reading=self.most_reading, most_putting=self.most_putting)


@dataclass(frozen=True)
class CopyOutcome:
    size: int
    md5: str
    sha512: str | None
    etag: str  # the target object's ETag as Swift reports it
    layout: str  # "slo" or "plain"
    segments: int
    md5_checked_against: str | None  # "request checksum", "source etag" or None
    verification: Verification
    retries: int
    target_project: str  # the Swift account the copy landed in (AUTH_...)
    bytes_uploaded: int  # segment bytes this attempt sent (resumed segments are not sent)
    segments_reused: int  # segments an earlier attempt wrote, checked and kept
    seconds: float
    existing: ObjectRef | None = None  # set when deduplicated: no bytes moved
    peak_buffer_bytes: int = 0  # chunk buffers this copy had at most at once
    bytes_spilled: int = 0  # chunk bytes that waited for the hasher on disk
    most_reading: int = 0  # ranged reads of the source in flight at once, at most
    most_putting: int = 0  # segments with their PUTs open at once, at most


@dataclass(frozen=True)
class VerifiedCopy:
    """A copy the checksum index knows: the same bytes, already verified in a region."""

    container: str
    object: str
    sha512: str | None


class CopyObserver(Protocol):
    # Set by whoever runs the copy just before cancelling it to hand the job over (to another
    # worker, or to a later attempt): a copy cancelled then keeps what it wrote, for the next
    # attempt to resume from, instead of deleting it.
    handing_over: bool

    async def find_verified_copy(self, md5: str, size: int, region: str,
                                 project: str) -> VerifiedCopy | None: ...
    async def planned(self, plan: Plan) -> None: ...
    # Once per attempt at a segment (a read and a PUT to each target still to write): when it
    # starts, when it fails (`error`: what the segment would fail the copy with), and once
    # when every target stored it. Never per chunk.
    async def segment_started(self, segment: Segment, attempt: int) -> None: ...
    async def segment_failed(self, segment: Segment, attempt: int, error: CopyFailed) -> None: ...
    async def segment_written(self, segment: Segment, etag: str) -> None: ...
    async def verifying(self) -> None: ...
