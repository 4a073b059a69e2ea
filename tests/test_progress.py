"""Pure parts of the job views: rate and ETA, and the list cursor (milliseconds, no cloud)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xfer.errors import RequestError
from xfer.jobs.states import JobState
from xfer.web.api import decode_cursor, encode_cursor
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


@given(st.datetimes(timezones=st.just(UTC)), st.uuids())
def test_cursor_round_trips(created_at, job_id):
    token = encode_cursor(created_at, job_id)
    assert decode_cursor(token) == (created_at, job_id)
    assert token.isascii() and "=" not in token


@given(st.text(max_size=80))
def test_any_other_cursor_is_a_400_naming_the_cursor(token):
    try:
        created_at, job_id = decode_cursor(token)
    except RequestError as exc:  # never another exception: that would be a 500
        assert exc.field == "cursor"
    else:
        assert created_at.tzinfo is not None and isinstance(job_id, uuid.UUID)


@pytest.mark.parametrize("token", ["", "x", "bm9wZQ", "WzFd", "WyIyMDI2LTAxLTAxIiwgIngiXQ"])
def test_malformed_cursors_are_rejected(token):
    with pytest.raises(RequestError) as caught:
        decode_cursor(token)
    assert caught.value.field == "cursor"


def test_a_cursor_without_time_zone_is_rejected():
    naive = encode_cursor(datetime(2026, 1, 1), uuid.uuid4())
    with pytest.raises(RequestError):
        decode_cursor(naive)
