"""What a running copy tells the database: its plan, each segment's attempts (started, failed)
and each written segment, bytes done and its move to verifying. A database outage never stops
or fails the copy: what could not be recorded waits here and `catch_up` records it when the
database answers again."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable

from xfer.engine.plan import Plan, Segment
from xfer.engine.types import VerifiedCopy
from xfer.errors import CopyFailed, DatabaseUnavailable
from xfer.images.types import ImageSource, ImageStep
from xfer.jobs.outage import DatabaseRetry
from xfer.jobs.store import JobStore

log = logging.getLogger(__name__)
STEP_RETRY_SECONDS = 10.0


class JobProgress:
    """The copy observer of one job attempt.

    While the database answers, each call records at once, so the segments written but not
    recorded are at most the copy's window (what a worker killed at any moment loses). Once a
    call finds it unreachable the copy goes on, and `catch_up` (running beside the copy)
    records everything pending, in order, when it returns. Segments pending when the attempt
    ends without catching up are simply written again by the next attempt.
    """

    def __init__(self, store: JobStore, job_id: uuid.UUID, worker_id: str,
                 retry: DatabaseRetry) -> None:
        self.store = store
        self.job_id = job_id
        self.worker_id = worker_id
        self.retry = retry
        # by segment index: a segment written again (a second reading) is counted once
        self.segment_bytes: dict[int, int] = {}
        # set before the copy is cancelled to hand the job over: it keeps what it wrote
        self.handing_over = False
        self._plan: Plan | None = None
        self._segments: dict[int, tuple[Segment, str]] = {}  # written, not yet recorded
        # attempts at segments, in order: (index, None) started, (index, error) failed
        self._attempts: deque[tuple[int, CopyFailed | None]] = deque()
        # a new attempt of the job: what an earlier one left in flight is not in flight now
        self._clear_in_flight = True
        self._bytes_recorded = 0
        self._verifying = False  # reached, not yet recorded
        self._lock = asyncio.Lock()  # one writer at a time keeps the records in order
        self._behind = asyncio.Event()  # the database missed something: catch_up is due

    @property
    def bytes_done(self) -> int:
        return sum(self.segment_bytes.values())

    async def find_verified_copy(self, md5: str, size: int, region: str,
                                 project: str) -> VerifiedCopy | None:
        try:
            return await self.store.find_verified_copy(md5, size, region, project)
        except DatabaseUnavailable as exc:  # deduplication only saves work: copy for real
            log.warning("checksum index not read, copying in full: %s", exc)
            return None

    async def planned(self, plan: Plan) -> None:
        self._plan = plan
        await self._record()

    async def segment_started(self, segment: Segment, attempt: int) -> None:
        self._attempts.append((segment.index, None))
        await self._record()

    async def segment_failed(self, segment: Segment, attempt: int, error: CopyFailed) -> None:
        self._attempts.append((segment.index, error))
        await self._record()

    async def segment_written(self, segment: Segment, etag: str) -> None:
        self.segment_bytes[segment.index] = segment.length
        self._segments[segment.index] = (segment, etag)
        await self._record()

    async def verifying(self) -> None:
        self._verifying = True
        await self._record()

    # --- an image copy's steps: each recorded before the next begins, since a job taken over
    # continues from them (a target image not recorded would be made twice)

    async def source_found(self, source: ImageSource, checksum: str | None) -> None:
        await self._record_step("record the source image's data", lambda: (
            self.store.set_image_source(self.job_id, source, checksum)))

    async def target_image_planned(self, image_id: str, container: str) -> None:
        await self._record_step("record the target image", lambda: (
            self.store.set_target_image(self.job_id, image_id, container)))

    async def image_step(self, step: ImageStep) -> None:
        await self._record_step(f"record the image step {step}", lambda: (
            self.store.set_image_step(self.job_id, step.value)))

    async def _record_step(self, what: str, record: Callable[[], Awaitable[None]]) -> None:
        """Recorded, or DatabaseUnavailable after STEP_RETRY_SECONDS: the copy then stops and
        deletes what it made, rather than leave a step no attempt would know of."""
        await self.retry.until_back(what, record, give_up_after=STEP_RETRY_SECONDS)

    async def flush(self) -> None:
        """Record everything pending now; DatabaseUnavailable if the database cannot."""
        async with self._lock:
            await self._write_pending()

    async def catch_up(self) -> None:
        """Runs beside the copy until cancelled: after an outage, records what is pending as
        soon as the database answers (the lease keeper ends the copy if it never does)."""
        while True:
            await self._behind.wait()
            await self.retry.until_back("record the copy's progress", self.flush)
            if not self._pending():  # else written while that flush was on its way: go on
                self._behind.clear()

    def _pending(self) -> bool:
        return bool(self._plan is not None or self._segments or self._verifying
                    or self._attempts or self._clear_in_flight
                    or self._bytes_recorded != self.bytes_done)

    async def _record(self) -> None:
        if self._behind.is_set():
            return  # catch_up retries with backoff; every call trying again would stall
        try:
            await self.flush()
        except DatabaseUnavailable:
            self._behind.set()

    async def _write_pending(self) -> None:
        if self._plan is not None:
            await self.store.set_plan(self.job_id, self._plan)
            self._plan = None
        await self._write_attempts()
        while self._segments:
            index, (segment, etag) = next(iter(self._segments.items()))
            await self.store.record_segment(self.job_id, segment, etag)
            del self._segments[index]
        if self._bytes_recorded != self.bytes_done:
            bytes_done = self.bytes_done
            await self.store.set_progress(self.job_id, bytes_done)
            self._bytes_recorded = bytes_done
        if self._verifying:
            if not await self.store.set_verifying(self.job_id, self.worker_id):
                # cancelling meanwhile, or taken over: the lease keeper ends the copy shortly
                log.info("job no longer running here; not marked verifying")
            self._verifying = False

    async def _write_attempts(self) -> None:
        """Before the written segments: a segment's start is recorded before its end."""
        if self._clear_in_flight:
            await self.store.clear_segments_in_flight(self.job_id)
            self._clear_in_flight = False
        while self._attempts:
            index, error = self._attempts[0]
            if error is None:
                await self.store.segment_started(self.job_id, index)
            else:
                await self.store.segment_failed(self.job_id, index, error)
            self._attempts.popleft()
