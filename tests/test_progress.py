"""Pure parts of the job views: rate and ETA (milliseconds, no cloud; the list cursor is
tests/test_validation.py's)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from xfer.jobs.states import JobState
from xfer.web.progress import eta_seconds, transfer_rate

START = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_rate_is_bytes_over_running_time_until_now_or_finish():
    assert transfer_rate(1000, START, None, START + timedelta(seconds=4)) == 250.0
    finished = START + timedelta(seconds=10)
    assert transfer_rate(1000, START, finished, finished + timedelta(hours=1)) == 100.0


def test_rate_is_unknown_before_start_or_without_elapsed_time():
    assert transfer_rate(0, None, None, START) is None
    assert transfer_rate(10, START, None, START) is None
    assert transfer_rate(10, START, None, START - timedelta(seconds=1)) is None  # clock skew


@pytest.mark.parametrize(("state", "total", "done", "rate", "eta"), [
    (JobState.RUNNING, 1000, 250, 250.0, 3.0),
    (JobState.RUNNING, 1000, 0, 0.0, None),  # nothing moved yet: no estimate
    (JobState.RUNNING, None, 0, None, None),  # size not planned yet
    (JobState.VERIFYING, 1000, 1000, 100.0, 0.0),
    (JobState.SUCCEEDED, 1000, 1000, 100.0, 0.0),
    (JobState.QUEUED, None, 0, None, None),
    (JobState.FAILED, 1000, 10, 5.0, None),
    (JobState.CANCELLING, 1000, 10, 5.0, None),
    (JobState.CANCELLED, 1000, 10, 5.0, None),
])
def test_eta(state, total, done, rate, eta):
    assert eta_seconds(state, total, done, rate) == eta
