"""The segment plan: covers [0, size) exactly once and respects the target's limits."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xfer.engine.plan import as_slo, plan_from_source_segments, plan_segments
from xfer.errors import CopyFailed
from xfer.proto.swift import Limits


def limits(max_file_size: int = 5 * 2**30, max_segments: int = 1000, min_segment: int = 1) -> Limits:
    return Limits(max_file_size, max_segments, 8 * 2**20, min_segment)


def assert_covers_exactly(plan, size):
    cursor = 0
    for index, segment in enumerate(plan.segments):
        assert segment.index == index
        assert segment.offset == cursor
        assert segment.length >= 0
        cursor += segment.length
    assert cursor == size == plan.size


@given(size=st.integers(0, 10**13), preferred=st.integers(1, 2**33),
       max_file=st.integers(1, 2**33), max_segments=st.integers(1, 2000))
def test_plan_covers_the_object_once_within_limits(size, preferred, max_file, max_segments):
    target = limits(max_file, max_segments)
    try:
        plan = plan_segments(size, target, preferred)
    except CopyFailed as failure:
        assert failure.code == "too_large_for_target"
        assert size > max_file * max_segments or -(-size // max_segments) > max_file
        return
    assert_covers_exactly(plan, size)
    assert all(s.length <= max_file for s in plan.segments)
    if plan.as_slo:
        assert len(plan.segments) <= max_segments
        assert all(s.length > 0 for s in plan.segments)
        # all segments but the last have the same size
        assert len({s.length for s in plan.segments[:-1]}) <= 1
    else:
        assert len(plan.segments) == 1


def test_small_object_is_one_plain_put():
    plan = plan_segments(1000, limits(), 4096)
    assert not plan.as_slo and len(plan.segments) == 1


def test_empty_object_is_one_empty_plain_put():
    plan = plan_segments(0, limits(), 4096)
    assert not plan.as_slo and plan.segments[0].length == 0


def test_object_above_max_file_size_becomes_slo():
    plan = plan_segments(10_000, limits(max_file_size=3000), 2**30)
    assert plan.as_slo
    assert max(s.length for s in plan.segments) == 3000
    assert len(plan.segments) == 4


def test_segment_size_grows_to_fit_max_manifest_segments():
    plan = plan_segments(10_000, limits(max_segments=4), 1000)
    assert len(plan.segments) == 4 and plan.segments[0].length == 2500


def test_too_large_for_target_is_a_clear_failure():
    with pytest.raises(CopyFailed) as failure:
        plan_segments(10_000, limits(max_file_size=100, max_segments=10), 100)
    assert failure.value.code == "too_large_for_target"


@given(st.lists(st.integers(1, 10**9), min_size=2, max_size=50))
def test_source_boundaries_are_kept_when_they_fit(lengths):
    plan = plan_from_source_segments([(n, f"{i:032x}") for i, n in enumerate(lengths)], limits())
    assert plan is not None
    assert_covers_exactly(plan, sum(lengths))
    assert [s.etag for s in plan.segments] == [f"{i:032x}" for i in range(len(lengths))]


def test_source_boundaries_refused_when_over_limits():
    assert plan_from_source_segments([(10, "a"), (10, "b")], limits(max_file_size=5)) is None
    assert plan_from_source_segments([(10, "a")] * 5, limits(max_segments=4)) is None
    assert plan_from_source_segments([(10, "a")], limits()) is None


def test_a_plain_plan_becomes_a_one_segment_slo():
    plain = plan_segments(1000, limits(), 4096)
    assert not plain.as_slo
    slo = as_slo(plain)
    assert slo.as_slo and slo.segments == plain.segments and slo.layout == "slo"
