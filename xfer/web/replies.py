"""Every JSON reply of the API, declared once: the pydantic models here make the JSON the
handlers send (`wire`) and the response schemas of the OpenAPI document (openapi.py), so the
two cannot differ. A model is built from the jobs layer's records (`Job.of`, ...) and checked
as it is built: a reply that would break its documented schema fails here, not in a client.

Every model is closed (no other property) and every field is required: a field that may be
empty is null, never absent (but `field` of an error and `error` of a readiness check).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from xfer.engine.types import ObjectRef, Verification
from xfer.errors import ErrorCode
from xfer.images.search import RegionMatch
from xfer.images.types import ImageStep, ThroughGlance
from xfer.jobs.records import (
    Duty,
    DutyRecord,
    DutyState,
    IndexedObject,
    JobError,
    JobRecord,
    SegmentAttempts,
    TargetRecord,
    source_names,
)
from xfer.jobs.records import (
    JobDetail as JobDetailRecord,
)
from xfer.jobs.states import JobState, TargetState
from xfer.web.progress import eta_seconds, transfer_rate
from xfer.web.validation import MD5_PATTERN

# As the API always wrote them: Python's isoformat (`+00:00`, not pydantic's `Z`).
Timestamp = Annotated[datetime, PlainSerializer(datetime.isoformat, return_type=str),
                      WithJsonSchema({"type": "string", "format": "date-time"})]
Count = Annotated[int, Field(ge=0)]
# What a job's `cleanup` shows: removing what a failed or cancelled copy made, and ending the
# trust it acted through (not how it got its trust).
CLEANUP_DUTIES = (Duty.REMOVE_TARGET_IMAGE, Duty.REMOVE_IMAGE_DATA, Duty.REMOVE_OBJECT_DATA,
                  Duty.END_TRUST)
CleanupDuty = Annotated[Duty, WithJsonSchema({"enum": [duty.value for duty in CLEANUP_DUTIES]})]
VerificationField = Annotated[Verification | None, Field(description=(
    "end_to_end: the whole-object MD5 equals an independent value (the checksum asked for, or "
    "a plain source's ETag); source_pinned: an SLO or DLO without a checksum, hashed and read "
    "as one pinned version, with nothing independent to compare with; null until the job "
    "(or the target) succeeds"))]


def _absent_when_none(schema: dict[str, Any]) -> None:
    """A field left out of the JSON when it has no value: no default (null is no value of
    its type), and not required."""
    schema.pop("default", None)


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def wire(self) -> Any:
        """The JSON values to send."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=False)


class Location(Reply):
    region: str
    container: str
    object: str

    @classmethod
    def of(cls, ref: ObjectRef | ThroughGlance) -> Location:
        container, name = source_names(ref)  # an image read through its Glance: a marker
        return cls(region=ref.region, container=container, object=name)


class ExistingCopy(Reply):
    """What a deduplicated job points at: an object copy's object; for an image copy only the
    region (the image is `image.target_image_id`), container and object null."""

    region: str
    container: str | None
    object: str | None


class ErrorBody(Reply):
    code: ErrorCode = Field(description="docs/api.md says what each code means")
    message: str = Field(description="a sentence a user can act on")
    # absent, never null, when no one field is at fault
    field: str | SkipJsonSchema[None] = Field(
        default=None, description="the field at fault, as a dotted path or a header's name",
        json_schema_extra=_absent_when_none)

    def wire(self) -> Any:
        return self.model_dump(mode="json", exclude_none=True)


class JobFailure(Reply):
    code: ErrorCode = Field(description="docs/api.md says what each code means")
    message: str

    @classmethod
    def of(cls, error: JobError | None) -> JobFailure | None:
        return None if error is None else cls(code=ErrorCode(error.code), message=error.message)


class Target(Location):
    state: TargetState = Field(description=(
        "succeeded: published, verified and indexed; a fan-out job fails when any target "
        "fails, and its targets that succeeded stay published"))
    error: JobFailure | None
    md5: str | None
    etag: str | None
    verification: VerificationField
    bytes_uploaded: Count | None
    segments_reused: Count | None

    @classmethod
    def of_target(cls, target: TargetRecord) -> Target:
        ref = target.ref
        return cls(region=ref.region, container=ref.container, object=ref.object,
                   state=target.state, error=JobFailure.of(target.error), md5=target.md5,
                   etag=target.etag, verification=target.verification,
                   bytes_uploaded=target.bytes_uploaded, segments_reused=target.segments_reused)


class ImageOfJob(Reply):
    source_region: str
    source_image_id: str
    target_region: str
    target_image_id: str | None = Field(description="the copy, once created")
    step: ImageStep | None
    name: str | None
    properties: dict[str, str]
    force: bool
    project_id: str | None

    @classmethod
    def of(cls, job: JobRecord) -> ImageOfJob | None:
        image = job.image
        if image is None:
            return None
        return cls(source_region=job.source.region, source_image_id=image.source_image_id,
                   target_region=job.target.region, target_image_id=image.target_image_id,
                   step=None if image.step is None else ImageStep(image.step), name=image.name,
                   properties=dict(image.properties), force=image.force,
                   project_id=job.project_id)


class Job(Reply):
    id: uuid.UUID
    state: JobState
    source: Location
    target: Location
    targets: list[Target] = Field(min_length=1,
                                  description="every target, in order; the first is `target`")
    checksum: Annotated[str, Field(pattern=MD5_PATTERN)] | None
    max_rate_mb: Annotated[float, Field(gt=0)] | None = Field(
        description="the job's own cap on reading, MB/s")
    bytes_total: Count | None
    bytes_done: Count
    rate: Annotated[float, Field(ge=0)] | None = Field(
        description="bytes per second since the job first started")
    eta: Annotated[float, Field(ge=0)] | None = Field(
        description="seconds to go; null when unknown")
    segments_total: Count | None
    layout: Literal["slo", "plain"] | None
    md5: str | None
    sha512: str | None
    etag: str | None
    md5_checked_against: str | None
    verification: VerificationField
    retries: Count
    bytes_uploaded: Count | None
    segments_reused: Count | None
    deduplicated: bool = Field(description="the target region already held a verified copy")
    existing: ExistingCopy | None = Field(description="that copy, when deduplicated")
    attempts: Count
    error: JobFailure | None
    kind: Literal["object", "image"] = Field(
        description="object: a Swift object copy; image: a Glance image copy")
    image: ImageOfJob | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    updated_at: Timestamp

    @classmethod
    def fields_of(cls, job: JobRecord) -> dict[str, Any]:
        """`rate` and `eta` are computed against the database's clock at the time the job was
        read."""
        rate = transfer_rate(job.bytes_done, job.started_at, job.finished_at, job.clock)
        eta = eta_seconds(job.state, job.bytes_total, job.bytes_done, rate)
        return dict(
            id=job.id, state=job.state, source=Location.of(job.source),
            target=Location.of(job.target),
            targets=[Target.of_target(target) for target in job.targets],
            checksum=job.expected_md5, max_rate_mb=job.max_rate_mb,
            bytes_total=job.bytes_total, bytes_done=job.bytes_done,
            rate=None if rate is None else round(rate, 1),
            eta=None if eta is None else round(eta, 1), segments_total=job.segments_total,
            layout=job.layout, md5=job.md5, sha512=job.sha512, etag=job.etag,
            md5_checked_against=job.md5_checked_against, verification=job.verification,
            retries=job.retries, bytes_uploaded=job.bytes_uploaded,
            segments_reused=job.segments_reused, deduplicated=job.existing is not None,
            existing=None if job.existing is None else ExistingCopy(
                region=job.existing.region, container=job.existing.container,
                object=job.existing.object),
            attempts=job.attempts, error=JobFailure.of(job.error), kind=job.kind,
            image=ImageOfJob.of(job), created_at=job.created_at, started_at=job.started_at,
            finished_at=job.finished_at, updated_at=job.updated_at)

    @classmethod
    def of(cls, job: JobRecord) -> Job:
        return cls(**cls.fields_of(job))


class Segment(Reply):
    index: Count
    offset: Count
    length: Count
    etag: str | None


class SegmentAttempt(Reply):
    """A segment's attempts, as the copy recorded them over all attempts of the job."""

    index: Count
    attempts: Count = Field(description="attempts started (a read and a PUT to each target)")
    failures: Count = Field(description="attempts that failed; each was tried again, or "
                                        "failed the copy")
    in_flight: bool = Field(description="an attempt started and has not ended yet")
    last_error: JobFailure | None = Field(description="the last failed attempt's code and "
                                                      "sentence")

    @classmethod
    def of(cls, record: SegmentAttempts) -> SegmentAttempt:
        return cls(index=record.index, attempts=record.attempts, failures=record.failures,
                   in_flight=record.in_flight, last_error=JobFailure.of(record.last_error))


class Transition(Reply):
    from_state: JobState | None = Field(alias="from")
    to: JobState
    at: Timestamp


class CleanupDutyState(Reply):
    duty: CleanupDuty
    state: DutyState
    outcome: str | None = Field(description="what was done, or what is left")
    error: str | None = Field(description="why the last attempt failed")
    attempts: Count

    @classmethod
    def of(cls, duties: tuple[DutyRecord, ...]) -> list[CleanupDutyState]:
        return [cls(duty=duty.duty, state=duty.state, outcome=duty.outcome,
                    error=duty.last_error, attempts=duty.attempts)
                for duty in duties if duty.duty in CLEANUP_DUTIES]


class JobDetail(Job):
    """A job with what GET /v1/jobs/{id} adds: its cleanup, segments and transitions."""

    cleanup: list[CleanupDutyState] = Field(description=(
        "what removes what a failed or cancelled copy made, then ends its trust: each with "
        "its state and outcome"))
    segments_written: Count
    segments: list[Segment]
    segment_attempts: list[SegmentAttempt] = Field(description=(
        "every segment the copy started, by index: its attempts, failures and whether one is "
        "in flight"))
    transitions: list[Transition]

    @classmethod
    def of_detail(cls, detail: JobDetailRecord) -> JobDetail:
        return cls(
            **cls.fields_of(detail.job), cleanup=CleanupDutyState.of(detail.duties),
            segments_written=len(detail.segments),
            segments=[Segment(index=s.index, offset=s.offset, length=s.length, etag=s.etag)
                      for s in detail.segments],
            segment_attempts=[SegmentAttempt.of(record) for record in detail.attempts],
            transitions=[Transition.model_validate({"from": t.from_state, "to": t.to_state,
                                                     "at": t.at})
                         for t in detail.transitions])


class JobPage(Reply):
    jobs: list[Job]
    next: str | None = Field(description="cursor of the next page")


class Object(Reply):
    checksum: str
    os_hash_algo: Literal["sha512"] | None
    os_hash_value: str | None
    size: Count
    region: str
    project: str
    container: str
    object: str
    job_id: uuid.UUID | None
    verified_at: Timestamp

    @classmethod
    def of(cls, entry: IndexedObject) -> Object:
        return cls(checksum=entry.md5, os_hash_algo="sha512" if entry.sha512 else None,
                   os_hash_value=entry.sha512, size=entry.size, region=entry.region,
                   project=entry.project, container=entry.container, object=entry.object,
                   job_id=entry.job_id, verified_at=entry.verified_at)


class ObjectList(Reply):
    objects: list[Object]


class Region(Reply):
    name: str
    home: bool
    copy_from: bool


class RegionList(Reply):
    home_region: str
    regions: list[Region]


class MatchedImage(Reply):
    id: str
    name: str | None
    status: str
    owner: str
    visibility: str
    checksum: str | None
    os_hash_algo: str | None
    os_hash_value: str | None
    size: int | None
    created_at: str


class ImageMatch(Reply):
    region: str
    count: Annotated[int, Field(ge=1)]
    image: MatchedImage

    @classmethod
    def of(cls, match: RegionMatch) -> ImageMatch:
        image = match.image
        assert image is not None
        return cls(region=match.region, count=match.count, image=MatchedImage(
            id=image.id, name=image.name, status=image.status, owner=image.owner,
            visibility=image.visibility, checksum=image.checksum,
            os_hash_algo=image.os_hash_algo, os_hash_value=image.os_hash_value,
            size=image.size, created_at=image.created_at))


class RegionUnavailable(Reply):
    region: str
    error: str


class ImageMatches(Reply):
    images: list[ImageMatch]
    unavailable: list[RegionUnavailable]


class Check(Reply):
    ok: bool
    error: str | SkipJsonSchema[None] = Field(default=None, description="why it failed",
                                              json_schema_extra=_absent_when_none)
    seconds: float

    def wire(self) -> Any:
        return self.model_dump(mode="json", exclude_none=True)


class Checks(Reply):
    database: Check
    keystone: Check | SkipJsonSchema[None] = Field(
        default=None, description="with Keystone: xfer's own token and its service role",
        json_schema_extra=_absent_when_none)
    regions: dict[str, Check]

    def wire(self) -> Any:
        checks = {"database": self.database.wire(),
                  "regions": {name: check.wire() for name, check in self.regions.items()}}
        if self.keystone is not None:
            checks["keystone"] = self.keystone.wire()
        return checks


class Health(Reply):
    status: Literal["ok"]


class Ready(Reply):
    status: Literal["ok"]
    checks: Checks

    def wire(self) -> Any:
        return {"status": self.status, "checks": self.checks.wire()}


class Error(Reply):
    """Every error reply: one shape, wherever it is made."""

    error: ErrorBody

    def wire(self) -> Any:
        return {"error": self.error.wire()}


class NotReady(Error):
    checks: Checks

    def wire(self) -> Any:
        return {"error": self.error.wire(), "checks": self.checks.wire()}


EndReason = Literal["finished", "max_duration", "shutdown", "deleted"]


class StreamEnd(Reply):
    """The data of the last server-sent event of GET /v1/jobs/{id}/events."""

    reason: EndReason


# The reply models the OpenAPI document describes, by the name it gives each.
DOCUMENTED: tuple[type[Reply], ...] = (Job, JobDetail, JobPage, ObjectList, RegionList,
                                       ImageMatches, Health, Ready, NotReady, Error, StreamEnd)
