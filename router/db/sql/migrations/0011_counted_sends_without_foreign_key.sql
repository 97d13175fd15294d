-- Counted sends no longer reference contact_methods. The foreign key's check took a
-- KEY SHARE lock on the method's row (a write to that row, logged) for every job
-- counted: 1,500 per routed batch at fan-out 3, about half of the batch ledger's time
-- in PostgreSQL (measured: 53 ms a 500-event ledger with it, 33 ms without).
-- A counted send is a time-bounded counter, read only by the id of a live method
-- (ids are never reused): the janitor purges it once it is older than the longest
-- rate-limit window, a deleted method's sends with the others (the page trail's
-- page_jobs never had the key either).
ALTER TABLE rate_limit_sends DROP CONSTRAINT IF EXISTS rate_limit_sends_contact_method_id_fkey;
