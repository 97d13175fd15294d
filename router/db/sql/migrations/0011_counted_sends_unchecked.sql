-- Counted sends no longer check their contact method: the foreign key's check locked
-- the method's row (KEY SHARE) once for every job counted, 1,500 row locks for a
-- batch of 500 alerts with three methods each, about 9 of the ledger statement's
-- 58 ms in PostgreSQL (EXPLAIN ANALYZE). Every row is written by the router for a
-- method it just routed to, and rows are only read by method id within a rate
-- window, so a row left by a deleted method is never read again; the janitor
-- purges it with the others once the longest rate window has passed. The rate-limit
-- reservation still serializes routers on the methods' rows
-- (lock_methods_for_rate_limit).
ALTER TABLE rate_limit_sends DROP CONSTRAINT IF EXISTS rate_limit_sends_contact_method_id_fkey;
