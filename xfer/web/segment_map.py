"""The web view's per-segment map of a copy: one letter per target segment, and the attempts of
the segments that were retried or are in flight, all from the records.

    w  written: its PUT succeeded and Swift's ETag equalled the segment's MD5 (job_segments)
    v  verified: the job succeeded, so the whole object's MD5 and SHA-512 were checked
    i  in flight: an attempt at it started and has not ended (job_segment_attempts), while
       the job runs
    f  failed: its last attempt failed (it waits for its next one while the job runs), or it
       was in flight when the job failed
    p  pending: not started yet (or in flight when the job was cancelled or handed over)

The worker records each attempt at a segment when it starts and when it fails, and the
segment when it is written (jobs/job_progress.py): one write each, never per chunk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from xfer.jobs.records import JobRecord, SegmentAttempts
from xfer.jobs.states import JobState

MAX_CELLS = 10_000  # an SLO holds at most 1,000 segments; a bound, whatever the record says


@dataclass(frozen=True)
class SegmentMap:
    cells: str  # one letter per segment
    # by segment index, for the segments that failed an attempt or are in flight
    tries: dict[int, SegmentAttempts]

    def wire(self) -> dict[str, Any]:
        """As the page and its events carry it (JSON object keys are strings)."""
        return {"cells": self.cells, "tries": {
            str(index): {"attempts": record.attempts, "failures": record.failures,
                         "error": record.last_error.code if record.last_error else None}
            for index, record in self.tries.items()}}


def segment_map(job: JobRecord, written: Iterable[int],
                attempts: Iterable[SegmentAttempts]) -> SegmentMap:
    """The map of a job (no cells until the copy is planned)."""
    total = min(job.segments_total or 0, MAX_CELLS)
    done = set(written)
    tries = {record.index: record for record in attempts
             if record.index < total and (record.failures or record.in_flight)}
    cells = "".join(_letter(job.state, index in done, tries.get(index)) for index in range(total))
    return SegmentMap(cells, tries)


def _letter(state: JobState, written: bool, record: SegmentAttempts | None) -> str:
    if state is JobState.SUCCEEDED:
        return "v"
    if written:
        return "w"
    if record is None:
        return "p"
    if record.in_flight:
        return {JobState.RUNNING: "i", JobState.VERIFYING: "i",
                JobState.FAILED: "f"}.get(state, "p")
    return "f"  # its last attempt failed
