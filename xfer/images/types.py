"""The records an image copy takes and gives: typed, so that the jobs layer never passes rows."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from xfer.engine.plan import Segment
from xfer.engine.types import CopyObserver, CopyOutcome, ObjectRef
from xfer.errors import TrustInvalid


class ImageStep(StrEnum):
    """How far an image copy got: each step is done once, and a job taken over after a crash
    continues after the last one recorded."""

    # the target image's id is chosen and recorded (with the duties that would remove it);
    # the image may not exist yet: an attempt that finds none creates it with that id
    PLANNED = "planned"
    CREATED = "created"  # the target image exists, queued
    COPIED = "copied"  # its data is in the target Swift, verified
    REGISTERED = "registered"  # its location was added: Glance reads it back, then activates


@dataclass(frozen=True)
class ThroughGlance:
    """An image's bytes read through its Glance's ranged /file: for a store xfer cannot read
    itself (images/data.py)."""

    region: str
    image_id: str

    def describe(self) -> str:
        return f"image {self.image_id} through the Glance of {self.region}"


# Where an image's bytes are read from: the Swift object Glance's location names, or its Glance.
ImageSource = ObjectRef | ThroughGlance


@dataclass(frozen=True)
class ImageCopyJob:
    """An image copy job: what was asked, and how far the copy got. The one record of it,
    built from the job's row once (jobs/records.py) and read by the API, the worker, the flow
    and the cleanup alike."""

    job_id: uuid.UUID
    source_region: str
    target_region: str
    source_image_id: str
    # None until Keystone created it: a job without one is never claimed
    trust_id: str | None = field(repr=False)
    name: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    force: bool = False
    target_image_id: str | None = None  # chosen, then created, by the flow (PLANNED)
    step: ImageStep | None = None  # None until the target image is planned
    trust_expires_at: datetime | None = None  # what the trust was asked to expire at
    resume: tuple[Segment, ...] = ()  # segments an earlier attempt wrote (set when claimed)

    @property
    def trust(self) -> str:
        """The trust to act as the user with; TrustInvalid for a job that has none (only a
        job with its trust is claimed, and only a claimed one records cleanup duties)."""
        if self.trust_id is None:
            raise TrustInvalid(f"image copy job {self.job_id} has no trust to act for its user")
        return self.trust_id


@dataclass(frozen=True)
class ImageCopyOutcome:
    image_id: str  # the target image, active
    target: ObjectRef  # where its data is
    checksum: str
    os_hash_value: str
    size: int
    deduplicated: bool  # an active image with the same data was already there
    copy: CopyOutcome | None  # None when no bytes moved in this attempt


class ImageObserver(CopyObserver, Protocol):
    async def source_found(self, source: ImageSource, checksum: str | None) -> None: ...
    async def target_image_planned(self, image_id: str, container: str) -> None: ...
    async def image_step(self, step: ImageStep) -> None: ...
