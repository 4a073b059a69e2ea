"""Pure: a job's transfer rate and estimated time to finish, from what the database holds.

    rate = bytes_done / (end - started_at)     end: finished_at, or the database's clock now
    eta  = (bytes_total - bytes_done) / rate   while running or verifying; 0 once succeeded

Both are None when unknown: not started yet, no time elapsed, no bytes moved yet, the size
not planned yet, or the job ended without succeeding. `started_at` is the first attempt's
start, so time spent queued between attempts counts as running time.
"""

from __future__ import annotations

from datetime import datetime

from xfer.jobs.states import JobState

_MOVING = frozenset({JobState.RUNNING, JobState.VERIFYING})


def transfer_rate(bytes_done: int, started_at: datetime | None, finished_at: datetime | None,
                  now: datetime) -> float | None:
    """Bytes per second over the running time."""
    if started_at is None:
        return None
    seconds = ((finished_at or now) - started_at).total_seconds()
    if seconds <= 0:
        return None
    return bytes_done / seconds


def eta_seconds(state: JobState, bytes_total: int | None, bytes_done: int,
                rate: float | None) -> float | None:
    """Seconds until the bytes are all copied, at the rate so far."""
    if state is JobState.SUCCEEDED:
        return 0.0
    if state not in _MOVING or bytes_total is None:
        return None
    remaining = max(bytes_total - bytes_done, 0)
    if remaining == 0:
        return 0.0
    if not rate:
        return None
    return remaining / rate
