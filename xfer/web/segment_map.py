"""The web view's per-segment map of a copy: one letter per target segment.

    w  written: its PUT succeeded and Swift's ETag equalled the segment's MD5 (job_segments)
    v  verified: the job succeeded, so the whole object's MD5 and SHA-512 were checked
    i  in flight: reading has reached it and it is not written yet
    f  failed: in flight when the job failed (after the job's `attempts`)
    p  pending: not reached yet

The store records written segments only, not each segment's reads or retries; "in flight" is
therefore the segments that the bytes read so far (`bytes_done`) reach into, in segment order,
which is the order segments take their share of the memory budget (engine/inflight.py) and start.
With several segments in flight the bytes of one are counted before an earlier one is written,
so the boundary of the `i` run may be one or two segments off; `w` and `v` are exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from xfer.jobs.records import JobRecord
from xfer.jobs.states import JobState

MAX_CELLS = 10_000  # an SLO holds at most 1,000 segments; a bound, whatever the record says


def segment_cells(job: JobRecord, written: Iterable[int]) -> str:
    """One letter per segment of the job (empty until the copy is planned)."""
    total = min(job.segments_total or 0, MAX_CELLS)
    if total == 0:
        return ""
    if job.state is JobState.SUCCEEDED:
        return "v" * total
    size = job.segment_size or math.ceil((job.bytes_total or 0) / total) or 1
    begun = min(total, math.ceil(job.bytes_done / size))
    done = set(written)
    unfinished = "f" if job.state is JobState.FAILED else (
        "p" if job.state.terminal else "i")
    return "".join("w" if index in done else unfinished if index < begun else "p"
                   for index in range(total))
