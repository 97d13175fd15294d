-- Every query the router runs, by name. router/sql/__init__.py loads this file
-- once; router/store.py refers to the blocks by name and nowhere else holds SQL.
-- uuid columns come back as text (a codec set on every connection).
-- Searches arrive LIKE-escaped (store.like_literal): '%' and '_' match themselves.

-- name: ping
SELECT 1;

-- name: schema_version
-- The newest migration applied, or NULL on an empty table.
SELECT max(version) FROM schema_migrations;

------------------------------------------------------------------ the worker

-- name: users_by_ids
SELECT * FROM users WHERE id = ANY($1::text[]);

-- name: user_ids_up_to
-- Every user id, when there are at most $1 of them (the caller asks for $1 + 1).
SELECT id FROM users ORDER BY id LIMIT $1;

-- name: contact_methods_for_users
SELECT * FROM contact_methods
WHERE user_id = ANY($1::text[])
ORDER BY user_id, created_at, id;

-- name: opt_outs_for_addresses
SELECT transport, address FROM opt_outs WHERE address = ANY($1::text[]);

-- name: routed_within
-- $1: a JSON array of event ids (see write_trail: no per-element work in the driver).
SELECT event_id FROM routed_events
WHERE event_id = ANY (ARRAY(SELECT json_array_elements_text($1::json)))
  AND routed_at > now() - make_interval(secs => $2);

-- name: mark_routed
INSERT INTO routed_events (event_id)
SELECT unnest($1::text[])
ON CONFLICT (event_id) DO UPDATE SET routed_at = excluded.routed_at;

-- name: write_trail
-- A batch's page trail in one statement: the events with their decisions
-- ($1-$4: JSON arrays, an element per event: its id, the event as it came, the
-- array of its decisions, when it was routed), the jobs ($5: a JSON array of job
-- rows, JobRow's fields; digest_of the events a digest carries, null for other
-- jobs) and any other decisions ($6-$12). The jobs come as one JSON text:
-- PostgreSQL reads it faster than the worker writes ten arrays of 1,500 values;
-- the events as JSON arrays, not PostgreSQL arrays, as the driver checks each
-- element of an array it sends in Python and a JSON text not at all. Each event
-- is read by json_array_elements, which keeps its text as it came: the json
-- operators (->) would read every string in it and refuse a \u0000 json keeps.
WITH events AS (
    INSERT INTO page_events (event_id, event, decisions, routed_at)
    SELECT e, j, d, t::timestamptz
    FROM ROWS FROM (json_array_elements_text($1::json), json_array_elements($2::json),
                    json_array_elements($3::json), json_array_elements_text($4::json))
         AS u (e, j, d, t)
    ON CONFLICT (event_id) DO NOTHING
), jobs AS (
    INSERT INTO page_jobs (job_id, event_id, user_id, contact_method_id, transport, severity,
                           address, created_at, failover_of, digest_of)
    SELECT job_id, event_id, user_id, contact_method_id, transport, severity,
           address, created_at, failover_of, NULLIF(digest_of, '{}')
    FROM json_to_recordset($5::json)
         AS g (job_id uuid, event_id text, user_id text, contact_method_id uuid,
               transport text, severity text, address text, created_at timestamptz,
               failover_of uuid, digest_of text[])
    ON CONFLICT (job_id) DO NOTHING
)
INSERT INTO page_trail (dedup, kind, event_id, user_id, job_id, at, record)
SELECT d, k, e, u, j, t, r::json
FROM unnest($6::text[], $7::text[], $8::text[], $9::text[], $10::uuid[],
            $11::timestamptz[], $12::text[]) AS x (d, k, e, u, j, t, r)
ON CONFLICT (dedup) WHERE dedup IS NOT NULL DO NOTHING;

-- name: record_batch
-- A routed batch's whole ledger after the broker acknowledged its output, in one
-- statement: its page trail ($1-$12, as write_trail), its events marked routed
-- ($13, a JSON array of their ids, as mark_routed), and the jobs counted against
-- rate limits without a reservation: the trail's jobs of the events in $14 (a JSON
-- array of ids, as $13), each at its created_at (the
-- worker's clock it was decided at), jobs no limit holds back (critical), counted
-- as count_sends would. The jobs' JSON is read once for both.
-- The worker runs it first without its ON CONFLICT lines (no conflict check per
-- row, a third of the statement's cost), and as written when a row is there already.
WITH g AS MATERIALIZED (
    SELECT job_id, event_id, user_id, contact_method_id, transport, severity,
           address, created_at, failover_of, NULLIF(digest_of, '{}') AS digest_of
    FROM json_to_recordset($5::json)
         AS g (job_id uuid, event_id text, user_id text, contact_method_id uuid,
               transport text, severity text, address text, created_at timestamptz,
               failover_of uuid, digest_of text[])
), events AS (
    INSERT INTO page_events (event_id, event, decisions, routed_at)
    SELECT e, j, d, t::timestamptz
    FROM ROWS FROM (json_array_elements_text($1::json), json_array_elements($2::json),
                    json_array_elements($3::json), json_array_elements_text($4::json))
         AS u (e, j, d, t)
    ON CONFLICT (event_id) DO NOTHING
), jobs AS (
    INSERT INTO page_jobs (job_id, event_id, user_id, contact_method_id, transport, severity,
                           address, created_at, failover_of, digest_of)
    SELECT job_id, event_id, user_id, contact_method_id, transport, severity,
           address, created_at, failover_of, digest_of
    FROM g
    ON CONFLICT (job_id) DO NOTHING
), routed AS (
    INSERT INTO routed_events (event_id)
    SELECT json_array_elements_text($13::json)
    ON CONFLICT (event_id) DO UPDATE SET routed_at = excluded.routed_at
), counted AS (
    INSERT INTO rate_limit_sends (job_id, contact_method_id, sent_at)
    SELECT g.job_id, g.contact_method_id, g.created_at
    FROM g JOIN (SELECT DISTINCT json_array_elements_text($14::json) AS event_id) AS c
         USING (event_id)
    ON CONFLICT (job_id) DO NOTHING
)
INSERT INTO page_trail (dedup, kind, event_id, user_id, job_id, at, record)
SELECT d, k, e, u, j, t, r::json
FROM unnest($6::text[], $7::text[], $8::text[], $9::text[], $10::uuid[],
            $11::timestamptz[], $12::text[]) AS x (d, k, e, u, j, t, r)
ON CONFLICT (dedup) WHERE dedup IS NOT NULL DO NOTHING;

-- name: lock_methods_for_rate_limit
-- Serializes routers that count sends for the same methods; ordered to avoid deadlocks.
SELECT id FROM contact_methods WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE;

-- name: rate_limit_state
-- After lock_methods_for_rate_limit, in the same transaction: the jobs of $4
-- already counted (kind 'counted', the job id) and, per method of $1, when its
-- newest sends went out (kind 'recent', the method id): at most $3 of them
-- (its largest bucket), within $2 seconds (its longest window) of $5 (now).
SELECT 'counted' AS kind, job_id AS id, NULL::timestamptz AS sent_at
FROM rate_limit_sends WHERE job_id = ANY($4::uuid[])
UNION ALL
SELECT 'recent', ranked.contact_method_id, ranked.sent_at
FROM (
    SELECT r.contact_method_id, r.sent_at,
           row_number() OVER (PARTITION BY r.contact_method_id ORDER BY r.sent_at DESC) AS n,
           w.most
    FROM unnest($1::uuid[], $2::float8[], $3::int[]) AS w (method_id, window_seconds, most)
    JOIN rate_limit_sends r
      ON r.contact_method_id = w.method_id
     AND r.sent_at > $5::timestamptz - make_interval(secs => w.window_seconds)
) AS ranked
WHERE ranked.n <= ranked.most;

-- name: count_sends
-- Counted at the worker's clock ($3), the one the limits are read with.
INSERT INTO rate_limit_sends (job_id, contact_method_id, sent_at)
SELECT j, m, $3::timestamptz FROM unnest($1::uuid[], $2::uuid[]) AS t (j, m)
ON CONFLICT (job_id) DO NOTHING;

-- name: hold_pages
-- Pages deferred by quiet hours or a rate limit. A page held before (a
-- redelivered batch) stays as it is, done or not; with $10 (an escalation step,
-- which never runs twice: its holds commit with its move) a page whose earlier
-- hold already went out waits again, for this later step. A page still waiting
-- stays as it is: its digest carries the event once.
INSERT INTO held_pages (event_id, contact_method_id, user_id, transport, reason, severity,
                        deliver_at, held_at, event)
SELECT DISTINCT ON (e, m) e, m, u, t, r, s, d, h, j::json
FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::timestamptz[], $8::timestamptz[], $9::text[]) AS x (e, m, u, t, r, s, d, h, j)
ON CONFLICT (event_id, contact_method_id) DO UPDATE
SET reason = excluded.reason, severity = excluded.severity, deliver_at = excluded.deliver_at,
    held_at = excluded.held_at, event = excluded.event,
    done_at = NULL, outcome = NULL, digest_job_id = NULL
WHERE $10::bool AND held_pages.done_at IS NOT NULL;

-- name: purge_routed_events
DELETE FROM routed_events WHERE routed_at < now() - make_interval(secs => $1);

-- name: purge_rate_limit_sends
DELETE FROM rate_limit_sends WHERE sent_at < now() - make_interval(secs => $1);

------------------------------------------------------------------ users

-- name: insert_user
INSERT INTO users (id, name, timezone, quiet_hours_start, quiet_hours_end, quiet_bypass,
                   channel_order, delivery_mode, quiet_action, external_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING *;

-- name: user_for_update
SELECT * FROM users WHERE id = $1 FOR UPDATE;

-- name: update_user
UPDATE users
SET name = $2, timezone = $3, quiet_hours_start = $4, quiet_hours_end = $5,
    quiet_bypass = $6, channel_order = $7, delivery_mode = $8, quiet_action = $9,
    external_id = $10, updated_at = now()
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
                             webhook_method, webhook_headers, webhook_query, webhook_body,
                             metadata, tags, external_id, notify_after_seconds)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
RETURNING *;

-- name: contact_method_by_value
SELECT id FROM contact_methods WHERE user_id = $1 AND transport = $2 AND value = $3;

-- name: contact_method_for_update
SELECT * FROM contact_methods WHERE id = $1::uuid FOR UPDATE;

-- name: update_contact_method
-- Every field the API and `contacts update` can set, the value and webhook settings included.
UPDATE contact_methods
SET value = $2, label = $3, is_primary = $4, verified = $5, disabled = $6, muted = $7,
    mute_until = $8, suppress_up = $9, suppress_down = $10, suppress_first = $11,
    suppress_diagnostic = $12, suppress_all = $13, min_severity = $14, metadata = $15,
    tags = $16, webhook_method = $17, webhook_headers = $18, webhook_query = $19,
    webhook_body = $20, external_id = $21, notify_after_seconds = $22, updated_at = now()
WHERE id = $1::uuid
RETURNING *;

-- name: other_method_with_value
SELECT id FROM contact_methods
WHERE user_id = $1 AND transport = $2 AND value = $3 AND id <> $4::uuid;

-- name: methods_of_user_for_update
SELECT * FROM contact_methods WHERE user_id = $1 ORDER BY created_at, id FOR UPDATE;

-- name: methods_for_update
SELECT * FROM contact_methods WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE;

-- name: imported_methods
-- The stored methods an import's rows name (by user, transport and value).
SELECT cm.* FROM contact_methods cm
JOIN import_rows r ON (r.user_id, r.transport, r.value) = (cm.user_id, cm.transport, cm.value);

-- name: write_audit
INSERT INTO audit_log (actor, action, entity, entity_id, before, after)
VALUES ($1, $2, $3, $4, $5, $6);

------------------------------------------------------------------ opt-outs

-- name: add_opt_out
-- With an actor ($4), a new entry also writes its audit row ($5: the masked address).
WITH added AS (
    INSERT INTO opt_outs (transport, address, source) VALUES ($1, $2, $3)
    ON CONFLICT (transport, address) DO NOTHING
    RETURNING transport
)
INSERT INTO audit_log (actor, action, entity, entity_id, before, after)
SELECT $4, 'create', 'opt_out', $5, NULL, jsonb_build_object('transport', transport, 'address', $5::text)
FROM added WHERE $4::text IS NOT NULL;

-- name: remove_opt_out
-- Returns the entry removed; with an actor ($3), its audit row too ($4: masked address).
WITH removed AS (
    DELETE FROM opt_outs WHERE transport = $1 AND address = $2 RETURNING transport
), audited AS (
    INSERT INTO audit_log (actor, action, entity, entity_id, before, after)
    SELECT $3, 'delete', 'opt_out', $4, jsonb_build_object('transport', transport, 'address', $4::text), NULL
    FROM removed WHERE $3::text IS NOT NULL
)
SELECT count(*) FROM removed;

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

-- Schedules with rotations and overrides (migration 0008); used by
-- router/schedules/store.py.

-- name: add_schedule
-- A new schedule, or one that add-shift created without a name; no row when
-- the schedule exists with a name already.
INSERT INTO schedules (id, name, timezone) VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE SET name = excluded.name, timezone = excluded.timezone
    WHERE schedules.name IS NULL
RETURNING id, name, timezone;

-- name: delete_schedule
DELETE FROM schedules WHERE id = $1;

-- name: remove_shift
DELETE FROM shifts WHERE id = $1 RETURNING id, schedule_id, user_id, starts_at, ends_at;

-- name: schedules_by_ids
SELECT id, name, timezone FROM schedules WHERE id = ANY($1::text[]);

-- name: list_schedules
SELECT id, name, timezone FROM schedules ORDER BY id;

-- name: add_rotation
INSERT INTO rotations (schedule_id, id, every, starts_at) VALUES ($1, $2, $3, $4);

-- name: add_rotation_members
INSERT INTO rotation_members (schedule_id, rotation_id, position, user_id)
SELECT $1, $2, m.position - 1, m.user_id
FROM unnest($3::text[]) WITH ORDINALITY AS m (user_id, position);

-- name: clear_rotation_members
DELETE FROM rotation_members WHERE schedule_id = $1 AND rotation_id = $2;

-- name: rotation_exists
SELECT 1 FROM rotations WHERE schedule_id = $1 AND id = $2 FOR UPDATE;

-- name: remove_rotation
DELETE FROM rotations WHERE schedule_id = $1 AND id = $2;

-- name: schedule_definitions
-- In one round trip: each named schedule that exists, its rotations (members in
-- turn order) and the shifts and overrides overlapping any of its
-- ($1 schedule, $2 since, $3 until) windows, as jsonb.
WITH q AS (
    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])
        AS q (schedule_id, since, until)
)
SELECT s.id, s.name, s.timezone,
    (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'id', r.id,
                'every_seconds', extract(epoch FROM r.every),
                'starts_at', r.starts_at,
                'users', (SELECT jsonb_agg(m.user_id ORDER BY m.position)
                          FROM rotation_members m
                          WHERE m.schedule_id = r.schedule_id AND m.rotation_id = r.id))
            ORDER BY r.id), '[]'::jsonb)
     FROM rotations r WHERE r.schedule_id = s.id) AS rotations,
    (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'id', sh.id, 'user_id', sh.user_id,
                'starts_at', sh.starts_at, 'ends_at', sh.ends_at)
            ORDER BY sh.starts_at, sh.id), '[]'::jsonb)
     FROM shifts sh
     WHERE sh.schedule_id = s.id
       AND EXISTS (SELECT 1 FROM q WHERE q.schedule_id = s.id
                   AND sh.starts_at < q.until AND q.since < sh.ends_at)) AS shifts,
    (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'id', o.id, 'user_id', o.user_id, 'replaces', o.replaces,
                'starts_at', o.starts_at, 'ends_at', o.ends_at)
            ORDER BY o.id), '[]'::jsonb)
     FROM overrides o
     WHERE o.schedule_id = s.id
       AND EXISTS (SELECT 1 FROM q WHERE q.schedule_id = s.id
                   AND o.starts_at < q.until AND q.since < o.ends_at)) AS overrides
FROM schedules s
WHERE s.id IN (SELECT schedule_id FROM q);

-- name: add_override
INSERT INTO overrides (schedule_id, user_id, replaces, starts_at, ends_at)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, schedule_id, user_id, replaces, starts_at, ends_at;

-- name: remove_override
DELETE FROM overrides WHERE id = $1
RETURNING id, schedule_id, user_id, replaces, starts_at, ends_at;

------------------------------------------------------------------ directory management

-- name: get_user
SELECT * FROM users WHERE id = $1;

-- name: list_users
-- Keyset pagination by id; $1 is the last id seen (NULL for the first page).
SELECT * FROM users
WHERE ($1::text IS NULL OR id > $1)
  AND ($2::text IS NULL OR id ILIKE '%' || $2 || '%' ESCAPE '\' OR name ILIKE '%' || $2 || '%' ESCAPE '\')
ORDER BY id
LIMIT $3;

-- name: user_dependents
SELECT (SELECT count(*) FROM contact_methods WHERE user_id = $1) AS methods,
       (SELECT count(*) FROM shifts WHERE user_id = $1) AS shifts;

-- name: delete_user_methods
DELETE FROM contact_methods WHERE user_id = $1;

-- name: delete_user_shifts
DELETE FROM shifts WHERE user_id = $1;

-- name: delete_user
DELETE FROM users WHERE id = $1;

-- name: get_contact_method
SELECT * FROM contact_methods WHERE id = $1::uuid;

-- name: list_contact_methods
-- Filters are NULL when not given. Keyset pagination on (user_id, transport,
-- value), which is unique; $7..$9 are the last row seen. $10 is LIMIT, $11 OFFSET.
SELECT * FROM contact_methods
WHERE ($1::text IS NULL OR user_id = $1)
  AND ($2::text IS NULL OR transport = $2)
  AND ($3::boolean IS NULL OR verified = $3)
  AND ($4::text IS NULL OR value ILIKE '%' || $4 || '%' ESCAPE '\' OR label ILIKE '%' || $4 || '%' ESCAPE '\'
       OR user_id ILIKE '%' || $4 || '%' ESCAPE '\')
  AND ($5::jsonb IS NULL OR metadata @> $5)
  AND ($6::text IS NULL OR $6 = ANY (tags))
  AND ($7::text IS NULL OR (user_id, transport, value) > ($7, $8, $9))
ORDER BY user_id, transport, value
LIMIT $10 OFFSET $11;

-- name: primary_contact_method
SELECT * FROM contact_methods WHERE user_id = $1 AND transport = $2 AND is_primary;

-- name: delete_contact_method
DELETE FROM contact_methods WHERE id = $1::uuid RETURNING id;

-- name: start_verification
INSERT INTO contact_method_verifications (contact_method_id, code_hash, expires_at)
VALUES ($1::uuid, $2, now() + make_interval(secs => $3))
ON CONFLICT (contact_method_id) DO UPDATE
SET code_hash = excluded.code_hash, expires_at = excluded.expires_at, failed_attempts = 0,
    created_at = now()
RETURNING expires_at;

-- name: pending_verification
SELECT code_hash, expires_at, failed_attempts, expires_at <= now() AS expired
FROM contact_method_verifications WHERE contact_method_id = $1::uuid FOR UPDATE;

-- name: count_failed_verification
UPDATE contact_method_verifications SET failed_attempts = failed_attempts + 1
WHERE contact_method_id = $1::uuid
RETURNING failed_attempts;

-- name: end_verification
DELETE FROM contact_method_verifications WHERE contact_method_id = $1::uuid;

-- name: mark_verified
UPDATE contact_methods SET verified = true, updated_at = now()
WHERE id = $1::uuid
RETURNING *;

-- name: users_that_exist
SELECT id FROM users WHERE id = ANY($1::text[]);

-- name: create_import_table
CREATE TEMPORARY TABLE import_rows (
    user_id text, transport text, value text, label text, is_primary boolean,
    verified boolean, disabled boolean, muted boolean, mute_until timestamptz,
    suppress_up boolean, suppress_down boolean, suppress_first boolean,
    suppress_diagnostic boolean, suppress_all boolean, min_severity text,
    webhook_method text, webhook_headers jsonb, webhook_query jsonb, webhook_body text,
    metadata jsonb, tags text[]
) ON COMMIT DROP;

-- name: create_missing_users
INSERT INTO users (id) SELECT DISTINCT user_id FROM import_rows ON CONFLICT (id) DO NOTHING;

-- name: clear_primaries_for_import
-- Imported primaries replace the old primary of their (user, transport).
UPDATE contact_methods cm SET is_primary = false, updated_at = now()
FROM import_rows r
WHERE r.is_primary AND cm.is_primary AND cm.user_id = r.user_id
  AND cm.transport = r.transport AND cm.value <> r.value;

-- name: upsert_imported
-- Returns how many rows were inserted and how many updated.
WITH upserted AS (
INSERT INTO contact_methods AS cm (
    user_id, transport, value, label, is_primary, verified, disabled, muted, mute_until,
    suppress_up, suppress_down, suppress_first, suppress_diagnostic, suppress_all,
    min_severity, webhook_method, webhook_headers, webhook_query, webhook_body, metadata, tags)
SELECT user_id, transport, value, label, is_primary, verified, disabled, muted, mute_until,
       suppress_up, suppress_down, suppress_first, suppress_diagnostic, suppress_all,
       min_severity, webhook_method, webhook_headers, webhook_query, webhook_body, metadata, tags
FROM import_rows
ON CONFLICT (user_id, transport, value) DO UPDATE SET
    label = excluded.label, is_primary = excluded.is_primary, verified = excluded.verified,
    disabled = excluded.disabled, muted = excluded.muted, mute_until = excluded.mute_until,
    suppress_up = excluded.suppress_up, suppress_down = excluded.suppress_down,
    suppress_first = excluded.suppress_first,
    suppress_diagnostic = excluded.suppress_diagnostic, suppress_all = excluded.suppress_all,
    min_severity = excluded.min_severity, webhook_method = excluded.webhook_method,
    webhook_headers = excluded.webhook_headers, webhook_query = excluded.webhook_query,
    webhook_body = excluded.webhook_body, metadata = excluded.metadata, tags = excluded.tags,
    updated_at = now()
-- A row identical to what is stored is left alone, so re-importing an export
-- changes nothing, updated_at included.
WHERE (cm.label, cm.is_primary, cm.verified, cm.disabled, cm.muted, cm.mute_until,
       cm.suppress_up, cm.suppress_down, cm.suppress_first, cm.suppress_diagnostic,
       cm.suppress_all, cm.min_severity, cm.webhook_method, cm.webhook_headers,
       cm.webhook_query, cm.webhook_body, cm.metadata, cm.tags)
  IS DISTINCT FROM
      (excluded.label, excluded.is_primary, excluded.verified, excluded.disabled,
       excluded.muted, excluded.mute_until, excluded.suppress_up, excluded.suppress_down,
       excluded.suppress_first, excluded.suppress_diagnostic, excluded.suppress_all,
       excluded.min_severity, excluded.webhook_method, excluded.webhook_headers,
       excluded.webhook_query, excluded.webhook_body, excluded.metadata, excluded.tags)
RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted,
       count(*) FILTER (WHERE NOT inserted) AS updated
FROM upserted;

------------------------------------------------------------------ held pages

-- name: claim_held_pages
-- Due pages ($1: now; all of them when $3), optionally one user's ($2), at most
-- $4, claimed for this transaction by whole contact methods: all of a method's
-- due pages go to one worker, so they make one digest. A method is claimed with a
-- transaction-scoped advisory lock on its id (class 7301: held pages), tried and
-- never waited for: a method another worker holds is skipped this round. Row locks
-- alone would split a method's pages between two workers scanning at once (each
-- skipping the rows the other has locked so far): two digests to one address.
-- Pages a claimer settled or postponed after this statement's snapshot are
-- dropped by FOR UPDATE's recheck of the WHERE clause on their latest version.
WITH due AS MATERIALIZED (
    SELECT contact_method_id, min(held_at) AS first_held
    FROM held_pages
    WHERE done_at IS NULL
      AND ($2::text IS NULL OR user_id = $2)
      AND ($3::bool OR deliver_at <= $1::timestamptz)
    GROUP BY contact_method_id
    ORDER BY first_held, contact_method_id
    LIMIT $4
), mine AS MATERIALIZED (
    SELECT contact_method_id FROM due
    WHERE pg_try_advisory_xact_lock(7301, hashtext(contact_method_id::text))
)
SELECT event_id, contact_method_id, user_id, transport, reason, deliver_at, held_at, event
FROM held_pages
WHERE contact_method_id IN (SELECT contact_method_id FROM mine)
  AND done_at IS NULL
  AND ($2::text IS NULL OR user_id = $2)
  AND ($3::bool OR deliver_at <= $1::timestamptz)
ORDER BY contact_method_id, held_at
LIMIT $4
FOR UPDATE SKIP LOCKED;

-- name: settle_held_pages
-- How each page ended ('sent' with its digest's job id, 'refused', 'expired').
UPDATE held_pages h
SET done_at = $3::timestamptz, outcome = u.outcome, digest_job_id = u.job_id
FROM unnest($1::text[], $2::uuid[], $4::text[], $5::uuid[]) AS u (event_id, method_id, outcome, job_id)
WHERE h.event_id = u.event_id AND h.contact_method_id = u.method_id;

-- name: postpone_held_pages
UPDATE held_pages h
SET deliver_at = u.deliver_at
FROM unnest($1::text[], $2::uuid[], $3::timestamptz[]) AS u (event_id, method_id, deliver_at)
WHERE h.event_id = u.event_id AND h.contact_method_id = u.method_id;

-- name: list_held_pages
SELECT event_id, contact_method_id, user_id, transport, reason, deliver_at, held_at, event
FROM held_pages
WHERE done_at IS NULL AND ($1::text IS NULL OR user_id = $1)
ORDER BY user_id, deliver_at, held_at, event_id;

-- name: held_page_counts
SELECT transport, count(*) AS held FROM held_pages WHERE done_at IS NULL GROUP BY transport;

-- name: purge_held_pages
DELETE FROM held_pages WHERE done_at < now() - make_interval(secs => $1);

------------------------------------------------------------------ page trail

-- name: jobs_by_id
SELECT * FROM page_jobs WHERE job_id = ANY($1::uuid[]);

-- name: record_statuses
-- Statuses into the trail (a repeat adds nothing); for each one new, its job's
-- last status, and failed_at when it failed for good ($8: permanent failure).
WITH added AS (
    INSERT INTO page_trail (dedup, kind, event_id, user_id, job_id, at, record)
    SELECT d, 'status', e, u, j, t, r::json
    FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::timestamptz[], $6::text[])
         AS x (d, e, u, j, t, r)
    ON CONFLICT (dedup) WHERE dedup IS NOT NULL DO NOTHING
    RETURNING dedup, job_id
), facts AS (
    -- One row per job (an UPDATE applies one source row per target row): the last
    -- status of the batch, and whether any of them failed it for good.
    SELECT a.job_id,
           (array_agg(f.status ORDER BY f.n DESC))[1] AS status,
           bool_or(f.failed) AS failed
    FROM added a
    JOIN unnest($1::text[], $7::text[], $8::bool[]) WITH ORDINALITY AS f (dedup, status, failed, n)
      USING (dedup)
    GROUP BY a.job_id
), updated AS (
    UPDATE page_jobs p
    SET last_status = f.status,
        failed_at = CASE WHEN f.failed AND p.failed_at IS NULL THEN now() ELSE p.failed_at END
    FROM facts f
    WHERE p.job_id = f.job_id
)
SELECT dedup FROM added;

-- name: pages_state
-- Every job of the pages ($1 event ids, $2 user ids, pairwise): their own and
-- the digests that carried them; each page's event, and the contact methods
-- that still have the page held (quiet hours, a rate limit).
SELECT p.*, q.event_id AS page_event_id, e.event::text AS event, e.routed_at,
       ARRAY(SELECT h.contact_method_id::text FROM held_pages h
             WHERE h.event_id = q.event_id AND h.user_id = q.user_id AND h.done_at IS NULL)
           AS held
FROM unnest($1::text[], $2::text[]) AS q (event_id, user_id)
JOIN page_events e ON e.event_id = q.event_id
JOIN page_jobs p
  ON p.user_id = q.user_id AND (p.event_id = q.event_id OR p.digest_of @> ARRAY[q.event_id])
ORDER BY p.created_at, p.job_id;

-- name: add_failover_job
INSERT INTO page_jobs (job_id, event_id, user_id, contact_method_id, transport, severity,
                       address, created_at, failover_of)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (job_id) DO NOTHING
RETURNING job_id;

-- name: add_trail_decision
INSERT INTO page_trail (dedup, kind, event_id, user_id, job_id, at, record)
VALUES ($1, 'decision', $2, $3, $4, $5, ($6::text)::json)
ON CONFLICT (dedup) WHERE dedup IS NOT NULL DO NOTHING
RETURNING id;

-- name: claim_silent_jobs
-- Jobs of error/critical pages with no status within their transport's timeout
-- ($1 transports, $2 seconds, $3 now): marked failed, once, by one worker.
UPDATE page_jobs p
SET failed_at = $3::timestamptz
FROM (
    SELECT j.job_id
    FROM page_jobs j
    JOIN unnest($1::text[], $2::float8[]) AS t (transport, seconds) ON t.transport = j.transport
    WHERE j.last_status IS NULL AND j.failed_at IS NULL
      AND j.severity IN ('error', 'critical')
      AND j.created_at <= $3::timestamptz - make_interval(secs => t.seconds)
    FOR UPDATE OF j SKIP LOCKED
) AS silent
WHERE p.job_id = silent.job_id
RETURNING p.*;

-- name: trail_event
SELECT event::text AS event, decisions::text AS decisions, routed_at
FROM page_events WHERE event_id = $1;

-- name: trail_jobs
SELECT * FROM page_jobs WHERE event_id = $1 ORDER BY created_at, job_id;

-- name: trail_rows
SELECT kind, at, record::text AS record FROM page_trail
WHERE event_id = $1
ORDER BY at, id;

-- name: trail_answers
-- The answers to a page recorded since its event was routed ($2): acknowledgements and
-- resolves of its alert key ($1). (The key is worked out by the caller: an event's text
-- may hold \u0000, which PostgreSQL's json operators refuse to read.)
SELECT 'ack' AS kind, at,
       json_build_object('alert_key', alert_key, 'user_id', user_id, 'action', action,
                         'source', source, 'changed', changed)::text AS record
FROM page_acks
WHERE alert_key = $1 AND recorded_at >= $2
ORDER BY at, id;

-- name: trail_pages_of_user
-- A user's pages since $2 (any decision about them), with their jobs' outcomes. A plain
-- sent decision is kept as its job's id (router.delivery.trail.trail_value): its job
-- names the user.
SELECT e.event_id, e.routed_at AS first_at, e.event::text AS event,
       (SELECT count(*) FROM page_jobs j WHERE j.event_id = e.event_id AND j.user_id = $1)
           AS jobs,
       (SELECT count(*) FROM page_jobs j WHERE j.event_id = e.event_id AND j.user_id = $1
            AND j.last_status = 'delivered') AS delivered,
       (SELECT count(*) FROM page_jobs j WHERE j.event_id = e.event_id AND j.user_id = $1
            AND j.failed_at IS NOT NULL) AS failed
FROM page_events e
WHERE e.routed_at >= $2::timestamptz
  AND (EXISTS (SELECT 1 FROM page_jobs j WHERE j.event_id = e.event_id AND j.user_id = $1)
       OR replace(e.decisions::text, '\u0000', '\ufffd')::jsonb
              @> jsonb_build_array(jsonb_build_object('user_id', $1::text)))
ORDER BY e.routed_at;

-- name: purge_audit
-- The audit log past its retention, and router api's idempotent answers past 24 h.
WITH old_keys AS (
    DELETE FROM api_idempotency WHERE created_at <= now() - interval '24 hours'
)
DELETE FROM audit_log WHERE at < now() - make_interval(secs => $1);

-- name: purge_trail
-- The page trail past its retention: its rows, jobs and events, the acknowledgements
-- recorded, and the pages closed (acknowledged, resolved, or left unacknowledged)
-- that long ago. An open page stays, however old.
WITH old_rows AS (
    DELETE FROM page_trail WHERE at < now() - make_interval(secs => $1)
), old_jobs AS (
    DELETE FROM page_jobs WHERE created_at < now() - make_interval(secs => $1)
), old_acks AS (
    DELETE FROM page_acks WHERE recorded_at < now() - make_interval(secs => $1)
), old_pages AS (
    DELETE FROM pages
    WHERE status <> 'open'
      AND coalesce(answered_at, opened_at) < now() - make_interval(secs => $1)
)
DELETE FROM page_events WHERE routed_at < now() - make_interval(secs => $1);

-- name: orphaned_failures
-- Pages of error/critical severity left without a next step: every job of the
-- page failed (its own jobs and the digests that carried it), the latest
-- between $2 and $1 seconds ago (the normal path had its chance, the sweep is
-- bounded), no job still live, nothing still held for it, and no unreachable
-- decision. A crash between recording a failure and publishing its failover
-- leaves exactly this; so does a digest whose other pages failed over. One row
-- per page: its latest failed job, as a job of that page (event_id the page's,
-- digest_of NULL), so the step taken is the page's own.
WITH failed AS (
    SELECT DISTINCT carried.event_id, j.user_id
    FROM page_jobs j
    CROSS JOIN LATERAL unnest(coalesce(j.digest_of, ARRAY[j.event_id])) AS carried (event_id)
    WHERE j.failed_at IS NOT NULL
      AND j.severity IN ('error', 'critical')
      AND j.failed_at >= now() - make_interval(secs => $1)
), latest AS (
    SELECT DISTINCT ON (f.event_id, f.user_id)
           j.job_id, f.event_id, j.user_id, j.contact_method_id, j.transport, j.severity,
           j.address, j.created_at, j.failover_of, j.last_status, j.failed_at,
           NULL::text[] AS digest_of
    FROM failed f
    JOIN page_events e ON e.event_id = f.event_id
    JOIN page_jobs j
      ON j.user_id = f.user_id AND (j.event_id = f.event_id OR j.digest_of @> ARRAY[f.event_id])
    WHERE j.failed_at IS NOT NULL
      -- The event as it came may hold \u0000 (a title, a label), which ->> refuses to
      -- read; the same text with U+FFFD in its place is JSON too, whatever precedes it.
      AND replace(e.event::text, '\u0000', '\ufffd')::json->>'severity' IN ('error', 'critical')
      AND NOT EXISTS (
          SELECT 1 FROM page_jobs n
          WHERE n.user_id = f.user_id AND n.failed_at IS NULL
            AND (n.event_id = f.event_id OR n.digest_of @> ARRAY[f.event_id])
      )
      AND NOT EXISTS (
          SELECT 1 FROM held_pages h
          WHERE h.event_id = f.event_id AND h.user_id = f.user_id AND h.done_at IS NULL
      )
      AND NOT EXISTS (
          SELECT 1 FROM page_trail t
          WHERE t.dedup = 'd|' || f.event_id || '|' || f.user_id || '||skipped|unreachable|'
      )
    ORDER BY f.event_id, f.user_id, j.failed_at DESC
)
SELECT * FROM latest
WHERE failed_at <= now() - make_interval(secs => $2)
  AND failed_at >= now() - make_interval(secs => $1);
