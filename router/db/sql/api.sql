-- Queries of router api (router.db.api_store), beside the directory's in queries.sql.

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

-- name: api_list_audit
-- Newest first; NULL filters match everything.
SELECT id, at, actor, action, entity, entity_id, before, after FROM audit_log
WHERE ($1::text IS NULL OR entity = $1)
  AND ($2::text IS NULL OR entity_id = $2)
  AND ($3::timestamptz IS NULL OR at >= $3)
ORDER BY at DESC, id DESC
LIMIT $4;

-- name: api_user_by_external_id
SELECT * FROM users WHERE external_id = $1;

-- name: api_method_by_external_id
SELECT * FROM contact_methods WHERE external_id = $1;

