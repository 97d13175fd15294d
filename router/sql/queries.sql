-- Every query the router runs, by name. router/sql/__init__.py loads this file
-- once; router/store.py refers to the blocks by name and nowhere else holds SQL.

-- name: schema_version
-- The newest migration applied, or NULL on an empty table.
SELECT max(version) FROM schema_migrations;

-- name: users_by_ids
SELECT id, name, timezone, created_at, updated_at
FROM users
WHERE id = ANY($1::text[]);

-- name: contact_methods_for_users
SELECT id::text AS id, user_id, transport, value, label, is_primary, verified, disabled,
       muted, mute_until, suppress_up, suppress_down, suppress_first, suppress_diagnostic,
       suppress_all, webhook_method, webhook_headers, webhook_query, webhook_body,
       created_at, updated_at
FROM contact_methods
WHERE user_id = ANY($1::text[])
ORDER BY user_id, created_at, id;

-- name: insert_user
INSERT INTO users (id, name, timezone)
VALUES ($1, $2, $3)
RETURNING id, name, timezone, created_at, updated_at;

-- name: clear_primary
-- Run before making a method primary, in the same transaction.
UPDATE contact_methods
SET is_primary = false, updated_at = now()
WHERE user_id = $1 AND transport = $2 AND is_primary AND id IS DISTINCT FROM $3::uuid;

-- name: insert_contact_method
INSERT INTO contact_methods (user_id, transport, value, label, is_primary, verified,
                             webhook_method, webhook_headers, webhook_query, webhook_body)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING id::text AS id, user_id, transport, value, label, is_primary, verified, disabled,
          muted, mute_until, suppress_up, suppress_down, suppress_first, suppress_diagnostic,
          suppress_all, webhook_method, webhook_headers, webhook_query, webhook_body,
          created_at, updated_at;

-- name: contact_method_by_value
SELECT id::text AS id
FROM contact_methods
WHERE user_id = $1 AND transport = $2 AND value = $3;

-- name: set_disabled
UPDATE contact_methods
SET disabled = $2, updated_at = now()
WHERE id = $1::uuid
RETURNING id::text AS id;
