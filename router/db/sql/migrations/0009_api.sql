-- router api: the answers to POSTs that carried an Idempotency-Key, kept 24 h
-- so a retried request gets the first answer and creates nothing; and the
-- audit log of directory changes.

CREATE TABLE api_idempotency (
    actor         text NOT NULL,
    key           text NOT NULL,
    request_hash  text NOT NULL,
    status        integer NOT NULL,
    body          jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor, key)
);
CREATE INDEX api_idempotency_by_time ON api_idempotency (created_at);

-- One row per directory change, written in the change's transaction. Addresses
-- in before/after are masked.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    action     text NOT NULL,
    entity     text NOT NULL CHECK (entity IN ('user', 'contact_method', 'opt_out')),
    entity_id  text NOT NULL,
    before     jsonb,
    after      jsonb
);
CREATE INDEX audit_log_by_time ON audit_log (at);
CREATE INDEX audit_log_by_entity ON audit_log (entity, entity_id, at);

-- The id a record has in the system it is synced from (the on-call SDK's
-- externalId): optional, unique per kind.
ALTER TABLE users ADD COLUMN external_id text;
CREATE UNIQUE INDEX users_external_id ON users (external_id) WHERE external_id IS NOT NULL;
ALTER TABLE contact_methods ADD COLUMN external_id text;
CREATE UNIQUE INDEX contact_methods_external_id ON contact_methods (external_id)
    WHERE external_id IS NOT NULL;
