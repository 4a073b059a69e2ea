-- GET /v1/jobs lists newest first and pages by (created_at, id): one index serves both.
-- Never edit once landed: add a new file.
CREATE INDEX jobs_newest ON jobs (created_at DESC, id DESC);
