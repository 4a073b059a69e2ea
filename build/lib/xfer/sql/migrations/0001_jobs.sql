-- Jobs, their segments and their state transitions. Never edit once landed: add a new file.

CREATE TABLE jobs (
    id                 uuid PRIMARY KEY,
    state              text NOT NULL DEFAULT 'queued'
                       CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    source_region      text NOT NULL,
    source_container   text NOT NULL,
    source_object      text NOT NULL,
    target_region      text NOT NULL,
    target_container   text NOT NULL,
    target_object      text NOT NULL,
    segment_container  text,
    expected_md5       text,
    segment_size       bigint,
    bytes_total        bigint,
    bytes_done         bigint NOT NULL DEFAULT 0,
    segments_total     integer,
    layout             text,
    md5                text,
    sha512             text,
    etag               text,
    md5_checked_against text,
    retries            integer NOT NULL DEFAULT 0,
    attempts           integer NOT NULL DEFAULT 0,
    error_code         text,
    error_message      text,
    lease_owner        text,
    lease_expires_at   timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    finished_at        timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX jobs_claimable ON jobs (created_at) WHERE state IN ('queued', 'running');

CREATE TABLE job_segments (
    job_id   uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    index    integer NOT NULL,
    "offset" bigint NOT NULL,
    length   bigint NOT NULL,
    etag     text,
    state    text NOT NULL DEFAULT 'written' CHECK (state IN ('written')),
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, index)
);

CREATE TABLE job_transitions (
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    from_state text,
    to_state   text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX job_transitions_job ON job_transitions (job_id, at);
