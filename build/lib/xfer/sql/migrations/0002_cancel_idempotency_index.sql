-- The full state set (verifying, cancelling, cancelled), idempotent submission, and the
-- checksum index of verified copies. Never edit once landed: add a new file.

ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check CHECK (state IN (
    'queued', 'running', 'verifying', 'succeeded', 'failed', 'cancelling', 'cancelled'));

DROP INDEX jobs_claimable;
CREATE INDEX jobs_claimable ON jobs (created_at)
    WHERE state IN ('queued', 'running', 'verifying');

ALTER TABLE jobs
    ADD COLUMN idempotency_key text,
    ADD COLUMN request_digest  text,
    ADD COLUMN deduplicated    boolean NOT NULL DEFAULT false;

CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- One verified copy per checksum, region and project: "the same image" in another region.
CREATE TABLE objects (
    md5         text NOT NULL,
    sha512      text,
    size        bigint NOT NULL,
    region      text NOT NULL,
    project     text NOT NULL,
    container   text NOT NULL,
    object      text NOT NULL,
    image_id    text,
    job_id      uuid REFERENCES jobs (id) ON DELETE SET NULL,
    verified_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (md5, region, project)
);

CREATE INDEX objects_sha512 ON objects (sha512) WHERE sha512 IS NOT NULL;
