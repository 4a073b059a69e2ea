-- What the last attempt of a job sent and what it kept from earlier attempts (resume).
-- Never edit once landed: add a new file.
ALTER TABLE jobs
    ADD COLUMN bytes_uploaded  bigint,
    ADD COLUMN segments_reused integer;
