-- Routing rules: per-user quiet hours, channel preference and delivery mode;
-- per-method minimum severity; the opt-out list; on-call schedules; the ledger
-- of routed events (duplicate detection); and sends counted for rate limits.

ALTER TABLE users
    ADD COLUMN quiet_hours_start time,
    ADD COLUMN quiet_hours_end   time,
    ADD COLUMN quiet_bypass      text NOT NULL DEFAULT 'critical'
        CHECK (quiet_bypass IN ('critical', 'error', 'warning', 'info')),
    ADD COLUMN channel_order     text[] NOT NULL DEFAULT '{sms,email,webhook}'
        CHECK (channel_order <@ ARRAY['sms', 'email', 'webhook']::text[]),
    ADD COLUMN delivery_mode     text NOT NULL DEFAULT 'all'
        CHECK (delivery_mode IN ('all', 'preferred')),
    ADD CONSTRAINT users_quiet_hours_complete CHECK (
        (quiet_hours_start IS NULL) = (quiet_hours_end IS NULL)
        AND (quiet_hours_start IS NULL OR quiet_hours_start <> quiet_hours_end)
    );

ALTER TABLE contact_methods
    ADD COLUMN min_severity text CHECK (min_severity IN ('critical', 'error', 'warning', 'info'));

-- An opt-out applies to every user's methods with that address.
CREATE TABLE opt_outs (
    transport   text NOT NULL CHECK (transport IN ('sms', 'email')),
    address     text NOT NULL CHECK (address <> ''),
    source      text NOT NULL DEFAULT 'cli',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (transport, address)
);

CREATE TABLE schedules (
    id          text PRIMARY KEY CHECK (id <> '' AND length(id) <= 256),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE shifts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule_id  text NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    -- Removing a user who is on a schedule must be deliberate: it leaves a gap.
    user_id      text NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX shifts_by_schedule_time ON shifts (schedule_id, starts_at, ends_at);

-- Events whose every job and decision the broker acknowledged.
CREATE TABLE routed_events (
    event_id   text PRIMARY KEY,
    routed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX routed_events_by_time ON routed_events (routed_at);

-- One row per job counted against its method's rate limit, shared by all pods.
CREATE TABLE rate_limit_sends (
    job_id             uuid PRIMARY KEY,
    contact_method_id  uuid NOT NULL REFERENCES contact_methods (id) ON DELETE CASCADE,
    sent_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rate_limit_sends_by_method_time ON rate_limit_sends (contact_method_id, sent_at);
