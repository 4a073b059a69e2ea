"""Waiting out a database outage (xfer/jobs/outage.py) and its setting, without a database:
the call retried is a stand-in that fails a given number of times."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from xfer.errors import ConfigError, DatabaseUnavailable
from xfer.jobs.outage import DatabaseRetry
from xfer.settings import Settings, from_environ

QUICK = Settings(backoff_base=0.001, backoff_max=0.01)


class FailingThenAnswering:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise DatabaseUnavailable(f"down (call {self.calls})")
        return "answer"


async def test_retries_until_the_database_answers_logging_only_start_and_end(
        caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="xfer.jobs.outage")
    call = FailingThenAnswering(failures=5)
    assert await DatabaseRetry(QUICK, random.Random(1)).until_back("renew", call) == "answer"
    assert call.calls == 6
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert caplog.records[0].getMessage().startswith("database unavailable; retrying to renew")
    assert caplog.records[1].getMessage().startswith("database reachable again after")


async def test_gives_up_after_the_bound_with_the_last_error():
    call = FailingThenAnswering(failures=10**6)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(DatabaseUnavailable):
        await DatabaseRetry(QUICK).until_back("record", call, give_up_after=0.2)
    assert 0.2 <= loop.time() - started < 2 and call.calls > 1


async def test_an_answer_at_once_is_not_retried():
    call = FailingThenAnswering(failures=0)
    assert await DatabaseRetry(QUICK).until_back("claim", call, give_up_after=0) == "answer"
    assert call.calls == 1


def test_delays_stay_within_the_ceiling_however_long_the_outage():
    retry = DatabaseRetry(Settings(backoff_base=0.2, backoff_max=5.0), random.Random(7))
    assert all(0 <= retry.delay(attempt) <= 5.0 for attempt in (0, 1, 10, 10_000))


def test_database_retry_seconds_must_be_positive():
    assert from_environ({"XFER_DATABASE_RETRY_SECONDS": "12.5"}).database_retry_seconds == 12.5
    with pytest.raises(ConfigError, match="XFER_DATABASE_RETRY_SECONDS"):
        from_environ({"XFER_DATABASE_RETRY_SECONDS": "0"})
