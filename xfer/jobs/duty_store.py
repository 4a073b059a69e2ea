"""The queries of a job's trust and of its duties (sql/queries.sql), beside jobs/store.py:
what remains to be done for a job once it has ended, claimed by whichever process is alive."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from xfer.jobs.records import Duty, DutyRecord, DutyState, JobRecord
from xfer.jobs.states import TARGET_STATE_OF, JobState
from xfer.jobs.store import JOBS_CHANNEL, Q, job_of, translated

# The trust is asked for in the job's second, or an earlier one (move_trust_expiry) when
# Keystone holds another trust with it; so many tries at most.
MAX_EXPIRY_MOVES = 30
END_TRUST_RANK = 100  # after every other duty of the job: they may need to act as the user


class DutyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @translated
    async def attach_trust(self, job_id: uuid.UUID, trust_id: str,
                           how: str = "attached") -> JobRecord | None:
        """The job, now with its trust and claimable (workers are woken), its trust due to end
        once it has ended; None when the job ended meanwhile (cancelled, or failed by
        adopt_trust): the trust is then the caller's to delete. `how` ends adopt_trust's
        sentence: "trust <id> <how>"."""
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(Q["attach_trust"], job_id, trust_id)
            if row is None:
                return None
            await connection.execute(Q["finish_duty"], job_id, Duty.ADOPT_TRUST,
                                     DutyState.DONE, f"trust {trust_id} {how}")
            await connection.execute(Q["insert_duty"], job_id, Duty.END_TRUST, True,
                                     END_TRUST_RANK, 0)
            await connection.execute(Q["notify"], JOBS_CHANNEL, str(job_id))
            return await job_of(connection, row)

    @translated
    async def delete_untrusted_job(self, job_id: uuid.UUID) -> bool:
        """Forget a job whose trust Keystone refused (it never ran): the request made none."""
        return await self.pool.fetchval(Q["delete_untrusted_job"], job_id) is not None

    @translated
    async def fail_untrusted_job(self, job_id: uuid.UUID, code: str, message: str) -> bool:
        async with self.pool.acquire() as connection, connection.transaction():
            if await connection.fetchval(Q["fail_untrusted_job"], job_id, code, message) is None:
                return False
            await connection.execute(Q["record_transition"], job_id, JobState.QUEUED,
                                     JobState.FAILED)
            await connection.execute(Q["set_open_targets_state"], job_id,
                                     TARGET_STATE_OF[JobState.FAILED])
            return True

    @translated
    async def move_trust_expiry(self, job_id: uuid.UUID) -> datetime | None:
        """Ask for the job's trust to expire a second earlier than before, or earlier still
        when the user's other jobs hold those seconds; None when the job has its trust."""
        for moved in range(1, MAX_EXPIRY_MOVES + 1):
            try:
                expiry: datetime | None = await self.pool.fetchval(
                    Q["move_trust_expiry"], job_id, moved)
                return expiry
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != "jobs_trust_expiry":
                    raise
        return None

    @translated
    async def trust_in_use(self, trust_id: str) -> bool:
        return bool(await self.pool.fetchval(Q["trust_in_use"], trust_id))

    @translated
    async def add(self, job_id: uuid.UUID, duty: Duty, *, after_end: bool, rank: int = 0,
                  due_in: float = 0.0) -> None:
        """Record a duty of the job (nothing when the job has it already)."""
        await self.pool.execute(Q["insert_duty"], job_id, duty, after_end, rank, due_in)

    @translated
    async def claim_duties(self, limit: int, lease_seconds: float) -> list[DutyRecord]:
        rows = await self.pool.fetch(Q["claim_duties"], limit, lease_seconds)
        return [DutyRecord.from_row(row) for row in rows]

    @translated
    async def finish_duty(self, job_id: uuid.UUID, duty: Duty, state: DutyState,
                          outcome: str) -> None:
        await self.pool.execute(Q["finish_duty"], job_id, duty, state, outcome)

    @translated
    async def postpone_duty(self, job_id: uuid.UUID, duty: Duty, seconds: float,
                            error: str) -> None:
        await self.pool.execute(Q["postpone_duty"], job_id, duty, seconds, error)

    @translated
    async def duties(self, job_id: uuid.UUID) -> list[DutyRecord]:
        return [DutyRecord.from_row(row) for row in await self.pool.fetch(Q["list_duties"],
                                                                          job_id)]

    @translated
    async def failed(self, limit: int = 1000) -> list[DutyRecord]:
        """Duties that could not be done, newest first: what is left, in their outcomes."""
        return [DutyRecord.from_row(row) for row in await self.pool.fetch(
            Q["list_failed_duties"], limit)]

    @translated
    async def count_pending_duties(self) -> dict[str, int]:
        return {row["duty"]: row["pending"] for row in await self.pool.fetch(
            Q["count_pending_duties"])}
