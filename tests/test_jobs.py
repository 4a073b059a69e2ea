"""The job state machine: every reachable path obeys the transition table."""

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from xfer.jobs.states import (
    TERMINAL,
    TRANSITIONS,
    InvalidTransition,
    JobState,
    cancel_target,
    check_transition,
)


class JobLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = JobState.QUEUED
        self.history = [self.state]

    @rule(wanted=st.sampled_from(list(JobState)))
    def move(self, wanted: JobState) -> None:
        try:
            self.state = check_transition(self.state, wanted)
            self.history.append(self.state)
        except InvalidTransition:
            assert wanted not in TRANSITIONS[self.state]

    @rule()
    def cancel(self) -> None:
        target = cancel_target(self.state)
        if target is None:
            assert self.state in TERMINAL or self.state is JobState.CANCELLING
        else:
            self.state = check_transition(self.state, target)
            self.history.append(self.state)

    @invariant()
    def terminal_states_are_final(self) -> None:
        for earlier in self.history[:-1]:
            assert earlier not in TERMINAL

    @invariant()
    def cancelling_only_ends_cancelled(self) -> None:
        if JobState.CANCELLING in self.history:
            after = self.history[self.history.index(JobState.CANCELLING) + 1:]
            assert all(s is JobState.CANCELLED for s in after)


TestJobLifecycle = JobLifecycle.TestCase


def test_every_state_has_a_row():
    assert set(TRANSITIONS) == set(JobState)
    assert all(not TRANSITIONS[s] for s in TERMINAL)
