"""On-call schedules through ``router schedules``: rotations in local time, overrides,
who is on call, the handoff timeline and the calendar, on real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import icalendar
import pytest

from tests.integration.conftest import (
    RouterProcess,
    add_contact,
    cli_ok,
    cli_refused,
    collect,
    produce,
    wait_for_topics,
)

BERLIN = ZoneInfo("Europe/Berlin")
FIRST_MONDAY = "2026-03-23T09:00:00+01:00"


@pytest.fixture
def weekly(router_env: dict[str, str]) -> dict[str, str]:
    """Schedule ``ops`` in Berlin: alice and bob take turns of a week, Mondays 09:00."""
    for user in ("alice", "bob", "carol"):
        cli_ok(router_env, "users", "add", user)
    cli_ok(router_env, "schedules", "add", "ops", "--name", "Ops", "--timezone", "Europe/Berlin")
    cli_ok(
        router_env,
        "schedules",
        "add-rotation",
        "ops",
        "weekly",
        "--users",
        "alice,bob",
        "--every",
        "1w",
        "--start",
        FIRST_MONDAY,
    )
    return router_env


def test_a_weekly_berlin_rotation_shows_nine_local_around_both_2026_changes(
    weekly: dict[str, str],
) -> None:
    shown = cli_ok(
        weekly,
        "schedules",
        "show",
        "ops",
        "--from",
        "2026-03-16T00:00:00+01:00",
        "--to",
        "2026-11-03T00:00:00+01:00",
    )
    print(shown)  # the closing note quotes it
    for line in (
        "2026-03-23 09:00 Mon +01:00  alice (rotation weekly)",  # before the March change
        "2026-03-30 09:00 Mon +02:00  bob (rotation weekly)",  # after it
        "2026-10-19 09:00 Mon +02:00  ",  # before the October change
        "2026-10-26 09:00 Mon +01:00  ",  # after it
    ):
        assert line in shown
    document = json.loads(
        cli_ok(
            weekly,
            "schedules",
            "show",
            "ops",
            "--from",
            FIRST_MONDAY,
            "--to",
            "2026-11-03T00:00:00+01:00",
            "--json",
        )
    )
    handoffs = [datetime.fromisoformat(h["at"]) for h in document["handoffs"]]
    assert len(handoffs) == 33  # 2026-03-23 to 2026-11-02
    assert {(h.weekday(), h.hour, h.minute) for h in handoffs} == {(0, 9, 0)}


def test_who_says_why_and_an_override_takes_the_replaced_users_time(
    weekly: dict[str, str],
) -> None:
    inside = "2026-04-01T12:00:00+02:00"  # bob's week
    assert cli_ok(weekly, "schedules", "who", "ops", "--at", inside) == "bob  rotation weekly\n"
    added = cli_ok(
        weekly,
        "schedules",
        "override",
        "ops",
        "--user",
        "carol",
        "--replace",
        "bob",
        "--start",
        "2026-04-01T08:00:00+02:00",
        "--end",
        "2026-04-02T08:00:00+02:00",
    )
    override_id = added.split("override ")[1].split(":")[0]
    who = json.loads(cli_ok(weekly, "schedules", "who", "ops", "--at", inside, "--json"))
    assert who["on_call"] == [
        {
            "user_id": "carol",
            "reasons": [{"kind": "override", "ref": override_id, "replaces": "bob"}],
        }
    ]
    cli_ok(
        weekly,
        "schedules",
        "override",
        "ops",
        "--user",
        "alice",
        "--start",
        "2026-04-01T00:00:00Z",
        "--end",
        "2026-04-01T23:00:00Z",
    )
    assert cli_ok(weekly, "schedules", "who", "ops", "--at", inside).splitlines() == [
        f"carol  override {override_id} (replaces bob)",
        f"alice  override {int(override_id) + 1}",
    ]
    cli_ok(weekly, "schedules", "remove-override", override_id)
    cli_ok(weekly, "schedules", "set-users", "ops", "weekly", "--users", "carol,alice,bob")
    # Same handoff times, new members: the second week (turn 1) is now alice's.
    who = cli_ok(weekly, "schedules", "who", "ops", "--at", "2026-04-03T12:00:00+02:00")
    assert who == "alice  rotation weekly\n"
    cli_ok(weekly, "schedules", "remove-rotation", "ops", "weekly")
    nobody = cli_ok(weekly, "schedules", "who", "ops", "--at", "2026-05-01T00:00:00Z")
    assert nobody == "nobody is on call for ops at 2026-05-01 02:00 Fri +02:00\n"
    assert cli_ok(weekly, "schedules", "delete", "ops").startswith("deleted schedule ops")
    cli_refused(weekly, "schedules", "who", "ops")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["add", "x", "--name", "X", "--timezone", "Mars/Olympus"], "--timezone"),
        (
            [
                "add-rotation",
                "ops",
                "r2",
                "--users",
                "alice,",
                "--every",
                "1w",
                "--start",
                FIRST_MONDAY,
            ],
            "--users",
        ),
        (
            [
                "add-rotation",
                "ops",
                "r2",
                "--users",
                "alice",
                "--every",
                "1mo",
                "--start",
                FIRST_MONDAY,
            ],
            "--every",
        ),
        (
            [
                "add-rotation",
                "ops",
                "r2",
                "--users",
                "alice",
                "--every",
                "1w",
                "--start",
                "2026-03-23T09:00",
            ],
            "--start",
        ),
        (
            [
                "add-rotation",
                "ops",
                "r2",
                "--users",
                "alice,zed",
                "--every",
                "1w",
                "--start",
                FIRST_MONDAY,
            ],
            "'zed'",
        ),
        (
            [
                "add-rotation",
                "nope",
                "r2",
                "--users",
                "alice",
                "--every",
                "1w",
                "--start",
                FIRST_MONDAY,
            ],
            "'nope'",
        ),
        (
            [
                "add-rotation",
                "ops",
                "weekly",
                "--users",
                "alice",
                "--every",
                "1w",
                "--start",
                FIRST_MONDAY,
            ],
            "uniqueness",
        ),
        (
            ["override", "ops", "--user", "carol", "--start", FIRST_MONDAY, "--end", FIRST_MONDAY],
            "--end",
        ),
        (
            [
                "override",
                "ops",
                "--user",
                "carol",
                "--replace",
                "carol",
                "--start",
                FIRST_MONDAY,
                "--end",
                "2026-03-24T00:00:00Z",
            ],
            "--replace",
        ),
        (["set-users", "ops", "weekly", "--users", ""], "--users"),
        (["set-users", "ops", "monthly", "--users", "alice"], "'monthly'"),
        (["remove-shift", "x1"], "SHIFT_ID"),
        (["remove-override", "999"], "999"),
        (["ical", "ops", "--weeks", "0"], "--weeks"),
        (["add", "ops", "--name", "Again", "--timezone", "UTC"], "already exists"),
    ],
)
def test_bad_input_is_refused_in_one_line_naming_the_field(
    weekly: dict[str, str], args: list[str], field: str
) -> None:
    error = cli_refused(weekly, "schedules", *args)
    assert error.count("\n") == 1 and field in error, error


def test_the_calendar_parses_and_lists_a_users_turns(
    weekly: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "alice.ics"
    before = datetime.now(UTC)
    cli_ok(
        weekly, "schedules", "ical", "ops", "--user", "alice", "--weeks", "6", "--output", str(out)
    )
    made = datetime.now(UTC)
    events = icalendar.Calendar.from_ical(out.read_bytes()).walk("VEVENT")
    got = [(e.decoded("dtstart"), e.decoded("dtend")) for e in events]
    print(
        "\n".join(
            f"{s.astimezone(BERLIN)} -> {e.astimezone(BERLIN)}  {ev['summary']}"
            for (s, e), ev in zip(got, events, strict=True)
        )
    )
    first = datetime.fromisoformat(FIRST_MONDAY)
    # alice's turns: the weeks an even number of weeks after the first Monday, local 09:00.
    mondays = [
        datetime.combine(first.date() + timedelta(weeks=w), first.time(), BERLIN)
        for w in range(0, 80, 2)
    ]
    horizon = timedelta(weeks=6)
    turns = [
        (m, m + timedelta(weeks=1))
        for m in mondays
        if m < made + horizon and m + timedelta(weeks=1) > before
    ]
    assert len(got) == len(turns) >= 2
    second = timedelta(seconds=1)
    for (start, end), (turn_start, turn_end) in zip(got, turns, strict=True):
        # Turns start and end exactly; a turn already under way starts at the
        # command's "now" and the last one ends 6 weeks after it (to the second).
        if turn_start < made:
            assert before - second <= start <= made
        else:
            assert start == turn_start
        if turn_end > before + horizon:
            assert before + horizon - second <= end <= made + horizon
        else:
            assert end == turn_end
    assert {str(e["summary"]) for e in events} == {"On call: Ops (alice)"}


async def test_the_schema_refuses_a_rotation_without_users_and_backwards_overrides(
    weekly: dict[str, str],
) -> None:
    conn = await asyncpg.connect(weekly["ROUTER_DATABASE_URL"])
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO rotations (schedule_id, id, every, starts_at) "
                "VALUES ('ops', 'empty', '1 day', now())"
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "DELETE FROM rotation_members WHERE schedule_id = 'ops' AND rotation_id = 'weekly'"
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO overrides (schedule_id, user_id, starts_at, ends_at) "
                "VALUES ('ops', 'carol', now(), now() - interval '1 hour')"
            )
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(
                "INSERT INTO rotation_members (schedule_id, rotation_id, position, user_id) "
                "VALUES ('ops', 'weekly', 9, 'nobody')"
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO rotations (schedule_id, id, every, starts_at) "
                "VALUES ('ops', 'monthly', '1 month', now())"
            )
        with pytest.raises(asyncpg.RestrictViolationError):
            await conn.execute("DELETE FROM users WHERE id = 'alice'")
    finally:
        await conn.close()


async def test_router_run_pages_the_rotation_member_then_the_override_user_then_back(
    weekly: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    env = weekly
    for user in ("alice", "bob", "carol"):
        add_contact(env, user, "email", f"{user}@example.com", "--verified")
    cli_ok(
        env,
        "schedules",
        "override",
        "ops",
        "--user",
        "carol",
        "--replace",
        "bob",
        "--start",
        "2026-04-01T08:00:00+02:00",
        "--end",
        "2026-04-02T08:00:00+02:00",
    )
    start_router(env)
    bootstrap, alerts, email = (
        env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"],
        env["ROUTER_TOPIC_ALERTS"],
        env["ROUTER_TOPIC_EMAIL"],
    )
    await wait_for_topics(bootstrap, [alerts])
    expected = {
        "alice-week": ("2026-03-25T12:00:00+01:00", "alice"),
        "last-minute-of-alice": ("2026-03-30T08:59:00+02:00", "alice"),
        "handoff-to-bob": ("2026-03-30T09:00:00+02:00", "bob"),
        "bob-before-override": ("2026-04-01T07:59:00+02:00", "bob"),
        "override-carol": ("2026-04-01T12:00:00+02:00", "carol"),
        "bob-after-override": ("2026-04-02T08:00:00+02:00", "bob"),
        "alice-again": ("2026-04-06T09:00:00+02:00", "alice"),
    }
    await produce(
        bootstrap,
        alerts,
        *(
            json.dumps(
                {
                    "event_id": event_id,
                    "kind": "down",
                    "severity": "critical",
                    "title": event_id,
                    "occurred_at": occurred_at,
                    "schedule_id": "ops",
                }
            ).encode()
            for event_id, (occurred_at, _) in expected.items()
        ),
    )
    seen = await collect(bootstrap, [email], until=lambda s: len(s[email]) >= len(expected))
    paged = {json.loads(r.value)["event_id"]: json.loads(r.value)["user_id"] for r in seen[email]}
    print(json.dumps(paged, indent=1))
    assert len(seen[email]) == len(expected)
    assert paged == {event_id: user for event_id, (_, user) in expected.items()}


async def test_the_worker_lookup_unions_rotations_and_shifts_then_applies_overrides(
    database_url: str,
) -> None:
    from router import metrics
    from router.db.store import PgStore
    from router.schedules.oncall import Override, Rotation

    store = await PgStore.connect(database_url)
    try:
        for user in ("a", "b", "c"):
            await store.add_user(user, None, "UTC")
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        hour = timedelta(hours=1)
        await store.add_schedule("ops", "Ops", "America/New_York")
        await store.add_rotation("ops", Rotation("r", ("a", "b"), 12 * hour, t0))
        await store.add_shift("ops", "c", t0 + 2 * hour, t0 + 4 * hour)
        odd = timedelta(microseconds=120)  # sub-second instants survive the jsonb read
        await store.add_override("ops", Override(0, "c", t0 + 13 * hour + odd, t0 + 14 * hour, "b"))
        await store.add_schedule("empty", "Nobody", "UTC")
        lookups = [
            ("ops", t0 - hour),  # before the first handoff
            ("ops", t0 + 3 * hour),  # a's turn and c's shift
            ("ops", t0 + 12 * hour),  # b's turn
            ("ops", t0 + 13 * hour),  # b, 120 µs before the override
            ("ops", t0 + 13 * hour + odd),  # c in b's place
            ("empty", t0),
            ("nope", t0),
        ]
        trips = metrics.DB_ROUND_TRIPS._value
        await store.directory_for([], lookups)  # statements prepared, as at steady state
        before = trips.get()
        await store.directory_for(["a", "b", "c"])
        middle = trips.get()
        directory = await store.directory_for([], lookups)
        # Every schedule lookup of a batch costs one query more than naming the users.
        assert trips.get() - middle == middle - before + 1
        assert directory.on_call == {
            lookups[0]: (),
            lookups[1]: ("a", "c"),
            lookups[2]: ("b",),
            lookups[3]: ("b",),
            lookups[4]: ("c",),
            lookups[5]: (),
        }
        assert set(directory.users) == {"a", "b", "c"}
    finally:
        await store.close()


def test_deleting_a_user_still_in_a_rotation_is_refused_with_the_way_out(
    weekly: dict[str, str],
) -> None:
    error = cli_refused(weekly, "users", "delete", "alice", "--cascade")
    assert error.count("\n") == 1 and "router schedules set-users" in error, error
    cli_ok(weekly, "schedules", "set-users", "ops", "weekly", "--users", "bob")
    cli_ok(weekly, "users", "delete", "alice", "--cascade")
