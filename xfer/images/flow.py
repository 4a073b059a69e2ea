"""One image copy, source Glance to target Glance, as the user who asked.

xfer acts through the Keystone trust the user gave when asking (no token is stored): its
trust-scoped tokens read the source image and its Swift data, create the target image and write
its data in the user's project; xfer's own service token goes along as X-Service-Token where
Glance wants a service (adding a location). The steps, each done once and recorded, so that a
job taken over after a crash continues where it stood:

1. read the source image (active, with checksum and os_hash_value) and find its data in the
   source Swift (plain object, SLO or DLO; another store is `unsupported_store`);
2. unless `force`, an active image with the same checksum and os_hash_value that the user's
   project owns in the target region (hidden from listings or not) ends the job at once
   (`deduplicated`); an image merely shared with the project does not count: its owner may
   take it away;
3. create the target image, queued, with the source's properties propagated once;
4. copy the data through the engine into the image's own container `glance_<new id>`, its
   segments too (Glance shares an image by a read ACL on that container only), verifying MD5
   and SHA-512 against the source image's checksum and os_hash_value;
5. add the location (Glance API 2.17) with the SHA-512 as validation data;
6. wait until Glance made the image active with the same checksum and os_hash_value.

Any failure or cancel deletes the target image and the data copied, so nothing half-made is
left; the job says why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from xfer.clients.glance import GlanceClient, images_of_project
from xfer.clients.keystone import TrustTokens
from xfer.clients.openstack import OpenStackClients
from xfer.clients.swift import SwiftClient
from xfer.engine.object_copy import Copier
from xfer.engine.sources import SourceReader
from xfer.engine.types import CopyOutcome, CopySpec, ObjectRef
from xfer.errors import (
    CopyFailed,
    ImageNotFound,
    RemoteError,
    TransportError,
    XferError,
)
from xfer.images.data import locate
from xfer.images.types import ImageCopyJob, ImageCopyOutcome, ImageObserver, ImageStep
from xfer.proto.glance import Image, SwiftLocation, propagated_body
from xfer.settings import Settings

log = logging.getLogger(__name__)
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
        tokens = self.keystone.trust_tokens(job.trust_id)
        info = await tokens.info()
        endpoints = {}
        for region in (job.source_region, job.target_region):
            url = info.endpoint("image", region)
            if url is None:
                raise CopyFailed("region_not_available",
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
            service = getattr(exc, "service", "a service")
            raise CopyFailed(f"{service}_failed",
                             f"{service} failed while copying image {job.source_image_id} "
                             f"from {job.source_region}: {exc}; what this job made was "
                             f"deleted, so asking again starts afresh") from exc

    async def _copy(self, job: ImageCopyJob, observer: ImageObserver) -> ImageCopyOutcome:
        clients = await self._clients(job)
        source = await self._source_image(clients.source_glance, job)
        data = await locate(self.openstack, clients.tokens, job.source_region, source,
                            clients.source_glance, self.settings.read_through_glance)
        source_ref = data.ref  # for bytes through Glance's /file, the job's source says so
        # None: the engine reads the source's Swift with the job's client
        reader: SourceReader | None = None if data.swift is not None else data.reader
        clients.source_swift = data.swift
        await observer.source_found(source_ref, source.checksum or "")
        log.info("source image %s: %d bytes at %s", source.id, source.size or 0,
                 source_ref.describe())
        target_image = None
        if job.target_image_id is None:
            if not job.force:
                project_id = (await clients.tokens.info()).project_id
                existing = await self._existing_copy(clients.target_glance, source, project_id)
                if existing is not None:
                    log.info("deduplicated: image %s in %s holds the same data", existing.id,
                             job.target_region)
                    return _outcome(existing, ObjectRef(job.target_region,
                                                        image_container(existing.id),
                                                        existing.id), None, True)
        else:
            target_image = await self._target_image(clients.target_glance, job.target_image_id)
        try:
            if target_image is None:
                body = propagated_body(
                    source, allow=self.settings.property_allow,
                    deny=self.settings.property_deny, name=job.name, extra=job.properties,
                    source_region=job.source_region)
                target_image = await clients.target_glance.create_image(body)
                await observer.target_image_created(target_image.id,
                                                    image_container(target_image.id))
                log.info("created the target image %s in %s", target_image.id,
                         job.target_region)
            return await self._copy_into(job, clients, source, source_ref, target_image,
                                         observer, reader)
        except asyncio.CancelledError:
            if not observer.handing_over:
                await self._remove(job, clients, target_image, observer)
            raise
        except BaseException:
            await self._remove(job, clients, target_image, observer)
            raise

    async def _copy_into(self, job: ImageCopyJob, clients: _JobClients, source: Image,
                         source_ref: ObjectRef, target_image: Image, observer: ImageObserver,
                         reader: SourceReader | None = None) -> ImageCopyOutcome:
        spec = _target_spec(job, target_image.id, source_ref, source.checksum)
        target_ref, container = spec.target, spec.segment_container
        if target_image.status == "active":  # registered by an earlier attempt
            return self._verified_active(source, target_image, target_ref, None)
        copy: CopyOutcome | None = None
        registered = job.step is ImageStep.REGISTERED or target_image.status == "importing"
        if not registered:
            copy = (await self.copier.copy_to_all(spec, observer, source=reader,
                                                  clients=clients)).single()
            if self.settings.verify_sha512 and copy.sha512 != source.os_hash_value:
                raise CopyFailed("checksum_mismatch",
                                 f"the data copied has SHA-512 {copy.sha512}, but the source "
                                 f"image records {source.os_hash_value}: the source data does "
                                 f"not match its image record. Nothing was registered.")
            await observer.image_step(ImageStep.COPIED)
            log.info("data copied and verified in %.2fs (%s, %d segments)", copy.seconds,
                     copy.layout, copy.segments)
            storage_url = (await clients.target_swift.credentials()).storage_url
            await clients.target_glance.add_location(
                target_image.id, SwiftLocation(storage_url, container, target_image.id),
                HASH_ALGORITHM, source.os_hash_value or "")
            await observer.image_step(ImageStep.REGISTERED)
            log.info("location added; Glance reads the data back")
        registering = time.monotonic()
        active = await clients.target_glance.wait_active(
            target_image.id, timeout=self.settings.image_active_timeout)
        log.info("target image active %.2fs after registration", time.monotonic() - registering)
        return self._verified_active(source, active, target_ref, copy)

    def _verified_active(self, source: Image, target: Image, target_ref: ObjectRef,
                         copy: CopyOutcome | None) -> ImageCopyOutcome:
        if (target.checksum, target.os_hash_value) != (source.checksum, source.os_hash_value):
            raise CopyFailed("registration_failed",
                             f"the target image {target.id} became active with checksum "
                             f"{target.checksum} and os_hash_value {target.os_hash_value}, "
                             f"not the source's {source.checksum} / {source.os_hash_value}")
        return _outcome(target, target_ref, copy, False)

    async def _source_image(self, glance: GlanceClient, job: ImageCopyJob) -> Image:
        try:
            source = await glance.image(job.source_image_id)
        except ImageNotFound:
            raise CopyFailed("source_image_not_found",
                             f"image {job.source_image_id} was not found in "
                             f"{job.source_region}, or you may not see it") from None
        if source.status != "active":
            raise CopyFailed("source_image_not_active",
                             f"image {source.id} in {job.source_region} is {source.status}; "
                             f"only an active image can be copied")
        if not source.checksum or source.os_hash_algo != HASH_ALGORITHM \
                or not source.os_hash_value:
            raise CopyFailed("unsupported_store",
                             f"image {source.id} has no checksum and sha512 os_hash_value to "
                             f"verify a copy against (os_hash_algo {source.os_hash_algo!r}); "
                             f"xfer copies images whose Glance records both")
        return source

    async def _target_image(self, glance: GlanceClient, image_id: str) -> Image:
        try:
            return await glance.image(image_id)
        except ImageNotFound:
            raise CopyFailed("target_image_gone",
                             f"the target image {image_id} this job created was deleted "
                             f"while the copy ran; copy again") from None

    async def _existing_copy(self, glance: GlanceClient, source: Image,
                             project_id: str) -> Image | None:
        """The oldest active image of the user's project with the source's content."""
        for image in await images_of_project(glance, project_id, checksum=source.checksum,
                                             os_hash_value=source.os_hash_value):
            if (image.owner, image.os_hash_value, image.status) == (
                    project_id, source.os_hash_value, "active"):
                return image
        return None

    async def _remove(self, job: ImageCopyJob, clients: _JobClients, target_image: Image | None,
                      observer: ImageObserver) -> None:
        """Delete what this job made: its copied data (the engine already removed a copy that
        failed itself) and its target image, whose location, once added, Glance deletes with
        it. Best effort: a failure here is logged, the job's own error is kept."""
        if target_image is None:
            return
        spec = _target_spec(job, target_image.id, ObjectRef(job.source_region, "", ""), None)
        try:
            await self.copier.discard(spec, observer, clients=clients)
        except XferError as exc:
            log.warning("could not delete the data copied for image %s: %s", target_image.id,
                        exc)
        try:
            await clients.target_glance.delete_image(target_image.id)
            log.info("deleted the target image %s", target_image.id)
        except XferError as exc:
            log.warning("could not delete the target image %s: %s", target_image.id, exc)

    async def discard(self, job: ImageCopyJob, observer: ImageObserver) -> None:
        """A cancelled job whose worker died: delete its target image and data."""
        if job.target_image_id is None:
            return
        clients = await self._clients(job)
        try:
            image = await clients.target_glance.image(job.target_image_id)
        except ImageNotFound:
            return
        await self._remove(job, clients, image, observer)


def _target_spec(job: ImageCopyJob, image_id: str, source: ObjectRef,
                 expected_md5: str | None) -> CopySpec:
    """The copy into the image's own container, its segments too: what is written, and so
    what a cleanup deletes (one definition, so that the two never disagree)."""
    container = image_container(image_id)
    return CopySpec(job_id=str(job.job_id), source=source,
                    target=ObjectRef(job.target_region, container, image_id),
                    segment_container=container, expected_md5=expected_md5,
                    resume=job.resume, deduplicate=False)


def _outcome(image: Image, target: ObjectRef, copy: CopyOutcome | None, deduplicated: bool
             ) -> ImageCopyOutcome:
    return ImageCopyOutcome(
        image_id=image.id, target=target, checksum=image.checksum or "",
        os_hash_value=image.os_hash_value or "", size=image.size or 0,
        deduplicated=deduplicated, copy=copy)
