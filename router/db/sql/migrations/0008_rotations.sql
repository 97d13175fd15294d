-- On-call schedules people can keep (issue 23): a schedule gains a name and a
-- time zone, rotations (members taking turns, handing off at the same local
-- time when a turn is whole days) and overrides (someone on call in place of,
-- or besides, whoever else is). Who is on call is computed from these rows by
-- router.schedules.oncall.
--
-- No change notifications: the worker's directory cache keeps users and their
-- methods, never who is on call, which every batch reads afresh (see
-- router.directory.cache), so a rotation or override change applies to the
-- next batch without one.

ALTER TABLE schedules
    ADD COLUMN name     text CHECK (name IS NULL OR (name <> '' AND length(name) <= 256)),
    -- An IANA zone name, checked by the CLI against the zone database it computes with.
    ADD COLUMN timezone text NOT NULL DEFAULT 'UTC' CHECK (timezone <> '' AND length(timezone) <= 64);

CREATE TABLE rotations (
    schedule_id  text NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    id           text NOT NULL CHECK (id <> '' AND length(id) <= 256),
    -- A turn: minutes to weeks, never months (whose length varies).
    every        interval NOT NULL CHECK (
        every >= interval '1 minute'
        AND date_part('year', every) = 0 AND date_part('month', every) = 0
    ),
    -- The first handoff; nobody from this rotation is on call before it.
    starts_at    timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, id)
);

-- A rotation's members in turn order; a user may appear more than once.
CREATE TABLE rotation_members (
    schedule_id  text NOT NULL,
    rotation_id  text NOT NULL,
    position     integer NOT NULL CHECK (position >= 0),
    -- Removing a user who is in a rotation must be deliberate: it changes every turn.
    user_id      text NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    PRIMARY KEY (schedule_id, rotation_id, position),
    FOREIGN KEY (schedule_id, rotation_id) REFERENCES rotations (schedule_id, id)
        ON DELETE CASCADE
);
CREATE INDEX rotation_members_by_user ON rotation_members (user_id);

-- No rotation with zero users, checked at commit so members can be replaced
-- (`router schedules set-users`) inside one transaction.
CREATE FUNCTION router_rotation_has_members() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    sid text;
    rid text;
BEGIN
    IF TG_TABLE_NAME = 'rotations' THEN
        sid := NEW.schedule_id;
        rid := NEW.id;
    ELSE
        sid := OLD.schedule_id;
        rid := OLD.rotation_id;
    END IF;
    IF EXISTS (SELECT 1 FROM rotations WHERE schedule_id = sid AND id = rid)
       AND NOT EXISTS (
           SELECT 1 FROM rotation_members WHERE schedule_id = sid AND rotation_id = rid
       ) THEN
        RAISE EXCEPTION 'rotation % of schedule % has no users', rid, sid
            USING ERRCODE = 'check_violation', CONSTRAINT = 'rotation_has_members';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER rotation_has_members AFTER INSERT ON rotations
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION router_rotation_has_members();
CREATE CONSTRAINT TRIGGER rotation_keeps_members AFTER DELETE OR UPDATE ON rotation_members
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION router_rotation_has_members();

CREATE TABLE overrides (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule_id  text NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    user_id      text NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    -- Set: user_id takes this user's time in the window; NULL: user_id is added.
    replaces     text REFERENCES users (id) ON DELETE RESTRICT,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT overrides_end_after_start CHECK (ends_at > starts_at),
    CONSTRAINT overrides_replace_someone_else CHECK (replaces IS NULL OR replaces <> user_id)
);
CREATE INDEX overrides_by_schedule_time ON overrides (schedule_id, starts_at, ends_at);
