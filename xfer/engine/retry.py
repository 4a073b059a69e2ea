"""Retries with exponential backoff and full jitter, bounded per request and per copy: one
policy (Retrier), used as a call wrapper or, where a loop of its own retries, one decision."""

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
        """Run `operation` until it succeeds, fails with an error `retry_on` refuses, or
        `another_try` says no: the request's attempts (the last error is raised) or the copy's
        budget (RetryBudgetExhausted, the last error as its cause) are spent."""
        tries = 0
        while True:
            try:
                return await operation()
            except XferError as exc:
                tries += 1
                if not retry_on(exc):
                    raise
                if not await self.another_try(tries, what, exc):
                    if tries >= self.settings.request_attempts:
                        raise
                    raise RetryBudgetExhausted(
                        f"retry budget of the copy used up; last: {exc}") from exc
