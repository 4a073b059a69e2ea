"""One copy of one object between regions.

    HEAD source -> target /info -> plan -> TaskGroup:
        one task per segment (at most `window` alive): ranged GET into a buffer -> segment MD5
            -> PUT with that MD5 as ETag (Swift checks it) -> offer the buffer to the hasher
        the in-order hasher: whole-object MD5 (+ SHA-512) over the bytes in order
    -> compare the whole-object MD5 with the expected checksum -> manifest PUT (ETag checked
    by Swift) -> HEAD the result (size and ETag).

Nothing is published before the bytes are verified. On any failure or cancel every task of
the copy stops (TaskGroup) and the segments it wrote are deleted; names carry the job id.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import unquote

from xfer.clients.swift import SwiftRegions
from xfer.engine.failures import describe_failure, failing_as, first_failure
from xfer.engine.hashing import Digests, InOrderHasher, md5_hex_off_loop
from xfer.engine.inflight import InflightBytes
from xfer.engine.plan import Plan, Segment, plan_from_source_segments, plan_segments, window_for
from xfer.engine.retry import RetryBudget, with_retries
from xfer.engine.types import CopyObserver, CopyOutcome, CopySpec, ObjectRef
from xfer.errors import BodyRejected, CopyFailed, RemoteError, XferError
from xfer.proto import swift
from xfer.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
CLEANUP_SECONDS = 60.0
# A source's own segments are kept only if this many fit in the memory bound at once: fewer
# parallel GETs and PUTs would cost more (cross-region above all) than re-hashing segments.
MIN_SEGMENTS_IN_FLIGHT = 4
# Stamped on every object xfer publishes: tells a resumed attempt that the object is its own.
JOB_METADATA = "Xfer-Job"


class Copier:
    """Runs copies; all of a process's copies share one budget of buffered bytes."""

    def __init__(self, settings: Settings, regions: SwiftRegions) -> None:
        self.settings = settings
        self.regions = regions
        self.memory = InflightBytes(settings.max_inflight_bytes)
        # set when the process stops: cancelled copies then keep what they wrote
        self.handing_over = False

    async def copy(self, spec: CopySpec, observer: CopyObserver) -> CopyOutcome:
        return await _Copy(self, spec, observer).run()

    async def discard(self, spec: CopySpec, observer: CopyObserver) -> None:
        """Delete what earlier attempts of a job wrote: its recorded segments (`spec.resume`),
        and the target object if it carries this job's stamp."""
        copy = _Copy(self, spec, observer)
        dst = spec.target
        try:
            head = await copy.target.head_object(dst.container, dst.object)
            copy.published = head.metadata.get(JOB_METADATA.lower()) == spec.job_id
        except XferError:
            pass  # nothing published, or unreadable: the segments still go
        await copy._clean_up()


class _Copy:
    def __init__(self, copier: Copier, spec: CopySpec, observer: CopyObserver) -> None:
        regions = copier.regions
        self.copier = copier
        self.settings = copier.settings
        self.memory = copier.memory
        self.spec = spec
        self.observer = observer
        self.source = regions[spec.source.region]
        self.target = regions[spec.target.region]
        self.budget = RetryBudget(self.settings.retry_budget)
        self.rng = random.Random()
        self.recorded = {segment.index: segment for segment in spec.resume}
        # names of segments whose PUT was started, by this attempt or a recorded earlier one
        self.written = {spec.segment_name(index) for index in self.recorded}
        self.segment_etags: dict[int, str] = {}
        # buffers of finished segments, for the next ones: at most the window's worth
        self.spare_buffers: list[bytearray] = []
        self.published = False
        self.bytes_uploaded = 0
        self.segments_reused = 0

    async def _retrying(self, what: str, operation: Callable[[], Awaitable[T]],
                        retry_on: Callable[[XferError], bool] = lambda exc: exc.retryable) -> T:
        return await with_retries(
            operation, what=what, attempts=self.settings.request_attempts, budget=self.budget,
            base=self.settings.backoff_base, ceiling=self.settings.backoff_max, rng=self.rng,
            retry_on=retry_on)

    async def run(self) -> CopyOutcome:
        started = time.monotonic()
        try:
            outcome = await self._run(started)
        except asyncio.CancelledError:
            if not self.copier.handing_over:
                await self._clean_up()
            # else: the process is stopping and hands the job back; what was written and
            # recorded stays for the attempt that takes the job over (it resumes from there)
            raise
        except BaseException:
            await self._clean_up()
            raise
        return outcome

    async def _run(self, started: float) -> CopyOutcome:
        src, dst = self.spec.source, self.spec.target
        with failing_as("source", "read", src.describe()):
            head = await self._retrying("source HEAD",
                                        lambda: self.source.head_object(src.container, src.object))
        expected, checked_against = self._expected_md5(head)
        with failing_as("target", "authenticate to", dst.region):
            project = await self._retrying("target auth", self._target_project)
        if expected is not None:
            existing = await self._existing_copy(expected, head.size, project, started)
            if existing is not None:
                return existing
        with failing_as("target", "read the limits of", dst.region):
            limits = await self._retrying("target /info", self.target.limits)
        await self._refuse_existing_target()
        plan = await self._plan(head, limits)
        await self.observer.planned(plan)
        with failing_as("target", "create the container of", dst.describe()):
            for container in {dst.container, self.spec.segment_container}:
                await self._retrying("target container PUT",
                                     functools.partial(self.target.put_container, container))
        digests = await self._transfer(plan, head, expected)
        await self.observer.verifying()
        if expected is not None and digests.md5 != expected:
            raise CopyFailed(
                "checksum_mismatch",
                f"the bytes read from {src.describe()} have MD5 {digests.md5}, but "
                f"{checked_against} says {expected}; nothing was published")
        etag = await self._publish(plan) if plan.as_slo else digests.md5
        await self._verify_published(plan, etag)
        return CopyOutcome(
            size=plan.size, md5=digests.md5, sha512=digests.sha512, etag=etag,
            layout="slo" if plan.as_slo else "plain", segments=len(plan.segments),
            md5_checked_against=checked_against, retries=self.budget.spent,
            target_project=project,
            bytes_uploaded=self.bytes_uploaded, segments_reused=self.segments_reused,
            seconds=time.monotonic() - started)

    async def _target_project(self) -> str:
        """The target account (AUTH_...): the project the checksum index is kept per."""
        credentials = await self.target.credentials()
        return credentials.storage_url.rstrip("/").rsplit("/", 1)[-1]

    async def _existing_copy(self, md5: str, size: int, project: str,
                             started: float) -> CopyOutcome | None:
        """Deduplication: the same bytes already verified in the target region and project,
        and a HEAD shows they are still there with that size."""
        region = self.spec.target.region
        known = await self.observer.find_verified_copy(md5, size, region, project)
        if known is None:
            return None
        try:
            head = await self.target.head_object(known.container, known.object)
        except XferError:
            return None  # deleted or unreadable since: copy for real
        if head.size != size:
            return None
        log.info("deduplicated: %s/%s in %s already holds these bytes", known.container,
                 known.object, region)
        return CopyOutcome(
            size=size, md5=md5, sha512=known.sha512, etag=head.etag,
            layout="slo" if head.kind is not swift.ObjectKind.PLAIN else "plain", segments=0,
            md5_checked_against="the checksum index", retries=self.budget.spent,
            target_project=project, bytes_uploaded=0, segments_reused=0,
            seconds=time.monotonic() - started,
            existing=ObjectRef(region, known.container, known.object))

    async def _refuse_existing_target(self) -> None:
        dst = self.spec.target
        try:
            head = await self.target.head_object(dst.container, dst.object)
        except RemoteError as exc:
            if exc.status == 404:
                return
            with failing_as("target", "check", dst.describe()):
                raise
        if head.metadata.get(JOB_METADATA.lower()) == self.spec.job_id:
            # published by an earlier attempt of this very job that died before recording
            # success: it is ours to write again (and to delete if this attempt fails)
            self.published = True
            return
        raise CopyFailed("target_exists",
                         f"target object {dst.describe()} already exists; delete it or choose "
                         "another target name (xfer never overwrites)")

    async def _plan(self, head: swift.ObjectHead, limits: swift.Limits) -> Plan:
        """Keep a large source's segment boundaries when the target accepts them (their MD5s
        are then known, and the target SLO gets the source's ETag); else cut equal segments."""
        if self.spec.segment_size is None:
            sizes_and_etags = await self._source_segments(head)
            if sizes_and_etags:
                kept = plan_from_source_segments(
                    sizes_and_etags, limits,
                    self.settings.copy_memory_bound // MIN_SEGMENTS_IN_FLIGHT)
                if kept is not None and kept.size == head.size:
                    return kept
        return plan_segments(head.size, limits,
                             self.spec.segment_size or self.settings.segment_size)

    async def _source_segments(self, head: swift.ObjectHead) -> list[tuple[int, str]]:
        src = self.spec.source
        with failing_as("source", "list the segments of", src.describe()):
            if head.kind is swift.ObjectKind.SLO:
                manifest = await self._retrying(
                    "source manifest GET",
                    lambda: self.source.get_manifest(src.container, src.object))
                if any(m.range or m.sub_slo or m.inline_data for m in manifest):
                    return []  # ranged or nested segments: their ETags are not segment MD5s
                return [(m.size_bytes, m.etag) for m in manifest]
            if head.kind is swift.ObjectKind.DLO and head.dlo_prefix:
                container, _, prefix = unquote(head.dlo_prefix).partition("/")
                listed = await self._retrying(
                    "source DLO listing",
                    lambda: self.source.list_objects(container, prefix))
                return [(entry.bytes, entry.hash) for entry in listed]
        return []

    def _expected_md5(self, head: swift.ObjectHead) -> tuple[str | None, str | None]:
        if self.spec.expected_md5:
            return self.spec.expected_md5.lower(), "the requested checksum"
        if head.kind is swift.ObjectKind.PLAIN:
            return head.etag, "the source object's ETag"
        return None, None  # an SLO's or DLO's ETag is not the MD5 of its content

    async def _transfer(self, plan: Plan, head: swift.ObjectHead,
                        expected: str | None) -> Digests:
        window = window_for(plan, self.settings.copy_memory_bound)
        hasher = InOrderHasher(plan.size, window * max(1, plan.segment_size),
                               self.settings.verify_sha512)
        slots = asyncio.Semaphore(window)
        try:
            async with asyncio.TaskGroup() as group:
                hashing = group.create_task(hasher.run())
                for segment in plan.segments:
                    # In order: this copy's oldest segment never waits behind its newer ones.
                    await slots.acquire()
                    taken = await self.memory.take(segment.length)
                    group.create_task(
                        self._segment(plan, segment, head, hasher, expected, slots, taken))
        except BaseExceptionGroup as failures:
            raise first_failure(failures) from None
        return hashing.result()

    async def _segment(self, plan: Plan, segment: Segment, head: swift.ObjectHead,
                       hasher: InOrderHasher, expected: str | None,
                       slots: asyncio.Semaphore, taken: int) -> None:
        try:
            whole = self.spare_buffers.pop() if self.spare_buffers else bytearray(
                plan.segment_size)
            buffer = memoryview(whole)[:segment.length]
            with failing_as(*self._segment_side(segment)):
                etag = await self._retrying(
                    f"segment {segment.index} (read again: Swift refused its bytes)",
                    lambda: self._fetch_and_upload(plan, segment, head, buffer, expected),
                    retry_on=lambda exc: isinstance(exc, BodyRejected))
            # Hashed only once the target accepted the bytes: a refetch never hashes twice.
            hasher.offer(segment.offset, buffer)
            if etag is not None:
                self.segment_etags[segment.index] = etag
                await self.observer.segment_written(segment, etag)
            await hasher.wait_hashed(segment.end)
            # Uploaded and hashed: nothing reads it any more. Reusing it spares the kernel
            # mapping and zeroing fresh pages for every segment (measured: page faults and
            # clear_page were a visible share of xfer's CPU).
            buffer.release()
            self.spare_buffers.append(whole)
        finally:
            self.memory.give_back(taken)
            slots.release()

    def _segment_side(self, segment: Segment) -> tuple[str, str, str]:
        """Who to blame when Swift keeps refusing a segment's bytes."""
        if segment.etag is not None:  # the source's own MD5 of these bytes
            return ("source", f"read segment {segment.index} (its bytes do not match the source "
                    f"segment's MD5 {segment.etag}) of", self.spec.source.describe())
        return ("target", f"write segment {segment.index} of", self.spec.target.describe())

    async def _fetch_and_upload(self, plan: Plan, segment: Segment, head: swift.ObjectHead,
                                buffer: memoryview, expected: str | None) -> str | None:
        """One pass over a segment: ranged GET (retried), then PUT (retried). Returns the ETag
        written, or None when a plain copy's bytes do not match the expected MD5 (the copy
        then fails as checksum_mismatch without publishing)."""
        src, dst = self.spec.source, self.spec.target
        if segment.length:
            with failing_as("source", f"read bytes {segment.offset}-{segment.end - 1} of",
                            src.describe()):
                await self._retrying(
                    f"source GET segment {segment.index}",
                    lambda: self.source.read_range_into(src.container, src.object,
                                                        segment.offset, head.size, buffer))
        etag = segment.etag or await md5_hex_off_loop(buffer)
        if not plan.as_slo and expected is not None and etag != expected:
            return None  # one plain PUT would publish at once: never send unverified bytes
        if plan.as_slo and await self._still_written(segment, etag):
            self.segments_reused += 1
            return etag
        metadata = None
        if plan.as_slo:
            container, name = self.spec.segment_container, self.spec.segment_name(segment.index)
            self.written.add(name)
        else:
            container, name = dst.container, dst.object
            metadata = {JOB_METADATA: self.spec.job_id}
            self.published = True
        try:
            await self._retrying(
                f"target PUT segment {segment.index}",
                lambda: self.target.put_object(container, name, buffer, etag, metadata))
            self.bytes_uploaded += segment.length
        except BodyRejected:
            raise
        except XferError as exc:
            raise describe_failure("target", f"write segment {segment.index} of",
                                   dst.describe(), exc) from exc
        return etag

    async def _still_written(self, segment: Segment, etag: str) -> bool:
        """Whether an earlier attempt wrote this very segment and Swift still holds it."""
        recorded = self.recorded.get(segment.index)
        if recorded is None or (recorded.offset, recorded.length, recorded.etag) != (
                segment.offset, segment.length, etag):
            return False
        name = self.spec.segment_name(segment.index)
        try:
            head = await self.target.head_object(self.spec.segment_container, name)
        except XferError:
            return False  # gone or unreadable: write it again
        return head.size == segment.length and head.etag == etag

    async def _publish(self, plan: Plan) -> str:
        dst = self.spec.target
        container = self.spec.segment_container
        manifest = [
            swift.ManifestSegment(f"/{container}/{self.spec.segment_name(s.index)}",
                                  self.segment_etags[s.index], s.length)
            for s in plan.segments
        ]
        self.published = True
        with failing_as("target", "publish the manifest of", dst.describe()):
            return await self._retrying(
                "target manifest PUT",
                lambda: self.target.put_manifest(dst.container, dst.object, manifest,
                                                 {JOB_METADATA: self.spec.job_id}))

    async def _verify_published(self, plan: Plan, etag: str) -> None:
        dst = self.spec.target
        with failing_as("target", "check the published", dst.describe()):
            head = await self._retrying("target HEAD",
                                        lambda: self.target.head_object(dst.container, dst.object))
        if head.size != plan.size or head.etag != etag:
            raise CopyFailed("target_verification_failed",
                             f"{dst.describe()} reads back as {head.size} bytes with ETag "
                             f"{head.etag}; expected {plan.size} bytes with ETag {etag}")

    async def _clean_up(self) -> None:
        """Delete what this copy wrote; runs on failure and on cancel, bounded in time."""
        dst = self.spec.target
        try:
            async with asyncio.timeout(CLEANUP_SECONDS):
                if self.published:
                    await _quietly(self.target.delete_object(dst.container, dst.object))
                container = self.spec.segment_container
                async with asyncio.TaskGroup() as group:
                    for name in sorted(self.written):
                        group.create_task(_quietly(self.target.delete_object(container, name)))
        except (TimeoutError, BaseExceptionGroup) as exc:
            log.error("cleanup of job %s incomplete: %s", self.spec.job_id, exc)


async def _quietly(deletion: Awaitable[bool]) -> None:
    try:
        await deletion
    except XferError as exc:
        log.warning("cleanup: %s", exc)
