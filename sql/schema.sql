-- The current schema in one piece: what migrations 0001..N add up to.
-- A fresh install could load this file; tests/test_migrations.py proves that applying every
-- migration to an empty database gives exactly this schema. Update it with each migration.

CREATE TABLE jobs (
    id                  uuid PRIMARY KEY,
    state               text NOT NULL DEFAULT 'queued',
    source_region       text NOT NULL,
    source_container    text NOT NULL,
    source_object       text NOT NULL,
    target_region       text NOT NULL,
    target_container    text NOT NULL,
    target_object       text NOT NULL,
    segment_container   text,
    expected_md5        text,
    segment_size        bigint,
    bytes_total         bigint,
    bytes_done          bigint NOT NULL DEFAULT 0,
    segments_total      integer,
    layout              text,
    md5                 text,
    sha512              text,
    etag                text,
    md5_checked_against text,
    retries             integer NOT NULL DEFAULT 0,
    attempts            integer NOT NULL DEFAULT 0,
    error_code          text,
    error_message       text,
    lease_owner         text,
    lease_expires_at    timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    idempotency_key     text,
    request_digest      text,
    deduplicated        boolean NOT NULL DEFAULT false,
    bytes_uploaded      bigint,
    segments_reused     integer,
    existing_container  text,
    existing_object     text,
    verification        text,
    kind                text NOT NULL DEFAULT 'object',
    project_id          text,
    user_id             text,
    trust_id            text,
    source_image_id     text,
    target_image_id     text,
    image_step          text,
    image_name          text,
    image_properties    jsonb,
    force               boolean NOT NULL DEFAULT false,
    max_rate_mb         double precision,
    trust_expires_at    timestamptz,
    idempotency_scope   text NOT NULL DEFAULT '',
    CONSTRAINT jobs_state_check CHECK (state IN (
        'queued', 'running', 'verifying', 'succeeded', 'failed', 'cancelling', 'cancelled')),
    CONSTRAINT jobs_verification_check CHECK (verification IN ('end_to_end', 'source_pinned')),
    CONSTRAINT jobs_kind_check CHECK (kind IN ('object', 'image')),
    CONSTRAINT jobs_image_step_check
        CHECK (image_step IN ('planned', 'created', 'copied', 'registered')),
    CONSTRAINT jobs_max_rate_mb_check CHECK (max_rate_mb > 0)
);

CREATE INDEX jobs_claimable ON jobs (created_at)
    WHERE state IN ('queued', 'running', 'verifying');
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_scope, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX jobs_trust_expiry ON jobs (user_id, project_id, trust_expires_at)
    WHERE trust_expires_at IS NOT NULL;
CREATE INDEX jobs_newest ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_project_newest ON jobs (project_id, created_at DESC, id DESC)
    WHERE project_id IS NOT NULL;

CREATE TABLE job_segments (
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    index      integer NOT NULL,
    "offset"   bigint NOT NULL,
    length     bigint NOT NULL,
    etag       text,
    state      text NOT NULL DEFAULT 'written' CHECK (state IN ('written')),
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, index)
);

-- One row per target of a job, in order; position 0 is the job's own target_*.
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

CREATE INDEX job_targets_region ON job_targets (region, job_id);

CREATE TABLE job_transitions (
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    from_state text,
    to_state   text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX job_transitions_job ON job_transitions (job_id, at);

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

-- What is still to be done for a job (sql/migrations/0009_job_duties.sql says how).
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

-- Each segment's attempts (sql/migrations/0010_segment_attempts.sql says how).
CREATE TABLE job_segment_attempts (
    job_id          uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    index           integer NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    failures        integer NOT NULL DEFAULT 0,
    in_flight       boolean NOT NULL DEFAULT false,
    last_error_code text,
    last_error      text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, index)
);
