-- Each segment's attempts, as the copy makes them (issue 20: the web view's segment map shows
-- a segment in flight from this record, not guessed, and a failed segment with its attempts).
-- One row per segment a copy started, written once when an attempt starts (attempts + 1,
-- in_flight), once when it fails (failures + 1, the error's code and sentence) and once when
-- the segment is written (job_segments, in the same statement: no longer in flight). Never
-- per chunk: a segment is tens of MiB. A new attempt of the job starts with nothing in flight.
-- Never edit once landed: add a new file.
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
