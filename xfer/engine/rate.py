"""Rate caps: a copy reads at most its share of the process's rate, and at most its own cap.

Each copy has a token bucket; the process cap is split max-min fairly between the copies
running (evenly, except that a copy capped lower leaves the rest to the others), recomputed
when a copy starts or ends. A bucket lends
against the future: a reader takes what it needs and sleeps off the debt, so several segments
of one copy reading at once still add up to the rate exactly over time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator


class TokenBucket:
    def __init__(self, rate: float | None, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate  # bytes per second; None: no cap
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.updated = clock()

    def reserve(self, size: int) -> float:
        """Take `size` bytes' worth now; returns how long the caller must wait for them."""
        if self.rate is None:
            return 0.0
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= size
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def set_rate(self, rate: float | None) -> None:
        self.reserve(0)  # settle what the old rate earned
        self.rate = rate

    async def take(self, size: int) -> None:
        delay = self.reserve(size)
        if delay > 0:
            await asyncio.sleep(delay)


class RateShares:
    """The process cap, shared evenly by the copies running."""

    def __init__(self, process_rate: float | None, burst: float) -> None:
        self.process_rate = process_rate
        self.burst = burst
        self._buckets: dict[TokenBucket, float | None] = {}  # bucket -> its job's own cap

    @contextlib.contextmanager
    def bucket(self, job_rate: float | None) -> Iterator[TokenBucket]:
        """A bucket for one copy while it runs."""
        bucket = TokenBucket(job_rate, self.burst)
        self._buckets[bucket] = job_rate
        self._rebalance()
        try:
            yield bucket
        finally:
            del self._buckets[bucket]
            self._rebalance()

    def _rebalance(self) -> None:
        """Max-min fair: a copy capped below its share leaves the rest to the others."""
        if self.process_rate is None:
            for bucket, job_rate in self._buckets.items():
                bucket.set_rate(job_rate)
            return
        remaining, left = self.process_rate, len(self._buckets)
        by_cap = sorted(self._buckets.items(),
                        key=lambda item: float("inf") if item[1] is None else item[1])
        for bucket, job_rate in by_cap:
            share = remaining / left
            rate = share if job_rate is None else min(job_rate, share)
            bucket.set_rate(rate)
            remaining, left = remaining - rate, left - 1
