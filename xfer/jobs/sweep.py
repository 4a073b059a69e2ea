"""What dead copies and older versions left in the operator's Swift accounts, found in Swift:
`xfer sweep`, and, when XFER_SWEEP_INTERVAL is set, a periodic task of `xfer serve`.

A job's segments are named `<object>.xfer-segments/<job id>/<index>` (engine.types.TargetSpec),
so Swift itself says which job wrote each. A group of them is removed when nothing uses it:
its job ended and that target did not succeed (the job's own cleanup duty should have removed
it: it failed, or an older xfer had none), or its job is unknown to this database, no
manifest of that name uses the segments, and the newest is older than `older_than`. Segments
of a running job, or of a published copy, stay.

Image copies write in their users' accounts, which xfer reaches only through a job's trust
while its cleanup runs: what a cleanup could not remove there is a failed duty, which the
sweep reports (`cleanup_failed`) instead of reaching into the account.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from xfer.clients.swift import SwiftClient, SwiftRegions
from xfer.clients.transport import http_session
from xfer.engine.leftovers import Removed, delete_all
from xfer.errors import ConfigError, RemoteError, XferError
from xfer.jobs.db import close_pool, create_pool
from xfer.jobs.duty_store import DutyStore
from xfer.jobs.records import JobRecord
from xfer.jobs.states import TargetState
from xfer.jobs.store import JobStore, copy_spec
from xfer.proto import swift
from xfer.settings import Settings

log = logging.getLogger(__name__)
SEGMENT_NAME = re.compile(r"^(?P<object>.*)\.xfer-segments/(?P<job>[0-9a-f-]{36})/\d{8}$")


@dataclass(frozen=True)
class Leftover:
    """The segments one job wrote for one target object, and what the sweep makes of them."""

    region: str
    container: str
    target_object: str
    job_id: str
    segments: tuple[tuple[str, int], ...]  # (name, bytes)
    newest: str  # the newest segment's last_modified
    removable: bool
    reason: str

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.segments)


@dataclass(frozen=True)
class SweepReport:
    leftovers: tuple[Leftover, ...]
    removed: Removed
    dry_run: bool
    cleanup_failed: tuple[str, ...]  # what cleanups could not remove (in users' accounts)


class Sweeper:
    def __init__(self, store: JobStore, duties: DutyStore, regions: SwiftRegions) -> None:
        self.store = store
        self.duties = duties
        self.regions = regions

    async def sweep(self, *, dry_run: bool, older_than: timedelta) -> SweepReport:
        leftovers: list[Leftover] = []
        removed = Removed(0, 0)
        for name, client in self.regions.items():
            for leftover in await self._leftovers(client, older_than):
                leftovers.append(leftover)
                if leftover.removable and not dry_run:
                    removed += await delete_all(client, leftover.container,
                                                list(leftover.segments))
                    log.info("swept %d segments of job %s from %s/%s: %s",
                             len(leftover.segments), leftover.job_id, name,
                             leftover.container, leftover.reason)
        failed = tuple(duty.outcome or duty.duty.value for duty in await self.duties.failed())
        return SweepReport(tuple(leftovers), removed, dry_run, failed)

    async def _leftovers(self, client: SwiftClient, older_than: timedelta) -> list[Leftover]:
        found = []
        for container in await client.list_containers():
            groups: dict[tuple[str, str], list[tuple[str, int, str]]] = defaultdict(list)
            for listed in await client.list_objects(container):
                match = SEGMENT_NAME.match(listed.name)
                if match:
                    groups[(match["object"], match["job"])].append(
                        (listed.name, listed.bytes, listed.last_modified))
            for (target_object, job_id), segments in sorted(groups.items()):
                removable, reason = await self._verdict(client, container, target_object,
                                                        job_id, segments, older_than)
                found.append(Leftover(
                    client.region.name, container, target_object, job_id,
                    tuple((name, size) for name, size, _ in segments),
                    max(modified for _, _, modified in segments), removable, reason))
        return found

    async def _verdict(self, client: SwiftClient, container: str, target_object: str,
                       job_id: str, segments: list[tuple[str, int, str]],
                       older_than: timedelta) -> tuple[bool, str]:
        try:
            job = await self.store.get_job(uuid.UUID(job_id))
        except ValueError:
            job = None
        if job is not None:
            return _known_job_verdict(job, client.region.name, container, target_object)
        if await _manifest_uses(client, container, target_object, job_id):
            return False, "a published copy's segments (its job is unknown to this database)"
        newest = max(modified for _, _, modified in segments)
        if _age(newest) < older_than:
            return False, f"its job is unknown to this database, but they are newer than " \
                          f"{older_than}"
        return True, "its job is unknown to this database and no manifest uses them"


def _known_job_verdict(job: JobRecord, region: str, container: str,
                       target_object: str) -> tuple[bool, str]:
    if not job.state.terminal:
        return False, f"its job is {job.state.value}"
    for target, record in zip(copy_spec(job).targets, job.targets, strict=True):
        if (target.ref.region, target.segment_container, target.ref.object) == (
                region, container, target_object):
            if record.state is TargetState.SUCCEEDED:
                return False, "the segments of a published copy"
            return True, f"its job {job.state.value} and this target did not succeed"
    return True, f"its job {job.state.value} and names no such target"


async def _manifest_uses(client: SwiftClient, container: str, target_object: str,
                         job_id: str) -> bool:
    try:
        head = await client.head_object(container, target_object)
    except RemoteError as exc:
        if exc.status == 404:
            return False
        raise
    if head.kind is not swift.ObjectKind.SLO:  # a plain object or a DLO uses no such segments
        return False
    manifest = await client.get_manifest(container, target_object)
    return any(f".xfer-segments/{job_id}/" in segment.path for segment in manifest)


def _age(last_modified: str) -> timedelta:
    if not last_modified:
        return timedelta.max
    modified = datetime.fromisoformat(last_modified)
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=UTC)
    return datetime.now(UTC) - modified


async def sweep_periodically(sweeper: Sweeper, settings: Settings) -> None:
    """`xfer serve`'s sweep every `sweep_interval_hours`, until cancelled; a sweep that fails
    is logged, and the next one comes all the same."""
    while True:
        await asyncio.sleep(settings.sweep_interval_hours * 3600)
        try:
            report = await sweeper.sweep(
                dry_run=False, older_than=timedelta(hours=settings.sweep_older_than_hours))
        except XferError as exc:
            log.warning("periodic sweep failed: %s", exc)
            continue
        log.info("periodic sweep: removed %s; %d groups of segments kept; %d cleanups could "
                 "not act in users' accounts", report.removed.describe(),
                 sum(not left.removable for left in report.leftovers),
                 len(report.cleanup_failed))


async def run_sweep(settings: Settings, *, dry_run: bool,
                    older_than_hours: float) -> SweepReport:
    """One sweep with the process's own database pool and Swift session (`xfer sweep`)."""
    if not settings.database_url:
        raise ConfigError("XFER_DATABASE_URL is not set")
    pool = await create_pool(settings.database_url)
    try:
        async with http_session(settings) as http:
            sweeper = Sweeper(JobStore(pool), DutyStore(pool),
                              SwiftRegions(http, dict(settings.regions)))
            return await sweeper.sweep(dry_run=dry_run,
                                       older_than=timedelta(hours=older_than_hours))
    finally:
        await close_pool(pool)


def report_json(report: SweepReport) -> dict[str, Any]:
    return {
        "dry_run": report.dry_run,
        "removed": {"objects": report.removed.objects, "bytes": report.removed.bytes},
        "leftovers": [{"region": left.region, "container": left.container,
                       "object": left.target_object, "job_id": left.job_id,
                       "segments": len(left.segments), "bytes": left.bytes,
                       "newest": left.newest, "removable": left.removable,
                       "reason": left.reason} for left in report.leftovers],
        "cleanup_failed": list(report.cleanup_failed),
    }


def print_report(report: SweepReport, *, as_json: bool, stream: TextIO = sys.stdout) -> None:
    if as_json:
        print(json.dumps(report_json(report), indent=2), file=stream)
        return
    verb = "would remove" if report.dry_run else "removed"
    for left in report.leftovers:
        action = verb if left.removable else "kept"
        print(f"{action}: {left.region}/{left.container}: {len(left.segments)} segments "
              f"({left.bytes} bytes) of job {left.job_id} for {left.target_object!r}: "
              f"{left.reason}", file=stream)
    removable = [left for left in report.leftovers if left.removable]
    total = report.removed if not report.dry_run else Removed(
        sum(len(left.segments) for left in removable), sum(left.bytes for left in removable))
    print(f"{verb} {total.describe()} in all", file=stream)
    for what in report.cleanup_failed:
        print(f"left in a user's account (a cleanup could not act): {what}", file=stream)
