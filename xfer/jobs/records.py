"""The typed records that cross the jobs layer: a validated request in, job rows out.

The store builds every record from a database row in one place (`from_row`), so the API, the
event stream and the worker name fields, not column strings, and a new column is one new field.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from xfer.engine.plan import Segment
from xfer.engine.types import ObjectRef, Verification
from xfer.images.types import ImageCopyJob, ImageStep, ThroughGlance
from xfer.jobs.states import JobState, TargetState


@dataclass(frozen=True)
class JobRequest:
    """A copy request as the API validated it: names checked, defaults filled in."""

    source: ObjectRef
    target: ObjectRef  # the first target: the job row's own target
    checksum: str | None = None  # expected content MD5, lower-case hex
    segment_size: int | None = None
    segment_container: str | None = None
    more_targets: tuple[ObjectRef, ...] = ()  # a fan-out job's other targets, in order
    max_rate_mb: float | None = None  # MB/s (10**6 bytes) this job may read

    @property
    def targets(self) -> tuple[ObjectRef, ...]:
        return (self.target, *self.more_targets)

    def canonical(self) -> dict[str, Any]:
        """The request as plain JSON values: what an Idempotency-Key's digest covers. One
        target is `target` whichever way it was asked for, so that digests of single-target
        requests stay what they were before fan-out existed."""
        canonical: dict[str, Any] = {"source": _ref_values(self.source)}
        if self.more_targets:
            canonical["targets"] = [_ref_values(target) for target in self.targets]
        else:
            canonical["target"] = _ref_values(self.target)
        for name in ("checksum", "segment_size", "segment_container", "max_rate_mb"):
            if getattr(self, name) is not None:
                canonical[name] = getattr(self, name)
        return canonical


def _ref_values(ref: ObjectRef) -> dict[str, str]:
    return {"region": ref.region, "container": ref.container, "object": ref.object}


# How a job's row, and the API, name a source read through its Glance (ThroughGlance) in the
# source's container and object: this container, and the image id. Read back as ThroughGlance
# for an image job only (an object job's source is a Swift object, whatever its name).
THROUGH_GLANCE_CONTAINER = "glance:file"


def source_names(source: ObjectRef | ThroughGlance) -> tuple[str, str]:
    """The container and object a job's row and the API give its source."""
    if isinstance(source, ThroughGlance):
        return THROUGH_GLANCE_CONTAINER, source.image_id
    return source.container, source.object


def _source(row: Mapping[str, Any]) -> ObjectRef | ThroughGlance:
    region, container = row["source_region"], row["source_container"]
    if row["kind"] == "image" and container == THROUGH_GLANCE_CONTAINER:
        return ThroughGlance(region, row["source_object"])
    return ObjectRef(region, container, row["source_object"])


@dataclass(frozen=True)
class ImageCopyRequest:
    """`POST /v1/images/{id}/copies` as the API validated it, with who asked."""

    source_region: str
    target_region: str
    source_image_id: str
    project_id: str
    user_id: str
    name: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    force: bool = False

    def canonical(self) -> dict[str, Any]:
        """What an Idempotency-Key's digest covers (the project too: a key is per project)."""
        return {"kind": "image", "source_region": self.source_region,
                "target_region": self.target_region, "image_id": self.source_image_id,
                "project_id": self.project_id, "name": self.name,
                "properties": dict(sorted(self.properties.items())), "force": self.force}


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class TargetRecord:
    """One target of a job, and what it holds once it has ended."""

    position: int  # 0 is the job's own `target`
    ref: ObjectRef
    state: TargetState
    error: JobError | None
    md5: str | None
    etag: str | None
    verification: Verification | None
    bytes_uploaded: int | None
    segments_reused: int | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TargetRecord:
        return cls(
            position=row["position"], ref=ObjectRef(row["region"], row["container"],
                                                    row["object"]),
            state=TargetState(row["state"]), error=_error(row), md5=row["md5"],
            etag=row["etag"],
            verification=Verification(row["verification"]) if row["verification"] else None,
            bytes_uploaded=row["bytes_uploaded"], segments_reused=row["segments_reused"])


def _error(row: Mapping[str, Any]) -> JobError | None:
    return JobError(row["error_code"], row["error_message"]) if row["error_code"] else None


@dataclass(frozen=True)
class JobRecord:
    """One job as stored. `observed_at` is the database's clock when it was read (None for a
    row just written, whose `updated_at` is then the clock)."""

    id: uuid.UUID
    state: JobState
    source: ObjectRef | ThroughGlance  # ThroughGlance: an image read through its Glance
    target: ObjectRef
    segment_container: str | None
    expected_md5: str | None
    segment_size: int | None
    bytes_total: int | None
    bytes_done: int
    segments_total: int | None
    layout: str | None
    md5: str | None
    sha512: str | None
    etag: str | None
    md5_checked_against: str | None
    verification: Verification | None  # set once succeeded
    retries: int
    attempts: int
    error: JobError | None
    bytes_uploaded: int | None
    segments_reused: int | None
    existing: ObjectRef | None  # set when deduplicated: the copy already verified there
    max_rate_mb: float | None
    targets: tuple[TargetRecord, ...]  # in order; the first is `target`
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    observed_at: datetime | None = None
    kind: str = "object"  # or "image"
    project_id: str | None = None  # who asked (None: an open API without Keystone)
    user_id: str | None = None
    image: ImageCopyJob | None = None  # set for kind "image"
    # The worker holding a running job, and until when unless it renews (its heartbeat).
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any],
                 target_rows: Sequence[Mapping[str, Any]]) -> JobRecord:
        """A job row with the rows of its targets (job_targets, in position order)."""
        error = _error(row)
        existing = None
        if row["deduplicated"]:
            existing = ObjectRef(row["target_region"], row["existing_container"],
                                 row["existing_object"])
        return cls(
            id=row["id"], state=JobState(row["state"]),
            source=_source(row),
            target=ObjectRef(row["target_region"], row["target_container"],
                             row["target_object"]),
            segment_container=row["segment_container"], expected_md5=row["expected_md5"],
            segment_size=row["segment_size"], bytes_total=row["bytes_total"],
            bytes_done=row["bytes_done"], segments_total=row["segments_total"],
            layout=row["layout"], md5=row["md5"], sha512=row["sha512"], etag=row["etag"],
            md5_checked_against=row["md5_checked_against"],
            verification=Verification(row["verification"]) if row["verification"] else None,
            retries=row["retries"],
            attempts=row["attempts"], error=error, bytes_uploaded=row["bytes_uploaded"],
            segments_reused=row["segments_reused"], existing=existing,
            max_rate_mb=row["max_rate_mb"],
            targets=tuple(TargetRecord.from_row(target) for target in target_rows),
            created_at=row["created_at"], started_at=row["started_at"],
            finished_at=row["finished_at"], updated_at=row["updated_at"],
            observed_at=row.get("observed_at"), kind=row["kind"],
            lease_owner=row.get("lease_owner"), lease_expires_at=row.get("lease_expires_at"),
            project_id=row["project_id"], user_id=row["user_id"], image=_image_job(row))

    @property
    def clock(self) -> datetime:
        """The database's time of this reading: what rate and ETA are computed against."""
        return self.observed_at or self.updated_at


def _image_job(row: Mapping[str, Any]) -> ImageCopyJob | None:
    if row["kind"] != "image":
        return None
    properties = row["image_properties"]
    return ImageCopyJob(
        job_id=row["id"], source_region=row["source_region"],
        target_region=row["target_region"], source_image_id=row["source_image_id"],
        target_image_id=row["target_image_id"],
        step=ImageStep(row["image_step"]) if row["image_step"] else None,
        name=row["image_name"], properties=json.loads(properties) if properties else {},
        force=row["force"], trust_id=row["trust_id"],
        trust_expires_at=row["trust_expires_at"])


@dataclass(frozen=True)
class Transition:
    from_state: JobState | None
    to_state: JobState
    at: datetime


@dataclass(frozen=True)
class SegmentAttempts:
    """One segment's attempts as the copy recorded them (over all attempts of the job)."""

    index: int
    attempts: int  # started
    failures: int
    in_flight: bool  # an attempt started and has neither failed nor written it yet
    last_error: JobError | None  # the code and sentence of its last failed attempt

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SegmentAttempts:
        error = (None if row["last_error_code"] is None
                 else JobError(row["last_error_code"], row["last_error"] or ""))
        return cls(row["index"], row["attempts"], row["failures"], row["in_flight"], error)


@dataclass(frozen=True)
class JobDetail:
    """A job with its written segments, its state changes and its duties (what remains, or
    remained, to be done once it ended), and its segments' attempts, read in one snapshot."""

    job: JobRecord
    segments: tuple[Segment, ...]
    transitions: tuple[Transition, ...]
    duties: tuple[DutyRecord, ...] = ()
    attempts: tuple[SegmentAttempts, ...] = ()


@dataclass(frozen=True)
class IndexedObject:
    """An entry of the checksum index: bytes xfer copied and verified, where they are now."""

    md5: str
    sha512: str | None
    size: int
    region: str
    project: str
    container: str
    object: str
    image_id: str | None
    job_id: uuid.UUID | None
    verified_at: datetime


class Duty(StrEnum):
    """What may remain to be done for a job, recorded so that whoever is alive does it."""

    # The job was recorded before its trust existed; if the process recording it died before
    # attaching the trust, find it by its expiry and attach it (or fail the job).
    ADOPT_TRUST = "adopt_trust"
    # The job has ended: delete its trust, so that it lives no longer than the job and its
    # cleanup (the duties above it act as the user through it).
    END_TRUST = "end_trust"
    # Recorded when the target image is created, dropped when the copy succeeds: a failed or
    # cancelled image copy's target image, then its data (the image's container).
    REMOVE_TARGET_IMAGE = "remove_target_image"
    REMOVE_IMAGE_DATA = "remove_image_data"
    # Recorded with an object copy job: what its targets that did not succeed were written
    # (their segments, a target object stamped with the job).
    REMOVE_OBJECT_DATA = "remove_object_data"


class DutyState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    DROPPED = "dropped"  # no longer needed
    FAILED = "failed"  # cannot be done (its outcome says what is left)


@dataclass(frozen=True)
class DutyRecord:
    job_id: uuid.UUID
    duty: Duty
    state: DutyState
    attempts: int  # claimed so many times, this one included
    due_at: datetime
    last_error: str | None
    outcome: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DutyRecord:
        return cls(job_id=row["job_id"], duty=Duty(row["duty"]), state=DutyState(row["state"]),
                   attempts=row["attempts"], due_at=row["due_at"],
                   last_error=row["last_error"], outcome=row["outcome"])
