-- Queries of router api (router.db.api_store), beside the directory's in queries.sql.

-- name: api_change_contact_method
-- Every field the API and `contacts update` can set, the value and webhook settings included.
UPDATE contact_methods
SET value = $2, label = $3, is_primary = $4, verified = $5, disabled = $6, muted = $7,
    mute_until = $8, suppress_up = $9, suppress_down = $10, suppress_first = $11,
    suppress_diagnostic = $12, suppress_all = $13, min_severity = $14, metadata = $15,
    tags = $16, webhook_method = $17, webhook_headers = $18, webhook_query = $19,
    webhook_body = $20, external_id = $21, updated_at = now()
WHERE id = $1::uuid
RETURNING *;

-- name: api_other_method_with_value
SELECT id FROM contact_methods
WHERE user_id = $1 AND transport = $2 AND value = $3 AND id <> $4::uuid;

-- name: api_insert_user
INSERT INTO users (id, name, timezone, quiet_hours_start, quiet_hours_end, quiet_bypass,
                   channel_order, delivery_mode, quiet_action, external_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING *;

-- name: api_forget_stale_key
DELETE FROM api_idempotency
WHERE actor = $1 AND key = $2 AND created_at <= now() - interval '24 hours';

-- name: api_claim_key
-- Status 0 marks a request in progress; NULL when another request holds the key.
INSERT INTO api_idempotency (actor, key, request_hash, status, body)
VALUES ($1, $2, $3, 0, 'null')
ON CONFLICT (actor, key) DO NOTHING
RETURNING status;

-- name: api_keyed_answer
SELECT request_hash, status, body FROM api_idempotency WHERE actor = $1 AND key = $2;

-- name: api_save_keyed_answer
UPDATE api_idempotency SET status = $3, body = $4 WHERE actor = $1 AND key = $2;

-- name: api_release_key
DELETE FROM api_idempotency WHERE actor = $1 AND key = $2 AND status = 0;

-- name: api_write_audit
INSERT INTO audit_log (actor, action, entity, entity_id, before, after)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: api_list_audit
-- Newest first; NULL filters match everything.
SELECT id, at, actor, action, entity, entity_id, before, after FROM audit_log
WHERE ($1::text IS NULL OR entity = $1)
  AND ($2::text IS NULL OR entity_id = $2)
  AND ($3::timestamptz IS NULL OR at >= $3)
ORDER BY at DESC, id DESC
LIMIT $4;

-- name: api_set_user_external_id
UPDATE users SET external_id = $2, updated_at = now() WHERE id = $1 RETURNING *;

-- name: api_user_by_external_id
SELECT * FROM users WHERE external_id = $1;

-- name: api_method_by_external_id
SELECT * FROM contact_methods WHERE external_id = $1;

-- name: api_insert_contact_method
INSERT INTO contact_methods (user_id, transport, value, label, is_primary, verified,
                             webhook_method, webhook_headers, webhook_query, webhook_body,
                             metadata, tags, external_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
RETURNING *;

-- name: api_methods_of_user_for_update
SELECT * FROM contact_methods WHERE user_id = $1 ORDER BY created_at, id FOR UPDATE;

-- name: api_methods_for_update
SELECT * FROM contact_methods WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE;

-- name: api_imported_methods
-- The stored methods an import's rows name (by user, transport and value).
SELECT cm.* FROM contact_methods cm
JOIN import_rows r ON (r.user_id, r.transport, r.value) = (cm.user_id, cm.transport, cm.value);
