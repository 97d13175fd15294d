-- Users and their contact methods, as the seed products model them:
-- transport + normalized value, label, primary per (user, transport), verified,
-- disabled, NodePing's mute / mute-until and per-kind suppress flags, and
-- NodePing's per-webhook options (method, headers, query strings, body).

CREATE TABLE users (
    id          text PRIMARY KEY CHECK (id <> '' AND length(id) <= 256),
    name        text,
    timezone    text NOT NULL DEFAULT 'UTC',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contact_methods (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- A user with contact methods cannot be deleted by accident; deleting
    -- them too is an explicit, separate step.
    user_id              text NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    transport            text NOT NULL CHECK (transport IN ('email', 'sms', 'webhook')),
    value                text NOT NULL CHECK (value <> ''),
    label                text,
    is_primary           boolean NOT NULL DEFAULT false,
    verified             boolean NOT NULL DEFAULT false,
    disabled             boolean NOT NULL DEFAULT false,
    muted                boolean NOT NULL DEFAULT false,
    mute_until           timestamptz,
    suppress_up          boolean NOT NULL DEFAULT false,
    suppress_down        boolean NOT NULL DEFAULT false,
    suppress_first       boolean NOT NULL DEFAULT false,
    suppress_diagnostic  boolean NOT NULL DEFAULT false,
    suppress_all         boolean NOT NULL DEFAULT false,
    webhook_method       text CHECK (webhook_method IN ('GET', 'POST', 'PUT', 'HEAD', 'DELETE')),
    webhook_headers      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(webhook_headers) = 'object'),
    webhook_query        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(webhook_query) = 'object'),
    webhook_body         text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contact_methods_unique_value UNIQUE (user_id, transport, value),
    CONSTRAINT contact_methods_webhook_options_only_on_webhooks CHECK (
        transport = 'webhook'
        OR (webhook_method IS NULL AND webhook_headers = '{}' AND webhook_query = '{}'
            AND webhook_body IS NULL)
    )
);

-- One primary method per user and transport.
CREATE UNIQUE INDEX contact_methods_one_primary
    ON contact_methods (user_id, transport) WHERE is_primary;
