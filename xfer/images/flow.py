"""One image copy, source Glance to target Glance, as the user who asked.

xfer acts through the Keystone trust the user gave when asking (no token is stored): its
trust-scoped tokens read the source image and its Swift data, create the target image and write
its data in the user's project; xfer's own service token goes along as X-Service-Token where
Glance wants a service (adding a location). The steps, each done once and recorded, so that a
job taken over after a crash continues where it stood:

1. read the source image (active, with a sha512 os_hash_value, and a checksum unless xfer made
   it into a Glance with do_secure_hash = False) and find its data in the
   source Swift (plain object, SLO or DLO; another store is `unsupported_store`);
2. unless `force`, an active image with the same checksum and os_hash_value that the user's
   project owns in the target region (hidden from listings or not) ends the job at once
   (`deduplicated`); an image merely shared with the project does not count: its owner may
   take it away;
3. create the target image, queued, with the source's properties propagated once;
4. copy the data through the engine into the image's own container `glance_<new id>`, its
   segments too (Glance shares an image by a read ACL on that container only), verifying MD5
   and SHA-512 against the source image's checksum (when it has one) and os_hash_value;
5. add the location (Glance API 2.17) with the SHA-512 as validation data;
6. wait until Glance made the image active with the same os_hash_value, size and checksum (or
   none: with Glance's do_secure_hash = False, images/registered.py).

Any failure or cancel ends the job, and the duties recorded with the target image remove it
and the data copied (jobs/cleanup.py), so nothing half-made is left; the job says why, and its
`cleanup` what became of what it made. A process that stops hands the job over, keeping both.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

from xfer.clients.glance import GlanceClient, images_of_project
from xfer.clients.keystone import TrustTokens
from xfer.clients.openstack import OpenStackClients
from xfer.clients.swift import SwiftClient
from xfer.engine.failures import first_failure
from xfer.engine.object_copy import Copier
from xfer.engine.sources import SourceReader
from xfer.engine.types import CopyOutcome, CopySpec, ObjectRef
from xfer.errors import (
    CopyFailed,
    ErrorCode,
    ImageNotFound,
    ImportFailed,
    RemoteError,
    ServiceCredentialsRefused,
    TargetForbidden,
    TransportError,
    XferError,
)
from xfer.images.data import locate, require_active
from xfer.images.properties import propagated_body
from xfer.images.registered import registration_problem, same_content
from xfer.images.types import (
    ImageCopyJob,
    ImageCopyOutcome,
    ImageObserver,
    ImageSource,
    ImageStep,
)
from xfer.proto import swift as swift_proto
from xfer.proto.glance import Image, ImageTask, SwiftLocation
from xfer.settings import Settings

log = logging.getLogger(__name__)
# The job's code when a service the image flow calls fails it (proto's SERVICE names).
SERVICE_FAILED = {"glance": ErrorCode.GLANCE_FAILED, "swift": ErrorCode.SWIFT_FAILED,
                  "keystone": ErrorCode.KEYSTONE_FAILED}
# The end of a failure's message: what became of what the job made is the cleanup's to say.
CLEANUP_SENTENCE = ("What this job made is removed by its cleanup; the job's `cleanup` says "
                    "what became of it.")
HASH_ALGORITHM = "sha512"  # Glance's default `hashing_algorithm`; os_hash_value is checked


def image_container(image_id: str) -> str:
    """Glance's multi-tenant Swift store keeps an image's data in this container."""
    return f"glance_{image_id}"


@dataclass
class _JobClients:
    """What one job talks to, all acting as its user."""

    tokens: TrustTokens
    source_glance: GlanceClient
    target_glance: GlanceClient
    source_swift: SwiftClient | None
    target_swift: SwiftClient

    def __getitem__(self, region: str) -> SwiftClient:  # engine.object_copy.RegionClients
        if self.source_swift is not None and region == self.source_swift.region.name:
            return self.source_swift
        if region == self.target_swift.region.name:
            return self.target_swift
        raise KeyError(region)


class ImageCopier:
    def __init__(self, settings: Settings, openstack: OpenStackClients, copier: Copier) -> None:
        self.settings = settings
        self.openstack = openstack
        self.keystone = openstack.keystone
        self.copier = copier

    async def _clients(self, job: ImageCopyJob) -> _JobClients:
        """Glance of both regions and the target's Swift, as the job's user; the source's
        Swift is added once the source image says which account holds its data."""
        tokens = self.keystone.trust_tokens(job.trust)
        info = await tokens.info()
        endpoints = {}
        for region in (job.source_region, job.target_region):
            url = info.endpoint("image", region)
            if url is None:
                raise CopyFailed(ErrorCode.REGION_NOT_AVAILABLE,
                                 f"region {region} has no image endpoint in your catalog "
                                 f"any more; ask your cloud operator")
            endpoints[region] = url
        return _JobClients(
            tokens,
            self.openstack.glance(endpoints[job.source_region], tokens.token),
            self.openstack.glance(endpoints[job.target_region], tokens.token,
                                  with_service_token=True),
            None, self.openstack.swift(tokens, job.target_region))

    async def copy(self, job: ImageCopyJob, observer: ImageObserver) -> ImageCopyOutcome:
        """The copy, to an active target image; CopyFailed with a code and a sentence when it
        cannot be made (Keystone, Glance or Swift errors of the flow's own calls included)."""
        try:
            return await self._copy(job, observer)
        except (RemoteError, TransportError) as exc:  # the engine's own are CopyFailed already
            raise _service_failed(job, exc, "nothing was made in the target region") from exc

    async def _copy(self, job: ImageCopyJob, observer: ImageObserver) -> ImageCopyOutcome:
        clients = await self._clients(job)
        source = await self._source_image(clients.source_glance, job)
        data = await locate(self.openstack, clients.tokens, job.source_region, source,
                            clients.source_glance, self.settings.read_through_glance)
        source_ref = data.ref  # the Swift object, or the image through its Glance
        # None: the engine reads the source's Swift with the job's client
        reader: SourceReader | None = None if data.swift is not None else data.reader
        clients.source_swift = data.swift
        await observer.source_found(source_ref, source.checksum)
        log.info("source image %s: %d bytes at %s", source.id, source.size or 0,
                 source_ref.describe())
        await _check_source_data(data.swift, source_ref, source)  # before anything is made
        target_image = None
        if job.target_image_id is None:
            if not job.force:
                project_id = (await clients.tokens.info()).project_id
                existing = await self._existing_copy(clients.target_glance, source, project_id)
                if existing is not None:
                    log.info("deduplicated: image %s in %s holds the same data", existing.id,
                             job.target_region)
                    ref = ObjectRef(job.target_region, image_container(existing.id),
                                    existing.id)
                    return _outcome(source, existing, ref, None, True)
            target_id = str(uuid.uuid4())
            # Recorded before it is created, with the duties that would remove it: whatever
            # happens next, the image is known to the job (a crash in between leaves an id
            # with no image, which the next attempt creates).
            await observer.target_image_planned(target_id, image_container(target_id))
            target_image = await self._create_target(clients.target_glance, job, source,
                                                     target_id, observer)
        elif job.step is ImageStep.PLANNED:  # created, or not, before the attempt stopped
            target_image = await self._create_target(clients.target_glance, job, source,
                                                     job.target_image_id, observer)
        else:
            target_image = await self._target_image(clients.target_glance, job.target_image_id)
        # From here on, should the copy fail or be cancelled, those duties remove the image
        # and its data once the job has ended (jobs/cleanup.py): the same way whichever
        # process ends the job, and again later while a service is down. A process that
        # stops hands the job over, keeping both.
        try:
            if source.size == 0:
                return await self._copy_empty(clients, source, target_image, observer)
            return await self._copy_into(job, clients, source, source_ref, target_image,
                                         observer, reader)
        except (RemoteError, TransportError) as exc:
            raise _service_failed(job, exc, CLEANUP_SENTENCE) from exc
        except CopyFailed as failure:
            if CLEANUP_SENTENCE in failure.message:
                raise
            raise CopyFailed(failure.code, f"{failure.message.rstrip('.')}. "
                                           f"{CLEANUP_SENTENCE}") from failure

    async def _create_target(self, glance: GlanceClient, job: ImageCopyJob, source: Image,
                             image_id: str, observer: ImageObserver) -> Image:
        """The target image with the id the job recorded, queued, with the source's
        properties; the one an earlier attempt created, if it did."""
        try:
            image = await glance.image(image_id)
        except ImageNotFound:
            body = propagated_body(
                source, allow=self.settings.property_allow, deny=self.settings.property_deny,
                name=job.name, extra=job.properties, source_region=job.source_region)
            image = await glance.create_image({**body, "id": image_id})
            log.info("created the target image %s in %s", image.id, job.target_region)
        await observer.image_step(ImageStep.CREATED)
        return image

    async def _copy_into(self, job: ImageCopyJob, clients: _JobClients, source: Image,
                         source_ref: ImageSource, target_image: Image, observer: ImageObserver,
                         reader: SourceReader | None = None) -> ImageCopyOutcome:
        """Copy, register and wait until Glance made the image active. Glance's import
        failing (its revert deletes the data and queues the image again) is tried again, the
        data copied anew, up to `registration_attempts` times in all: a copy that verified
        is worth registering, and Glance fails for its own reasons (a database lock)."""
        spec = _target_spec(job, target_image.id, source_ref, source.checksum)
        if target_image.status == "active":  # registered by an earlier attempt
            return self._verified_active(source, target_image, spec.target, None)
        registered = job.step is ImageStep.REGISTERED or target_image.status == "importing"
        for attempt in range(1, self.settings.registration_attempts + 1):
            copy, since = None, None
            if not registered:
                since = await clients.target_glance.newest_task(target_image.id)
                copy = await self._copy_and_register(clients, source, spec, observer, reader)
            try:
                active = await self._wait_registered(clients.target_glance, target_image.id,
                                                     source, since)
            except ImportFailed as failure:
                left = await _data_left(clients.target_swift, spec)
                if attempt == self.settings.registration_attempts:
                    raise ImportFailed(f"{failure.message}; tried {attempt} times. "
                                       f"{left}") from failure
                log.warning("registration failed (attempt %d of %d), copying and "
                            "registering again: %s; %s", attempt,
                            self.settings.registration_attempts, failure.message, left)
                await observer.image_step(ImageStep.CREATED)  # the data must be copied again
                registered = False
                continue
            return self._verified_active(source, active, spec.target, copy)
        raise AssertionError("registration_attempts is at least 1")

    async def _copy_empty(self, clients: _JobClients, source: Image, target_image: Image,
                          observer: ImageObserver) -> ImageCopyOutcome:
        """An image of 0 bytes: Glance refuses a location of 0 bytes, so the target image is
        given its (no) data through Glance, which checksums it as any upload."""
        if target_image.status == "queued":
            await clients.target_glance.upload_empty(target_image.id)
            await observer.image_step(ImageStep.REGISTERED)
        active = await self._wait_registered(clients.target_glance, target_image.id, source)
        ref = ObjectRef(clients.target_swift.region.name, image_container(active.id), active.id)
        return self._verified_active(source, active, ref, None)

    async def _copy_and_register(self, clients: _JobClients, source: Image, spec: CopySpec,
                                 observer: ImageObserver, reader: SourceReader | None
                                 ) -> CopyOutcome:
        image_id = spec.target.object
        copy = await self._copy_watched(spec, observer, reader, clients, image_id)
        if self.settings.verify_sha512 and copy.sha512 != source.os_hash_value:
            raise CopyFailed(ErrorCode.CHECKSUM_MISMATCH,
                             f"the data copied has SHA-512 {copy.sha512}, but the source "
                             f"image records {source.os_hash_value}: the source data does "
                             f"not match its image record. Nothing was registered.")
        await observer.image_step(ImageStep.COPIED)
        log.info("data copied and verified in %.2fs (%s, %d segments)", copy.seconds,
                 copy.layout, copy.segments)
        storage_url = (await clients.target_swift.credentials()).storage_url
        try:
            await clients.target_glance.add_location(
                image_id, SwiftLocation(storage_url, spec.segment_container, image_id),
                HASH_ALGORITHM, source.os_hash_value or "")
        except TargetForbidden as refused:
            await self._blame_keystone_if_down(refused)
            raise
        await observer.image_step(ImageStep.REGISTERED)
        log.info("location added; Glance reads the data back")
        return copy

    async def _blame_keystone_if_down(self, refused: TargetForbidden) -> None:
        """Glance answers 403 to a location both when its policy refuses the user and when its
        middleware could not validate xfer's service token because Keystone did not answer
        (seen with Keystone stopped mid-copy). Keystone, asked now, tells which: an outage
        must not send the user to check their roles."""
        try:
            await self.keystone.vouch_for_service()
        except ServiceCredentialsRefused:
            raise
        except (RemoteError, TransportError) as exc:
            raise CopyFailed(ErrorCode.KEYSTONE_FAILED,
                             f"Keystone did not answer ({exc}) while the target Glance checked "
                             f"xfer's service token, so Glance refused to register the copy "
                             f"({refused}); copy again once Keystone is back") from refused

    async def _wait_registered(self, glance: GlanceClient, image_id: str, source: Image,
                               since: ImageTask | None = None) -> Image:
        """Glance's read-back, followed through its task; a task that does not move for
        longer than reading the image at `registration_min_rate_mb` plus
        `registration_stall_seconds` has stalled."""
        settings = self.settings
        stall_after = (settings.registration_stall_seconds
                       + (source.size or 0) / (settings.registration_min_rate_mb * 1e6))
        registering = time.monotonic()
        active = await glance.wait_active(image_id, timeout=settings.image_active_timeout,
                                          stall_after=stall_after, since=since)
        log.info("target image active %.2fs after registration", time.monotonic() - registering)
        return active

    async def _copy_watched(self, spec: CopySpec, observer: ImageObserver,
                            reader: SourceReader | None, clients: _JobClients,
                            image_id: str) -> CopyOutcome:
        """The data copy, stopped at once (target_image_gone) should the target image be
        deleted meanwhile: its data could never be registered."""
        try:
            async with asyncio.TaskGroup() as group:
                watch = group.create_task(self._watch_target(clients.target_glance, image_id))
                copy = (await self.copier.copy_to_all(spec, observer, source=reader,
                                                      clients=clients)).single()
                watch.cancel()
        except BaseExceptionGroup as failures:
            raise first_failure(failures) from None
        return copy

    async def _watch_target(self, glance: GlanceClient, image_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.image_watch_seconds)
            try:
                image = await glance.image(image_id)
            except ImageNotFound:
                status = "deleted"
            except XferError as exc:  # Glance unreachable: the copy goes on, we ask again
                log.warning("could not check the target image %s: %s", image_id, exc)
                continue
            else:
                status = image.status
            if status not in ("queued", "saving", "uploading", "importing"):
                raise CopyFailed(ErrorCode.TARGET_IMAGE_GONE,
                                 f"the target image {image_id} was {status} while its data "
                                 f"was being copied; the copy stopped. {CLEANUP_SENTENCE}")

    def _verified_active(self, source: Image, target: Image, target_ref: ObjectRef,
                         copy: CopyOutcome | None) -> ImageCopyOutcome:
        problem = registration_problem(source, target)
        if problem is not None:
            raise CopyFailed(ErrorCode.REGISTRATION_FAILED, problem)
        return _outcome(source, target, target_ref, copy, False)

    async def _source_image(self, glance: GlanceClient, job: ImageCopyJob) -> Image:
        try:
            source = await glance.image(job.source_image_id)
        except ImageNotFound:
            raise CopyFailed(ErrorCode.SOURCE_IMAGE_NOT_FOUND,
                             f"image {job.source_image_id} was not found in "
                             f"{job.source_region}, or you may not see it") from None
        require_active(source, job.source_region)
        # The SHA-512 is what a copy is verified against; the MD5 too when Glance recorded one
        # (a copy xfer made into a Glance with do_secure_hash = False has none: registered.py)
        if source.os_hash_algo != HASH_ALGORITHM or not source.os_hash_value:
            raise CopyFailed(ErrorCode.UNSUPPORTED_STORE,
                             f"image {source.id} has no sha512 os_hash_value to verify a copy "
                             f"against (os_hash_algo {source.os_hash_algo!r}); xfer copies "
                             f"images whose Glance records one")
        if not source.checksum and not self.settings.verify_sha512:
            raise CopyFailed(ErrorCode.UNSUPPORTED_STORE,
                             f"image {source.id} has no checksum (MD5), and this xfer does not "
                             f"verify SHA-512 (verify_sha512 is off): nothing would verify the "
                             f"copy; ask your cloud operator")
        return source

    async def _target_image(self, glance: GlanceClient, image_id: str) -> Image:
        try:
            return await glance.image(image_id)
        except ImageNotFound:
            raise CopyFailed(ErrorCode.TARGET_IMAGE_GONE,
                             f"the target image {image_id} this job created was deleted "
                             f"while the copy ran; copy again. {CLEANUP_SENTENCE}") from None

    async def _existing_copy(self, glance: GlanceClient, source: Image,
                             project_id: str) -> Image | None:
        """The oldest active image of the user's project with the source's content, found by
        its SHA-512 alone: a copy registered with Glance's do_secure_hash = False has no MD5."""
        for image in await images_of_project(glance, project_id, checksum=None,
                                             os_hash_value=source.os_hash_value):
            if (image.owner, image.status) == (project_id, "active") \
                    and same_content(source, image):
                return image
        return None


def _service_failed(job: ImageCopyJob, exc: RemoteError | TransportError,
                    what_became: str) -> CopyFailed:
    service = exc.service
    return CopyFailed(SERVICE_FAILED[service],
                      f"{service} failed while copying image {job.source_image_id} from "
                      f"{job.source_region}: {exc}; {what_became}")


async def _check_source_data(swift: SwiftClient | None, ref: ImageSource, source: Image
                             ) -> None:
    """The source image's data in its Swift must be what its Glance record says: its size,
    and for a plain object (whose ETag is the MD5 of what Swift stores) its checksum. Else the
    copy is refused before anything is made: no reading could make it verify."""
    if swift is None or not isinstance(ref, ObjectRef):  # through Glance: checked as read
        return
    try:
        head = await swift.head_object(ref.container, ref.object)
    except XferError:
        return  # the copy itself reads it and says what is wrong
    recorded = f"its Glance record says {source.size} bytes with checksum {source.checksum}"
    if head.size != source.size:
        raise CopyFailed(ErrorCode.SOURCE_NOT_AS_RECORDED,
                         f"the data of image {source.id} ({ref.describe()}) is {head.size} "
                         f"bytes, but {recorded}: the source's data is not what its record "
                         f"says; nothing was made")
    if head.kind is swift_proto.ObjectKind.PLAIN and source.checksum \
            and head.etag != source.checksum:
        raise CopyFailed(ErrorCode.SOURCE_NOT_AS_RECORDED,
                         f"the data of image {source.id} ({ref.describe()}) has MD5 "
                         f"{head.etag} (Swift's ETag), but {recorded}: the source's data is "
                         f"not what its record says; nothing was made")


async def _data_left(swift: SwiftClient, spec: CopySpec) -> str:
    """What is in the image's container now, said truly (Glance's revert of a failed import
    deletes the object, its segments and the container, when it can)."""
    container = spec.segment_container
    try:
        listed = await swift.list_objects(container)
    except XferError as exc:
        return f"Whether Glance deleted the copied data is unknown ({container}: {exc})."
    if not listed:
        return f"Glance deleted the copied data ({container} is empty or gone)."
    return (f"{len(listed)} objects of the copied data are still in {container}; the job's "
            f"cleanup removes them if it fails.")


def _target_spec(job: ImageCopyJob, image_id: str, source: ImageSource,
                 expected_md5: str | None) -> CopySpec:
    """The copy into the image's own container, its segments too: what is written, and so
    what a cleanup deletes (one definition, so that the two never disagree)."""
    container = image_container(image_id)
    # through Glance: the reader given to the copy is the source
    swift_source = source if isinstance(source, ObjectRef) else None
    return CopySpec(job_id=str(job.job_id), source=swift_source,
                    target=ObjectRef(job.target_region, container, image_id),
                    segment_container=container, expected_md5=expected_md5,
                    expected_md5_from="the source image's checksum in Glance",
                    resume=job.resume, deduplicate=False)


def _outcome(source: Image, image: Image, target: ObjectRef, copy: CopyOutcome | None,
             deduplicated: bool) -> ImageCopyOutcome:
    """The checksum is the source's, which the copy was verified against (the target image
    has none when its Glance does not compute it: images/registered.py); for a source without
    one, the MD5 xfer computed while copying, or else the one the target's Glance computed."""
    checksum = source.checksum or (copy.md5 if copy else None) or image.checksum
    return ImageCopyOutcome(
        image_id=image.id, target=target, checksum=checksum or "",
        os_hash_value=image.os_hash_value or "", size=image.size or 0,
        deduplicated=deduplicated, copy=copy)
