-- A deduplicated job points at the verified copy that already held the same bytes.
-- Never edit once landed: add a new file.
ALTER TABLE jobs
    ADD COLUMN existing_container text,
    ADD COLUMN existing_object    text;
