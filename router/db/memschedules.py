"""The in-memory fake's schedules: rotations and overrides, for unit tests
(same contracts as :class:`router.schedules.store.ScheduleStore`)."""

from __future__ import annotations

from router.directory.models import Shift, User
from router.errors import Conflict, NotFound
from router.schedules.oncall import Override, Rotation, Schedule


class InMemorySchedules:
    """Schedule state and methods of :class:`router.db.memstore.InMemoryStore`."""

    users: dict[str, User]
    schedules: set[str]
    shifts: list[Shift]
    timezones: dict[str, str]
    rotations: dict[str, list[Rotation]]
    overrides: dict[str, list[Override]]

    def _check(self) -> None:
        raise NotImplementedError  # the store's outage switch

    def schedule_of(self, schedule_id: str) -> Schedule:
        """A known schedule's whole definition."""
        return Schedule(
            schedule_id,
            self.timezones.get(schedule_id, "UTC"),
            rotations=tuple(self.rotations.get(schedule_id, ())),
            shifts=tuple(s for s in self.shifts if s.schedule_id == schedule_id),
            overrides=tuple(self.overrides.get(schedule_id, ())),
        )

    async def add_schedule(self, schedule_id: str, name: str, timezone: str) -> Schedule:
        """Same contract as :meth:`router.schedules.store.ScheduleStore.add_schedule`."""
        self._check()
        if schedule_id in self.timezones:
            raise Conflict(f"Schedule {schedule_id!r} already exists.")
        self.schedules.add(schedule_id)
        self.timezones[schedule_id] = timezone
        return Schedule(schedule_id, timezone, name)

    async def add_rotation(self, schedule_id: str, rotation: Rotation) -> Rotation:
        """Same contract as :meth:`router.schedules.store.ScheduleStore.add_rotation`."""
        self._check()
        if schedule_id not in self.schedules:
            raise NotFound(f"Schedule {schedule_id!r} does not exist.")
        for user in rotation.users:
            if user not in self.users:
                raise NotFound(f"User {user!r} does not exist.")
        self.rotations.setdefault(schedule_id, []).append(rotation)
        return rotation

    async def add_override(self, schedule_id: str, override: Override) -> Override:
        """Same contract as :meth:`router.schedules.store.ScheduleStore.add_override`."""
        self._check()
        if schedule_id not in self.schedules:
            raise NotFound(f"Schedule {schedule_id!r} does not exist.")
        overrides = self.overrides.setdefault(schedule_id, [])
        made = Override(
            sum(len(o) for o in self.overrides.values()) + 1,
            override.user_id,
            override.starts_at,
            override.ends_at,
            override.replaces,
        )
        overrides.append(made)
        return made
