-- A trust lives exactly as long as its job (issue 16), and what must still be done for a job
-- after it ended is a recorded duty, not a best effort.
--
-- An image copy is recorded before its trust exists, with the expiry it asks Keystone for
-- (trust_expires_at, whole seconds: Keystone keeps seconds, and keeps at most one trust per
-- trustor, trustee, project, impersonation and expiry). Until trust_id is set the job is not
-- claimed; if the process recording it dies first, the duty adopt_trust finds the trust by
-- that expiry (or fails the job). Once the job has ended, the duty end_trust deletes the trust.
--
-- Idempotency keys are per project: idempotency_scope is the caller's project ('' without
-- Keystone), so another project's request with the same key gets its own job.
-- Never edit once landed: add a new file.
ALTER TABLE jobs
    ADD COLUMN trust_expires_at timestamptz,
    ADD COLUMN idempotency_scope text NOT NULL DEFAULT '';

UPDATE jobs SET idempotency_scope = coalesce(project_id, '');

DROP INDEX jobs_idempotency_key;
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_scope, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- No two of a user's jobs ask Keystone for the same expiry: a trust is found by it.
CREATE UNIQUE INDEX jobs_trust_expiry ON jobs (user_id, project_id, trust_expires_at)
    WHERE trust_expires_at IS NOT NULL;

-- What is still to be done for a job, one row per duty. A duty with after_end waits until the
-- job has ended and every duty of the job with a lower rank is done; the others are due at
-- due_at. A claim moves due_at ahead (a lease: no other process takes it meanwhile); a failed
-- attempt moves it further (backoff). state: pending, done, or dropped (no longer needed).
CREATE TABLE job_duties (
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    duty       text NOT NULL CHECK (duty IN ('adopt_trust', 'end_trust')),
    state      text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'dropped')),
    after_end  boolean NOT NULL,
    rank       smallint NOT NULL DEFAULT 0,
    due_at     timestamptz NOT NULL DEFAULT now(),
    attempts   integer NOT NULL DEFAULT 0,
    last_error text,
    outcome    text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, duty)
);

CREATE INDEX job_duties_pending ON job_duties (due_at) WHERE state = 'pending';

-- Trusts of jobs that ended before this migration were never deleted: they are now.
INSERT INTO job_duties (job_id, duty, after_end, rank)
SELECT id, 'end_trust', true, 100 FROM jobs WHERE trust_id IS NOT NULL;
