"""Removing what a failed or cancelled image copy made, as its user (through the job's trust,
which lives until this is done): its target image in the target Glance, then the image's own
container `glance_<id>` in the target Swift with whatever is left in it (segments of this
attempt or of one that died, the object, a container Glance or xfer created).

Each removal is looked up in Glance and Swift, not in xfer's records, and says what it found,
for the job's `cleanup` and its user.
"""

from __future__ import annotations

from xfer.clients.glance import GlanceClient
from xfer.clients.keystone import TrustTokens
from xfer.clients.openstack import OpenStackClients
from xfer.engine.leftovers import remove_container
from xfer.errors import CopyFailed
from xfer.images.flow import image_container
from xfer.images.types import ImageCopyJob


class ImageCleanup:
    def __init__(self, openstack: OpenStackClients) -> None:
        self.openstack = openstack

    async def remove_target_image(self, job: ImageCopyJob) -> str:
        """What became of the job's target image: deleted now, or gone already."""
        image_id = _target_of(job)
        glance = await self._glance(job)
        if await glance.delete_image(image_id):
            return f"deleted the target image {image_id} in {job.target_region}"
        return f"the target image {image_id} in {job.target_region} was gone already"

    async def remove_image_data(self, job: ImageCopyJob) -> str:
        """What became of the image's container and what was left in it."""
        container = image_container(_target_of(job))
        swift = self.openstack.swift(self._tokens(job), job.target_region)
        removed = await remove_container(swift, container)
        if removed.objects:
            return (f"deleted {removed.describe()} and the container {container} in "
                    f"{job.target_region}")
        return f"nothing was left in {job.target_region}'s Swift ({container} is gone)"

    def _tokens(self, job: ImageCopyJob) -> TrustTokens:
        return self.openstack.keystone.trust_tokens(job.trust_id)

    async def _glance(self, job: ImageCopyJob) -> GlanceClient:
        tokens = self._tokens(job)
        url = (await tokens.info()).endpoint("image", job.target_region)
        if url is None:
            raise CopyFailed("region_not_available",
                             f"the user's catalog has no image endpoint in {job.target_region} "
                             f"any more")
        return self.openstack.glance(url, tokens.token)


def _target_of(job: ImageCopyJob) -> str:
    assert job.target_image_id is not None, "a cleanup duty is recorded with its target image"
    return job.target_image_id
