-- How far a succeeded copy was verified: 'end_to_end' (whole-object MD5 equal to an
-- independent value) or 'source_pinned' (hashed, every read pinned to one source version,
-- nothing independent to compare with). NULL until the job succeeds.
-- Never edit once landed: add a new file.
ALTER TABLE jobs
    ADD COLUMN verification text,
    ADD CONSTRAINT jobs_verification_check
        CHECK (verification IN ('end_to_end', 'source_pinned'));
