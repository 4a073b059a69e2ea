"""The records an image copy takes and gives: typed, so that the jobs layer never passes rows."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from xfer.engine.plan import Segment
from xfer.engine.types import CopyObserver, CopyOutcome, ObjectRef


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
class ImageCopyJob:
    job_id: uuid.UUID
    source_region: str
    target_region: str
    source_image_id: str
    trust_id: str = field(repr=False)
    name: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    force: bool = False
    target_image_id: str | None = None
    step: ImageStep | None = None
    resume: tuple[Segment, ...] = ()  # segments an earlier attempt wrote


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
    async def source_found(self, source: ObjectRef, checksum: str) -> None: ...
    async def target_image_planned(self, image_id: str, container: str) -> None: ...
    async def image_step(self, step: ImageStep) -> None: ...
