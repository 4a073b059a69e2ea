"""Retries with exponential backoff and full jitter, bounded per request and per copy."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from xfer.errors import XferError
from xfer.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class RetryBudgetExhausted(XferError):
    """The copy used up its retries; the last error is chained as the cause."""


class RetryBudget:
    """How many retries one copy may still spend, across all its requests."""

    def __init__(self, retries: int) -> None:
        self.remaining = retries
        self.spent = 0

    def spend(self) -> bool:
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        self.spent += 1
        return True


def backoff_delay(attempt: int, base: float, ceiling: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(ceiling, base * 2**attempt)]; attempt counts from 0."""
    return rng.uniform(0.0, min(ceiling, base * (2 ** attempt)))


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int,
    budget: RetryBudget,
    base: float,
    ceiling: float,
    rng: random.Random | None = None,
    retry_on: Callable[[XferError], bool] = lambda exc: exc.retryable,
) -> T:
    """Run `operation` until it succeeds, an error `retry_on` refuses, `attempts`, or the
    budget ends."""
    rng = rng or random.Random()
    for attempt in range(attempts):
        try:
            return await operation()
        except XferError as exc:
            last_try = attempt == attempts - 1
            if not retry_on(exc) or last_try:
                raise
            if not budget.spend():
                raise RetryBudgetExhausted(f"retry budget of the copy used up; last: {exc}") from exc
            delay = backoff_delay(attempt, base, ceiling, rng)
            log.warning("retrying %s in %.2fs after: %s", what, delay, exc)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")


class Retrier:
    """One copy's retry policy: the settings' attempts and backoff, and its one budget."""

    def __init__(self, settings: Settings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.budget = RetryBudget(settings.retry_budget)
        self.rng = rng or random.Random()

    async def another_try(self, tries: int, what: str, exc: XferError) -> bool:
        """After `tries` failed tries of `what` (the last with `exc`): whether to try again,
        having slept the backoff; False once its attempts or the copy's budget are spent."""
        if tries >= self.settings.request_attempts or not self.budget.spend():
            return False
        delay = backoff_delay(tries - 1, self.settings.backoff_base, self.settings.backoff_max,
                              self.rng)
        log.warning("retrying %s in %.2fs after: %s", what, delay, exc)
        await asyncio.sleep(delay)
        return True

    async def __call__(self, what: str, operation: Callable[[], Awaitable[T]],
                       retry_on: Callable[[XferError], bool] = lambda exc: exc.retryable) -> T:
        return await with_retries(
            operation, what=what, attempts=self.settings.request_attempts, budget=self.budget,
            base=self.settings.backoff_base, ceiling=self.settings.backoff_max, rng=self.rng,
            retry_on=retry_on)
