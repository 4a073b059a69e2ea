"""Claims jobs from Postgres and runs their copies, holding a lease while each runs.

Several processes may run workers against one database: a claim is `FOR UPDATE SKIP LOCKED`,
a new job wakes idle workers through LISTEN/NOTIFY, and polling is the fallback. A worker
that stops renewing its lease loses the job to the next claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import asyncpg

from xfer.copy import Copier
from xfer.errors import CopyFailed
from xfer.logs import current_job
from xfer.plan import Plan, Segment
from xfer.settings import Settings
from xfer.store import JOBS_CHANNEL, JobStore, copy_spec

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another worker holds the job now; this one must stop copying it."""


class JobProgress:
    """Records a running copy's plan and written segments."""

    def __init__(self, store: JobStore, job_id: uuid.UUID) -> None:
        self.store = store
        self.job_id = job_id
        self.bytes_done = 0

    async def planned(self, plan: Plan) -> None:
        await self.store.set_plan(self.job_id, plan)

    async def segment_written(self, segment: Segment, etag: str) -> None:
        self.bytes_done += segment.length
        await self.store.record_segment(self.job_id, segment, etag)
        await self.store.set_progress(self.job_id, self.bytes_done)


class Worker:
    def __init__(self, settings: Settings, store: JobStore, copier: Copier) -> None:
        self.settings = settings
        self.store = store
        self.copier = copier
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Claim and run jobs until cancelled; running copies are handed back on the way out."""
        slots = asyncio.Semaphore(self.settings.max_concurrent_copies)
        async with self._listening(), asyncio.TaskGroup() as group:
            while True:
                await slots.acquire()
                row = await self.store.claim_job(self.settings.worker_id,
                                                 self.settings.lease_seconds)
                if row is None:
                    slots.release()
                    await self._idle()
                    continue
                group.create_task(self._run_job(row, slots))

    async def _idle(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.poll_interval):
                await self._wake.wait()

    @contextlib.asynccontextmanager
    async def _listening(self) -> Any:
        connection: asyncpg.Connection = await self.store.pool.acquire()
        wake = lambda *_: self._wake.set()  # noqa: E731
        await connection.add_listener(JOBS_CHANNEL, wake)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await connection.remove_listener(JOBS_CHANNEL, wake)
            await self.store.pool.release(connection)

    async def _run_job(self, row: asyncpg.Record, slots: asyncio.Semaphore) -> None:
        job_id: uuid.UUID = row["id"]
        token = current_job.set(str(job_id))
        worker_id = self.settings.worker_id
        log.info("claimed job (attempt %d)", row["attempts"])
        try:
            outcome = await self._copy_under_lease(row)
        except CopyFailed as failure:
            log.warning("job failed: %s: %s", failure.code, failure.message)
            await self.store.finish_failed(job_id, worker_id, failure.code, failure.message)
        except LeaseLost:
            log.warning("lease lost; another worker continues the job")
        except asyncio.CancelledError:
            await asyncio.shield(self.store.requeue(job_id, worker_id))
            log.info("worker stopping; job handed back to the queue")
            raise
        except Exception as exc:  # a bug, not a copy failure: record it, keep the worker alive
            log.exception("job crashed")
            await self.store.finish_failed(job_id, worker_id, "internal_error",
                                           f"xfer hit an internal error: {exc!r}")
        else:
            await self.store.finish_succeeded(job_id, worker_id, outcome)
            log.info("job succeeded: %d bytes in %.2fs, md5 %s", outcome.size, outcome.seconds,
                     outcome.md5)
        finally:
            current_job.reset(token)
            slots.release()

    async def _copy_under_lease(self, row: asyncpg.Record) -> Any:
        progress = JobProgress(self.store, row["id"])
        try:
            async with asyncio.TaskGroup() as group:
                lease = group.create_task(self._keep_lease(row["id"]))
                outcome = await self.copier.copy(copy_spec(row), progress)
                lease.cancel()
        except BaseExceptionGroup as failures:
            raise failures.exceptions[0] from None
        return outcome

    async def _keep_lease(self, job_id: uuid.UUID) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            if not await self.store.renew_lease(job_id, self.settings.worker_id,
                                                self.settings.lease_seconds):
                raise LeaseLost(str(job_id))
