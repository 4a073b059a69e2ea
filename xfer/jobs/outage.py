"""Waiting out a PostgreSQL outage: a store call retried with backoff while it raises
DatabaseUnavailable, logged when the outage is first seen and when it ends, never per retry."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from xfer.engine.retry import backoff_delay
from xfer.errors import DatabaseUnavailable
from xfer.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
# Past this many retries the delay is at its ceiling anyway; the cap keeps 2**attempt small.
MAX_DOUBLINGS = 30


class DatabaseRetry:
    """Retries with the same capped, fully jittered backoff as a copy's Swift requests."""

    def __init__(self, settings: Settings, rng: random.Random | None = None) -> None:
        self.base = settings.backoff_base
        self.ceiling = settings.backoff_max
        self.rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        return backoff_delay(min(attempt, MAX_DOUBLINGS), self.base, self.ceiling, self.rng)

    async def until_back(self, what: str, call: Callable[[], Awaitable[T]], *,
                         give_up_after: float | None = None) -> T:
        """`call()`'s result, calling it again while it raises DatabaseUnavailable; after
        `give_up_after` seconds (if given) the last DatabaseUnavailable is raised. `what`
        completes "retrying to ..." in the log."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 0
        while True:
            try:
                result = await call()
            except DatabaseUnavailable as exc:
                waited = loop.time() - started
                if give_up_after is not None and waited >= give_up_after:
                    log.error("database still unavailable after %.1fs; gave up trying to %s: %s",
                              waited, what, exc)
                    raise
                if attempt == 0:
                    log.warning("database unavailable; retrying to %s: %s", what, exc)
                delay = self.delay(attempt)
                if give_up_after is not None:
                    delay = min(delay, give_up_after - waited)
                attempt += 1
                await asyncio.sleep(delay)
            else:
                if attempt:
                    log.info("database reachable again after %.1fs; could %s",
                             loop.time() - started, what)
                return result
