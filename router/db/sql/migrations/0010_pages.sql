-- Pages until someone answers: escalation policies and their steps, one row per
-- page (alert key) with its escalation state, every acknowledgement and resolve,
-- and a per-method delay before it is told (notify_after).

CREATE TABLE escalation_policies (
    id          text PRIMARY KEY CHECK (id <> ''),
    name        text NOT NULL,
    repeat      integer NOT NULL DEFAULT 0 CHECK (repeat >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE escalation_steps (
    policy_id     text NOT NULL REFERENCES escalation_policies (id) ON DELETE CASCADE,
    position      integer NOT NULL CHECK (position >= 1),
    delay_seconds integer NOT NULL CHECK (delay_seconds >= 0),
    user_ids      text[] NOT NULL DEFAULT '{}',
    schedule_ids  text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (policy_id, position),
    CONSTRAINT escalation_steps_page_someone
        CHECK (cardinality(user_ids) + cardinality(schedule_ids) > 0)
);

-- Reply codes cycle through 1..9999; the partial unique index keeps them unique
-- among open pages (a code still in use is skipped at insert time).
CREATE SEQUENCE page_reply_codes MINVALUE 1 MAXVALUE 9999 CYCLE;

CREATE TABLE pages (
    alert_key     text PRIMARY KEY,
    event_id      text NOT NULL,
    -- No foreign key: a policy deleted while a page escalates finishes from the
    -- snapshot taken when the page opened.
    policy_id     text,
    policy        json,
    -- json, not jsonb: an alert's text may hold \u0000, which jsonb refuses.
    event         json NOT NULL,
    reply_code    integer NOT NULL DEFAULT nextval('page_reply_codes'),
    step          integer NOT NULL DEFAULT 1 CHECK (step >= 1),
    round         integer NOT NULL DEFAULT 1 CHECK (round >= 1),
    opened_at     timestamptz NOT NULL,
    next_step_at  timestamptz,
    status        text NOT NULL DEFAULT 'open'
                  CHECK (status IN ('open', 'acknowledged', 'resolved', 'unacknowledged')),
    answered_by   text,
    answered_via  text,
    answered_at   timestamptz
);
CREATE UNIQUE INDEX pages_open_reply_code ON pages (reply_code) WHERE status = 'open';
CREATE INDEX pages_due ON pages (next_step_at) WHERE status = 'open' AND next_step_at IS NOT NULL;
CREATE INDEX pages_by_time ON pages (opened_at);

CREATE TABLE page_acks (
    id           bigserial PRIMARY KEY,
    alert_key    text NOT NULL,
    user_id      text,
    action       text NOT NULL CHECK (action IN ('ack', 'resolve')),
    source       text NOT NULL,
    at           timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    changed      boolean NOT NULL
);
CREATE INDEX page_acks_by_key ON page_acks (alert_key, recorded_at);

ALTER TABLE contact_methods
    ADD COLUMN notify_after_seconds integer NOT NULL DEFAULT 0 CHECK (notify_after_seconds >= 0);

ALTER TABLE held_pages DROP CONSTRAINT held_pages_reason_check;
ALTER TABLE held_pages ADD CONSTRAINT held_pages_reason_check
    CHECK (reason IN ('quiet_hours', 'rate_limited', 'notify_after'));
