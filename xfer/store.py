"""The only caller of the named queries in sql/queries.sql."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from xfer.copy import CopyOutcome, CopySpec, ObjectRef
from xfer.db import load_queries
from xfer.plan import Plan, Segment

JOBS_CHANNEL = "xfer_jobs"
Q = load_queries()


class JobStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create_job(self, request: dict[str, Any]) -> asyncpg.Record:
        source, target = request["source"], request["target"]
        job_id = uuid.uuid4()
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                Q["insert_job"], job_id, source["region"], source["container"], source["object"],
                target["region"], target["container"], target["object"],
                request.get("segment_container"), request.get("checksum"),
                request.get("segment_size"))
            await connection.execute(Q["record_transition"], job_id, None, "queued")
            # Delivered at commit: idle workers in every process wake up at once.
            await connection.execute(Q["notify_new_job"], str(job_id))
        return row

    async def get_job(self, job_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.pool.fetchrow(Q["get_job"], job_id)

    async def list_jobs(self, state: str | None, limit: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(Q["list_jobs"], state, limit)

    async def claim_job(self, worker_id: str, lease_seconds: float) -> asyncpg.Record | None:
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(Q["claim_job"], worker_id, lease_seconds)
            if row is not None:
                await connection.execute(Q["record_transition"], row["id"],
                                         row["previous_state"], "running")
        return row

    async def renew_lease(self, job_id: uuid.UUID, worker_id: str, lease_seconds: float) -> bool:
        return await self.pool.fetchval(Q["renew_lease"], job_id, worker_id,
                                        lease_seconds) is not None

    async def set_plan(self, job_id: uuid.UUID, plan: Plan) -> None:
        await self.pool.execute(Q["set_plan"], job_id, plan.size, len(plan.segments),
                                "slo" if plan.as_slo else "plain")

    async def record_segment(self, job_id: uuid.UUID, segment: Segment, etag: str) -> None:
        await self.pool.execute(Q["record_segment"], job_id, segment.index, segment.offset,
                                segment.length, etag)

    async def set_progress(self, job_id: uuid.UUID, bytes_done: int) -> None:
        await self.pool.execute(Q["set_progress"], job_id, bytes_done)

    async def finish_succeeded(self, job_id: uuid.UUID, worker_id: str,
                               outcome: CopyOutcome) -> bool:
        return await self._finish(job_id, "succeeded", lambda c: c.fetchval(
            Q["finish_succeeded"], job_id, worker_id, outcome.md5, outcome.sha512, outcome.etag,
            outcome.md5_checked_against, outcome.retries))

    async def finish_failed(self, job_id: uuid.UUID, worker_id: str, code: str,
                            message: str) -> bool:
        return await self._finish(job_id, "failed", lambda c: c.fetchval(
            Q["finish_failed"], job_id, worker_id, code, message))

    async def requeue(self, job_id: uuid.UUID, worker_id: str) -> bool:
        return await self._finish(job_id, "queued", lambda c: c.fetchval(
            Q["requeue_job"], job_id, worker_id))

    async def _finish(self, job_id: uuid.UUID, state: str,
                      update: Callable[[asyncpg.Connection], Any]) -> bool:
        """False when this worker no longer holds the job (its lease expired and moved on)."""
        async with self.pool.acquire() as connection, connection.transaction():
            if await update(connection) is None:
                return False
            await connection.execute(Q["record_transition"], job_id, "running", state)
        return True


def copy_spec(row: asyncpg.Record) -> CopySpec:
    return CopySpec(
        job_id=str(row["id"]),
        source=ObjectRef(row["source_region"], row["source_container"], row["source_object"]),
        target=ObjectRef(row["target_region"], row["target_container"], row["target_object"]),
        segment_container=row["segment_container"],
        expected_md5=row["expected_md5"],
        segment_size=row["segment_size"],
    )
