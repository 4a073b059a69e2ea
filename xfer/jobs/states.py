"""Job states and the transitions allowed between them (pure)."""

from __future__ import annotations

from enum import StrEnum

from xfer.errors import XferError


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class TargetState(StrEnum):
    """One target of a job. A fan-out job's targets end one by one as the copy reports them:
    some may succeed (published, indexed) while others fail; the job then fails."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# What a job's move to a state means for its targets that have not ended on their own.
TARGET_STATE_OF: dict[JobState, TargetState] = {
    JobState.QUEUED: TargetState.QUEUED,
    JobState.RUNNING: TargetState.RUNNING,
    JobState.VERIFYING: TargetState.RUNNING,
    JobState.CANCELLING: TargetState.RUNNING,
    JobState.SUCCEEDED: TargetState.SUCCEEDED,
    JobState.FAILED: TargetState.FAILED,  # the copy failed as a whole: so did each target
    JobState.CANCELLED: TargetState.CANCELLED,
}

# running or verifying -> queued: a worker shutting down hands its job back (an image copy
# waiting for Glance to read its copy back is verifying); running -> running: another worker
# takes over a job whose lease expired.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.RUNNING, JobState.VERIFYING, JobState.QUEUED,
                                 JobState.FAILED, JobState.CANCELLING, JobState.SUCCEEDED}),
    JobState.VERIFYING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLING,
                                   JobState.RUNNING, JobState.QUEUED}),
    JobState.CANCELLING: frozenset({JobState.CANCELLED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class InvalidTransition(XferError):
    pass


def check_transition(current: JobState, wanted: JobState) -> JobState:
    if wanted not in TRANSITIONS[current]:
        raise InvalidTransition(f"a {current.value} job cannot become {wanted.value}")
    return wanted


def cancel_target(current: JobState) -> JobState | None:
    """What a cancel request does: a queued job ends at once, a running one is asked to stop;
    None when there is nothing to cancel (already ended or already cancelling)."""
    if current is JobState.QUEUED:
        return JobState.CANCELLED
    if current in (JobState.RUNNING, JobState.VERIFYING):
        return JobState.CANCELLING
    return None
