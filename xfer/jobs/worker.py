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

from xfer.engine.failures import first_failure
from xfer.engine.object_copy import Copier
from xfer.engine.plan import Plan, Segment
from xfer.engine.types import CopyOutcome, VerifiedCopy
from xfer.errors import CopyFailed, XferError
from xfer.jobs.metrics import Metrics
from xfer.jobs.records import JobRecord
from xfer.jobs.states import JobState
from xfer.jobs.store import JobStore, copy_spec
from xfer.logs import current_job
from xfer.settings import Settings

log = logging.getLogger(__name__)


class LeaseLost(XferError):
    """Another worker holds the job now; this one must stop copying it."""


class CancelRequested(XferError):
    """A user asked to cancel the job; the copy stops and deletes what it wrote."""


class JobProgress:
    """Records a running copy's plan, written segments and its move to verifying."""

    def __init__(self, store: JobStore, job_id: uuid.UUID, worker_id: str) -> None:
        self.store = store
        self.job_id = job_id
        self.worker_id = worker_id
        self.handing_over = False  # nothing sets it yet: every cancel deletes what was written
        # by segment index: a segment written again (a second reading) is counted once
        self.segment_bytes: dict[int, int] = {}

    async def find_verified_copy(self, md5: str, size: int, region: str,
                                 project: str) -> VerifiedCopy | None:
        return await self.store.find_verified_copy(md5, size, region, project)

    async def verifying(self) -> None:
        if not await self.store.set_verifying(self.job_id, self.worker_id):
            # cancelling meanwhile, or taken over: the lease keeper ends the copy shortly
            log.info("job no longer running here; not marked verifying")

    async def planned(self, plan: Plan) -> None:
        await self.store.set_plan(self.job_id, plan)

    async def segment_written(self, segment: Segment, etag: str) -> None:
        self.segment_bytes[segment.index] = segment.length
        await self.store.record_segment(self.job_id, segment, etag)
        await self.store.set_progress(self.job_id, sum(self.segment_bytes.values()))


class Worker:
    def __init__(self, settings: Settings, store: JobStore, copier: Copier,
                 metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.copier = copier
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._cancel_requests: dict[uuid.UUID, asyncio.Event] = {}

    async def run(self) -> None:
        """Claim and run jobs until cancelled; running copies are handed back on the way out."""
        slots = asyncio.Semaphore(self.settings.max_concurrent_copies)
        async with self.store.listening(self._wake.set, self._on_cancel), \
                asyncio.TaskGroup() as group:
            while True:
                await slots.acquire()
                job = await self.store.claim_job(self.settings.worker_id,
                                                 self.settings.lease_seconds)
                if job is None:
                    job = await self.store.claim_abandoned_cancel(self.settings.worker_id,
                                                                  self.settings.lease_seconds)
                    if job is not None:
                        group.create_task(self._end_abandoned_cancel(job, slots))
                        continue
                    slots.release()
                    await self._idle()
                    continue
                group.create_task(self._run_job(job, slots))

    async def _idle(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.poll_interval):
                await self._wake.wait()

    def _on_cancel(self, job_id: uuid.UUID) -> None:
        event = self._cancel_requests.get(job_id)
        if event is not None:
            event.set()

    async def _run_job(self, job: JobRecord, slots: asyncio.Semaphore) -> None:
        job_id = job.id
        token = current_job.set(str(job_id))
        worker_id = self.settings.worker_id
        log.info("claimed job (attempt %d)", job.attempts)
        try:
            outcome = await self._copy_under_lease(job)
        except CopyFailed as failure:
            log.warning("job failed: %s: %s", failure.code, failure.message)
            # counted only by the worker that still held the job
            if await self.store.finish_failed(job_id, worker_id, failure.code, failure.message):
                self.metrics.job_failed(failure.code)
        except LeaseLost:
            log.warning("lease lost; another worker continues the job")
        except CancelRequested:
            await self.store.finish_cancelled(job_id, worker_id)
            log.info("job cancelled on request; what it wrote was deleted")
        except asyncio.CancelledError:
            await asyncio.shield(self.store.requeue(job_id, worker_id))
            log.info("worker stopping; job handed back to the queue")
            raise
        except Exception as exc:  # a bug, not a copy failure: record it, keep the worker alive
            log.exception("job crashed")
            if await self.store.finish_failed(job_id, worker_id, "internal_error",
                                              f"xfer hit an internal error: {exc!r}"):
                self.metrics.job_failed("internal_error")
        else:
            if await self.store.finish_succeeded(job_id, worker_id, copy_spec(job), outcome):
                # bytes this process sent: resumed segments and deduplicated jobs add nothing
                self.metrics.copy_succeeded(outcome.bytes_uploaded, outcome.seconds,
                                            outcome.retries)
            log.info("job succeeded: %d bytes in %.2fs, md5 %s; uploaded %d bytes, reused %d "
                     "segments of an earlier attempt", outcome.size, outcome.seconds, outcome.md5,
                     outcome.bytes_uploaded, outcome.segments_reused)
        finally:
            current_job.reset(token)
            slots.release()

    async def _end_abandoned_cancel(self, job: JobRecord, slots: asyncio.Semaphore) -> None:
        """A cancel whose worker died before it finished: delete what the job wrote, end it."""
        job_id = job.id
        token = current_job.set(str(job_id))
        try:
            resume = await self.store.recorded_segments(job_id)
            progress = JobProgress(self.store, job_id, self.settings.worker_id)
            await self.copier.discard(copy_spec(job, resume), progress)
            await self.store.finish_cancelled(job_id, self.settings.worker_id)
            log.info("ended a cancel its worker left unfinished; deleted %d recorded segments",
                     len(resume))
        finally:
            current_job.reset(token)
            slots.release()

    async def _copy_under_lease(self, job: JobRecord) -> CopyOutcome:
        job_id = job.id
        progress = JobProgress(self.store, job_id, self.settings.worker_id)
        cancel_requested = self._cancel_requests[job_id] = asyncio.Event()
        # A job taken over from a worker that died: keep the segments it recorded.
        resume = await self.store.recorded_segments(job_id) if job.attempts > 1 else ()
        try:
            async with asyncio.TaskGroup() as group:
                lease = group.create_task(self._keep_lease(job_id, cancel_requested))
                outcome = await self.copier.copy(copy_spec(job, resume), progress)
                lease.cancel()
        except BaseExceptionGroup as failures:
            raise first_failure(failures) from None
        finally:
            del self._cancel_requests[job_id]
        return outcome

    async def _keep_lease(self, job_id: uuid.UUID, cancel_requested: asyncio.Event) -> None:
        """Renew the lease every third of its length; end the copy (by raising inside its
        TaskGroup) when the lease is lost or a cancel arrives, by NOTIFY or seen on renewal."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.lease_seconds / 3):
                    await cancel_requested.wait()
            state = await self.store.renew_lease(job_id, self.settings.worker_id,
                                                 self.settings.lease_seconds)
            if state is None:
                raise LeaseLost(str(job_id))
            if state is JobState.CANCELLING:
                raise CancelRequested(str(job_id))
