"""Everything a copy writes to the target, and the duty to remove it again.

A name is registered for cleanup *before* its PUT is sent, so a PUT that failed half-way (or
succeeded without our knowing) is deleted too. The target object itself is written last (the
manifest, or the single PUT of a plain copy) and read back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping

from xfer.clients.swift import SwiftClient
from xfer.engine.context import JOB_METADATA, CopyContext
from xfer.engine.failures import failing_as
from xfer.engine.plan import Plan, Segment
from xfer.engine.types import TargetOutcome, TargetSpec
from xfer.errors import CopyFailed, RemoteError, XferError
from xfer.proto import swift

log = logging.getLogger(__name__)
CLEANUP_SECONDS = 60.0


class Publisher:
    """One target of a copy: what it may be written, what was written to it, its fate."""

    def __init__(self, ctx: CopyContext, target: TargetSpec, client: SwiftClient) -> None:
        self.ctx = ctx
        self.target = target
        self.client = client
        self.recorded = {segment.index: segment for segment in ctx.spec.resume}
        # names of segments whose PUT was started, by this attempt or a recorded earlier one
        self.written = {self.segment_name(index) for index in self.recorded}
        self.failure: CopyFailed | None = None  # this target failed; the others go on
        self.existing: TargetOutcome | None = None  # deduplicated: nothing to write
        self.published_etag: str | None = None  # once published and read back
        self.published = False
        self.bytes_uploaded = 0
        self.reused: set[int] = set()  # indexes of recorded segments kept as they were

    @property
    def segments_reused(self) -> int:
        return len(self.reused)

    @property
    def active(self) -> bool:
        """Still to be written: neither failed nor already holding the bytes."""
        return self.failure is None and self.existing is None

    def segment_name(self, index: int) -> str:
        return self.target.segment_name(self.ctx.spec.job_id, index)

    async def project(self) -> str:
        """The target account (AUTH_...): the checksum index's scope."""
        with failing_as("target", "authenticate to", self.target.ref.region):
            credentials = await self.ctx.retrying("target auth", self.client.credentials)
        return swift.account_of(credentials.storage_url)

    async def limits(self) -> swift.Limits:
        with failing_as("target", "read the limits of", self.target.ref.region):
            return await self.ctx.retrying("target /info", self.client.limits)

    async def refuse_existing_target(self) -> None:
        """xfer never overwrites: the target must not exist, unless an earlier attempt of this
        very job published it and died before recording success (then it is ours to write
        again, and to delete if this attempt fails)."""
        dst = self.target.ref
        try:
            head = await self.client.head_object(dst.container, dst.object)
        except RemoteError as exc:
            if exc.status == 404:
                return
            with failing_as("target", "check", dst.describe()):
                raise
        if head.metadata.get(JOB_METADATA.lower()) == self.ctx.spec.job_id:
            self.published = True
            return
        raise CopyFailed("target_exists",
                         f"target object {dst.describe()} already exists; delete it or choose "
                         "another target name (xfer never overwrites)")

    async def create_containers(self) -> None:
        dst = self.target.ref
        with failing_as("target", "create the container of", dst.describe()):
            for container in {dst.container, self.target.segment_container}:
                await self.ctx.retrying(
                    "target container PUT",
                    functools.partial(self.client.put_container, container))

    async def reusable(self, segment: Segment) -> str | None:
        """The ETag of this very segment as an earlier attempt of the job wrote and recorded
        it, when Swift still holds it so; None when it must be written (again). The caller
        still checks that the bytes it reads have that MD5."""
        recorded = self.recorded.get(segment.index)
        if recorded is None or recorded.etag is None or (recorded.offset, recorded.length) != (
                segment.offset, segment.length):
            return None
        if segment.etag is not None and recorded.etag != segment.etag:
            return None
        name = self.segment_name(segment.index)
        try:
            head = await self.client.head_object(self.target.segment_container, name)
        except XferError:
            return None  # gone or unreadable: write it again
        if head.size == segment.length and head.etag == recorded.etag:
            self.reused.add(segment.index)
            return recorded.etag
        return None

    def distrust(self, segment: Segment) -> None:
        """The recorded segment turned out to hold other bytes: write it again."""
        self.recorded.pop(segment.index, None)
        self.reused.discard(segment.index)

    async def put_segment(self, plan: Plan, segment: Segment,
                          views: AsyncIterator[memoryview], etag: str | None) -> str:
        """Stream one segment of an SLO, or the whole object of a plain copy (which publishes
        it at once: then `etag` is the verified MD5 and Swift refuses other bytes); returns
        the ETag Swift stored. Not retried here: a stream is fetched again to be re-sent."""
        metadata: dict[str, str] | None = None
        if plan.as_slo:
            container, name = self.target.segment_container, self.segment_name(segment.index)
            self.written.add(name)
        else:
            container, name = self.target.ref.container, self.target.ref.object
            metadata = {JOB_METADATA: self.ctx.spec.job_id}
            self.published = True
        stored = await self.client.put_streamed(container, name, views, segment.length,
                                                    etag, metadata)
        self.bytes_uploaded += segment.length
        return stored

    async def publish_manifest(self, plan: Plan, segment_etags: Mapping[int, str]) -> str:
        dst = self.target.ref
        manifest = [
            swift.ManifestSegment(f"/{self.target.segment_container}/"
                                  f"{self.segment_name(s.index)}", segment_etags[s.index],
                                  s.length)
            for s in plan.segments
        ]
        self.published = True
        with failing_as("target", "publish the manifest of", dst.describe()):
            return await self.ctx.retrying(
                "target manifest PUT",
                lambda: self.client.put_manifest(dst.container, dst.object, manifest,
                                                 {JOB_METADATA: self.ctx.spec.job_id}))

    async def verify_published(self, plan: Plan, etag: str) -> None:
        dst = self.target.ref
        with failing_as("target", "check the published", dst.describe()):
            head = await self.ctx.retrying(
                "target HEAD", lambda: self.client.head_object(dst.container, dst.object))
        if head.size != plan.size or head.etag != etag:
            raise CopyFailed("target_verification_failed",
                             f"{dst.describe()} reads back as {head.size} bytes with ETag "
                             f"{head.etag}; expected {plan.size} bytes with ETag {etag}")

    async def clean_up(self) -> None:
        """Delete what this copy wrote; runs on failure and on cancel, bounded in time."""
        dst, target = self.target.ref, self.client
        try:
            async with asyncio.timeout(CLEANUP_SECONDS):
                if self.published:
                    await _quietly(target.delete_object(dst.container, dst.object))
                container = self.target.segment_container
                async with asyncio.TaskGroup() as group:
                    for name in sorted(self.written):
                        group.create_task(_quietly(target.delete_object(container, name)))
        except (TimeoutError, BaseExceptionGroup) as exc:
            log.error("cleanup of job %s incomplete: %s", self.ctx.spec.job_id, exc)


async def _quietly(deletion: Awaitable[bool]) -> None:
    try:
        await deletion
    except XferError as exc:
        log.warning("cleanup: %s", exc)
