-- The page trail: every decision, job and delivery status of a page, kept for
-- ROUTER_TRAIL_RETENTION_SECONDS, for `router trail` and for failover. Written
-- per batch in the statement that records the batch as routed.

-- json, not jsonb: alerts and statuses may carry \u0000 in their text, which
-- jsonb refuses; json keeps the text as it came.
-- One row per routed event: the event as it came and every decision of its
-- batch (a JSON array), so the hot path writes one row per event, not one per
-- decision.
CREATE TABLE page_events (
    event_id   text PRIMARY KEY,
    event      json NOT NULL,
    decisions  json NOT NULL,
    routed_at  timestamptz NOT NULL
);
CREATE INDEX page_events_by_time ON page_events (routed_at);

-- One row per job published, with what failover needs to know about it.
CREATE TABLE page_jobs (
    job_id             uuid PRIMARY KEY,
    event_id           text NOT NULL,
    user_id            text NOT NULL,
    contact_method_id  uuid NOT NULL,
    transport          text NOT NULL,
    severity           text NOT NULL,
    address            text NOT NULL,
    created_at         timestamptz NOT NULL,
    failover_of        uuid,
    last_status        text,
    -- Set when the job failed for good: a permanent failure, or no status in time.
    failed_at          timestamptz
);
CREATE INDEX page_jobs_by_page ON page_jobs (event_id, user_id);
CREATE INDEX page_jobs_awaiting_status ON page_jobs (created_at)
    WHERE last_status IS NULL AND failed_at IS NULL AND severity IN ('error', 'critical');

-- What happened later: statuses, failover steps, digests. `dedup` makes a
-- redelivered status or failover step add nothing twice; a digest's decisions
-- have none (re-sent after a crash, it is written again; `router trail` shows
-- each once).
CREATE TABLE page_trail (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedup     text,
    kind      text NOT NULL CHECK (kind IN ('decision', 'status')),
    event_id  text,
    user_id   text,
    job_id    uuid,
    at        timestamptz NOT NULL,
    record    json NOT NULL
);
CREATE UNIQUE INDEX page_trail_dedup ON page_trail (dedup) WHERE dedup IS NOT NULL;
CREATE INDEX page_trail_by_event ON page_trail (event_id, at);
CREATE INDEX page_trail_by_user ON page_trail (user_id, at);
CREATE INDEX page_trail_by_time ON page_trail (at);
