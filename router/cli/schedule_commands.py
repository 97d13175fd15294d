"""The ``router schedules`` commands for schedules, rotations and overrides, and the
views of who is on call (``who``, ``show``, ``ical``); shifts: :mod:`router.cli.commands`.

:func:`register` adds them to the ``schedules`` parser. Values are checked before
anything is written; a refusal names the field, the value and what is accepted.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from router.cli import table
from router.cli.common import describe_shift, run_with_store
from router.cli.values import (
    count,
    duration,
    identifier,
    instant,
    timezone,
    user_id,
    user_list,
)
from router.db.store import PgStore
from router.errors import InvalidValue, NotFound
from router.schedules.calendar import on_call_calendar
from router.schedules.oncall import (
    Handoff,
    OnCall,
    Override,
    Rotation,
    Schedule,
    describe_every,
    on_call_json,
    timeline,
    who,
)

INSTANT = timedelta(microseconds=1)
#: ``show`` covers two weeks unless told; at most a year, so a 1m rotation stays readable.
SHOW_DEFAULT, SHOW_MAX = timedelta(weeks=2), timedelta(days=366)


def now() -> datetime:
    """The current instant (a function, so tests could pin it)."""
    return datetime.now(UTC)


def local(at: datetime, schedule: Schedule) -> str:
    """``at`` in the schedule's zone, as people read it: ``2026-03-30 09:00 Mon +02:00``."""
    shown = at.astimezone(schedule.zone)
    offset = shown.strftime("%z")
    return f"{shown:%Y-%m-%d %H:%M %a} {offset[:3]}:{offset[3:]}"


def why(on_call: tuple[OnCall, ...]) -> str:
    """``alice (rotation weekly), carol (override 3 (replaces bob))``, or ``nobody``."""
    if not on_call:
        return "nobody"
    return ", ".join(f"{o.user_id} ({'; '.join(str(r) for r in o.reasons)})" for o in on_call)


def describe_rotation(rotation: Rotation, schedule: Schedule) -> str:
    """One readable line for a rotation."""
    return (
        f"rotation {rotation.rotation_id}: {','.join(rotation.users)} every "
        f"{describe_every(rotation.every)}, first handoff {local(rotation.start, schedule)}"
    )


def describe_override(override: Override, schedule: Schedule | None = None) -> str:
    """One readable line for an override."""
    start, end = (
        (local(override.starts_at, schedule), local(override.ends_at, schedule))
        if schedule
        else (override.starts_at.isoformat(), override.ends_at.isoformat())
    )
    verb = f"replaces {override.replaces}" if override.replaces else "added"
    return f"override {override.override_id}: {override.user_id} {verb} {start} -> {end}"


def add(args: argparse.Namespace) -> None:
    """``router schedules add``."""
    schedule_id = identifier("SCHEDULE_ID", args.schedule_id)
    name = args.name.strip()
    if not name or len(name) > 256:
        raise InvalidValue("--name", args.name, "must be 1 to 256 characters")
    zone = timezone(args.timezone)

    async def action(store: PgStore) -> None:
        made = await store.add_schedule(schedule_id, name, zone)
        print(f"added schedule {made.schedule_id} ({made.name}, {made.timezone})")

    run_with_store(action)


def delete(args: argparse.Namespace) -> None:
    """``router schedules delete``."""
    schedule_id = identifier("SCHEDULE_ID", args.schedule_id)

    async def action(store: PgStore) -> None:
        if not await store.delete_schedule(schedule_id):
            raise NotFound(f"Schedule {schedule_id!r} does not exist; nothing was deleted.")
        print(f"deleted schedule {schedule_id} with its shifts, rotations and overrides")

    run_with_store(action)


def number(field: str, value: str) -> int:
    """A shift or override number, as ``list`` and ``show`` print them."""
    if not value.isdigit() or len(value) > 18:
        raise InvalidValue(field, value, "must be a number as `router schedules show` prints it")
    return int(value)


def remove_shift(args: argparse.Namespace) -> None:
    """``router schedules remove-shift``."""
    shift_id = number("SHIFT_ID", args.shift_id)

    async def action(store: PgStore) -> None:
        shift = await store.remove_shift(shift_id)
        if shift is None:
            raise NotFound(f"Shift {shift_id} does not exist; see `router schedules list`.")
        print(f"removed shift {shift.id}: " + describe_shift(shift))

    run_with_store(action)


def add_rotation(args: argparse.Namespace) -> None:
    """``router schedules add-rotation``."""
    schedule_id = identifier("SCHEDULE_ID", args.schedule_id)
    rotation = Rotation(
        identifier("ROTATION_ID", args.rotation_id),
        user_list("--users", args.users),
        duration("--every", args.every),
        instant("--start", args.start),
    )

    async def action(store: PgStore) -> None:
        await store.add_rotation(schedule_id, rotation)
        schedule = await store.schedule(schedule_id, rotation.start, rotation.start)
        print(f"added to {schedule_id}: " + describe_rotation(rotation, schedule))

    run_with_store(action)


def remove_rotation(args: argparse.Namespace) -> None:
    """``router schedules remove-rotation``."""
    schedule_id = identifier("SCHEDULE_ID", args.schedule_id)
    rotation_id = identifier("ROTATION_ID", args.rotation_id)

    async def action(store: PgStore) -> None:
        if not await store.remove_rotation(schedule_id, rotation_id):
            raise NotFound(f"Schedule {schedule_id!r} has no rotation {rotation_id!r}.")
        print(f"removed rotation {rotation_id} from {schedule_id}")

    run_with_store(action)


def set_users(args: argparse.Namespace) -> None:
    """``router schedules set-users``."""
    schedule_id = identifier("SCHEDULE_ID", args.schedule_id)
    rotation_id = identifier("ROTATION_ID", args.rotation_id)
    users = user_list("--users", args.users)

    async def action(store: PgStore) -> None:
        await store.set_rotation_users(schedule_id, rotation_id, users)
        print(f"rotation {rotation_id} of {schedule_id}: {','.join(users)} (handoffs unchanged)")

    run_with_store(action)


def override(args: argparse.Namespace) -> None:
    """``router schedules override``."""
    schedule_id = identifier("SCHEDULE_ID", args.schedule_id)
    new = user_id(args.user)
    old = None if args.replace is None else user_id(args.replace)
    if old == new:
        raise InvalidValue("--replace", args.replace, "must name someone other than --user")
    start, end = instant("--start", args.start), instant("--end", args.end)
    if end <= start:
        raise InvalidValue("--end", args.end, f"must be after --start ({args.start})")

    async def action(store: PgStore) -> None:
        made = await store.add_override(schedule_id, Override(0, new, start, end, old))
        print(f"added to {schedule_id}: " + describe_override(made))

    run_with_store(action)


def remove_override(args: argparse.Namespace) -> None:
    """``router schedules remove-override``."""
    override_id = number("OVERRIDE_ID", args.override_id)

    async def action(store: PgStore) -> None:
        removed = await store.remove_override(override_id)
        if removed is None:
            raise NotFound(f"Override {override_id} does not exist; see `router schedules show`.")
        print("removed " + describe_override(removed))

    run_with_store(action)


def who_command(args: argparse.Namespace) -> None:
    """``router schedules who``."""
    schedule_id = identifier("SCHEDULE_ID", args.schedule_id)
    at = now() if args.at is None else instant("--at", args.at)

    async def action(store: PgStore) -> None:
        schedule = await store.schedule(schedule_id, at, at + INSTANT)
        on_call = who(schedule, at)
        if args.json:
            print(
                json.dumps(
                    {
                        "schedule_id": schedule_id,
                        "at": at.isoformat(),
                        "on_call": on_call_json(on_call),
                    }
                )
            )
            return
        if not on_call:
            print(f"nobody is on call for {schedule_id} at {local(at, schedule)}")
        for entry in on_call:
            print(f"{entry.user_id}  {'; '.join(str(r) for r in entry.reasons)}")

    run_with_store(action)


def show(args: argparse.Namespace) -> None:
    """``router schedules show``."""
    schedule_id = identifier("SCHEDULE_ID", args.schedule_id)
    start = now() if args.start is None else instant("--from", args.start)
    end = start + SHOW_DEFAULT if args.end is None else instant("--to", args.end)
    if not start < end <= start + SHOW_MAX:
        raise InvalidValue("--to", args.end, "must be after --from and at most 366 days later")

    async def action(store: PgStore) -> None:
        schedule = await store.schedule(schedule_id, start, end)
        handoffs = timeline(schedule, start, end)
        if args.json:
            print(json.dumps(timeline_json(schedule, start, end, handoffs)))
            return
        title = f" ({schedule.name})" if schedule.name else ""
        print(f"schedule {schedule_id}{title}, time zone {schedule.timezone}")
        for rotation in schedule.rotations:
            print("  " + describe_rotation(rotation, schedule))
        for shift in schedule.shifts:
            print(f"  shift {shift.id}: " + describe_shift(shift))
        for made in schedule.overrides:
            print("  " + describe_override(made, schedule))
        print()
        rows = [[local(h.at, schedule), why(h.on_call)] for h in handoffs]
        print(table.render([f"FROM ({schedule.timezone})", "ON CALL"], rows, max_width=100))

    run_with_store(action)


def timeline_json(
    schedule: Schedule, start: datetime, end: datetime, handoffs: list[Handoff]
) -> dict[str, Any]:
    """``show --json``: the schedule and its handoffs, instants in the schedule's zone."""
    zone = schedule.zone
    return {
        "schedule_id": schedule.schedule_id,
        "name": schedule.name,
        "timezone": schedule.timezone,
        "from": start.astimezone(zone).isoformat(),
        "to": end.astimezone(zone).isoformat(),
        "handoffs": [
            {"at": h.at.astimezone(zone).isoformat(), "on_call": on_call_json(h.on_call)}
            for h in handoffs
        ],
    }


def ical(args: argparse.Namespace) -> None:
    """``router schedules ical``."""
    schedule_id = identifier("SCHEDULE_ID", args.schedule_id)
    only = None if args.user is None else user_id(args.user)
    weeks = count("--weeks", args.weeks, 1, 52)
    start = now()
    end = start + timedelta(weeks=weeks)

    documents: list[bytes] = []

    async def action(store: PgStore) -> None:
        schedule = await store.schedule(schedule_id, start, end)
        documents.append(on_call_calendar(schedule, start, end, user_id=only, stamp=start))

    run_with_store(action)
    if args.output is None:
        sys.stdout.write(documents[0].decode())
    else:
        Path(args.output).write_bytes(documents[0])
        print(f"wrote {args.output}")


def register(schedules: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add these commands to the ``router schedules`` parser."""
    iso = "ISO 8601 time with offset"
    made = schedules.add_parser("add", help="a schedule with a name and a time zone")
    made.add_argument("schedule_id", metavar="SCHEDULE_ID")
    made.add_argument("--name", required=True)
    made.add_argument("--timezone", required=True, help="IANA zone of its handoffs")
    made.set_defaults(func=add)
    gone = schedules.add_parser("delete", help="a schedule with its shifts, rotations, overrides")
    gone.add_argument("schedule_id", metavar="SCHEDULE_ID")
    gone.set_defaults(func=delete)
    shift = schedules.add_parser("remove-shift", help="remove a shift by its number")
    shift.add_argument("shift_id", metavar="SHIFT_ID")
    shift.set_defaults(func=remove_shift)
    rotation = schedules.add_parser("add-rotation", help="members taking turns")
    rotation.add_argument("schedule_id", metavar="SCHEDULE_ID")
    rotation.add_argument("rotation_id", metavar="ROTATION_ID")
    rotation.add_argument("--users", required=True, help="comma list, in turn order")
    rotation.add_argument("--every", required=True, metavar="DURATION", help="e.g. 12h, 1d, 1w")
    rotation.add_argument("--start", required=True, metavar="ISO", help="the first handoff")
    rotation.set_defaults(func=add_rotation)
    unrotate = schedules.add_parser("remove-rotation", help="remove a rotation")
    unrotate.add_argument("schedule_id", metavar="SCHEDULE_ID")
    unrotate.add_argument("rotation_id", metavar="ROTATION_ID")
    unrotate.set_defaults(func=remove_rotation)
    members = schedules.add_parser("set-users", help="change a rotation's members, same handoffs")
    members.add_argument("schedule_id", metavar="SCHEDULE_ID")
    members.add_argument("rotation_id", metavar="ROTATION_ID")
    members.add_argument("--users", required=True, help="comma list, in turn order")
    members.set_defaults(func=set_users)
    swap = schedules.add_parser("override", help="someone on call instead of, or besides, others")
    swap.add_argument("schedule_id", metavar="SCHEDULE_ID")
    swap.add_argument("--user", required=True, metavar="NEW")
    swap.add_argument("--replace", metavar="OLD", help="NEW takes OLD's time in the window")
    swap.add_argument("--start", required=True, metavar="ISO", help=iso)
    swap.add_argument("--end", required=True, metavar="ISO", help=iso)
    swap.set_defaults(func=override)
    unswap = schedules.add_parser("remove-override", help="remove an override by its number")
    unswap.add_argument("override_id", metavar="OVERRIDE_ID")
    unswap.set_defaults(func=remove_override)
    asked = schedules.add_parser("who", help="who is on call, and why")
    asked.add_argument("schedule_id", metavar="SCHEDULE_ID")
    asked.add_argument("--at", metavar="ISO", help=iso + " (default now)")
    asked.add_argument("--json", action="store_true", help="one JSON object")
    asked.set_defaults(func=who_command)
    shown = schedules.add_parser("show", help="rotations, overrides and the handoff timeline")
    shown.add_argument("schedule_id", metavar="SCHEDULE_ID")
    shown.add_argument("--from", dest="start", metavar="ISO", help=iso + " (default now)")
    shown.add_argument("--to", dest="end", metavar="ISO", help=iso + " (default two weeks on)")
    shown.add_argument("--json", action="store_true", help="one JSON object")
    shown.set_defaults(func=show)
    cal = schedules.add_parser("ical", help="the coming on-call time as an iCalendar file")
    cal.add_argument("schedule_id", metavar="SCHEDULE_ID")
    cal.add_argument("--user", help="only this user's time")
    cal.add_argument("--weeks", default="4", help="how far ahead (default 4)")
    cal.add_argument("--output", metavar="FILE", help="write here instead of standard output")
    cal.set_defaults(func=ical)
