"""A job's Keystone trust, which lives exactly as long as its job.

An image copy acts as its user through an impersonating trust from the user to xfer's service
user. Its life, in an order that never leaves a trust without a job to end it:

1. The API records the job first, with no trust and not claimable, asking for a trust that
   expires at a second none of the user's other jobs asks for. A replay or a conflicting reuse
   of an Idempotency-Key, a request that fails validation or cannot be recorded: no trust.
2. `grant`: Keystone creates the trust with the caller's own token, with that expiry, and the
   job gets it (it may then be claimed). Refused: the job is forgotten, as if never asked.
   Keystone keeps at most one trust per trustor, trustee, project and expiry (409 for a
   second): one that no job uses is this request's own, created by a POST sent again after a
   closed connection, and is taken; otherwise the job asks for an earlier second.
3. The duty end_trust, once the job has ended and its other duties are done: the trust is
   deleted with a token of the trust itself (impersonation makes that token the trustor's, and
   Keystone's default policy lets a trustor delete its trust). xfer needs no admin role.
4. The duty adopt_trust: a job still without its trust after `trust_adopt_seconds` (the
   process recording it died while Keystone created it) gets it found by its expiry and
   attached; with none found, the job fails saying so. A trust found for a job that ended
   meanwhile is deleted.

What this cannot guarantee, and what bounds it: a trust whose deletion Keystone refuses (a
policy that denies trustors), or whose job's record is lost with xfer's database, lives until
its expiry (`trust_hours`); a trust whose user lost the delegated roles gives no token, so
xfer cannot delete it, but nobody can use it either until it expires or the roles come back.
One xfer database per Keystone service user: a trust is found by its trustor, project and
expiry among all trusts of that service user.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime

from xfer.clients.keystone import Keystone
from xfer.errors import TrustExists, XferError
from xfer.jobs.duty_store import MAX_EXPIRY_MOVES, DutyStore
from xfer.jobs.records import DutyState, ImageCopyRequest, JobRecord
from xfer.jobs.states import JobState
from xfer.jobs.store import JobStore
from xfer.proto.keystone import TokenInfo
from xfer.settings import Settings

log = logging.getLogger(__name__)
INTERRUPTED = ("request_interrupted",
               "xfer was interrupted while it accepted this copy, before Keystone gave it the "
               "trust it acts through; nothing was copied. Ask again, with a new "
               "Idempotency-Key if you sent one.")


class JobTrusts:
    def __init__(self, settings: Settings, keystone: Keystone, store: JobStore,
                 duties: DutyStore) -> None:
        self.settings = settings
        self.keystone = keystone
        self.store = store
        self.duties = duties

    async def create_job(self, request: ImageCopyRequest, idempotency_key: str | None,
                         caller_token: str, caller: TokenInfo) -> tuple[JobRecord, bool]:
        """(the job, whether it is new): a replay creates no trust, a new job gets its own."""
        job, created = await self.store.create_image_job(
            request, idempotency_key, self.settings.trust_hours * 3600,
            self.settings.trust_adopt_seconds)
        if not created:
            return job, False
        return await self.grant(job, caller_token, caller), True

    async def grant(self, job: JobRecord, caller_token: str, caller: TokenInfo) -> JobRecord:
        """The job with its new trust; the trust's error (TrustRefused, Keystone unreachable)
        after forgetting the job, which then never ran."""
        try:
            trust_id = await self._create(job, caller_token, caller)
        except BaseException:
            with contextlib.suppress(XferError):  # else adopt_trust fails it later
                await self.duties.delete_untrusted_job(job.id)
            raise
        try:
            attached = await self.duties.attach_trust(job.id, trust_id)
        except BaseException:
            await self._delete_quietly(trust_id)  # the job fails through adopt_trust
            raise
        if attached is not None:
            return attached
        # The job ended while Keystone created its trust (cancelled): nothing acts through it.
        await self._delete_quietly(trust_id)
        current = await self.store.get_job(job.id)
        return current or job

    async def _create(self, job: JobRecord, caller_token: str, caller: TokenInfo) -> str:
        assert job.image is not None and job.image.trust_expires_at is not None
        expires_at: datetime | None = job.image.trust_expires_at
        for _ in range(MAX_EXPIRY_MOVES):
            assert expires_at is not None
            try:
                return await self.keystone.create_trust(caller_token, caller, expires_at)
            except TrustExists:
                found = await self.keystone.find_trust(caller.user_id, caller.project_id,
                                                       expires_at)
                if found is not None and not await self.duties.trust_in_use(found):
                    log.info("trust %s, created by this request's first try, taken", found)
                    return found
                expires_at = await self.duties.move_trust_expiry(job.id)
                if expires_at is None:
                    break
        raise TrustExists("keystone", "POST", "/v3/OS-TRUST/trusts", 409, None,
                          f"Keystone holds trusts from user {caller.user_id} with every "
                          f"expiry tried for job {job.id}")

    async def _delete_quietly(self, trust_id: str) -> None:
        try:
            await self.keystone.delete_trust(trust_id)
        except XferError as exc:
            log.warning("could not delete trust %s (it expires by itself): %s", trust_id, exc)

    # --- the duties ----------------------------------------------------------------------

    async def end(self, job: JobRecord) -> tuple[DutyState, str]:
        """end_trust: the job has ended; its trust is deleted."""
        image = job.image
        if image is None or image.trust_id is None:
            return DutyState.DROPPED, "the job never had a trust"
        expires_at = image.trust_expires_at
        if expires_at is not None and expires_at <= datetime.now(UTC):
            return DutyState.DONE, f"trust {image.trust_id} expired at {expires_at.isoformat()}"
        if await self.keystone.delete_trust(image.trust_id):
            return DutyState.DONE, f"trust {image.trust_id} deleted"
        return DutyState.DONE, (f"trust {image.trust_id} gives no token any more (deleted or "
                                f"expired, or its user lost the delegated roles)")

    async def adopt(self, job: JobRecord) -> tuple[DutyState, str]:
        """adopt_trust: the job was not given its trust in time; find it, or fail the job."""
        image = job.image
        assert image is not None, "only image copies have trusts"
        if image.trust_id is not None:
            return DutyState.DROPPED, f"trust {image.trust_id} was attached"
        found = None
        if job.user_id and job.project_id and image.trust_expires_at is not None:
            found = await self.keystone.find_trust(job.user_id, job.project_id,
                                                   image.trust_expires_at)
        if found is not None and await self.duties.trust_in_use(found):
            found = None
        if found is not None and job.state is JobState.QUEUED:
            if await self.duties.attach_trust(job.id, found, "found and attached") is not None:
                log.info("trust %s found and attached to job %s", found, job.id)
                return DutyState.DONE, f"trust {found} found and attached"
        if found is not None:
            await self.keystone.delete_trust(found)
            return DutyState.DONE, f"trust {found} of a job that ended before it was attached, " \
                                   f"deleted"
        if job.state is JobState.QUEUED:
            await self.duties.fail_untrusted_job(job.id, *INTERRUPTED)
            return DutyState.DONE, "no trust was created; the job failed"
        return DutyState.DONE, "no trust was created"
