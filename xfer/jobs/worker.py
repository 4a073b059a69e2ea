"""Claims jobs from Postgres and runs their copies, holding a lease while each runs.

Several processes may run workers against one database: a claim is `FOR UPDATE SKIP LOCKED`,
a new job wakes idle workers through LISTEN/NOTIFY, and polling is the fallback. A worker
that stops renewing its lease loses the job to the next claim.

A database outage stops nothing that need not stop: claims wait for the database to return;
a copy goes on while its lease can still be renewed, recording its segments late; a copy whose
lease could not be renewed in time stops keeping what it wrote, for the next attempt to resume
from; how a copy ended is recorded once the database answers (`database_retry_seconds`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

from xfer.engine.failures import first_failure
from xfer.engine.object_copy import Copier
from xfer.engine.plan import Segment
from xfer.engine.types import CopySpec, FanOutOutcome, TargetOutcome
from xfer.errors import CopyFailed, DatabaseUnavailable, ErrorCode, XferError
from xfer.images.flow import ImageCopier
from xfer.images.types import ImageCopyOutcome
from xfer.jobs.job_progress import JobProgress
from xfer.jobs.metrics import Metrics
from xfer.jobs.outage import DatabaseRetry
from xfer.jobs.records import JobRecord
from xfer.jobs.states import JobState
from xfer.jobs.store import JobStore, copy_spec, image_job
from xfer.logs import current_job
from xfer.settings import Settings

log = logging.getLogger(__name__)
# the claim loop's own lines, about no job (every line of "xfer.jobs.worker" names its job)
claims_log = logging.getLogger(__name__ + ".claims")


class LeaseLost(XferError):
    """Another worker holds the job now; this one must stop copying it."""


class LeaseExpiring(XferError):
    """The database could not renew the lease before it runs out: the copy stops, keeping what
    it wrote, before another worker may take the job over."""


class CancelRequested(XferError):
    """A user asked to cancel the job; the copy stops and deletes what it wrote."""


class Worker:
    def __init__(self, settings: Settings, store: JobStore, copier: Copier,
                 metrics: Metrics, images: ImageCopier | None = None,
                 on_job_end: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.on_job_end = on_job_end  # what remains to be done for a job may be due now
        self.store = store
        self.copier = copier
        self.images = images  # None without Keystone: image jobs then fail, saying why
        self.metrics = metrics
        self.retry = DatabaseRetry(settings)
        self._wake = asyncio.Event()
        self._cancel_requests: dict[uuid.UUID, asyncio.Event] = {}
        # jobs this process works on, until their end is recorded: never claimed twice here
        self._holding: set[uuid.UUID] = set()

    async def run(self) -> None:
        """Claim and run jobs until cancelled; running copies are handed back on the way out."""
        slots = asyncio.Semaphore(self.settings.max_concurrent_copies)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._listen())
            while True:
                await slots.acquire()
                self._wake.clear()  # from now on a wake-up means: claim again
                job, cancelling, claimed_at = await self.retry.until_back(
                    "claim jobs", self._claim)
                if job is None:
                    slots.release()
                    await self._idle()
                elif cancelling:
                    group.create_task(self._end_abandoned_cancel(job, slots))
                else:
                    group.create_task(self._run_job(job, claimed_at, slots))

    async def _claim(self) -> tuple[JobRecord | None, bool, float]:
        """(a job, whether it is an abandoned cancel, the loop time just before the claim)."""
        claimed_at = asyncio.get_running_loop().time()
        worker_id, lease = self.settings.worker_id, self.settings.lease_seconds
        job = await self.store.claim_job(worker_id, lease, self._holding)
        if job is not None:
            return job, False, claimed_at
        job = await self.store.claim_abandoned_cancel(worker_id, lease, self._holding)
        return job, job is not None, claimed_at

    async def _idle(self) -> None:
        claims_log.debug("no job to claim: waiting for a notification, or %.1f s",
                  self.settings.poll_interval)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.poll_interval):
                await self._wake.wait()

    async def _listen(self) -> None:
        """Hold a LISTEN connection, opening a new one whenever it is lost (polling covers
        the gap; a claim right after reconnecting picks up what was queued meanwhile)."""
        while True:
            async with contextlib.AsyncExitStack() as stack:
                lost = await self.retry.until_back("listen for new jobs", lambda: (
                    stack.enter_async_context(self.store.listening(self._wake.set,
                                                                   self._on_cancel))))
                claims_log.debug("listening for new jobs")
                self._wake.set()
                await lost.wait()
            log.warning("LISTEN connection lost; opening another")

    def _on_cancel(self, job_id: uuid.UUID) -> None:
        event = self._cancel_requests.get(job_id)
        if event is not None:
            event.set()

    async def _run_job(self, job: JobRecord, claimed_at: float,
                       slots: asyncio.Semaphore) -> None:
        token = current_job.set(str(job.id))
        self._holding.add(job.id)
        log.info("claimed job (attempt %d)", job.attempts)
        try:
            await self._attempt(job, claimed_at)
        finally:
            self._holding.discard(job.id)
            current_job.reset(token)
            slots.release()

    async def _attempt(self, job: JobRecord, claimed_at: float) -> None:
        job_id, worker_id = job.id, self.settings.worker_id
        progress = JobProgress(self.store, job_id, worker_id, self.retry)
        try:
            outcome = await self._copy_under_lease(job, claimed_at, progress)
        except CopyFailed as failure:
            log.warning("job failed: %s: %s", failure.code, failure.message)
            await self._record_failure(job_id, failure.code, failure.message)
        except LeaseLost:
            log.warning("lease lost; another worker continues the job from what it recorded")
        except (LeaseExpiring, DatabaseUnavailable) as exc:
            log.warning("job stopped, keeping what it wrote: %s", exc)
            await self._hand_back(job_id, progress)
        except CancelRequested:
            if await self._record_end("record the cancel", lambda: self.store.finish_cancelled(
                    job_id, worker_id)):
                log.info("job cancelled on request; what it wrote was deleted")
        except asyncio.CancelledError:
            await self._hand_back(job_id, progress)
            raise
        except Exception as exc:  # a bug, not a copy failure: record it, keep the worker alive
            log.exception("job crashed")
            await self._record_failure(job_id, ErrorCode.INTERNAL_ERROR,
                                       f"xfer hit an internal error: {exc!r}")
        else:
            if isinstance(outcome, ImageCopyOutcome):
                await self._record_image_success(job, progress, outcome)
                return
            failed = targets_failed(copy_spec(job), outcome)
            if failed is None:
                await self._record_success(job, progress, outcome)
            else:
                await self._record_partial_failure(job, progress, outcome, failed)

    async def _record_success(self, job: JobRecord, progress: JobProgress,
                              outcome: FanOutOutcome) -> None:
        async def record() -> bool:
            await progress.flush()  # the plan and segments first: the job shows them all
            return await self.store.finish_succeeded(job.id, self.settings.worker_id,
                                                     copy_spec(job), outcome)

        if not await self._record_end("record the verified copy", record):
            log.warning("verified copy not recorded: the job is being cancelled or another "
                        "worker holds it now, or the database did not return in time")
            return
        # bytes this process sent: resumed segments and deduplicated targets add nothing
        uploaded = sum(t.bytes_uploaded for t in outcome.targets if isinstance(t, TargetOutcome))
        reused = sum(t.segments_reused for t in outcome.targets if isinstance(t, TargetOutcome))
        self.metrics.copy_succeeded(uploaded, outcome.seconds, outcome.retries)
        log.info("job succeeded: %d bytes in %.2fs to %d target(s), md5 %s; read %d bytes, "
                 "uploaded %d, reused %d segments of an earlier attempt", outcome.size,
                 outcome.seconds, len(outcome.targets), outcome.md5, outcome.bytes_read,
                 uploaded, reused)

    async def _record_partial_failure(self, job: JobRecord, progress: JobProgress,
                                      outcome: FanOutOutcome, failed: CopyFailed) -> None:
        """Some targets of a fan-out copy failed (and were cleaned up): the job fails naming
        them, while the targets that succeeded stay published and indexed."""
        log.warning("job failed: %s: %s", failed.code, failed.message)

        async def record() -> bool:
            await progress.flush()
            return await self.store.finish_failed(job.id, self.settings.worker_id, failed.code,
                                                  failed.message, copy_spec(job), outcome)

        if await self._record_end("record the failed targets", record):
            self.metrics.job_failed(failed.code)

    async def _record_image_success(self, job: JobRecord, progress: JobProgress,
                                    outcome: ImageCopyOutcome) -> None:
        async def record() -> bool:
            await progress.flush()
            return await self.store.finish_image_succeeded(
                job.id, self.settings.worker_id, outcome, job.project_id or "")

        if not await self._record_end("record the image copy", record):
            log.warning("image copy not recorded: the job is being cancelled or another "
                        "worker holds it now, or the database did not return in time")
            return
        copy = outcome.copy
        if copy is not None:
            self.metrics.copy_succeeded(copy.bytes_uploaded, copy.seconds, copy.retries)
        log.info("image copy succeeded: target image %s%s, %d bytes, checksum %s",
                 outcome.image_id, " (deduplicated)" if outcome.deduplicated else "",
                 outcome.size, outcome.checksum)

    async def _record_failure(self, job_id: uuid.UUID, code: ErrorCode, message: str) -> None:
        # counted only by the worker that still held the job
        if await self._record_end("record the failure", lambda: self.store.finish_failed(
                job_id, self.settings.worker_id, code, message)):
            self.metrics.job_failed(code)

    async def _record_end(self, what: str, record: Callable[[], Awaitable[bool]]) -> bool:
        """Record how a job ended, waiting for the database up to `database_retry_seconds`.
        False when another worker holds the job now, or the database did not return in time:
        the job is then left to its lease, and a later claim runs it again."""
        try:
            recorded = await self.retry.until_back(
                what, record, give_up_after=self.settings.database_retry_seconds)
        except DatabaseUnavailable:
            return False
        if recorded:
            self.on_job_end()
        return recorded

    async def _hand_back(self, job_id: uuid.UUID, progress: JobProgress) -> None:
        """Requeue a job whose copy stopped keeping what it wrote, so that the next claim
        resumes it at once. Without the database in time, its lease expires and a claim takes
        it over all the same."""
        try:
            async with asyncio.timeout(self.settings.lease_seconds / 3):
                await progress.flush()
                await self.store.requeue(job_id, self.settings.worker_id)
            log.info("job handed back to the queue, keeping what it wrote")
        except (DatabaseUnavailable, TimeoutError) as exc:
            log.warning("job not handed back (%s); it is taken over once its lease expires",
                        exc or "no answer in time")

    async def _end_abandoned_cancel(self, job: JobRecord, slots: asyncio.Semaphore) -> None:
        """A cancel whose worker died before it finished: end it; its cleanup duties then
        remove what it wrote. Interrupted by an outage, it is claimed again once its lease
        expires."""
        job_id, worker_id = job.id, self.settings.worker_id
        token = current_job.set(str(job_id))
        self._holding.add(job_id)
        try:
            if await self._record_end("record the cancel", lambda: self.store.finish_cancelled(
                    job_id, worker_id)):
                log.info("ended a cancel its worker left unfinished; its cleanup removes "
                         "what it wrote")
        except DatabaseUnavailable as exc:
            log.warning("cancel left for a later claim: %s", exc)
        except Exception:  # a bug: the cancel is tried again later, the worker stays alive
            log.exception("ending an abandoned cancel crashed")
        finally:
            self._holding.discard(job_id)
            current_job.reset(token)
            slots.release()

    def _image_copier(self) -> ImageCopier:
        if self.images is None:
            raise CopyFailed(ErrorCode.IMAGE_COPIES_DISABLED,
                             "this xfer runs without Keystone (XFER_KEYSTONE_URL), so it "
                             "cannot act for the user who asked for this image copy")
        return self.images

    async def _copy(self, job: JobRecord, resume: tuple[Segment, ...],
                    progress: JobProgress) -> FanOutOutcome | ImageCopyOutcome:
        if job.image is not None:
            return await self._image_copier().copy(image_job(job, resume), progress)
        return await self.copier.copy_to_all(copy_spec(job, resume), progress)

    async def _copy_under_lease(self, job: JobRecord, claimed_at: float,
                                progress: JobProgress) -> FanOutOutcome | ImageCopyOutcome:
        """The copy to every target of the job, or the image copy; raises CopyFailed when it
        failed as a whole (for a job of one target: when that target failed)."""
        job_id = job.id
        cancel_requested = self._cancel_requests[job_id] = asyncio.Event()
        try:
            # A job taken over from a worker that died: keep the segments it recorded. A
            # segment is recorded once every target still in the copy stored it, and each
            # target checks the recorded segments in its own segment container (a HEAD of its
            # own segment name, its size and ETag; engine/publisher.py `reusable`), writing
            # again whatever it lacks. So a fan-out job resumes from the same records, every
            # target again (none is known to have ended before the job did), and a target
            # that failed in the attempt that died simply writes its segments anew.
            resume = await self.retry.until_back(
                "read the segments recorded by earlier attempts",
                lambda: self.store.recorded_segments(job_id),
                give_up_after=self.settings.lease_seconds / 3) if job.attempts > 1 else ()
            async with asyncio.TaskGroup() as group:
                lease = group.create_task(
                    self._keep_lease(job_id, claimed_at, progress, cancel_requested))
                recorder = group.create_task(progress.catch_up())
                outcome = await self._copy(job, resume, progress)
                lease.cancel()
                recorder.cancel()
        except BaseExceptionGroup as failures:
            raise first_failure(failures) from None
        finally:
            del self._cancel_requests[job_id]
        return outcome

    async def _keep_lease(self, job_id: uuid.UUID, claimed_at: float, progress: JobProgress,
                          cancel_requested: asyncio.Event) -> None:
        """Renew the lease every third of its length; end the copy (by raising inside its
        TaskGroup) when a cancel arrives, by NOTIFY or seen on renewal, or when the lease is
        lost or cannot be renewed while a third of it remains: the copy then keeps what it
        wrote, for whoever takes the job over."""
        loop = asyncio.get_running_loop()
        lease = self.settings.lease_seconds
        # Taken before the claim or renewal was sent: the database's expiry is no earlier.
        expires_at = claimed_at + lease
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(lease / 3):
                    await cancel_requested.wait()
            sent_at = loop.time()
            try:
                async with asyncio.timeout_at(expires_at - lease / 3):
                    state = await self.retry.until_back("renew the lease", lambda: (
                        self.store.renew_lease(job_id, self.settings.worker_id, lease)))
            except TimeoutError:
                progress.handing_over = True
                raise LeaseExpiring(f"lease of job {job_id} not renewed in time: database "
                                    "unavailable") from None
            expires_at = sent_at + lease
            if state is None:
                progress.handing_over = True
                raise LeaseLost(str(job_id))
            if state is JobState.CANCELLING:
                raise CancelRequested(str(job_id))


def targets_failed(spec: CopySpec, outcome: FanOutOutcome) -> CopyFailed | None:
    """The job's failure when some targets of its copy failed, naming each with its error
    code and reason (the first one's code is the job's); None when every target succeeded."""
    failures = [(position, result) for position, result in enumerate(outcome.targets)
                if isinstance(result, CopyFailed)]
    if not failures:
        return None
    named = "; ".join(f"targets[{position}] ({spec.targets[position].ref.describe()}): "
                      f"{failure.code}: {failure.message}" for position, failure in failures)
    succeeded = len(outcome.targets) - len(failures)
    return CopyFailed(failures[0][1].code,
                      f"{len(failures)} of {len(outcome.targets)} targets failed, "
                      f"{succeeded} published and verified: {named}")
