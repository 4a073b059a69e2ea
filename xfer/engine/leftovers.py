"""Removing what a copy wrote to a target, found in Swift rather than in xfer's records: what a
job's cleanup duty does once the job has failed or was cancelled, whichever process wrote it
and however far it got. A job's segments are named after it (`TargetSpec.segment_name`), and
the target object it published carries its stamp (`X-Object-Meta-Xfer-Job`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from xfer.clients.swift import SwiftClient
from xfer.engine.context import JOB_METADATA
from xfer.engine.types import TargetSpec
from xfer.errors import RemoteError

# Deletions in flight at once while removing many segments.
PARALLEL_DELETES = 8


@dataclass(frozen=True)
class Removed:
    objects: int
    bytes: int

    def __add__(self, other: Removed) -> Removed:
        return Removed(self.objects + other.objects, self.bytes + other.bytes)

    def describe(self) -> str:
        return (f"{self.objects} object{'s' if self.objects != 1 else ''} "
                f"({self.bytes} bytes)")


NOTHING = Removed(0, 0)


async def remove_job_data(client: SwiftClient, target: TargetSpec, job_id: str) -> Removed:
    """Delete the job's segments for `target` and the target object if this job published it
    (its stamp says so): never an object another job or a user wrote."""
    prefix = target.segment_name(job_id, 0).rpartition("/")[0] + "/"
    segments = await client.list_objects(target.segment_container, prefix)
    removed = await delete_all(client, target.segment_container,
                                [(o.name, o.bytes) for o in segments])
    ref = target.ref
    try:
        head = await client.head_object(ref.container, ref.object)
    except RemoteError as exc:
        if exc.status == 404:
            return removed
        raise
    if head.metadata.get(JOB_METADATA.lower()) == job_id:
        if await client.delete_object(ref.container, ref.object):
            removed += Removed(1, head.size)
    return removed


async def remove_container(client: SwiftClient, container: str) -> Removed:
    """Delete every object of a container that is the job's own, then the container."""
    listed = await client.list_objects(container)
    removed = await delete_all(client, container, [(o.name, o.bytes) for o in listed])
    await client.delete_container(container)
    return removed


async def delete_all(client: SwiftClient, container: str,
                     objects: list[tuple[str, int]]) -> Removed:
    """Delete these (name, size) objects, a few at a time; what was there to delete."""
    slots = asyncio.Semaphore(PARALLEL_DELETES)
    sizes: list[int] = []

    async def delete(name: str, size: int) -> None:
        async with slots:
            if await client.delete_object(container, name):
                sizes.append(size)

    async with asyncio.TaskGroup() as group:
        for name, size in objects:
            group.create_task(delete(name, size))
    return Removed(len(sizes), sum(sizes))
