-- Named queries, loaded once by xfer/jobs/db.py and called only from xfer/jobs/store.py.
-- Each starts with "-- name: <name>".

-- name: insert_job
-- No row when another job of the same scope ($14: the caller's project, '' without Keystone)
-- already holds the idempotency key.
INSERT INTO jobs (id, source_region, source_container, source_object,
                  target_region, target_container, target_object,
                  segment_container, expected_md5, segment_size,
                  idempotency_key, request_digest, max_rate_mb, idempotency_scope)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (idempotency_scope, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING *;

-- name: insert_image_job
-- An image copy, recorded before its trust exists: trust_expires_at is the expiry it asks
-- Keystone for, in whole seconds ($12 seconds from now, less $13: another of the user's jobs
-- may have taken that second). The source and target objects are found by the worker
-- (set_image_source, set_target_image); until then they are empty.
INSERT INTO jobs (id, kind, source_region, source_container, source_object,
                  target_region, target_container, target_object,
                  project_id, user_id, source_image_id, image_name,
                  image_properties, force, idempotency_key, request_digest, idempotency_scope,
                  trust_expires_at)
VALUES ($1, 'image', $2, '', '', $3, '', '', $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $4,
        date_trunc('second', now()) + make_interval(secs => $12) - make_interval(secs => $13))
ON CONFLICT (idempotency_scope, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING *;

-- name: attach_trust
-- The trust Keystone created for a job recorded without one: from now on it may be claimed.
-- No row when the job ended meanwhile (cancelled, or failed by adopt_trust).
UPDATE jobs SET trust_id = $2, updated_at = now()
WHERE id = $1 AND kind = 'image' AND (trust_id IS NULL OR trust_id = $2) AND state = 'queued'
RETURNING *;

-- name: delete_untrusted_job
-- A job whose trust Keystone refused: the request made no job.
DELETE FROM jobs WHERE id = $1 AND trust_id IS NULL AND state = 'queued'
RETURNING id;

-- name: fail_untrusted_job
-- A job whose trust was never attached (the process recording it died first, and no trust
-- with its expiry exists): it fails, saying why.
UPDATE jobs SET state = 'failed', error_code = $2, error_message = $3, finished_at = now(),
                updated_at = now()
WHERE id = $1 AND trust_id IS NULL AND state = 'queued'
RETURNING id;

-- name: move_trust_expiry
-- Keystone holds another trust with the expiry this job asked for: ask for $2 seconds earlier.
UPDATE jobs SET trust_expires_at = trust_expires_at - make_interval(secs => $2),
                updated_at = now()
WHERE id = $1 AND trust_id IS NULL
RETURNING trust_expires_at;

-- name: trust_in_use
-- Whether a job already acts through this trust.
SELECT EXISTS (SELECT 1 FROM jobs WHERE trust_id = $1);

-- name: insert_duty
INSERT INTO job_duties (job_id, duty, after_end, rank, due_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
ON CONFLICT (job_id, duty) DO NOTHING;

-- name: claim_duties
-- Up to $1 duties that are due, each leased for $2 seconds (due_at moves ahead, so no other
-- process takes it meanwhile). A duty with after_end waits until its job has ended and every
-- duty of the job with a lower rank is done.
WITH due AS (
    SELECT duty.job_id, duty.duty FROM job_duties duty JOIN jobs ON jobs.id = duty.job_id
    WHERE duty.state = 'pending' AND duty.due_at <= now()
      AND (NOT duty.after_end
           OR (jobs.state IN ('succeeded', 'failed', 'cancelled')
               AND NOT EXISTS (SELECT 1 FROM job_duties earlier
                               WHERE earlier.job_id = duty.job_id
                                 AND earlier.state = 'pending' AND earlier.rank < duty.rank)))
    ORDER BY duty.due_at
    LIMIT $1
    FOR UPDATE OF duty SKIP LOCKED
)
UPDATE job_duties SET due_at = now() + make_interval(secs => $2), attempts = attempts + 1,
                      updated_at = now()
FROM due WHERE job_duties.job_id = due.job_id AND job_duties.duty = due.duty
RETURNING job_duties.*;

-- name: drop_duties
-- The copy succeeded: what would have removed what it made is not needed ($2: those duties).
UPDATE job_duties SET state = 'dropped', outcome = $3, updated_at = now()
WHERE job_id = $1 AND duty = ANY($2::text[]) AND state = 'pending';

-- name: finish_duty
-- $3: 'done', 'dropped' or 'failed'; $4: what was done, or what is left, in a sentence.
UPDATE job_duties SET state = $3, outcome = $4, last_error = NULL, updated_at = now()
WHERE job_id = $1 AND duty = $2 AND state = 'pending';

-- name: postpone_duty
-- An attempt failed: try again in $3 seconds; $4: why it failed.
UPDATE job_duties SET due_at = now() + make_interval(secs => $3), last_error = $4,
                      updated_at = now()
WHERE job_id = $1 AND duty = $2 AND state = 'pending';

-- name: list_duties
SELECT * FROM job_duties WHERE job_id = $1 ORDER BY rank, duty;

-- name: list_failed_duties
-- What cleanups could not do (their outcome says what is left), newest first.
SELECT * FROM job_duties WHERE state = 'failed' ORDER BY updated_at DESC LIMIT $1;

-- name: count_pending_duties
SELECT duty, count(*) AS pending FROM job_duties WHERE state = 'pending' GROUP BY duty;

-- name: set_image_source
UPDATE jobs SET source_container = $2, source_object = $3, expected_md5 = $4, updated_at = now()
WHERE id = $1;

-- name: set_target_image
-- The target image's id, chosen before it is created, and the container and object its data
-- goes to.
UPDATE jobs SET target_image_id = $2, target_container = $3, target_object = $2,
                segment_container = $3, image_step = 'planned', updated_at = now()
WHERE id = $1;

-- name: name_first_target
-- The job's target_* columns named its target (an image copy's, once created): so does its row.
UPDATE job_targets SET container = jobs.target_container, object = jobs.target_object,
                       updated_at = now()
FROM jobs
WHERE jobs.id = $1 AND job_targets.job_id = $1 AND job_targets.position = 0;

-- name: set_image_step
UPDATE jobs SET image_step = $2, updated_at = now() WHERE id = $1;

-- name: finish_image_succeeded
UPDATE jobs SET state = 'succeeded', bytes_done = coalesce(bytes_total, bytes_done),
                md5 = $3, sha512 = $4, etag = $5, md5_checked_against = $6, retries = $7,
                bytes_uploaded = $8, segments_reused = $9, verification = $10,
                target_image_id = $11, deduplicated = $12, bytes_total = coalesce(bytes_total, $13),
                finished_at = now(), updated_at = now(),
                lease_owner = NULL, lease_expires_at = NULL
WHERE id = $1 AND lease_owner = $2 AND state IN ('running', 'verifying')
RETURNING id;

-- name: record_image_object
INSERT INTO objects (md5, sha512, size, region, project, container, object, image_id, job_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (md5, region, project) DO UPDATE
SET sha512 = EXCLUDED.sha512, size = EXCLUDED.size, container = EXCLUDED.container,
    object = EXCLUDED.object, image_id = EXCLUDED.image_id, job_id = EXCLUDED.job_id,
    verified_at = now();

-- name: insert_job_target
-- Position 0 repeats the job's own target_* columns.
INSERT INTO job_targets (job_id, position, region, container, object)
VALUES ($1, $2, $3, $4, $5);

-- name: list_job_targets
SELECT * FROM job_targets WHERE job_id = ANY($1::uuid[]) ORDER BY job_id, position;

-- name: set_open_targets_state
-- The job moved to a state that every target not yet ended on its own shares, with the
-- job's error (a cancel's, or the failure of the copy as a whole); run after the job's update.
UPDATE job_targets SET state = $2, error_code = jobs.error_code,
                       error_message = jobs.error_message, updated_at = now()
FROM jobs
WHERE jobs.id = $1 AND job_targets.job_id = $1 AND job_targets.state IN ('queued', 'running');

-- name: finish_target
-- How one target of a copy ended, as the copy reported it.
UPDATE job_targets SET state = $3, error_code = $4, error_message = $5, md5 = $6, etag = $7,
                       bytes_uploaded = $8, segments_reused = $9, verification = $10,
                       updated_at = now()
WHERE job_id = $1 AND position = $2;

-- name: job_by_idempotency_key
SELECT * FROM jobs WHERE idempotency_scope = $1 AND idempotency_key = $2;

-- name: record_transition
INSERT INTO job_transitions (job_id, from_state, to_state) VALUES ($1, $2, $3);

-- name: notify
-- The channel names live in xfer/jobs/store.py, which also LISTENs on them.
SELECT pg_notify($1::text, $2::text);

-- name: get_job
SELECT * FROM jobs WHERE id = $1;

-- name: claim_job
-- A queued job, or a running one whose worker stopped renewing its lease; never one of $3,
-- the jobs the claiming process still works on (e.g. retrying to record a verified copy).
WITH next AS (
    SELECT id, state FROM jobs
    WHERE (state = 'queued'
           OR (state IN ('running', 'verifying') AND lease_expires_at < now()))
      AND NOT id = ANY($3::uuid[])
      AND (kind <> 'image' OR trust_id IS NOT NULL)  -- an image copy acts through its trust
    ORDER BY created_at
    FOR UPDATE SKIP LOCKED
    LIMIT 1
)
UPDATE jobs SET state = 'running',
                lease_owner = $1,
                lease_expires_at = now() + make_interval(secs => $2),
                attempts = attempts + 1,
                started_at = coalesce(started_at, now()),
                updated_at = now()
FROM next WHERE jobs.id = next.id
RETURNING jobs.*, next.state AS previous_state;

-- name: renew_lease
-- Returns the job's state: 'cancelling' tells the worker to stop; no row: the lease is lost.
UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
WHERE id = $1 AND lease_owner = $2 AND state IN ('running', 'verifying', 'cancelling')
RETURNING state;

-- name: set_verifying
UPDATE jobs SET state = 'verifying', updated_at = now()
WHERE id = $1 AND lease_owner = $2 AND state = 'running'
RETURNING id;

-- name: lock_job_state
SELECT state FROM jobs WHERE id = $1 FOR UPDATE;

-- name: cancel_queued
UPDATE jobs SET state = 'cancelled', finished_at = now(), updated_at = now(),
                error_code = 'cancelled', error_message = 'cancelled before it started'
WHERE id = $1 AND state = 'queued'
RETURNING *;

-- name: request_cancel
UPDATE jobs SET state = 'cancelling', updated_at = now()
WHERE id = $1 AND state IN ('running', 'verifying')
RETURNING *;

-- name: finish_cancelled
UPDATE jobs SET state = 'cancelled', finished_at = now(), updated_at = now(),
                error_code = 'cancelled',
                error_message = 'cancelled on request; what it wrote is removed by its cleanup',
                lease_owner = NULL, lease_expires_at = NULL
WHERE id = $1 AND lease_owner = $2 AND state = 'cancelling'
RETURNING id;

-- name: set_plan
UPDATE jobs SET bytes_total = $2, segments_total = $3, layout = $4, updated_at = now()
WHERE id = $1;

-- name: record_segment
-- Written: no longer in flight (one statement, so the map never shows it both).
WITH landed AS (
    UPDATE job_segment_attempts SET in_flight = false, updated_at = now()
    WHERE job_id = $1 AND index = $2 AND in_flight
)
INSERT INTO job_segments (job_id, index, "offset", length, etag)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (job_id, index) DO UPDATE SET etag = EXCLUDED.etag, written_at = now();

-- name: segment_started
INSERT INTO job_segment_attempts (job_id, index, attempts, in_flight) VALUES ($1, $2, 1, true)
ON CONFLICT (job_id, index) DO UPDATE
SET attempts = job_segment_attempts.attempts + 1, in_flight = true, updated_at = now();

-- name: segment_failed
INSERT INTO job_segment_attempts (job_id, index, failures, last_error_code, last_error)
VALUES ($1, $2, 1, $3, $4)
ON CONFLICT (job_id, index) DO UPDATE
SET failures = job_segment_attempts.failures + 1, in_flight = false,
    last_error_code = EXCLUDED.last_error_code, last_error = EXCLUDED.last_error,
    updated_at = now();

-- name: clear_segments_in_flight
-- A new attempt of the job: what an earlier one had in flight is not in flight any more.
UPDATE job_segment_attempts SET in_flight = false, updated_at = now()
WHERE job_id = $1 AND in_flight;

-- name: segment_attempts_changed
-- What a follower of the web view's segment map sees change: every write sets updated_at.
SELECT count(*) AS segments, max(updated_at) AS changed
FROM job_segment_attempts WHERE job_id = $1;

-- name: list_segment_attempts
SELECT index, attempts, failures, in_flight, last_error_code, last_error
FROM job_segment_attempts WHERE job_id = $1 ORDER BY index;

-- name: set_progress
UPDATE jobs SET bytes_done = $2, updated_at = now() WHERE id = $1;

-- name: finish_succeeded
-- etag and the deduplication pointer ($12: deduplicated, $13, $14: the copy it points at) are
-- the first target's; bytes_uploaded and segments_reused are summed over the targets.
UPDATE jobs SET state = 'succeeded', bytes_total = $3, bytes_done = $3, md5 = $4, sha512 = $5,
                etag = $6, md5_checked_against = $7, retries = $8, bytes_uploaded = $9,
                segments_reused = $10, verification = $11, deduplicated = $12,
                existing_container = $13, existing_object = $14,
                finished_at = now(), updated_at = now(),
                lease_owner = NULL, lease_expires_at = NULL
WHERE id = $1 AND lease_owner = $2 AND state IN ('running', 'verifying')
RETURNING id;

-- name: finish_failed
-- $5..$7 (md5, sha512, md5_checked_against): what a fan-out copy read and verified when only
-- some of its targets failed; NULL when the copy failed as a whole.
UPDATE jobs SET state = 'failed', error_code = $3, error_message = $4,
                md5 = $5, sha512 = $6, md5_checked_against = $7,
                finished_at = now(), updated_at = now(),
                lease_owner = NULL, lease_expires_at = NULL
WHERE id = $1 AND lease_owner = $2 AND state IN ('running', 'verifying')
RETURNING id;

-- name: list_segments
SELECT index, "offset", length, etag FROM job_segments WHERE job_id = $1 ORDER BY index;

-- name: requeue_job
-- A worker shutting down hands its job back at once instead of waiting for the lease to expire.
UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
WHERE id = $1 AND lease_owner = $2 AND state IN ('running', 'verifying')
RETURNING id;

-- name: record_object
-- The checksum index: the latest verified copy per checksum, region and project.
INSERT INTO objects (md5, sha512, size, region, project, container, object, job_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (md5, region, project) DO UPDATE
SET sha512 = EXCLUDED.sha512, size = EXCLUDED.size, container = EXCLUDED.container,
    object = EXCLUDED.object, job_id = EXCLUDED.job_id, verified_at = now();

-- name: find_objects
SELECT * FROM objects
WHERE ($1::text IS NULL OR md5 = $1)
  AND ($2::text IS NULL OR sha512 = $2)
  AND ($3::text IS NULL OR region = $3)
ORDER BY region, project
LIMIT 100;

-- name: sha512_paired_with_md5
-- The SHA-512 values xfer verified together with an MD5 (images/search.py: copies whose Glance
-- computed no MD5 are found by these).
SELECT DISTINCT sha512 FROM objects WHERE md5 = $1 AND sha512 IS NOT NULL LIMIT 10;

-- name: job_with_clock
-- observed_at: the database's clock, against which started_at and finished_at were taken.
SELECT *, clock_timestamp() AS observed_at FROM jobs WHERE id = $1;

-- name: list_transitions
SELECT from_state, to_state, at FROM job_transitions WHERE job_id = $1 ORDER BY at;

-- name: list_jobs_page
-- Newest first; keyset pagination after the (created_at, id) of the previous page's last job.
-- $6: the caller's project (NULL: every project).
SELECT *, clock_timestamp() AS observed_at FROM jobs
WHERE ($1::text IS NULL OR state = $1)
  AND ($2::text IS NULL OR source_region = $2 OR target_region = $2
       OR EXISTS (SELECT 1 FROM job_targets
                  WHERE job_targets.job_id = jobs.id AND job_targets.region = $2))
  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
  AND ($6::text IS NULL OR project_id = $6)
ORDER BY created_at DESC, id DESC
LIMIT $5;

-- name: count_jobs_by_state
SELECT state, count(*) AS jobs FROM jobs GROUP BY state;

-- name: ping
SELECT 1;

-- name: find_verified_copy
SELECT * FROM objects WHERE md5 = $1 AND size = $2 AND region = $3 AND project = $4;

-- name: claim_abandoned_cancel
-- A job whose cancel was asked while its worker died: someone must still delete what it wrote.
WITH abandoned AS (
    SELECT id FROM jobs
    WHERE state = 'cancelling' AND lease_expires_at < now() AND NOT id = ANY($3::uuid[])
    ORDER BY created_at
    FOR UPDATE SKIP LOCKED
    LIMIT 1
)
UPDATE jobs SET lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2),
                updated_at = now()
FROM abandoned WHERE jobs.id = abandoned.id
RETURNING jobs.*;
