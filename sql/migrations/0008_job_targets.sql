-- Fan-out: one job, several targets (one row each; the job's target_* columns stay the first
-- one, position 0), and a per-job rate cap. Every job already stored gets its one target row,
-- in the state its job implies. Never edit once landed: add a new file.
ALTER TABLE jobs
    ADD COLUMN max_rate_mb double precision,
    ADD CONSTRAINT jobs_max_rate_mb_check CHECK (max_rate_mb > 0);

CREATE TABLE job_targets (
    job_id          uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position        integer NOT NULL CHECK (position >= 0),
    region          text NOT NULL,
    container       text NOT NULL,
    object          text NOT NULL,
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    error_code      text,
    error_message   text,
    md5             text,
    etag            text,
    bytes_uploaded  bigint,
    segments_reused integer,
    verification    text CHECK (verification IN ('end_to_end', 'source_pinned')),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, position),
    UNIQUE (job_id, region, container, object)
);

-- GET /v1/jobs?region= matches any target's region.
CREATE INDEX job_targets_region ON job_targets (region, job_id);

INSERT INTO job_targets (job_id, position, region, container, object, state, error_code,
                         error_message, md5, etag, bytes_uploaded, segments_reused,
                         verification)
SELECT id, 0, target_region, target_container, target_object,
       CASE state WHEN 'verifying' THEN 'running' WHEN 'cancelling' THEN 'running'
                  ELSE state END,
       error_code, error_message,
       CASE state WHEN 'succeeded' THEN md5 END, CASE state WHEN 'succeeded' THEN etag END,
       bytes_uploaded, segments_reused, verification
FROM jobs;
