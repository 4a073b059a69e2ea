"""The web view's segment map (xfer/web/segment_map.py): one letter per segment."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from xfer.engine.types import ObjectRef
from xfer.jobs.records import JobRecord, TargetRecord
from xfer.jobs.states import JobState, TargetState
from xfer.web.segment_map import segment_cells

MiB = 1024 * 1024
NOW = datetime(2026, 12, 7, tzinfo=UTC)


def job(state: JobState, bytes_done: int, segments_total: int | None = 8) -> JobRecord:
    target = ObjectRef("RegionTwo", "c", "o")
    return JobRecord(
        id=uuid.uuid4(), state=state, source=ObjectRef("RegionOne", "c", "o"), target=target,
        segment_container=None, expected_md5=None, segment_size=MiB, bytes_total=8 * MiB,
        bytes_done=bytes_done, segments_total=segments_total, layout="slo", md5=None,
        sha512=None, etag=None, md5_checked_against=None, verification=None, retries=0,
        attempts=1, error=None, bytes_uploaded=None, segments_reused=None, existing=None,
        max_rate_mb=None, targets=(TargetRecord(0, target, TargetState.RUNNING, None, None, None,
                                                   None, None, None),),
        created_at=NOW, started_at=NOW, finished_at=None, updated_at=NOW)


def test_written_in_flight_and_pending_while_running() -> None:
    assert segment_cells(job(JobState.RUNNING, 2 * MiB), [0, 1], 3) == "wwiiippp"


def test_out_of_order_writes_stay_where_they_are() -> None:
    assert segment_cells(job(JobState.RUNNING, 2 * MiB), [0, 2], 2) == "wiwipppp"


def test_a_failed_job_marks_what_was_in_flight_failed() -> None:
    assert segment_cells(job(JobState.FAILED, MiB), [0], 2) == "wffppppp"


def test_a_cancelled_or_queued_job_has_nothing_in_flight() -> None:
    assert segment_cells(job(JobState.CANCELLED, MiB), [0], 6) == "wppppppp"
    assert segment_cells(job(JobState.QUEUED, MiB), [0], 6) == "wppppppp"


def test_success_is_every_segment_verified_and_no_plan_is_no_map() -> None:
    assert segment_cells(job(JobState.SUCCEEDED, 8 * MiB), [], 6) == "v" * 8
    assert segment_cells(job(JobState.QUEUED, 0, segments_total=None), [], 6) == ""
    assert segment_cells(job(JobState.RUNNING, 7 * MiB), range(7), 6) == "wwwwwwwi"
