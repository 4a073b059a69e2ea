"""The only caller of the named queries in sql/queries.sql."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, ParamSpec, TypeAlias, TypeVar

import asyncpg

from xfer.engine.plan import Plan, Segment
from xfer.engine.types import (
    CopySpec,
    FanOutOutcome,
    ObjectRef,
    TargetOutcome,
    TargetSpec,
    Verification,
    VerifiedCopy,
)
from xfer.errors import CopyFailed, DatabaseUnavailable, ErrorCode, XferError
from xfer.images.types import ImageCopyJob, ImageCopyOutcome, ImageSource
from xfer.jobs.db import load_queries
from xfer.jobs.records import (
    Duty,
    DutyRecord,
    ImageCopyRequest,
    IndexedObject,
    JobDetail,
    JobRecord,
    JobRequest,
    SegmentAttempts,
    Transition,
    source_names,
)
from xfer.jobs.states import (
    TARGET_STATE_OF,
    JobState,
    TargetState,
    cancel_target,
    check_transition,
)

JOBS_CHANNEL = "xfer_jobs"
CANCEL_CHANNEL = "xfer_cancel"
Q = load_queries()
# A segment's last error, as a job's error sentence: enough to say what failed (with the
# transaction id), bounded since one is written per failed attempt.
SEGMENT_ERROR_CHARS = 500
# What removes what a copy made, should it fail or be cancelled, in the order it runs (the
# image before its data: Glance may still read it; every one before end_trust, at 100).
CLEANUP_RANKS = {Duty.REMOVE_TARGET_IMAGE: 10, Duty.REMOVE_IMAGE_DATA: 20,
                 Duty.REMOVE_OBJECT_DATA: 10}
IMAGE_CLEANUP = (Duty.REMOVE_TARGET_IMAGE, Duty.REMOVE_IMAGE_DATA)
# Seconds back from the wanted trust expiry tried when the user's other jobs hold them.
MAX_TRUST_EXPIRY_TRIES = 600
P = ParamSpec("P")
R = TypeVar("R")


class IdempotencyConflict(XferError):
    """The idempotency key was used before for a different request."""


def request_digest(request: JobRequest | ImageCopyRequest) -> str:
    canonical = json.dumps(request.canonical(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# What a lost or refused database connection raises through asyncpg; anything else (a
# constraint, a bad value) is a bug or a validation gap and is not disguised as an outage.
# Connecting to a database that was dropped or with refused credentials counts as unreachable.
# InternalClientError ("cannot switch to state ...; another operation is in progress") is what
# asyncpg raises when a connection the server has just terminated (a restart's fast shutdown)
# is used again before its socket is seen closed; the next connection works.
CONNECTION_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                     asyncpg.InternalClientError,
                     asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError,
                     asyncpg.CrashShutdownError, asyncpg.InvalidCatalogNameError,
                     asyncpg.InvalidAuthorizationSpecificationError, OSError, TimeoutError)


def translated(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Raise DatabaseUnavailable, not asyncpg's or the socket's errors, when PostgreSQL is
    unreachable: callers above this module know one exception for an outage."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}: {exc}"
                                      ) from exc

    return call


Reader: TypeAlias = "asyncpg.Connection | asyncpg.Pool"


async def _with_targets(reader: Reader, rows: Sequence[Mapping[str, Any]]) -> list[JobRecord]:
    """Job rows as records, with their targets read in one query."""
    if not rows:
        return []
    targets: dict[uuid.UUID, list[Mapping[str, Any]]] = defaultdict(list)
    for target in await reader.fetch(Q["list_job_targets"], [row["id"] for row in rows]):
        targets[target["job_id"]].append(target)
    return [JobRecord.from_row(row, targets[row["id"]]) for row in rows]


async def _job(reader: Reader, row: Mapping[str, Any] | None) -> JobRecord | None:
    return None if row is None else (await _with_targets(reader, [row]))[0]


async def job_of(reader: Reader, row: Mapping[str, Any]) -> JobRecord:
    """A job row as its record, with its targets."""
    return (await _with_targets(reader, [row]))[0]


async def _replay(connection: asyncpg.Connection, scope: str, idempotency_key: str | None,
                  digest: str) -> JobRecord | None:
    """The job that holds the idempotency key in this scope, when the request is the same;
    IdempotencyConflict otherwise (naming a job of the same scope only); None when that job
    is gone since (its trust was refused: the request made no job)."""
    earlier = await connection.fetchrow(Q["job_by_idempotency_key"], scope, idempotency_key)
    if earlier is None:
        return None
    if earlier["request_digest"] != digest:
        raise IdempotencyConflict(f"this Idempotency-Key was used for another request (job "
                                  f"{earlier['id']}); use a new key for a new request")
    return (await _with_targets(connection, [earlier]))[0]


def _segment(row: Mapping[str, Any]) -> Segment:
    return Segment(row["index"], row["offset"], row["length"], row["etag"])


class JobStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @translated
    async def create_job(self, request: JobRequest, idempotency_key: str | None = None,
                         scope: str = "") -> tuple[JobRecord, bool]:
        """(the job, whether it is new). With an idempotency key already used in `scope` (the
        caller's project; "" without Keystone) for the same request, the earlier job; for
        another request, IdempotencyConflict."""
        source, target = request.source, request.target
        job_id = uuid.uuid4()
        digest = request_digest(request)
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                Q["insert_job"], job_id, source.region, source.container, source.object,
                target.region, target.container, target.object,
                request.segment_container, request.checksum,
                request.segment_size, idempotency_key, digest, request.max_rate_mb, scope)
            if row is None:  # the key is taken (the unique index waited for its transaction)
                earlier = await _replay(connection, scope, idempotency_key, digest)
                assert earlier is not None, "an object copy job is never deleted"
                return earlier, False
            await connection.executemany(Q["insert_job_target"], [
                (job_id, position, ref.region, ref.container, ref.object)
                for position, ref in enumerate(request.targets)])
            await connection.execute(Q["record_transition"], job_id, None, JobState.QUEUED)
            await connection.execute(Q["insert_duty"], job_id, Duty.REMOVE_OBJECT_DATA, True,
                                     CLEANUP_RANKS[Duty.REMOVE_OBJECT_DATA], 0)
            # Delivered at commit: idle workers in every process wake up at once.
            await connection.execute(Q["notify"], JOBS_CHANNEL, str(job_id))
            return (await _with_targets(connection, [row]))[0], True

    @translated
    async def create_image_job(self, request: ImageCopyRequest, idempotency_key: str | None,
                               trust_seconds: float, adopt_after: float
                               ) -> tuple[JobRecord, bool]:
        """(the job, whether it is new), with idempotency as for create_job in the caller's
        project. A new job has no trust yet and is not claimed until it has one
        (DutyStore.attach_trust); it asks for a trust expiring `trust_seconds` from now, in a
        second none of the user's other jobs asks for. Should its trust not be attached
        within `adopt_after` seconds, the duty adopt_trust looks for it."""
        for taken in range(MAX_TRUST_EXPIRY_TRIES):
            try:
                made = await self._insert_image_job(request, idempotency_key, trust_seconds,
                                                    taken, adopt_after)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != "jobs_trust_expiry":
                    raise
                continue
            if made is not None:
                return made
        raise DatabaseUnavailable(f"no free trust expiry second for user {request.user_id} in "
                                  f"{MAX_TRUST_EXPIRY_TRIES} tries")

    async def _insert_image_job(self, request: ImageCopyRequest, idempotency_key: str | None,
                                trust_seconds: float, earlier: int, adopt_after: float
                                ) -> tuple[JobRecord, bool] | None:
        job_id = uuid.uuid4()
        digest = request_digest(request)
        scope = request.project_id
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                Q["insert_image_job"], job_id, request.source_region, request.target_region,
                request.project_id, request.user_id, request.source_image_id,
                request.name, json.dumps(dict(request.properties)), request.force,
                idempotency_key, digest, trust_seconds, earlier)
            if row is None:
                replayed = await _replay(connection, scope, idempotency_key, digest)
                return None if replayed is None else (replayed, False)
            # its one target: named once the target image exists (set_target_image)
            await connection.execute(Q["insert_job_target"], job_id, 0, request.target_region,
                                     "", "")
            await connection.execute(Q["record_transition"], job_id, None, JobState.QUEUED)
            await connection.execute(Q["insert_duty"], job_id, Duty.ADOPT_TRUST, False, 0,
                                     adopt_after)
            return (await _with_targets(connection, [row]))[0], True

    @translated
    async def set_image_source(self, job_id: uuid.UUID, source: ImageSource,
                               expected_md5: str | None) -> None:
        container, name = source_names(source)
        await self.pool.execute(Q["set_image_source"], job_id, container, name, expected_md5)

    @translated
    async def set_target_image(self, job_id: uuid.UUID, image_id: str, container: str) -> None:
        """The target image exists: recorded with the duties that remove it and its data
        should the job fail or be cancelled (dropped when it succeeds)."""
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(Q["set_target_image"], job_id, image_id, container)
            await connection.execute(Q["name_first_target"], job_id)
            for duty in IMAGE_CLEANUP:
                await connection.execute(Q["insert_duty"], job_id, duty, True,
                                         CLEANUP_RANKS[duty], 0)

    @translated
    async def set_image_step(self, job_id: uuid.UUID, step: str) -> None:
        await self.pool.execute(Q["set_image_step"], job_id, step)

    @translated
    async def finish_image_succeeded(self, job_id: uuid.UUID, worker_id: str,
                                     outcome: ImageCopyOutcome, project: str) -> bool:
        """Record an image copy that ended with an active, verified target image, and index
        its data (unless it was deduplicated: the existing image was indexed when copied)."""
        copy = outcome.copy

        async def update(connection: asyncpg.Connection) -> Any:
            done = await connection.fetchval(
                Q["finish_image_succeeded"], job_id, worker_id, outcome.checksum,
                outcome.os_hash_value, copy.etag if copy else None,
                copy.md5_checked_against if copy else "source image checksum",
                copy.retries if copy else 0, copy.bytes_uploaded if copy else 0,
                copy.segments_reused if copy else 0,
                copy.verification if copy else Verification.END_TO_END,
                outcome.image_id, outcome.deduplicated, outcome.size)
            if done is not None:
                await connection.execute(
                    Q["finish_target"], job_id, 0, TargetState.SUCCEEDED, None, None,
                    outcome.checksum, copy.etag if copy else None,
                    copy.bytes_uploaded if copy else 0, copy.segments_reused if copy else 0,
                    copy.verification if copy else Verification.END_TO_END)
            if done is not None:
                await connection.execute(Q["drop_duties"], job_id, list(IMAGE_CLEANUP),
                                         "the copy succeeded: its image and data stay")
            if done is not None and not outcome.deduplicated:
                await connection.execute(
                    Q["record_image_object"], outcome.checksum, outcome.os_hash_value,
                    outcome.size, outcome.target.region, project, outcome.target.container,
                    outcome.target.object, outcome.image_id, job_id)
            return done

        return await self._finish(job_id, JobState.SUCCEEDED, update)

    @translated
    async def get_job(self, job_id: uuid.UUID) -> JobRecord | None:
        return await _job(self.pool, await self.pool.fetchrow(Q["get_job"], job_id))

    @translated
    async def claim_job(self, worker_id: str, lease_seconds: float,
                        excluded: Collection[uuid.UUID] = ()) -> JobRecord | None:
        """The next job to run, leased to `worker_id`; never one of `excluded`."""
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(Q["claim_job"], worker_id, lease_seconds,
                                            list(excluded))
            if row is not None:
                await connection.execute(Q["record_transition"], row["id"],
                                         row["previous_state"], JobState.RUNNING)
                await connection.execute(Q["set_open_targets_state"], row["id"],
                                         TargetState.RUNNING)
            return await _job(connection, row)

    @translated
    async def claim_abandoned_cancel(self, worker_id: str, lease_seconds: float,
                                     excluded: Collection[uuid.UUID] = ()) -> JobRecord | None:
        return await _job(self.pool, await self.pool.fetchrow(
            Q["claim_abandoned_cancel"], worker_id, lease_seconds, list(excluded)))

    @translated
    async def renew_lease(self, job_id: uuid.UUID, worker_id: str,
                          lease_seconds: float) -> JobState | None:
        """The job's state after renewing; None when this worker no longer holds the job."""
        state = await self.pool.fetchval(Q["renew_lease"], job_id, worker_id, lease_seconds)
        return None if state is None else JobState(state)

    @translated
    async def set_verifying(self, job_id: uuid.UUID, worker_id: str) -> bool:
        return await self._finish(job_id, JobState.VERIFYING, lambda c: c.fetchval(
            Q["set_verifying"], job_id, worker_id))

    @translated
    async def cancel(self, job_id: uuid.UUID) -> tuple[JobRecord | None, bool]:
        """(the job, whether the cancel took effect). A queued job ends at once; a running one
        becomes cancelling and its worker is told through NOTIFY (its lease renewal is the
        fallback)."""
        async with self.pool.acquire() as connection, connection.transaction():
            state = await connection.fetchval(Q["lock_job_state"], job_id)
            if state is None:
                return None, False
            current = JobState(state)
            wanted = cancel_target(current)
            if wanted is None:
                return await _job(connection, await connection.fetchrow(Q["get_job"], job_id)
                                  ), False
            check_transition(current, wanted)
            query = "cancel_queued" if wanted is JobState.CANCELLED else "request_cancel"
            row = await connection.fetchrow(Q[query], job_id)
            await connection.execute(Q["record_transition"], job_id, current, wanted)
            await connection.execute(Q["set_open_targets_state"], job_id,
                                     TARGET_STATE_OF[wanted])
            if wanted is JobState.CANCELLING:
                await connection.execute(Q["notify"], CANCEL_CHANNEL, str(job_id))
            return await _job(connection, row), True

    @translated
    async def finish_cancelled(self, job_id: uuid.UUID, worker_id: str) -> bool:
        return await self._finish(job_id, JobState.CANCELLED, lambda c: c.fetchval(
            Q["finish_cancelled"], job_id, worker_id))

    @translated
    async def set_plan(self, job_id: uuid.UUID, plan: Plan) -> None:
        await self.pool.execute(Q["set_plan"], job_id, plan.size, len(plan.segments),
                                plan.layout)

    @translated
    async def record_segment(self, job_id: uuid.UUID, segment: Segment, etag: str) -> None:
        await self.pool.execute(Q["record_segment"], job_id, segment.index, segment.offset,
                                segment.length, etag)

    @translated
    async def segment_started(self, job_id: uuid.UUID, index: int) -> None:
        await self.pool.execute(Q["segment_started"], job_id, index)

    @translated
    async def segment_failed(self, job_id: uuid.UUID, index: int, error: CopyFailed) -> None:
        await self.pool.execute(Q["segment_failed"], job_id, index, error.code.value,
                                str(error)[:SEGMENT_ERROR_CHARS])

    @translated
    async def segment_attempts_changed(self, job_id: uuid.UUID) -> tuple[int, datetime | None]:
        """Changes whenever a segment's attempts do (one cheap read, for event streams)."""
        row = await self.pool.fetchrow(Q["segment_attempts_changed"], job_id)
        return (0, None) if row is None else (row["segments"], row["changed"])

    @translated
    async def clear_segments_in_flight(self, job_id: uuid.UUID) -> None:
        await self.pool.execute(Q["clear_segments_in_flight"], job_id)

    @translated
    async def recorded_segments(self, job_id: uuid.UUID) -> tuple[Segment, ...]:
        return tuple(_segment(row) for row in await self.pool.fetch(Q["list_segments"], job_id))

    @translated
    async def set_progress(self, job_id: uuid.UUID, bytes_done: int) -> None:
        await self.pool.execute(Q["set_progress"], job_id, bytes_done)

    @translated
    async def find_verified_copy(self, md5: str, size: int, region: str,
                                 project: str) -> VerifiedCopy | None:
        row = await self.pool.fetchrow(Q["find_verified_copy"], md5, size, region, project)
        return None if row is None else VerifiedCopy(row["container"], row["object"],
                                                     row["sha512"])

    @translated
    async def finish_succeeded(self, job_id: uuid.UUID, worker_id: str, spec: CopySpec,
                               outcome: FanOutOutcome) -> bool:
        """Record success (every target succeeded) and index the verified copies by their
        checksums, in one transaction. The job row's etag and deduplication pointer are its
        first target's."""
        first = outcome.targets[0]
        assert isinstance(first, TargetOutcome), "a job with a failed target did not succeed"
        existing = first.existing
        uploaded = sum(t.bytes_uploaded for t in outcome.targets if isinstance(t, TargetOutcome))
        reused = sum(t.segments_reused for t in outcome.targets if isinstance(t, TargetOutcome))

        async def update(connection: asyncpg.Connection) -> Any:
            done = await connection.fetchval(
                Q["finish_succeeded"], job_id, worker_id, outcome.size, outcome.md5,
                outcome.sha512, first.etag, outcome.md5_checked_against, outcome.retries,
                uploaded, reused, outcome.verification, existing is not None,
                None if existing is None else existing.container,
                None if existing is None else existing.object)
            if done is not None:
                await _record_targets(connection, job_id, spec, outcome)
                await connection.execute(Q["drop_duties"], job_id, [Duty.REMOVE_OBJECT_DATA],
                                         "the copy succeeded: every target stays")
            return done

        return await self._finish(job_id, JobState.SUCCEEDED, update)

    @translated
    async def find_objects(self, md5: str | None, sha512: str | None,
                           region: str | None) -> list[IndexedObject]:
        rows = await self.pool.fetch(Q["find_objects"], md5, sha512, region)
        return [IndexedObject(**dict(row)) for row in rows]

    @translated
    async def sha512_paired_with(self, md5: str) -> list[str]:
        """The SHA-512 values of copies xfer verified with this MD5 (any project's: a fact
        about content, used only to ask Glance with a caller's own token)."""
        rows = await self.pool.fetch(Q["sha512_paired_with_md5"], md5)
        return [row["sha512"] for row in rows]

    @translated
    async def finish_failed(self, job_id: uuid.UUID, worker_id: str, code: ErrorCode,
                            message: str, spec: CopySpec | None = None,
                            outcome: FanOutOutcome | None = None) -> bool:
        """Record a failure: of the copy as a whole (every target failed with it), or, given
        the outcome of a fan-out copy, of some of its targets; those that succeeded stay
        published and are indexed like the targets of a job that succeeded."""

        read = (None, None, None) if outcome is None else (
            outcome.md5, outcome.sha512, outcome.md5_checked_against)

        async def update(connection: asyncpg.Connection) -> Any:
            done = await connection.fetchval(Q["finish_failed"], job_id, worker_id, code,
                                             message, *read)
            if done is not None and outcome is not None:
                assert spec is not None, "a fan-out outcome comes with its spec"
                await _record_targets(connection, job_id, spec, outcome)
            return done

        return await self._finish(job_id, JobState.FAILED, update)

    @translated
    async def requeue(self, job_id: uuid.UUID, worker_id: str) -> bool:
        return await self._finish(job_id, JobState.QUEUED, lambda c: c.fetchval(
            Q["requeue_job"], job_id, worker_id))

    async def _finish(self, job_id: uuid.UUID, state: JobState,
                      update: Callable[[asyncpg.Connection], Any]) -> bool:
        """Move a job this worker holds to `state`, recording the transition from the state it
        had. False when this worker no longer holds the job (its lease expired and moved on)."""
        async with self.pool.acquire() as connection, connection.transaction():
            previous = await connection.fetchval(Q["lock_job_state"], job_id)
            if previous is None or await update(connection) is None:
                return False
            check_transition(JobState(previous), state)
            await connection.execute(Q["record_transition"], job_id, previous, state)
            await connection.execute(Q["set_open_targets_state"], job_id,
                                     TARGET_STATE_OF[state])
        return True

    # --- read side of the REST API: detail, listing, metrics, readiness -----------------

    @translated
    async def job_observed(self, job_id: uuid.UUID) -> JobRecord | None:
        """The job with `observed_at`, the database's clock when it was read."""
        return await _job(self.pool, await self.pool.fetchrow(Q["job_with_clock"], job_id))

    @translated
    async def job_detail(self, job_id: uuid.UUID) -> JobDetail | None:
        """The job with `observed_at`, its written segments and its state transitions, read
        in one snapshot; None when there is no such job."""
        async with self.pool.acquire() as connection, connection.transaction(
                isolation="repeatable_read", readonly=True):
            job = await connection.fetchrow(Q["job_with_clock"], job_id)
            if job is None:
                return None
            record = (await _with_targets(connection, [job]))[0]
            segments = await connection.fetch(Q["list_segments"], job_id)
            transitions = await connection.fetch(Q["list_transitions"], job_id)
            duties = await connection.fetch(Q["list_duties"], job_id)
            attempts = await connection.fetch(Q["list_segment_attempts"], job_id)
        return JobDetail(
            record, tuple(_segment(row) for row in segments),
            tuple(Transition(JobState(t["from_state"]) if t["from_state"] else None,
                             JobState(t["to_state"]), t["at"]) for t in transitions),
            tuple(DutyRecord.from_row(row) for row in duties),
            tuple(SegmentAttempts.from_row(row) for row in attempts))

    @translated
    async def list_jobs_page(self, state: JobState | None, region: str | None,
                             after: tuple[datetime, uuid.UUID] | None, limit: int,
                             project: str | None = None) -> list[JobRecord]:
        """Newest first; `after` is the (created_at, id) of the previous page's last job;
        `region` matches the source or any target's region; `project`, the project that
        asked (None: every project)."""
        created_at, job_id = after if after is not None else (None, None)
        async with self.pool.acquire() as connection, connection.transaction(
                isolation="repeatable_read", readonly=True):
            rows = await connection.fetch(Q["list_jobs_page"], state, region, created_at,
                                          job_id, limit, project)
            return await _with_targets(connection, rows)

    @translated
    async def count_jobs_by_state(self) -> dict[str, int]:
        return {row["state"]: row["jobs"] for row in await self.pool.fetch(
            Q["count_jobs_by_state"])}

    @translated
    async def ping(self) -> None:
        await self.pool.fetchval(Q["ping"])

    @contextlib.asynccontextmanager
    async def listening(self, on_new_job: Callable[[], None],
                        on_cancel: Callable[[uuid.UUID], None]) -> AsyncIterator[asyncio.Event]:
        """While inside: `on_new_job()` when a job is queued, `on_cancel(job id)` when a cancel
        is requested, in any process on this database (LISTEN on one held connection). The
        event yielded is set when that connection is lost: nothing is heard any more."""

        def new_job(*_: object) -> None:
            on_new_job()

        def cancel(_connection: object, _pid: int, _channel: str, payload: str) -> None:
            with contextlib.suppress(ValueError):
                on_cancel(uuid.UUID(payload))

        lost = asyncio.Event()
        connection: asyncpg.Connection = await translated(self.pool.acquire)()
        try:
            connection.add_termination_listener(lambda _connection: lost.set())
            await translated(connection.add_listener)(JOBS_CHANNEL, new_job)
            await translated(connection.add_listener)(CANCEL_CHANNEL, cancel)
            yield lost
        finally:
            # Closed, not reset: pooled connections keep no session state (db.create_pool),
            # and an UNLISTEN cut short would leave this one listening. Then released even
            # when cancelled again meanwhile: an unreleased connection would keep
            # pool.close() waiting for ever.
            with contextlib.suppress(asyncpg.InterfaceError):  # lost: the pool has it back
                connection.terminate()
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self.pool.release(connection)


async def _record_targets(connection: asyncpg.Connection, job_id: uuid.UUID, spec: CopySpec,
                         outcome: FanOutOutcome) -> None:
    """Each target's end as the copy reported it. Only copies verified against a known
    checksum may answer "same image" from the index, and a deduplicated target is the
    indexed copy already."""
    for position, result in enumerate(outcome.targets):
        if isinstance(result, CopyFailed):
            await connection.execute(Q["finish_target"], job_id, position, TargetState.FAILED,
                                     result.code, result.message, None, None, None, None, None)
            continue
        await connection.execute(
            Q["finish_target"], job_id, position, TargetState.SUCCEEDED, None, None,
            outcome.md5, result.etag, result.bytes_uploaded, result.segments_reused,
            outcome.verification)
        if result.existing is None and outcome.md5_checked_against is not None:
            ref = spec.targets[position].ref
            await connection.execute(
                Q["record_object"], outcome.md5, outcome.sha512, outcome.size, ref.region,
                result.project, ref.container, ref.object, job_id)


def copy_spec(job: JobRecord, resume: tuple[Segment, ...] = ()) -> CopySpec:
    """The copy of a job: every target, in order (each one's segments in the job's
    segment_container, else in its own container), and the job's rate cap in bytes/s."""
    more = tuple(TargetSpec(target.ref, job.segment_container or target.ref.container)
                 for target in job.targets[1:])
    # an object copy's source is a Swift object (only an image's is read through Glance)
    source = job.source if isinstance(job.source, ObjectRef) else None
    return CopySpec(job_id=str(job.id), source=source, target=job.target,
                    segment_container=job.segment_container or job.target.container,
                    expected_md5=job.expected_md5, segment_size=job.segment_size,
                    max_rate=None if job.max_rate_mb is None else job.max_rate_mb * 1e6,
                    resume=resume, more_targets=more)


def image_job(job: JobRecord, resume: tuple[Segment, ...] = ()) -> ImageCopyJob:
    """The image copy of a job, with the segments an earlier attempt wrote."""
    assert job.image is not None, "an object copy job has no image"
    return replace(job.image, resume=resume) if resume else job.image
