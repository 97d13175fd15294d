-- Pages until someone answers (router/pages/store.py): escalation policies, pages
-- with their escalation state, acknowledgements. Loaded once, by name.

-- name: add_policy
INSERT INTO escalation_policies (id, name, repeat) VALUES ($1, $2, $3);

-- name: add_policy_step
-- The step goes after the policy's last; the policy row is locked so two
-- commands adding steps at once take turns. NULL when the policy is unknown.
WITH policy AS (
    SELECT id FROM escalation_policies WHERE id = $1 FOR UPDATE
)
INSERT INTO escalation_steps (policy_id, position, delay_seconds, user_ids, schedule_ids)
SELECT policy.id,
       coalesce((SELECT max(position) FROM escalation_steps WHERE policy_id = policy.id), 0) + 1,
       $2, $3::text[], $4::text[]
FROM policy
RETURNING position;

-- name: policies
-- Policies ($1: these ids, or all when NULL) with their steps, in order.
SELECT p.id, p.name, p.repeat, s.position, s.delay_seconds, s.user_ids, s.schedule_ids
FROM escalation_policies p
LEFT JOIN escalation_steps s ON s.policy_id = p.id
WHERE $1::text[] IS NULL OR p.id = ANY($1::text[])
ORDER BY p.id, s.position;

-- name: delete_policy
DELETE FROM escalation_policies WHERE id = $1 RETURNING id;

-- name: open_pages
-- A page per alert key, its step 1 paged now. A key whose page is closed
-- starts a new page when a new event names it; a redelivered event, or a new
-- event while the page is open, leaves the page as it is.
INSERT INTO pages (alert_key, event_id, policy_id, policy, event, opened_at, next_step_at)
SELECT k, e, p, pol::json, ev::json, $6, n
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $7::timestamptz[])
     AS u (k, e, p, pol, ev, n)
ON CONFLICT (alert_key) DO UPDATE
SET event_id = excluded.event_id, policy_id = excluded.policy_id, policy = excluded.policy,
    event = excluded.event, opened_at = excluded.opened_at,
    next_step_at = excluded.next_step_at, step = 1, round = 1, status = 'open',
    reply_code = nextval('page_reply_codes'),
    answered_by = NULL, answered_via = NULL, answered_at = NULL
WHERE pages.status <> 'open' AND pages.event_id <> excluded.event_id;

-- name: pages_by_keys
SELECT * FROM pages WHERE alert_key = ANY($1::text[]);

-- name: lock_pages
-- Pages about to be answered, locked for the transaction, in key order (no deadlock).
SELECT * FROM pages WHERE alert_key = ANY($1::text[]) ORDER BY alert_key FOR UPDATE;

-- name: answer_page
UPDATE pages
SET status = $2, next_step_at = NULL, answered_by = $3, answered_via = $4, answered_at = $5
WHERE alert_key = $1;

-- name: record_acks
INSERT INTO page_acks (alert_key, user_id, action, source, at, changed)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                     $6::bool[]);

-- name: claim_due_pages
-- Pages whose next step (or end) is due at $1, locked for this transaction;
-- pages another worker holds are skipped, never waited for.
SELECT * FROM pages
WHERE status = 'open' AND next_step_at <= $1::timestamptz
ORDER BY next_step_at
LIMIT $2
FOR UPDATE SKIP LOCKED;

-- name: move_page
UPDATE pages SET step = $2, round = $3, next_step_at = $4, status = $5 WHERE alert_key = $1;

-- name: answered_since
-- For held notify_after pages: the answers each alert key got at or after the
-- page was held ($2, per key), a resolve first.
SELECT DISTINCT ON (a.alert_key) a.alert_key, a.action
FROM page_acks a
JOIN unnest($1::text[], $2::timestamptz[]) AS h (k, held_at)
  ON a.alert_key = h.k AND a.recorded_at >= h.held_at
ORDER BY a.alert_key, (a.action = 'resolve') DESC;

-- name: list_pages
SELECT * FROM pages
WHERE NOT $1::bool OR status = 'open'
ORDER BY opened_at DESC, alert_key
LIMIT $2;

-- name: page_acks_of
SELECT alert_key, user_id, action, source, at, recorded_at, changed
FROM page_acks WHERE alert_key = $1 ORDER BY recorded_at, id;

-- name: open_page_by_code
SELECT * FROM pages WHERE status = 'open' AND reply_code = $1;

-- name: reply_sender
-- The user among those paged for event $2 who has SMS number $1.
SELECT m.user_id
FROM contact_methods m
WHERE m.transport = 'sms' AND m.value = $1
  AND EXISTS (SELECT 1 FROM page_jobs j WHERE j.event_id = $2 AND j.user_id = m.user_id)
ORDER BY m.user_id
LIMIT 1;
