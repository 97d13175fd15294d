-- A digest's job row knows every event it carried: a failed digest fails over
-- each of its pages, and a page's jobs include the digests it rode in.
ALTER TABLE page_jobs ADD COLUMN digest_of text[];
CREATE INDEX page_jobs_by_digest ON page_jobs USING gin (digest_of) WHERE digest_of IS NOT NULL;
-- Failover asks whether a page still waits in held_pages for one of its methods.
CREATE INDEX held_pages_by_page ON held_pages (event_id, user_id) WHERE done_at IS NULL;
