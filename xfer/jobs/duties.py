"""Does what remains to be done for jobs (the job_duties table), in every xfer process.

A duty is claimed like a job (`FOR UPDATE SKIP LOCKED`, and a lease: its due time moves
ahead while one process does it), so a duty whose process died is done by another once the
lease runs out. A failed attempt is tried again later, backing off; a duty never gives up on
its own: each handler knows when there is nothing left to do (a trust that expired, say).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from xfer.errors import DatabaseUnavailable, XferError
from xfer.jobs.duty_store import DutyStore
from xfer.jobs.records import Duty, DutyRecord, DutyState, JobRecord
from xfer.jobs.store import JobStore
from xfer.logs import current_job
from xfer.settings import Settings

log = logging.getLogger(__name__)
DutyHandler = Callable[[JobRecord], Awaitable[tuple[DutyState, str]]]


class DutyRunner:
    def __init__(self, settings: Settings, store: JobStore, duties: DutyStore,
                 handlers: Mapping[Duty, DutyHandler]) -> None:
        self.settings = settings
        self.store = store
        self.duties = duties
        self.handlers = handlers
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due duties now (a job of this process ended)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            claimed = await self._claim()
            if claimed:
                async with asyncio.TaskGroup() as group:
                    for duty in claimed:
                        group.create_task(self._do(duty))
                continue  # more may be due
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.duty_poll_seconds):
                    await self._wake.wait()

    async def _claim(self) -> list[DutyRecord]:
        try:
            return await self.duties.claim_duties(self.settings.duty_batch,
                                                  self.settings.duty_lease_seconds)
        except DatabaseUnavailable as exc:
            log.warning("duties not claimed: %s", exc)
            return []

    def backoff(self, attempts: int) -> float:
        doubled: float = self.settings.duty_backoff_base * 2.0 ** max(attempts - 1, 0)
        return min(doubled, self.settings.duty_backoff_max)

    async def _do(self, duty: DutyRecord) -> None:
        token = current_job.set(str(duty.job_id))
        try:
            job = await self.store.get_job(duty.job_id)
            if job is None:  # deleted with its duties meanwhile
                return
            state, outcome = await self._attempt(job, duty)
            if state is not DutyState.PENDING:
                await self.duties.finish_duty(job.id, duty.duty, state, outcome)
                log.info("duty %s %s: %s", duty.duty, state, outcome)
        except DatabaseUnavailable as exc:  # the lease runs out; another claim tries again
            log.warning("duty %s left for later: %s", duty.duty, exc)
        finally:
            current_job.reset(token)

    async def _attempt(self, job: JobRecord, duty: DutyRecord) -> tuple[DutyState, str]:
        """How the duty ended; PENDING when it is to be tried again (postponed already)."""
        handler = self.handlers.get(duty.duty)
        try:
            if handler is None:
                raise XferError(f"this xfer cannot do {duty.duty} (it runs without Keystone)")
            return await handler(job)
        except DatabaseUnavailable:
            raise
        except Exception as exc:  # XferError: a service is down; anything else: a bug
            delay = self.backoff(duty.attempts)
            if isinstance(exc, XferError):
                log.warning("duty %s failed (attempt %d), again in %.0fs: %s", duty.duty,
                            duty.attempts, delay, exc)
            else:
                log.exception("duty %s crashed (attempt %d), again in %.0fs", duty.duty,
                              duty.attempts, delay)
            await self.duties.postpone_duty(job.id, duty.duty, delay, str(exc)[:500])
            return DutyState.PENDING, str(exc)
