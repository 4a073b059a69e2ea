"""The reply models (xfer/web/replies.py) send what the hand-built JSON of the API sent, field
for field and byte for byte, and what they send is what the OpenAPI document describes.

tests/replies_before.json is the output of web/api.py's `job_json`, `job_detail_json` and
`object_json` of commit 71f66a9 (before the models) for the records below: a running fan-out
job, a succeeded and deduplicated image copy, its detail, and two index entries."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from pydantic import ValidationError

from xfer.engine.plan import Segment
from xfer.engine.types import ObjectRef, Verification
from xfer.errors import ErrorCode
from xfer.images.types import ImageCopyJob, ImageStep
from xfer.jobs.records import (
    Duty,
    DutyRecord,
    DutyState,
    IndexedObject,
    JobDetail,
    JobError,
    JobRecord,
    SegmentAttempts,
    TargetRecord,
    Transition,
)
from xfer.jobs.states import JobState, TargetState
from xfer.web import openapi, replies

BEFORE = json.loads((Path(__file__).parent / "replies_before.json").read_text())
T0 = datetime(2026, 12, 7, 18, 0, 0, 123456, tzinfo=UTC)
SOURCE = ObjectRef("RegionOne", "images", "cirros.img")
TARGET = ObjectRef("RegionTwo", "images", "cirros.img")
OTHER = ObjectRef("RegionThree", "copies", "c.img")
JOB_ID = uuid.UUID("0b6f3a52-5a3e-4c1e-9d0f-2f8e3c1a9b7d")


def running_job() -> JobRecord:
    return JobRecord(
        id=JOB_ID, state=JobState.RUNNING,
        source=SOURCE, target=TARGET, segment_container=None, expected_md5="0" * 32,
        segment_size=1048576, bytes_total=3_000_000, bytes_done=1_000_000, segments_total=3,
        layout="slo", md5=None, sha512=None, etag=None, md5_checked_against=None,
        verification=None, retries=2, attempts=1, error=None, bytes_uploaded=None,
        segments_reused=None, existing=None, max_rate_mb=12.5,
        targets=(TargetRecord(0, TARGET, TargetState.RUNNING, None, None, None, None, None,
                              None),
                 TargetRecord(1, OTHER, TargetState.FAILED, JobError("target_forbidden", "no"),
                              None, None, None, 10, 0)),
        created_at=T0, started_at=T0 + timedelta(seconds=1), finished_at=None,
        updated_at=T0 + timedelta(seconds=3), observed_at=T0 + timedelta(seconds=4))


def image_job() -> JobRecord:
    return JobRecord(
        id=uuid.UUID(int=7), state=JobState.SUCCEEDED, source=SOURCE, target=TARGET,
        segment_container="segs", expected_md5=None, segment_size=None, bytes_total=10,
        bytes_done=10, segments_total=None, layout="plain", md5="a" * 32, sha512="b" * 128,
        etag="a" * 32, md5_checked_against="image checksum",
        verification=Verification.END_TO_END, retries=0, attempts=2,
        error=JobError("source_changed", "it changed"), bytes_uploaded=10, segments_reused=0,
        existing=OTHER, max_rate_mb=None,
        targets=(TargetRecord(0, TARGET, TargetState.SUCCEEDED, None, "a" * 32, "a" * 32,
                              Verification.SOURCE_PINNED, 10, 0),),
        created_at=T0, started_at=T0, finished_at=T0 + timedelta(seconds=9),
        updated_at=T0 + timedelta(seconds=9), kind="image", project_id="p1", user_id="u1",
        image=ImageCopyJob(uuid.UUID(int=7), SOURCE.region, TARGET.region, "img-1", "trust",
                           "näme ☃", {"os_distro": "cirros", "é": "\u2028"}, True, "img-2",
                           ImageStep.REGISTERED))


def image_job_detail() -> JobDetail:
    job = image_job()
    return JobDetail(
        job=job, segments=(Segment(0, 0, 5, "e0"), Segment(1, 5, 5)),
        transitions=(Transition(None, JobState.QUEUED, T0),
                     Transition(JobState.QUEUED, JobState.RUNNING, T0 + timedelta(seconds=1))),
        duties=(DutyRecord(job.id, Duty.ADOPT_TRUST, DutyState.DONE, 1, T0, None, None),
                DutyRecord(job.id, Duty.END_TRUST, DutyState.PENDING, 2, T0, "boom", None),
                DutyRecord(job.id, Duty.REMOVE_TARGET_IMAGE, DutyState.DONE, 1, T0, None,
                           "deleted")),
        attempts=(SegmentAttempts(0, 1, 0, False, None),
                  SegmentAttempts(1, 2, 1, True,
                                  JobError("target_unavailable", "503 from RegionTwo"))))


def index_entries() -> list[IndexedObject]:
    return [IndexedObject("a" * 32, None, 10, "RegionTwo", "AUTH_p", "images", "x", None, None,
                          T0),
            IndexedObject("a" * 32, "b" * 128, 10, "RegionTwo", "AUTH_p", "images", "x", "i",
                          JOB_ID, T0)]


def now_sent() -> dict[str, Any]:
    return {"running": replies.Job.of(running_job()).wire(),
            "image": replies.Job.of(image_job()).wire(),
            "detail": replies.JobDetail.of_detail(image_job_detail()).wire(),
            "objects": [replies.Object.of(entry).wire() for entry in index_entries()]}


@pytest.mark.parametrize("name", ["running", "image", "detail", "objects"])
def test_the_models_send_what_the_hand_built_json_sent(name: str) -> None:
    sent = now_sent()[name]
    assert sent == BEFORE[name]
    # as aiohttp's json_response writes it: the same bytes, key order included
    assert json.dumps(sent) == json.dumps(BEFORE[name])


def validator(name: str) -> OAS31Validator:
    components = openapi.document(["RegionOne", "RegionTwo"])["components"]
    return OAS31Validator({"$ref": f"#/components/schemas/{name}", "components": components},
                          format_checker=oas31_format_checker)


@pytest.mark.parametrize("name, schema", [("running", "Job"), ("image", "Job"),
                                          ("detail", "JobDetail")])
def test_what_the_models_send_is_what_the_document_describes(name: str, schema: str) -> None:
    sent = now_sent()
    assert list(validator(schema).iter_errors(sent[name])) == []
    for entry in sent["objects"]:
        assert list(validator("Object").iter_errors(entry)) == []
    # and the document is no wider than the models: a job is not a job detail
    assert not validator("Job").is_valid(sent["detail"])


def test_the_document_lists_every_error_code_as_an_enum() -> None:
    schemas = openapi.document()["components"]["schemas"]
    assert schemas["ErrorCode"]["enum"] == [code.value for code in ErrorCode]
    for model in ("ErrorBody", "JobFailure"):
        assert schemas[model]["properties"]["code"]["$ref"].endswith("/ErrorCode")


def test_a_reply_that_breaks_its_schema_fails_where_it_is_built() -> None:
    """A record the documented schema cannot describe is a bug found in xfer, not in a
    client: a code outside ErrorCode, a negative count."""
    job = running_job()
    with pytest.raises(ValueError, match="not_a_code"):
        replies.Job.of(JobRecord(**{**job.__dict__, "error": JobError("not_a_code", "x")}))
    with pytest.raises(ValidationError, match="bytes_done"):
        replies.Job.of(JobRecord(**{**job.__dict__, "bytes_done": -1}))


def test_a_deduplicated_image_copy_points_at_its_region_only() -> None:
    """The image flow records no object for the image it found (its id is the job's
    target_image_id): `existing` has null container and object, as it always had."""
    job = image_job()
    found = JobRecord(**{**job.__dict__,
                         "existing": ObjectRef("RegionTwo", None, None)})  # type: ignore[arg-type]
    sent = replies.Job.of(found).wire()
    assert sent["existing"] == {"region": "RegionTwo", "container": None, "object": None}
    assert list(validator("Job").iter_errors(sent)) == []
