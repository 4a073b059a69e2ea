"""The web view's segment map (xfer/web/segment_map.py): one letter per segment, from the
recorded segments and attempts, and the attempts of the retried ones."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from xfer.engine.types import ObjectRef
from xfer.jobs.records import JobError, JobRecord, SegmentAttempts, TargetRecord
from xfer.jobs.states import JobState, TargetState
from xfer.web.segment_map import segment_map

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


def started(index: int, attempts: int = 1, failures: int = 0,
            in_flight: bool = True) -> SegmentAttempts:
    error = JobError("target_unavailable", "503") if failures else None
    return SegmentAttempts(index, attempts, failures, in_flight, error)


def cells(state: JobState, written: list[int], attempts: list[SegmentAttempts],
          segments_total: int | None = 8) -> str:
    return segment_map(job(state, 0, segments_total), written, attempts).cells


def test_in_flight_is_what_the_record_says_not_the_first_unwritten() -> None:
    # segments 2 and 5 started; 3 and 4 not (whatever segments_in_flight is)
    attempts = [started(0, in_flight=False), started(2), started(5)]
    assert cells(JobState.RUNNING, [0, 1], attempts) == "wwippipp"


def test_a_retried_segment_shows_its_attempts_in_flight_failed_or_written() -> None:
    retrying = started(1, attempts=2, failures=1)  # in its second attempt
    waiting = started(2, attempts=1, failures=1, in_flight=False)  # in its backoff
    landed = started(3, attempts=3, failures=2, in_flight=False)
    drawn = segment_map(job(JobState.RUNNING, 0), [0, 3], [retrying, waiting, landed])
    assert drawn.cells == "wifwpppp"
    assert drawn.wire()["tries"] == {
        "1": {"attempts": 2, "failures": 1, "error": "target_unavailable"},
        "2": {"attempts": 1, "failures": 1, "error": "target_unavailable"},
        "3": {"attempts": 3, "failures": 2, "error": "target_unavailable"}}


def test_a_failed_job_marks_what_was_in_flight_failed() -> None:
    assert cells(JobState.FAILED, [0], [started(1), started(2)]) == "wffppppp"


def test_a_cancelled_or_queued_job_has_nothing_in_flight() -> None:
    assert cells(JobState.CANCELLED, [0], [started(1)]) == "wppppppp"
    assert cells(JobState.QUEUED, [0], [started(1)]) == "wppppppp"


def test_success_is_every_segment_verified_and_no_plan_is_no_map() -> None:
    assert cells(JobState.SUCCEEDED, [], []) == "v" * 8
    assert cells(JobState.QUEUED, [], [], segments_total=None) == ""
    assert cells(JobState.RUNNING, list(range(7)), [started(7)]) == "wwwwwwwi"


def test_records_past_the_plan_are_not_drawn() -> None:
    drawn = segment_map(job(JobState.RUNNING, 0), [], [started(9, failures=1)])
    assert drawn.cells == "p" * 8 and drawn.tries == {}
