"""What remains to be done for a job (jobs/duties.py) against the real database: a duty waits
for its job's end and for the job's earlier duties, is held by one process at a time, and is
tried again with backoff until its handler says it is done."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest

from tests.conftest import unique
from tests.test_workers import job_request
from xfer.errors import TransportError
from xfer.jobs.duties import DutyRunner
from xfer.jobs.duty_store import DutyStore
from xfer.jobs.records import Duty, DutyRecord, DutyState, JobRecord
from xfer.jobs.store import JobStore
from xfer.settings import Settings

pytestmark = pytest.mark.integration


async def new_job(store: JobStore, duties: DutyStore) -> uuid.UUID:
    """An object job whose own cleanup duty (registered with it) is already done: these
    tests are about the duties they add."""
    job, _ = await store.create_job(job_request(unique("duties"), "o"))
    await duties.finish_duty(job.id, Duty.REMOVE_OBJECT_DATA, DutyState.DONE, "not this test's")
    return job.id


async def duty_of(duties: DutyStore, job_id: uuid.UUID, kind: Duty) -> DutyRecord:
    (duty,) = [duty for duty in await duties.duties(job_id) if duty.duty is kind]
    return duty


async def ended_job(store: JobStore, duties: DutyStore, worker: str = "w") -> uuid.UUID:
    job_id = await new_job(store, duties)
    claimed = await store.claim_job(worker, 30)
    assert claimed is not None and claimed.id == job_id
    assert await store.finish_failed(job_id, worker, "test", "ended for the test")
    return job_id


async def test_a_duty_after_the_end_waits_for_the_end_and_for_the_jobs_earlier_duties(
        stores: tuple[JobStore, DutyStore]) -> None:
    store, duties = stores
    job_id = await new_job(store, duties)
    await duties.add(job_id, Duty.END_TRUST, after_end=True, rank=100)
    await duties.add(job_id, Duty.ADOPT_TRUST, after_end=True, rank=1)
    assert await duties.claim_duties(10, 30) == []  # the job has not ended
    assert (await store.claim_job("w", 30)) is not None
    assert await store.finish_failed(job_id, "w", "test", "ended")
    (first,) = await duties.claim_duties(10, 30)
    assert (first.duty, first.attempts) == (Duty.ADOPT_TRUST, 1)  # the lower rank first
    assert await duties.claim_duties(10, 30) == []  # held, and the other waits for it
    await duties.finish_duty(job_id, Duty.ADOPT_TRUST, DutyState.DONE, "done")
    (second,) = await duties.claim_duties(10, 30)
    assert second.duty is Duty.END_TRUST


async def test_a_duty_held_by_a_process_that_died_is_taken_again_after_its_lease(
        stores: tuple[JobStore, DutyStore]) -> None:
    store, duties = stores
    job_id = await ended_job(store, duties)
    await duties.add(job_id, Duty.END_TRUST, after_end=True)
    assert len(await duties.claim_duties(10, 0.5)) == 1
    assert await duties.claim_duties(10, 0.5) == []
    await asyncio.sleep(0.7)
    (again,) = await duties.claim_duties(10, 0.5)
    assert again.attempts == 2


async def test_the_runner_backs_off_on_failures_and_records_the_outcome(
        settings: Settings, stores: tuple[JobStore, DutyStore]) -> None:
    store, duties = stores
    job_id = await ended_job(store, duties)
    await duties.add(job_id, Duty.END_TRUST, after_end=True)
    calls: list[float] = []

    async def flaky(job: JobRecord) -> tuple[DutyState, str]:
        calls.append(asyncio.get_running_loop().time())
        if len(calls) < 3:
            raise TransportError("keystone", "DELETE", "/v3/OS-TRUST/trusts/t", "refused")
        return DutyState.DONE, f"done for {job.id}"

    tuned = settings.with_overrides(duty_poll_seconds=0.1, duty_backoff_base=0.3,
                                    duty_backoff_max=0.5, duty_lease_seconds=30)
    runner = DutyRunner(tuned, store, duties, {Duty.END_TRUST: flaky})
    async with asyncio.timeout(20), asyncio.TaskGroup() as group:
        running = group.create_task(runner.run())
        while (await duty_of(duties, job_id, Duty.END_TRUST)).state is DutyState.PENDING:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        running.cancel()
    duty = await duty_of(duties, job_id, Duty.END_TRUST)
    assert (duty.state, duty.outcome, duty.attempts) == (DutyState.DONE, f"done for {job_id}", 3)
    assert duty.last_error is None
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.5  # 0.3 s, then doubled to the 0.5 s ceiling
    assert runner.backoff(1) == 0.3 and runner.backoff(2) == 0.5 and runner.backoff(9) == 0.5


async def test_a_duty_without_a_handler_waits_saying_why(
        settings: Settings, stores: tuple[JobStore, DutyStore]) -> None:
    store, duties = stores
    job_id = await ended_job(store, duties)
    await duties.add(job_id, Duty.END_TRUST, after_end=True)
    runner = DutyRunner(settings.with_overrides(duty_poll_seconds=0.1), store, duties, {})
    async with asyncio.timeout(20), asyncio.TaskGroup() as group:
        running = group.create_task(runner.run())
        while (await duty_of(duties, job_id, Duty.END_TRUST)).last_error is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        running.cancel()
    duty = await duty_of(duties, job_id, Duty.END_TRUST)
    assert duty.state is DutyState.PENDING and "without Keystone" in (duty.last_error or "")
