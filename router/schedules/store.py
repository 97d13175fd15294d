"""Schedules on PostgreSQL: their rotations, shifts and overrides (migration 0008).

:class:`ScheduleStore` holds the schedule statements of
:class:`router.db.store.PgStore`, which composes every room's store. Every query
is a named block of ``sql/queries.sql``. Who is on call is not computed in SQL:
the store loads a schedule's definition and :mod:`router.schedules.oncall`
computes it, so the CLI and the worker agree.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from router.db.pool import PgBase
from router.directory.models import Shift
from router.errors import Conflict, NotFound
from router.schedules.oncall import Override, Rotation, Schedule, on_call_users

#: (schedule id, since, until): the part of a schedule's shifts and overrides to load.
Window = tuple[str, datetime, datetime]
#: An instant's window: what covers ``at`` overlaps ``[at, at + 1µs)``.
INSTANT = timedelta(microseconds=1)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _override(row: Mapping[str, Any]) -> Override:
    return Override(
        override_id=row["id"],
        user_id=row["user_id"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        replaces=row["replaces"],
    )


def _schedule(row: Mapping[str, Any]) -> Schedule:
    """A ``schedule_definitions`` row (rotations, shifts and overrides as jsonb)."""
    rotations = tuple(
        Rotation(
            r["id"],
            tuple(r["users"]),
            timedelta(seconds=float(r["every_seconds"])),
            _instant(r["starts_at"]),
        )
        for r in row["rotations"]
    )
    shifts = tuple(
        Shift(
            id=s["id"],
            schedule_id=row["id"],
            user_id=s["user_id"],
            starts_at=_instant(s["starts_at"]),
            ends_at=_instant(s["ends_at"]),
        )
        for s in row["shifts"]
    )
    overrides = tuple(
        _override({**o, "starts_at": _instant(o["starts_at"]), "ends_at": _instant(o["ends_at"])})
        for o in row["overrides"]
    )
    return Schedule(row["id"], row["timezone"], row["name"], rotations, shifts, overrides)


class ScheduleStore(PgBase):
    """Schedules, rotations, shifts and overrides; who is on call for the worker."""

    # -- the worker ---------------------------------------------------------------

    async def load_schedules(
        self, conn: asyncpg.Connection, windows: Sequence[Window]
    ) -> dict[str, Schedule]:
        """The named schedules that exist, each with its rotations and the shifts and
        overrides overlapping its windows, in one round trip."""
        if not windows:
            return {}
        rows = await conn.fetch(
            self._q["schedule_definitions"],
            [w[0] for w in windows],
            [w[1] for w in windows],
            [w[2] for w in windows],
        )
        return {r["id"]: _schedule(r) for r in rows}

    async def on_call_in(
        self, conn: asyncpg.Connection, lookups: Collection[tuple[str, datetime]]
    ) -> dict[tuple[str, datetime], tuple[str, ...]]:
        """Who is on call for each (schedule, instant); unknown schedules are left out."""
        schedules = await self.load_schedules(conn, [(s, at, at + INSTANT) for s, at in lookups])
        return {
            (sid, at): on_call_users(schedules[sid], at) for sid, at in lookups if sid in schedules
        }

    # -- the commands -------------------------------------------------------------

    async def schedule(self, schedule_id: str, since: datetime, until: datetime) -> Schedule:
        """A schedule with its rotations and the shifts and overrides overlapping
        ``[since, until)``; :class:`NotFound` if there is none."""
        async with self._conn() as conn:
            found = await self.load_schedules(conn, [(schedule_id, since, until)])
        if schedule_id not in found:
            raise NotFound(_no_schedule(schedule_id))
        return found[schedule_id]

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule's id, name and time zone (without rotations), by id."""
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["list_schedules"])
        return [Schedule(r["id"], r["timezone"], r["name"]) for r in rows]

    async def add_schedule(self, schedule_id: str, name: str, timezone: str) -> Schedule:
        """Create a schedule (or name one ``add-shift`` created); :class:`Conflict` if it
        exists with a name."""
        async with self._conn() as conn:
            row = await conn.fetchrow(self._q["add_schedule"], schedule_id, name, timezone)
        if row is None:
            raise Conflict(
                f"Schedule {schedule_id!r} already exists; delete it first with "
                f"`router schedules delete {schedule_id}` or pick another id."
            )
        return Schedule(row["id"], row["timezone"], row["name"])

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule with its shifts, rotations and overrides; whether it existed."""
        async with self._conn() as conn:
            status = await conn.execute(self._q["delete_schedule"], schedule_id)
        return bool(status != "DELETE 0")

    async def remove_shift(self, shift_id: int) -> Shift | None:
        """Delete a shift; the shift, or None if there was none."""
        async with self._conn() as conn:
            row = await conn.fetchrow(self._q["remove_shift"], shift_id)
        return None if row is None else Shift.model_validate(dict(row))

    async def add_rotation(self, schedule_id: str, rotation: Rotation) -> Rotation:
        """Add a rotation to an existing schedule; its users must exist."""
        async with self._conn() as conn, conn.transaction():
            await self._check(conn, schedule_id, rotation.users)
            await conn.execute(
                self._q["add_rotation"],
                schedule_id,
                rotation.rotation_id,
                rotation.every,
                rotation.start,
            )
            await conn.execute(
                self._q["add_rotation_members"],
                schedule_id,
                rotation.rotation_id,
                list(rotation.users),
            )
        return rotation

    async def set_rotation_users(
        self, schedule_id: str, rotation_id: str, users: Sequence[str]
    ) -> None:
        """Replace a rotation's members (turn order as given); handoff times stay."""
        async with self._conn() as conn, conn.transaction():
            await self._check(conn, schedule_id, users)
            if await conn.fetchval(self._q["rotation_exists"], schedule_id, rotation_id) is None:
                raise NotFound(_no_rotation(schedule_id, rotation_id))
            await conn.execute(self._q["clear_rotation_members"], schedule_id, rotation_id)
            await conn.execute(
                self._q["add_rotation_members"], schedule_id, rotation_id, list(users)
            )

    async def remove_rotation(self, schedule_id: str, rotation_id: str) -> bool:
        """Delete a rotation; whether it existed."""
        async with self._conn() as conn:
            status = await conn.execute(self._q["remove_rotation"], schedule_id, rotation_id)
        return bool(status != "DELETE 0")

    async def add_override(self, schedule_id: str, override: Override) -> Override:
        """Add an override (its number is assigned here) to an existing schedule."""
        users = [override.user_id, *([override.replaces] if override.replaces else [])]
        async with self._conn() as conn, conn.transaction():
            await self._check(conn, schedule_id, users)
            row = await conn.fetchrow(
                self._q["add_override"],
                schedule_id,
                override.user_id,
                override.replaces,
                override.starts_at,
                override.ends_at,
            )
        return _override(row)

    async def remove_override(self, override_id: int) -> Override | None:
        """Delete an override; the override, or None if there was none."""
        async with self._conn() as conn:
            row = await conn.fetchrow(self._q["remove_override"], override_id)
        return None if row is None else _override(row)

    async def _check(
        self, conn: asyncpg.Connection, schedule_id: str, users: Sequence[str]
    ) -> None:
        if not await conn.fetch(self._q["schedules_by_ids"], [schedule_id]):
            raise NotFound(_no_schedule(schedule_id))
        found = {r["id"] for r in await conn.fetch(self._q["users_by_ids"], list(users))}
        for user in users:
            if user not in found:
                raise NotFound(
                    f"User {user!r} does not exist; add it first with `router users add {user}`."
                )


def _no_schedule(schedule_id: str) -> str:
    return (
        f"Schedule {schedule_id!r} does not exist; add it first with "
        f"`router schedules add {schedule_id} --name NAME --timezone TZ`."
    )


def _no_rotation(schedule_id: str, rotation_id: str) -> str:
    return (
        f"Schedule {schedule_id!r} has no rotation {rotation_id!r}; see "
        f"`router schedules show {schedule_id}`."
    )
