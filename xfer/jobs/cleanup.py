"""The cleanup duties of a job that failed or was cancelled (jobs/duties.py runs them): what
its copy made is looked up in Swift and Glance and removed, as the user for an image copy
(images/cleanup.py), with the operator's Swift accounts for an object copy."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from xfer.clients.swift import SwiftRegions
from xfer.engine.leftovers import NOTHING, remove_job_data
from xfer.errors import TrustInvalid
from xfer.images.cleanup import ImageCleanup
from xfer.images.types import ImageCopyJob
from xfer.jobs.records import DutyState, JobRecord
from xfer.jobs.states import TargetState
from xfer.jobs.store import copy_spec, image_job

log = logging.getLogger(__name__)


class JobCleanup:
    def __init__(self, regions: SwiftRegions, images: ImageCleanup | None) -> None:
        self.regions = regions
        self.images = images

    async def remove_target_image(self, job: JobRecord) -> tuple[DutyState, str]:
        images = self._images()
        return await _as_user(job, "the target image", images.remove_target_image)

    async def remove_image_data(self, job: JobRecord) -> tuple[DutyState, str]:
        images = self._images()
        return await _as_user(job, "the target image's container", images.remove_image_data)

    def _images(self) -> ImageCleanup:
        assert self.images is not None, "image duties are run only with Keystone (app.py)"
        return self.images

    async def remove_object_data(self, job: JobRecord) -> tuple[DutyState, str]:
        """The data of every target that did not succeed (a fan-out job's succeeded targets
        stay published and verified)."""
        removed = NOTHING
        for target, record in zip(copy_spec(job).targets, job.targets, strict=True):
            if record.state is not TargetState.SUCCEEDED:
                removed += await remove_job_data(self.regions[target.ref.region], target,
                                                 str(job.id))
        if removed.objects:
            return DutyState.DONE, f"deleted {removed.describe()} this job had written"
        return DutyState.DONE, "nothing this job wrote was left in Swift"


async def _as_user(job: JobRecord, what: str,
                   remove: Callable[[ImageCopyJob], Awaitable[str]]) -> tuple[DutyState, str]:
    """Done, saying what was found; failed, saying what may be left, once the user's trust
    gives no token any more (only the user can remove it then)."""
    image = image_job(job)
    try:
        return DutyState.DONE, await remove(image)
    except TrustInvalid as exc:
        return DutyState.FAILED, (f"{what} of {image.target_image_id} in "
                                  f"{image.target_region} may be left: xfer could not act for "
                                  f"the user any more ({exc.message})")
