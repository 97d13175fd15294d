"""Who is on call at an instant, and the handoffs between two instants. Pure.

A schedule is the union of its rotations' members and the explicit shifts
covering ``t``, then its overrides covering ``t``, applied in the order they
were made: an override with ``replaces`` gives OLD's time in its window to NEW
(and does nothing while OLD is not on call); one without adds NEW.

A rotation's member at ``t`` is ``users[floor((t - start) / every) mod n]``;
before ``start`` (its first handoff) the rotation puts nobody on call. When
``every`` is a whole number of days, handoffs happen at the same wall-clock
time in the schedule's time zone: a Monday 09:00 Europe/Berlin handoff stays
09:00 across daylight-saving changes, so one week is then 167 or 169 hours.
A wall-clock time that does not exist that day (the spring gap) is read with
the offset before the change, as :mod:`zoneinfo` does for ``fold=0``.

All instants are compared in UTC: two datetimes sharing a ``ZoneInfo`` compare
and subtract as wall-clock times, which is wrong across a change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from router.directory.models import Shift

DAY = timedelta(days=1)
ReasonKind = Literal["rotation", "shift", "override"]


def utc(at: datetime) -> datetime:
    """``at`` (aware) as a UTC datetime, so comparisons and differences are exact."""
    if at.tzinfo is None:
        raise ValueError(f"{at!r} has no UTC offset")
    return at.astimezone(UTC)


def whole_days(every: timedelta) -> bool:
    """Whether a rotation of this length hands off at a wall-clock time."""
    return every >= DAY and every % DAY == timedelta(0)


def describe_every(every: timedelta) -> str:
    """``every`` as the ``--every`` flag spells it: ``1w``, ``3d``, ``12h``, ``90m``."""
    minutes = int(every.total_seconds()) // 60
    for unit, size in (("w", 7 * 24 * 60), ("d", 24 * 60), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


@dataclass(frozen=True)
class Rotation:
    """Members taking turns of ``every``, the first handing off at ``start``."""

    rotation_id: str
    users: tuple[str, ...]
    every: timedelta
    start: datetime

    def __post_init__(self) -> None:
        if not self.users:
            raise ValueError(f"rotation {self.rotation_id!r} has no users")
        if self.every <= timedelta(0):
            raise ValueError(f"rotation {self.rotation_id!r} must last more than zero")

    def handoff(self, n: int, zone: ZoneInfo) -> datetime:
        """The ``n``-th handoff (0 is ``start``), in UTC."""
        start = utc(self.start)
        if n == 0:
            return start
        if not whole_days(self.every):
            return start + n * self.every
        local = start.astimezone(zone)
        wall = local.replace(tzinfo=None) + n * self.every
        return utc(wall.replace(tzinfo=zone, fold=local.fold))

    def turn_at(self, at: datetime, zone: ZoneInfo) -> int | None:
        """How many handoffs came before the last one at or before ``at``; None before start."""
        at, start = utc(at), utc(self.start)
        if at < start:
            return None
        if not whole_days(self.every):
            return (at - start) // self.every
        wall_gap = at.astimezone(zone).replace(tzinfo=None) - start.astimezone(zone).replace(
            tzinfo=None
        )
        # The wall-clock estimate is off by at most one around a change: correct it.
        n = max(0, wall_gap // self.every)
        while n > 0 and self.handoff(n, zone) > at:
            n -= 1
        while self.handoff(n + 1, zone) <= at:
            n += 1
        return n

    def member_at(self, at: datetime, zone: ZoneInfo) -> str | None:
        """The member on call at ``at``; None before the first handoff."""
        turn = self.turn_at(at, zone)
        return None if turn is None else self.users[turn % len(self.users)]

    def handoffs(self, start: datetime, end: datetime, zone: ZoneInfo) -> Iterator[datetime]:
        """Every handoff in ``[start, end)``, in order."""
        turn = self.turn_at(start, zone)
        n = 0 if turn is None else turn
        while (at := self.handoff(n, zone)) < utc(end):
            if at >= utc(start):
                yield at
            n += 1


@dataclass(frozen=True)
class Override:
    """``user_id`` on call from ``starts_at`` (inclusive) to ``ends_at`` (exclusive),
    in place of ``replaces`` when set, else in addition to whoever is."""

    override_id: int
    user_id: str
    starts_at: datetime
    ends_at: datetime
    replaces: str | None = None

    def covers(self, at: datetime) -> bool:
        """Whether ``at`` falls in the override's window."""
        return utc(self.starts_at) <= utc(at) < utc(self.ends_at)


@dataclass(frozen=True)
class Schedule:
    """A schedule's whole definition, as the store keeps it."""

    schedule_id: str
    timezone: str = "UTC"
    name: str | None = None
    rotations: tuple[Rotation, ...] = ()
    shifts: tuple[Shift, ...] = ()
    overrides: tuple[Override, ...] = ()

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's time zone."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Reason:
    """Why someone is on call: a rotation (``ref`` its id), a shift or an override
    (``ref`` its number), with the user an override replaces."""

    kind: ReasonKind
    ref: str
    replaces: str | None = None

    def __str__(self) -> str:
        text = f"{self.kind} {self.ref}"
        return f"{text} (replaces {self.replaces})" if self.replaces else text


@dataclass(frozen=True)
class OnCall:
    """One user on call, and every reason they are."""

    user_id: str
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class Handoff:
    """From ``at`` on, these users are on call (until the next handoff)."""

    at: datetime
    on_call: tuple[OnCall, ...] = field(default_factory=tuple)

    @property
    def users(self) -> tuple[str, ...]:
        """The user ids on call from ``at``."""
        return tuple(o.user_id for o in self.on_call)


def who(schedule: Schedule, at: datetime) -> tuple[OnCall, ...]:
    """Who is on call at ``at`` and why: rotations (by id), then shifts (by start), then
    overrides (in the order they were made)."""
    zone = schedule.zone
    found: dict[str, list[Reason]] = {}
    for rotation in sorted(schedule.rotations, key=lambda r: r.rotation_id):
        member = rotation.member_at(at, zone)
        if member is not None:
            found.setdefault(member, []).append(Reason("rotation", rotation.rotation_id))
    for shift in sorted(schedule.shifts, key=lambda s: (utc(s.starts_at), s.id)):
        if utc(shift.starts_at) <= utc(at) < utc(shift.ends_at):
            found.setdefault(shift.user_id, []).append(Reason("shift", str(shift.id)))
    for override in sorted(schedule.overrides, key=lambda o: o.override_id):
        if not override.covers(at):
            continue
        if override.replaces is not None:
            if override.replaces not in found:
                continue
            del found[override.replaces]
        found.setdefault(override.user_id, []).append(
            Reason("override", str(override.override_id), override.replaces)
        )
    return tuple(OnCall(user, tuple(reasons)) for user, reasons in found.items())


def on_call_users(schedule: Schedule, at: datetime) -> tuple[str, ...]:
    """The user ids on call at ``at``, in :func:`who`'s order."""
    return tuple(o.user_id for o in who(schedule, at))


def changes(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Every instant in ``(start, end)`` at which who is on call may change, in order."""
    zone = schedule.zone
    points: set[datetime] = set()
    for rotation in schedule.rotations:
        points.update(rotation.handoffs(start, end, zone))
    windows: Iterable[tuple[datetime, datetime]] = [
        *((s.starts_at, s.ends_at) for s in schedule.shifts),
        *((o.starts_at, o.ends_at) for o in schedule.overrides),
    ]
    for begins, ends in windows:
        points.update((utc(begins), utc(ends)))
    return sorted(p for p in points if utc(start) < p < utc(end))


def timeline(schedule: Schedule, start: datetime, end: datetime) -> list[Handoff]:
    """Who is on call at ``start``, then one entry per instant in ``(start, end)`` at which
    the set of users on call changes."""
    out = [Handoff(utc(start), who(schedule, start))]
    for at in changes(schedule, start, end):
        now = who(schedule, at)
        if {o.user_id for o in now} != set(out[-1].users):
            out.append(Handoff(at, now))
    return out


def periods(
    schedule: Schedule, start: datetime, end: datetime, user_id: str | None = None
) -> list[tuple[str, datetime, datetime]]:
    """Each stretch of on-call time in ``[start, end)`` as (user, from, to), by start then
    user; only ``user_id``'s when given. A stretch cut by ``start`` or ``end`` is cut there."""
    handoffs = timeline(schedule, start, end)
    bounds: Sequence[datetime] = [h.at for h in handoffs[1:]] + [utc(end)]
    out: list[tuple[str, datetime, datetime]] = []
    open_since: dict[str, datetime] = {}
    for handoff, until in zip(handoffs, bounds, strict=True):
        users = set(handoff.users)
        for user in users:
            open_since.setdefault(user, handoff.at)
        for user in [u for u in open_since if u not in users]:
            out.append((user, open_since.pop(user), handoff.at))
        if until == utc(end):
            out += [(u, since, until) for u, since in open_since.items()]
    return sorted(
        (p for p in out if user_id is None or p[0] == user_id), key=lambda p: (p[1], p[0])
    )


def on_call_json(on_call: tuple[OnCall, ...]) -> list[dict[str, Any]]:
    """Who is on call and why, as JSON values."""
    return [
        {
            "user_id": o.user_id,
            "reasons": [{"kind": r.kind, "ref": r.ref, "replaces": r.replaces} for r in o.reasons],
        }
        for o in on_call
    ]
