-- Every query the router runs, by name. router/sql/__init__.py loads this file
-- once; router/store.py refers to the blocks by name and nowhere else holds SQL.
-- uuid columns come back as text (a codec set on every connection).

-- name: schema_version
-- The newest migration applied, or NULL on an empty table.
SELECT max(version) FROM schema_migrations;

------------------------------------------------------------------ the worker

-- name: users_by_ids
SELECT * FROM users WHERE id = ANY($1::text[]);

-- name: contact_methods_for_users
SELECT * FROM contact_methods
WHERE user_id = ANY($1::text[])
ORDER BY user_id, created_at, id;

-- name: opt_outs_for_addresses
SELECT transport, address FROM opt_outs WHERE address = ANY($1::text[]);

-- name: on_call
-- For each (schedule, instant): whether the schedule exists, and who is on call
-- then (one row per user; a NULL user_id when nobody is).
SELECT q.idx, s.id IS NOT NULL AS known, sh.user_id
FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS q (schedule_id, at, idx)
LEFT JOIN schedules s ON s.id = q.schedule_id
LEFT JOIN shifts sh
       ON sh.schedule_id = q.schedule_id AND sh.starts_at <= q.at AND q.at < sh.ends_at
ORDER BY q.idx, sh.starts_at, sh.user_id;

-- name: routed_within
SELECT event_id FROM routed_events
WHERE event_id = ANY($1::text[])
  AND routed_at > now() - make_interval(secs => $2);

-- name: mark_routed
INSERT INTO routed_events (event_id)
SELECT unnest($1::text[])
ON CONFLICT (event_id) DO UPDATE SET routed_at = excluded.routed_at;

-- name: lock_methods_for_rate_limit
-- Serializes routers that count sends for the same methods; ordered to avoid deadlocks.
SELECT id FROM contact_methods WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE;

-- name: sends_already_counted
SELECT job_id FROM rate_limit_sends WHERE job_id = ANY($1::uuid[]);

-- name: recent_sends
-- Jobs per method within each method's own window ($2, seconds).
SELECT r.contact_method_id, count(*) AS sent
FROM unnest($1::uuid[], $2::float8[]) AS w (method_id, window_seconds)
JOIN rate_limit_sends r
  ON r.contact_method_id = w.method_id
 AND r.sent_at > now() - make_interval(secs => w.window_seconds)
GROUP BY r.contact_method_id;

-- name: count_sends
INSERT INTO rate_limit_sends (job_id, contact_method_id)
SELECT * FROM unnest($1::uuid[], $2::uuid[])
ON CONFLICT (job_id) DO NOTHING;

-- name: purge_routed_events
DELETE FROM routed_events WHERE routed_at < now() - make_interval(secs => $1);

-- name: purge_rate_limit_sends
DELETE FROM rate_limit_sends WHERE sent_at < now() - make_interval(secs => $1);

------------------------------------------------------------------ users

-- name: insert_user
INSERT INTO users (id, name, timezone) VALUES ($1, $2, $3) RETURNING *;

-- name: user_for_update
SELECT * FROM users WHERE id = $1 FOR UPDATE;

-- name: update_user
UPDATE users
SET name = $2, timezone = $3, quiet_hours_start = $4, quiet_hours_end = $5,
    quiet_bypass = $6, channel_order = $7, delivery_mode = $8, updated_at = now()
WHERE id = $1
RETURNING *;

------------------------------------------------------------------ contact methods

-- name: clear_primary
-- Run before making a method primary, in the same transaction.
UPDATE contact_methods
SET is_primary = false, updated_at = now()
WHERE user_id = $1 AND transport = $2 AND is_primary AND id IS DISTINCT FROM $3::uuid;

-- name: insert_contact_method
INSERT INTO contact_methods (user_id, transport, value, label, is_primary, verified,
                             webhook_method, webhook_headers, webhook_query, webhook_body)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING *;

-- name: contact_method_by_value
SELECT id FROM contact_methods WHERE user_id = $1 AND transport = $2 AND value = $3;

-- name: contact_method_for_update
SELECT * FROM contact_methods WHERE id = $1::uuid FOR UPDATE;

-- name: update_contact_method
UPDATE contact_methods
SET label = $2, is_primary = $3, verified = $4, disabled = $5, muted = $6, mute_until = $7,
    suppress_up = $8, suppress_down = $9, suppress_first = $10, suppress_diagnostic = $11,
    suppress_all = $12, min_severity = $13, updated_at = now()
WHERE id = $1::uuid
RETURNING *;

------------------------------------------------------------------ opt-outs

-- name: add_opt_out
INSERT INTO opt_outs (transport, address, source) VALUES ($1, $2, $3)
ON CONFLICT (transport, address) DO NOTHING;

-- name: remove_opt_out
DELETE FROM opt_outs WHERE transport = $1 AND address = $2;

-- name: list_opt_outs
SELECT transport, address, source, created_at FROM opt_outs ORDER BY transport, address;

------------------------------------------------------------------ schedules

-- name: ensure_schedule
INSERT INTO schedules (id) VALUES ($1) ON CONFLICT (id) DO NOTHING;

-- name: add_shift
INSERT INTO shifts (schedule_id, user_id, starts_at, ends_at)
VALUES ($1, $2, $3, $4)
RETURNING id, schedule_id, user_id, starts_at, ends_at;

-- name: list_shifts
SELECT id, schedule_id, user_id, starts_at, ends_at FROM shifts
WHERE $1::text IS NULL OR schedule_id = $1
ORDER BY schedule_id, starts_at, user_id;
