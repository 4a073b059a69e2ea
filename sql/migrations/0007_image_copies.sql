-- Image copies (Glance to Glance, through Swift): who asked, the trust xfer acts through, the
-- source and target images and how far the copy got. Never a token: a trust id is useless
-- without xfer's own service credentials, and it expires (XFER_TRUST_HOURS).
-- Never edit once landed: add a new file.
ALTER TABLE jobs
    ADD COLUMN kind             text NOT NULL DEFAULT 'object',
    ADD COLUMN project_id       text,
    ADD COLUMN user_id          text,
    ADD COLUMN trust_id         text,
    ADD COLUMN source_image_id  text,
    ADD COLUMN target_image_id  text,
    ADD COLUMN image_step       text,
    ADD COLUMN image_name       text,
    ADD COLUMN image_properties jsonb,
    ADD COLUMN force            boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('object', 'image')),
    ADD CONSTRAINT jobs_image_step_check
        CHECK (image_step IN ('created', 'copied', 'registered'));

-- A project's jobs, newest first: what a member lists.
CREATE INDEX jobs_project_newest ON jobs (project_id, created_at DESC, id DESC)
    WHERE project_id IS NOT NULL;
