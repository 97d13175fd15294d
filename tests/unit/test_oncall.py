"""Who is on call: rotations in local time, shifts, overrides, and the timeline,
checked against a brute-force minute-by-minute model."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.directory.models import Shift
from router.schedules.oncall import (
    Override,
    Reason,
    Rotation,
    Schedule,
    describe_every,
    on_call_users,
    periods,
    timeline,
    who,
)

BERLIN = ZoneInfo("Europe/Berlin")
MINUTE = timedelta(minutes=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def weekly_berlin() -> Schedule:
    monday = datetime(2026, 3, 23, 9, 0, tzinfo=BERLIN)  # a Monday, before the March change
    return Schedule(
        "ops",
        "Europe/Berlin",
        rotations=(Rotation("r", ("alice", "bob"), timedelta(weeks=1), monday),),
    )


def test_a_weekly_berlin_rotation_hands_off_at_nine_local_across_both_changes() -> None:
    schedule = weekly_berlin()
    handoffs = timeline(schedule, at("2026-03-23T00:00:00+01:00"), at("2026-11-03T00:00:00+01:00"))
    local = [h.at.astimezone(BERLIN) for h in handoffs[1:]]
    assert all(t.weekday() == 0 and (t.hour, t.minute) == (9, 0) for t in local)
    days = {t.date().isoformat() for t in local}
    assert {"2026-03-23", "2026-03-30", "2026-10-19", "2026-10-26"} <= days
    # 167 hours across the March change, 169 across October's (differences in UTC).
    gaps = {b.at - a.at for a, b in itertools.pairwise(handoffs[1:])}
    assert gaps == {timedelta(hours=h) for h in (167, 168, 169)}


def test_rotation_member_follows_the_formula_and_nobody_before_start() -> None:
    rotation = Rotation("r", ("a", "b", "c"), timedelta(hours=12), at("2026-01-01T00:00:00Z"))
    zone = ZoneInfo("UTC")
    assert rotation.member_at(at("2025-12-31T23:59:00Z"), zone) is None
    assert rotation.member_at(at("2026-01-01T00:00:00Z"), zone) == "a"
    assert rotation.member_at(at("2026-01-01T12:00:00Z"), zone) == "b"
    assert rotation.member_at(at("2026-01-02T11:59:00Z"), zone) == "c"
    assert rotation.member_at(at("2026-01-02T12:00:00Z"), zone) == "a"


def test_an_override_with_replace_takes_the_old_users_time_and_without_adds() -> None:
    base = weekly_berlin()
    window = (at("2026-04-01T00:00:00Z"), at("2026-04-02T00:00:00Z"))
    swapped = Schedule(
        "ops",
        "Europe/Berlin",
        rotations=base.rotations,
        overrides=(Override(1, "carol", *window, "bob"),),
    )
    added = Schedule(
        "ops", "Europe/Berlin", rotations=base.rotations, overrides=(Override(1, "carol", *window),)
    )
    inside = at("2026-04-01T12:00:00Z")  # bob's week
    assert on_call_users(base, inside) == ("bob",)
    assert who(swapped, inside)[0].reasons == (Reason("override", "1", "bob"),)
    assert on_call_users(swapped, inside) == ("carol",)
    assert on_call_users(added, inside) == ("bob", "carol")
    assert on_call_users(swapped, at("2026-04-02T00:00:00Z")) == ("bob",)
    # Replacing someone who is not on call changes nothing.
    assert on_call_users(swapped, at("2026-03-25T12:00:00Z")) == ("alice",)


def test_periods_cut_a_users_time_at_the_window() -> None:
    schedule = weekly_berlin()
    start, end = at("2026-03-23T00:00:00+01:00"), at("2026-04-13T00:00:00+02:00")
    assert [
        (u, f.astimezone(BERLIN).day, t.astimezone(BERLIN).day)
        for u, f, t in periods(schedule, start, end, "alice")
    ] == [("alice", 23, 30), ("alice", 6, 13)]


def test_describe_every() -> None:
    assert [describe_every(timedelta(minutes=m)) for m in (90, 720, 2880, 10080)] == [
        "90m",
        "12h",
        "2d",
        "1w",
    ]


# -- the brute-force model ---------------------------------------------------------------

USERS = ["a", "b", "c", "d"]
ZONES = sorted(
    {"UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"}
    | {z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/"))}
)
# 2026's changes in Europe, the US and Australia, where windows start most often.
ANCHORS = [
    datetime(2026, m, d, tzinfo=UTC)
    for m, d in ((3, 8), (3, 29), (4, 5), (10, 4), (10, 25), (11, 1))
]
WINDOW = timedelta(days=3)


@st.composite
def schedules(draw: st.DrawFn) -> tuple[Schedule, datetime]:
    zone = draw(st.sampled_from(ZONES))
    anchor = draw(st.sampled_from(ANCHORS)) + timedelta(
        minutes=draw(st.integers(-5 * 1440, 3 * 1440))
    )
    rotations = []
    for i in range(draw(st.integers(0, 3))):
        every = draw(
            st.one_of(
                st.integers(1, 14).map(lambda d: timedelta(days=d)),
                st.integers(7, 3 * 1440).map(lambda m: timedelta(minutes=m)),
            )
        )
        start = anchor + timedelta(minutes=draw(st.integers(-20 * 1440, 2 * 1440)))
        users = tuple(draw(st.lists(st.sampled_from(USERS), min_size=1, max_size=4)))
        rotations.append(Rotation(f"r{i}", users, every, start))

    def window() -> tuple[datetime, datetime]:
        begins = anchor + timedelta(minutes=draw(st.integers(-1440, 4 * 1440)))
        return begins, begins + timedelta(minutes=draw(st.integers(1, 2 * 1440)))

    shifts = tuple(
        Shift(id=i, schedule_id="s", user_id=draw(st.sampled_from(USERS)), starts_at=b, ends_at=e)
        for i, (b, e) in enumerate(window() for _ in range(draw(st.integers(0, 3))))
    )
    overrides = tuple(
        Override(i, draw(st.sampled_from(USERS)), *window(), draw(st.sampled_from([None, *USERS])))
        for i in range(draw(st.integers(0, 3)))
    )
    return Schedule(
        "s", zone, rotations=tuple(rotations), shifts=shifts, overrides=overrides
    ), anchor


def brute_force(schedule: Schedule, start: datetime, minutes: int) -> list[set[str]]:
    """Who is on call at each minute, with every rotation's handoffs enumerated one by one."""
    zone = schedule.zone
    handoffs = []
    for rotation in schedule.rotations:
        times, n = [], 0
        while (t := rotation.handoff(n, zone)) < start + minutes * MINUTE:
            times.append(t)
            n += 1
        handoffs.append(times)
    out = []
    for m in range(minutes):
        now = start + m * MINUTE
        users: list[str] = []
        for rotation, times in zip(schedule.rotations, handoffs, strict=True):
            count = sum(1 for t in times if t <= now)
            if count:
                users.append(rotation.users[(count - 1) % len(rotation.users)])
        users += [s.user_id for s in schedule.shifts if s.starts_at <= now < s.ends_at]
        for o in sorted(schedule.overrides, key=lambda o: o.override_id):
            if o.starts_at <= now < o.ends_at:
                if o.replaces is None:
                    users.append(o.user_id)
                elif o.replaces in users:
                    users = [u for u in users if u != o.replaces] + [o.user_id]
        out.append(set(users))
    return out


@settings(max_examples=100, deadline=None)
@given(schedules())
def test_who_and_the_timeline_match_a_minute_by_minute_model(drawn) -> None:
    schedule, anchor = drawn
    minutes = int(WINDOW / MINUTE)
    expected = brute_force(schedule, anchor, minutes)
    handoffs = timeline(schedule, anchor, anchor + WINDOW)
    current = 0
    for m, users in enumerate(expected):
        now = anchor + m * MINUTE
        while current + 1 < len(handoffs) and handoffs[current + 1].at <= now:
            current += 1
        assert set(handoffs[current].users) == users, now
        if m % 17 == 0:
            assert set(on_call_users(schedule, now)) == users, now
    # Each entry is a real change.
    for before, after in itertools.pairwise(handoffs):
        assert set(before.users) != set(after.users)


@settings(max_examples=100, deadline=None)
@given(schedules())
def test_whole_day_rotations_hand_off_at_the_start_wall_clock_time(drawn) -> None:
    schedule, _ = drawn
    zone = schedule.zone
    for rotation in schedule.rotations:
        if rotation.every % timedelta(days=1):
            continue
        start = rotation.start.astimezone(zone)
        previous = None
        for n in range(60):
            local = rotation.handoff(n, zone).astimezone(zone)
            wall = start.replace(tzinfo=None) + n * rotation.every
            # The same wall-clock time, unless that time does not exist that day.
            exists = (
                wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None)
                == wall
            )
            if exists:
                assert local.replace(tzinfo=None) == wall
            if previous is not None:
                assert local > previous
            previous = local


@pytest.mark.parametrize("turn", range(6))
def test_turn_at_agrees_with_the_handoffs_around_each_one(turn: int) -> None:
    rotation = weekly_berlin().rotations[0]
    handoff = rotation.handoff(turn + 20, BERLIN)  # around the October change
    assert rotation.turn_at(handoff, BERLIN) == turn + 20
    assert rotation.turn_at(handoff - MINUTE, BERLIN) == turn + 19


def test_the_calendar_parses_and_lists_a_users_turns() -> None:
    import icalendar

    from router.schedules.calendar import on_call_calendar

    schedule = weekly_berlin()
    start, end = at("2026-03-23T09:00:00+01:00"), at("2026-04-20T09:00:00+02:00")
    document = on_call_calendar(schedule, start, end, user_id="bob", stamp=start)
    events = icalendar.Calendar.from_ical(document).walk("VEVENT")
    assert [
        (e.decoded("dtstart").astimezone(BERLIN).isoformat(), str(e["summary"])) for e in events
    ] == [
        ("2026-03-30T09:00:00+02:00", "On call: ops (bob)"),
        ("2026-04-13T09:00:00+02:00", "On call: ops (bob)"),
    ]
    assert [e.decoded("dtend") - e.decoded("dtstart") for e in events] == [
        timedelta(weeks=1),
        timedelta(weeks=1),
    ]
