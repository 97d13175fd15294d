-- Directory changes announced on the `router_directory` channel, so a running
-- worker's in-process cache drops what changed within moments. Triggers, not
-- application code, send them: the CLI, a bulk import, an opt-out message and a
-- hand-written UPDATE all reach every worker the same way.
--
-- One notification per statement (transition tables), whatever its row count.
-- Payloads (JSON): {"users": [ids]}, {"addresses": [[transport, address]]} or,
-- when the list would not fit a notification (8000 bytes) or a table is
-- truncated, {"all": true}. Notifications are sent at commit, and not at all
-- for a rolled-back transaction.

CREATE FUNCTION router_announce(kind text, items jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    payload text;
BEGIN
    IF items IS NULL OR jsonb_array_length(items) = 0 THEN
        RETURN;
    END IF;
    payload := jsonb_build_object(kind, items)::text;
    IF octet_length(payload) > 7000 THEN
        payload := '{"all": true}';
    END IF;
    PERFORM pg_notify('router_directory', payload);
END $$;

CREATE FUNCTION router_users_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT jsonb_agg(DISTINCT id) INTO ids FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT jsonb_agg(DISTINCT id) INTO ids FROM old_rows;
    ELSE
        SELECT jsonb_agg(DISTINCT id) INTO ids
        FROM (SELECT id FROM old_rows UNION SELECT id FROM new_rows) AS changed;
    END IF;
    PERFORM router_announce('users', ids);
    RETURN NULL;
END $$;

CREATE FUNCTION router_contact_methods_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT jsonb_agg(DISTINCT user_id) INTO ids FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT jsonb_agg(DISTINCT user_id) INTO ids FROM old_rows;
    ELSE
        SELECT jsonb_agg(DISTINCT user_id) INTO ids
        FROM (SELECT user_id FROM old_rows UNION SELECT user_id FROM new_rows) AS changed;
    END IF;
    PERFORM router_announce('users', ids);
    RETURN NULL;
END $$;

CREATE FUNCTION router_opt_outs_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    pairs jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT jsonb_agg(DISTINCT jsonb_build_array(transport, address)) INTO pairs FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT jsonb_agg(DISTINCT jsonb_build_array(transport, address)) INTO pairs FROM old_rows;
    ELSE
        SELECT jsonb_agg(DISTINCT jsonb_build_array(transport, address)) INTO pairs
        FROM (SELECT transport, address FROM old_rows
              UNION SELECT transport, address FROM new_rows) AS changed;
    END IF;
    PERFORM router_announce('addresses', pairs);
    RETURN NULL;
END $$;

CREATE FUNCTION router_directory_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('router_directory', '{"all": true}');
    RETURN NULL;
END $$;

CREATE TRIGGER users_inserted AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION router_users_changed();
CREATE TRIGGER users_updated AFTER UPDATE ON users
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION router_users_changed();
CREATE TRIGGER users_deleted AFTER DELETE ON users
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION router_users_changed();
CREATE TRIGGER users_truncated AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION router_directory_truncated();

CREATE TRIGGER contact_methods_inserted AFTER INSERT ON contact_methods
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION router_contact_methods_changed();
CREATE TRIGGER contact_methods_updated AFTER UPDATE ON contact_methods
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION router_contact_methods_changed();
CREATE TRIGGER contact_methods_deleted AFTER DELETE ON contact_methods
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION router_contact_methods_changed();
CREATE TRIGGER contact_methods_truncated AFTER TRUNCATE ON contact_methods
    FOR EACH STATEMENT EXECUTE FUNCTION router_directory_truncated();

CREATE TRIGGER opt_outs_inserted AFTER INSERT ON opt_outs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION router_opt_outs_changed();
CREATE TRIGGER opt_outs_updated AFTER UPDATE ON opt_outs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION router_opt_outs_changed();
CREATE TRIGGER opt_outs_deleted AFTER DELETE ON opt_outs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION router_opt_outs_changed();
CREATE TRIGGER opt_outs_truncated AFTER TRUNCATE ON opt_outs
    FOR EACH STATEMENT EXECUTE FUNCTION router_directory_truncated();
