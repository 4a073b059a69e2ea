"""Rate caps (pure): a bucket's long-run rate is its cap whatever the read sizes, and the
process cap is split evenly between the copies running."""

from hypothesis import given
from hypothesis import strategies as st

from xfer.engine.rate import RateShares, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@given(st.floats(1e3, 1e9), st.lists(st.integers(1, 8 * 2**20), min_size=1, max_size=200))
def test_a_reader_that_waits_as_told_reads_at_the_cap(rate, sizes):
    clock = Clock()
    burst = 4 * 2**20
    bucket = TokenBucket(rate, burst, clock)
    for size in sizes:
        clock.now += bucket.reserve(size)  # the reader sleeps off its debt
    # never more than the burst above the cap, and never slower than asked
    assert sum(sizes) <= rate * clock.now + burst + 1e-6 * sum(sizes)
    assert clock.now <= max(0.0, (sum(sizes) - burst) / rate) + 1e-6


def test_no_cap_means_no_wait():
    bucket = TokenBucket(None, 1)
    assert bucket.reserve(10**12) == 0.0


def test_the_process_cap_is_shared_max_min_fairly_and_a_job_cap_still_holds():
    shares = RateShares(process_rate=90.0, burst=1)
    with shares.bucket(None) as first:
        assert first.rate == 90.0
        with shares.bucket(None) as second, shares.bucket(10.0) as capped:
            assert capped.rate == 10.0  # its own cap is below its share of 30
            assert first.rate == second.rate == 40.0  # the rest is theirs
        assert first.rate == 90.0  # the others ended: the whole cap again
    with RateShares(None, 1).bucket(5.0) as alone:
        assert alone.rate == 5.0
