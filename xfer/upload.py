"""`xfer upload FILE`: seed an image from a local file into one or more regions, with the
copy engine (the file read once, in parallel, written to every region as a verified SLO)."""

from __future__ import annotations

import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from xfer.clients.swift import SwiftRegions
from xfer.clients.transport import http_session
from xfer.engine.object_copy import Copier
from xfer.engine.plan import Plan, Segment
from xfer.engine.sources import FileSource
from xfer.engine.types import CopySpec, FanOutOutcome, ObjectRef, TargetSpec, VerifiedCopy
from xfer.errors import ConfigError, CopyFailed
from xfer.settings import MiB, Settings


@dataclass(frozen=True)
class UploadRequest:
    path: Path
    regions: tuple[str, ...]
    container: str
    object: str
    checksum: str | None = None


@dataclass
class Progress:
    """What the engine reports, shown as one line on a terminal (nothing otherwise)."""

    stream: TextIO
    show: bool
    total: int = 0
    done: dict[int, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    handing_over: bool = False  # an upload is never handed to another process

    async def find_verified_copy(self, md5: str, size: int, region: str,
                                 project: str) -> VerifiedCopy | None:
        return None  # no checksum index without a database: upload for real

    async def planned(self, plan: Plan) -> None:
        self.total = plan.size
        self._draw("uploading")

    async def segment_started(self, segment: Segment, attempt: int) -> None:
        pass  # the line shows bytes written; a retry is logged by the engine

    async def segment_failed(self, segment: Segment, attempt: int, error: CopyFailed) -> None:
        pass

    async def segment_written(self, segment: Segment, etag: str) -> None:
        self.done[segment.index] = segment.length
        self._draw("uploading")

    async def verifying(self) -> None:
        self._draw("verifying")

    def _draw(self, what: str) -> None:
        if not self.show:
            return
        done = sum(self.done.values())
        rate = done / max(1e-6, time.monotonic() - self.started) / MiB
        percent = 100.0 * done / self.total if self.total else 100.0
        self.stream.write(f"\r  {what:<10} {done / MiB:8.1f} / {self.total / MiB:.1f} MiB "
                          f"{percent:5.1f}%  {rate:6.1f} MiB/s")
        self.stream.flush()

    def end(self) -> None:
        if self.show:
            self.stream.write("\n")


def spec_for(request: UploadRequest) -> CopySpec:
    refs = [ObjectRef(region, request.container, request.object) for region in request.regions]
    # no source object: the file is read through its FileSource, given to the copy
    return CopySpec(job_id=f"upload-{uuid.uuid4()}", source=None, target=refs[0],
                    segment_container=request.container, expected_md5=request.checksum,
                    more_targets=tuple(TargetSpec(ref, request.container) for ref in refs[1:]))


async def upload(settings: Settings, request: UploadRequest, progress: Progress
                 ) -> FanOutOutcome:
    unknown = [region for region in request.regions if region not in settings.regions]
    if unknown:
        raise ConfigError(f"region {unknown[0]!r} is not configured (XFER_REGIONS); known: "
                          f"{', '.join(sorted(settings.regions))}")
    async with http_session(settings) as http:
        copier = Copier(settings, SwiftRegions(http, dict(settings.regions)))
        try:
            return await copier.copy_to_all(spec_for(request), progress,
                                            FileSource(str(request.path)))
        finally:
            progress.end()


def result_json(outcome: FanOutOutcome) -> dict[str, Any]:
    targets = []
    for result in outcome.targets:
        if isinstance(result, CopyFailed):
            targets.append({"state": "failed", "error": {"code": result.code,
                                                         "message": result.message}})
        else:
            targets.append({"state": "succeeded", "region": result.ref.region,
                            "container": result.ref.container, "object": result.ref.object,
                            "etag": result.etag, "layout": result.layout})
    return {"size": outcome.size, "md5": outcome.md5, "sha512": outcome.sha512,
            "verification": outcome.verification.value, "segments": outcome.segments,
            "seconds": round(outcome.seconds, 3),
            # chunks that waited for the hasher in the spill file (written, then read back)
            "bytes_spilled": outcome.bytes_spilled,
            "mib_per_second": round(outcome.size / MiB / max(outcome.seconds, 1e-6), 1),
            "targets": targets}


def print_result(outcome: FanOutOutcome, as_json: bool, stream: TextIO = sys.stdout) -> int:
    """Print the result; the exit status: 0 when every region got a verified copy."""
    result = result_json(outcome)
    if as_json:
        print(json.dumps(result, indent=2), file=stream)
    else:
        print(f"md5 {result['md5']}  size {result['size']}  {result['mib_per_second']} MiB/s",
              file=stream)
        for target in result["targets"]:
            if target["state"] == "succeeded":
                print(f"  {target['region']}: {target['container']}/{target['object']} "
                      f"({target['layout']}, ETag {target['etag']})", file=stream)
            else:
                print(f"  failed: {target['error']['code']}: {target['error']['message']}",
                      file=stream)
    return 0 if all(t["state"] == "succeeded" for t in result["targets"]) else 1
