-- No page silently dropped: pages deferred by quiet hours or a rate limit are
-- held here until due, then sent as one digest per contact method. Written in
-- the transaction that counts the batch's sends; claimed by any worker with
-- FOR UPDATE SKIP LOCKED; kept (done_at set) after sending, refusing or
-- expiring, so a redelivered batch cannot hold the same page again, and purged
-- by the janitor later.

ALTER TABLE users
    ADD COLUMN quiet_action text NOT NULL DEFAULT 'defer' CHECK (quiet_action IN ('defer', 'drop'));

CREATE TABLE held_pages (
    event_id           text NOT NULL,
    -- No foreign key: a page whose method is deleted while it waits must still
    -- end with a decision (method_deleted), not vanish with the method.
    contact_method_id  uuid NOT NULL,
    user_id            text NOT NULL,
    transport          text NOT NULL CHECK (transport IN ('email', 'sms', 'webhook')),
    reason             text NOT NULL CHECK (reason IN ('quiet_hours', 'rate_limited')),
    severity           text NOT NULL,
    deliver_at         timestamptz NOT NULL,
    held_at            timestamptz NOT NULL,
    -- json, not jsonb: an alert's text may hold \u0000, which jsonb refuses.
    event              json NOT NULL,
    done_at            timestamptz,
    outcome            text CHECK (outcome IN ('sent', 'refused', 'expired')),
    digest_job_id      uuid,
    PRIMARY KEY (event_id, contact_method_id),
    CHECK ((done_at IS NULL) = (outcome IS NULL))
);
CREATE INDEX held_pages_due ON held_pages (deliver_at) WHERE done_at IS NULL;
CREATE INDEX held_pages_by_user ON held_pages (user_id) WHERE done_at IS NULL;
CREATE INDEX held_pages_done ON held_pages (done_at) WHERE done_at IS NOT NULL;
