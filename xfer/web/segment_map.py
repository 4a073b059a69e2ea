"""The web view's per-segment map of a copy: one letter per target segment.

    w  written: its PUT succeeded and Swift's ETag equalled the segment's MD5 (job_segments)
    v  verified: the job succeeded, so the whole object's MD5 and SHA-512 were checked
    i  in flight: one of the first `segments_in_flight` segments not yet written
    f  failed: one of those when the job failed (after the job's `attempts`)
    p  pending: not started yet

The store records written segments only (and `bytes_done` is their bytes), not each segment's
reads or retries. A running copy keeps at most `segments_in_flight` segments open, started in
segment order (the order in which they take their share of the memory budget,
engine/inflight.py), so the first unwritten ones are those in flight; a segment that waits for
its share of that budget is shown in flight too. `w` and `v` are exact.
"""

from __future__ import annotations

from collections.abc import Iterable

from xfer.jobs.records import JobRecord
from xfer.jobs.states import JobState

MAX_CELLS = 10_000  # an SLO holds at most 1,000 segments; a bound, whatever the record says


def segment_cells(job: JobRecord, written: Iterable[int], in_flight: int) -> str:
    """One letter per segment of the job (empty until the copy is planned); `in_flight`: the
    segments a copy keeps open at once (Settings.segments_in_flight)."""
    total = min(job.segments_total or 0, MAX_CELLS)
    if total == 0:
        return ""
    if job.state is JobState.SUCCEEDED:
        return "v" * total
    done = set(written)
    open_letter = {JobState.RUNNING: "i", JobState.FAILED: "f"}.get(job.state)
    cells = []
    for index in range(total):
        if index in done:
            cells.append("w")
        elif open_letter is not None and in_flight > 0:
            cells.append(open_letter)
            in_flight -= 1
        else:
            cells.append("p")
    return "".join(cells)
