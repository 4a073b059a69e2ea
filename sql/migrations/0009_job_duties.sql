-- What must still be done for a job after it ended is a recorded duty, not a best effort:
-- removing what a failed or cancelled copy made (issue 17), then ending its trust, which lives
-- exactly as long as its job and its cleanup (issue 16).
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

-- An image copy chooses its target image's id and records it (with the duties that would
-- remove the image) before creating it: 'planned'.
ALTER TABLE jobs
    DROP CONSTRAINT jobs_image_step_check,
    ADD CONSTRAINT jobs_image_step_check
        CHECK (image_step IN ('planned', 'created', 'copied', 'registered'));

UPDATE jobs SET idempotency_scope = coalesce(project_id, '');

DROP INDEX jobs_idempotency_key;
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_scope, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- No two of a user's jobs ask Keystone for the same expiry: a trust is found by it.
CREATE UNIQUE INDEX jobs_trust_expiry ON jobs (user_id, project_id, trust_expires_at)
    WHERE trust_expires_at IS NOT NULL;

-- What is still to be done for a job, one row per duty, recorded when the job or what it
-- makes comes into being (an undo log). A duty with after_end waits until the job has ended
-- and every duty of the job with a lower rank is done; the others are due at due_at. A claim
-- moves due_at ahead (a lease: no other process takes it meanwhile); a failed attempt moves it
-- further (backoff). state: pending; done; dropped (not needed: the copy succeeded); failed
-- (it cannot be done, and outcome says what is left).
CREATE TABLE job_duties (
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    duty       text NOT NULL CHECK (duty IN ('adopt_trust', 'end_trust', 'remove_target_image',
                                             'remove_image_data', 'remove_object_data')),
    state      text NOT NULL DEFAULT 'pending'
               CHECK (state IN ('pending', 'done', 'dropped', 'failed')),
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

-- What image copies that failed or were cancelled before this migration may have left (their
-- target image, its data), removed while their trusts still work; then every trust ever given
-- is deleted (they were never deleted before).
INSERT INTO job_duties (job_id, duty, after_end, rank)
SELECT id, 'remove_target_image', true, 10 FROM jobs
WHERE kind = 'image' AND target_image_id IS NOT NULL AND state IN ('failed', 'cancelled');
INSERT INTO job_duties (job_id, duty, after_end, rank)
SELECT id, 'remove_image_data', true, 20 FROM jobs
WHERE kind = 'image' AND target_image_id IS NOT NULL AND state IN ('failed', 'cancelled');
INSERT INTO job_duties (job_id, duty, after_end, rank)
SELECT id, 'end_trust', true, 100 FROM jobs WHERE trust_id IS NOT NULL;
