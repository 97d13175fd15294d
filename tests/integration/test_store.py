"""The Postgres store: snapshots for the worker, and writes that keep the invariants."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from router.db.store import PgStore
from router.delivery.trail import JobRow, Trail
from router.directory.writes import NewContactMethod
from router.errors import Conflict, NotFound, NotMigrated, StoreUnavailable
from router.routing.rules import RateLimit, Send
from tests.conftest import RouterLog


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[PgStore]:
    s = await PgStore.connect(database_url)
    yield s
    await s.close()


async def test_directory_snapshot_has_known_users_and_their_methods_in_creation_order(
    store: PgStore,
) -> None:
    await store.add_user("alice", "Alice", "Europe/Berlin")
    await store.add_user("bob", None, "UTC")
    a1 = await store.add_contact_method(NewContactMethod("alice", "sms", "+14155551234"))
    a2 = await store.add_contact_method(NewContactMethod("alice", "email", "a@example.com"))
    await store.add_contact_method(NewContactMethod("bob", "email", "b@example.com"))
    directory = await store.directory_for(["alice", "ghost"])
    assert set(directory.users) == {"alice"}
    assert directory.users["alice"].timezone == "Europe/Berlin"
    assert [m.id for m in directory.methods_of("alice")] == [a1.id, a2.id]
    assert directory.methods_of("ghost") == ()


async def test_webhook_options_round_trip(store: PgStore) -> None:
    await store.add_user("alice", None, "UTC")
    created = await store.add_contact_method(
        NewContactMethod(
            "alice",
            "webhook",
            "https://h.example/x",
            webhook_method="PUT",
            webhook_headers={"Authorization": "Bearer t"},
            webhook_query={"k": "v"},
            webhook_body='{"t": "{{title}}"}',
        )
    )
    [read] = (await store.directory_for(["alice"])).methods_of("alice")
    assert read == created
    assert (read.webhook_method, read.webhook_headers, read.webhook_query) == (
        "PUT",
        {"Authorization": "Bearer t"},
        {"k": "v"},
    )


async def test_a_duplicate_value_is_refused_naming_the_existing_method(store: PgStore) -> None:
    await store.add_user("alice", None, "UTC")
    first = await store.add_contact_method(NewContactMethod("alice", "email", "a@example.com"))
    with pytest.raises(Conflict, match=first.id):
        await store.add_contact_method(NewContactMethod("alice", "email", "a@example.com"))


async def test_a_new_primary_clears_the_old_one_of_that_transport_only(store: PgStore) -> None:
    await store.add_user("alice", None, "UTC")
    old = await store.add_contact_method(
        NewContactMethod("alice", "sms", "+14155551234", is_primary=True)
    )
    mail = await store.add_contact_method(
        NewContactMethod("alice", "email", "a@example.com", is_primary=True)
    )
    new = await store.add_contact_method(
        NewContactMethod("alice", "sms", "+14155551235", is_primary=True)
    )
    primary = {
        m.id: m.is_primary for m in (await store.directory_for(["alice"])).methods_of("alice")
    }
    assert primary == {old.id: False, mail.id: True, new.id: True}


async def test_a_method_for_an_unknown_user_is_refused(store: PgStore) -> None:
    with pytest.raises(NotFound, match="router users add ghost"):
        await store.add_contact_method(NewContactMethod("ghost", "email", "g@example.com"))


async def test_an_existing_user_id_is_refused(store: PgStore) -> None:
    await store.add_user("alice", None, "UTC")
    with pytest.raises(Conflict, match="already exists"):
        await store.add_user("alice", None, "UTC")


async def test_an_unreachable_database_is_reported_as_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="ROUTER_DATABASE_URL") as info:
        await PgStore.connect("postgresql://router:secret@127.0.0.1:1/router")
    assert "secret" not in str(info.value)


async def test_an_unmigrated_database_is_reported_as_such(empty_database_url: str) -> None:
    store = await PgStore.connect(empty_database_url)
    try:
        with pytest.raises(NotMigrated, match="router db migrate"):
            await store.check_schema()
        with pytest.raises(NotMigrated, match="router db migrate"):
            await store.directory_for(["alice"])
    finally:
        await store.close()


# -- rule state (issue: routing rules) ---------------------------------------------------


def sms_job(
    n: int, event_id: str, user_id: str, method_id: str, at: datetime, severity: str = "critical"
) -> JobRow:
    """The trail's row of an SMS job to +14155551234, job id number ``n``."""
    return JobRow(
        f"00000000-0000-4000-8000-{n:012d}",
        event_id,
        user_id,
        method_id,
        "sms",
        severity,
        "+14155551234",
        at,
    )


LIMITS = {
    "sms": (RateLimit(3, 900),),
    "email": (RateLimit(20, 900),),
    "webhook": (RateLimit(60, 60),),
}


async def test_concurrent_reservations_from_two_pools_share_one_limit(
    store: PgStore,
    database_url: str,
) -> None:
    await store.add_user("alice", None, "UTC")
    method = await store.add_contact_method(NewContactMethod("alice", "sms", "+14155551234"))
    other = await PgStore.connect(database_url)
    try:
        batches = [
            [Send(f"{i:08d}-0000-4000-8000-{n:012d}", method.id, "sms", False) for i in range(4)]
            for n in range(2)
        ]
        now = datetime.now(UTC)
        decisions = await asyncio.gather(
            store.reserve_sends(batches[0], LIMITS, now),
            other.reserve_sends(batches[1], LIMITS, now),
        )
    finally:
        await other.close()
    assert len(decisions[0].allowed) + len(decisions[1].allowed) == 3


async def test_a_reservation_repeated_after_a_crash_is_allowed_and_not_counted_twice(
    store: PgStore,
) -> None:
    await store.add_user("alice", None, "UTC")
    method = await store.add_contact_method(NewContactMethod("alice", "sms", "+14155551234"))
    jobs = [Send(f"00000000-0000-4000-8000-{n:012d}", method.id, "sms", False) for n in range(3)]
    now = datetime.now(UTC)

    async def allowed(sends: list[Send], at: datetime = now) -> set[str]:
        return (await store.reserve_sends(sends, LIMITS, at)).allowed

    assert await allowed(jobs) == {j.job_id for j in jobs}
    assert await allowed(jobs) == {j.job_id for j in jobs}
    extra = Send("00000000-0000-4000-8000-000000000099", method.id, "sms", False)
    assert await allowed([extra]) == set()
    decision = await store.reserve_sends([extra], LIMITS, now)
    assert decision.retry_at[method.id] == now + timedelta(seconds=900)
    critical = Send("00000000-0000-4000-8000-000000000098", method.id, "sms", True)
    assert await allowed([critical]) == {critical.job_id}
    # The window slides at the worker's clock: 900 s later the extra one fits again.
    assert await allowed([extra], now + timedelta(seconds=900)) == {extra.job_id}


async def test_routed_events_are_remembered_within_the_window(store: PgStore) -> None:
    await store.mark_routed(["e1", "e2"])
    assert await store.routed_within(["e1", "e3"], 3600) == {"e1"}
    await asyncio.sleep(0.05)
    assert await store.routed_within(["e1"], 0.01) == set()
    await store.purge(routed_older_than=0.01, sends_older_than=3600)
    assert await store.routed_within(["e1", "e2"], 3600) == set()


async def test_on_call_lookup_finds_overlapping_shifts_at_each_instant(store: PgStore) -> None:
    for user in ("a", "b"):
        await store.add_user(user, None, "UTC")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    await store.add_shift("primary", "a", t0, t0 + timedelta(hours=8))
    await store.add_shift("primary", "b", t0 + timedelta(hours=4), t0 + timedelta(hours=12))
    await store.add_shift("empty", "a", t0 - timedelta(days=2), t0 - timedelta(days=1))
    lookups = [
        ("primary", t0 + timedelta(hours=5)),
        ("primary", t0 + timedelta(hours=8)),
        ("empty", t0),
        ("nope", t0),
    ]
    directory = await store.directory_for([], lookups)
    assert directory.on_call == {lookups[0]: ("a", "b"), lookups[1]: ("b",), lookups[2]: ()}
    assert set(directory.users) == {"a", "b"}


async def test_alert_text_with_nul_characters_is_kept_on_the_trail_and_in_held_pages(
    store: PgStore,
) -> None:
    from router.delivery.trail import trail_of
    from router.held.digest import deferred
    from schemas import AlertEvent

    event = AlertEvent.model_validate_json(
        '{"event_id": "nul-1", "kind": "down", "severity": "warning", "user_ids": ["alice"],'
        ' "title": "a\\u0000b", "body": "c\\u0000d", "occurred_at": "2026-01-01T00:00:00Z"}'
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    await store.write_trail(trail_of([(event, [], [])], now))
    _, page = deferred(event, "alice", str(uuid.uuid4()), "email", "quiet_hours", now, now)
    await store.reserve_sends([], LIMITS, now, lambda _: [page])
    [held] = await store.list_held()
    assert held.event.title == "a\x00b"
    stored, _, _ = await store.trail("nul-1")
    assert stored is not None and AlertEvent.model_validate_json(stored[0]).body == "c\x00d"


async def test_a_page_whose_hold_went_out_is_held_again_by_a_later_escalation_step_only(
    store: PgStore,
) -> None:
    from router.held.digest import Outcome, deferred
    from schemas import AlertEvent

    event = AlertEvent.model_validate(
        {
            "event_id": "re-1",
            "kind": "down",
            "severity": "warning",
            "user_ids": ["alice"],
            "title": "t",
        }
    )
    method = str(uuid.uuid4())
    now = datetime(2026, 1, 1, tzinfo=UTC)
    hour = timedelta(hours=1)
    _, first = deferred(event, "alice", method, "email", "quiet_hours", now + hour, now)
    await store.reserve_sends([], LIMITS, now, lambda _: [first])
    async with store.claim_held(now + 2 * hour) as claim:
        assert [p.key for p in claim.pages] == [first.key]
        await claim.settle(Outcome(sent={first.key: str(uuid.uuid4())}), now + 2 * hour)
    assert await store.list_held() == []

    # A redelivered batch holds it again: it went out, it stays out.
    await store.reserve_sends([], LIMITS, now, lambda _: [first])
    assert await store.list_held() == []

    # A later escalation step pages alice again, in her next quiet window: it waits
    # again, for that window's end, instead of vanishing behind the first hold.
    later = now + 20 * hour
    _, again = deferred(event, "alice", method, "email", "quiet_hours", later + hour, later)
    async with store.claim_due_pages(later) as pages:
        await pages.hold([again, again])  # the same page twice in one step: held once
    [waiting] = await store.list_held()
    assert (waiting.key, waiting.deliver_at, waiting.held_at) == (first.key, later + hour, later)

    # While it waits, another step's hold leaves it as it is (one digest, one event).
    _, third = deferred(event, "alice", method, "email", "quiet_hours", later + 5 * hour, later)
    async with store.claim_due_pages(later) as pages:
        await pages.hold([third])
    [still] = await store.list_held()
    assert still.deliver_at == later + hour


async def test_the_trail_purge_forgets_closed_pages_and_acks_past_retention_not_open_pages(
    store: PgStore, database_url: str
) -> None:
    from router.pages.policy import PolicyStep
    from schemas import AlertEvent, PageAck

    await store.add_policy("db", "Database", 0)
    await store.add_policy_step("db", PolicyStep(delay_seconds=300, user_ids=("alice",)))
    now = datetime.now(UTC)
    events = [
        AlertEvent.model_validate(
            {"event_id": key, "kind": "down", "severity": "critical"}
            | {"escalation_policy_id": "db", "title": key}
        )
        for key in ("old-closed", "old-open", "new-closed")
    ]
    await store.open_pages(events, now)
    await store.answer_pages(
        [
            PageAck(alert_key=key, user_id="alice", action="ack", source="cli", at=now)
            for key in ("old-closed", "new-closed")
        ]
    )
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE pages SET opened_at = opened_at - interval '2 h', "
            "answered_at = answered_at - interval '2 h' WHERE alert_key LIKE 'old-%'"
        )
        await conn.execute(
            "UPDATE page_acks SET recorded_at = recorded_at - interval '2 h' "
            "WHERE alert_key = 'old-closed'"
        )
        await store.purge(routed_older_than=3600, sends_older_than=3600, trail_older_than=3600)
        pages = await conn.fetch("SELECT alert_key, status FROM pages ORDER BY alert_key")
        acks = await conn.fetch("SELECT alert_key FROM page_acks ORDER BY alert_key")
    finally:
        await conn.close()
    assert [(p["alert_key"], p["status"]) for p in pages] == [
        ("new-closed", "acknowledged"),
        ("old-open", "open"),  # an open page stays, however old
    ]
    assert [a["alert_key"] for a in acks] == ["new-closed"]


async def test_jobs_counted_with_a_batchs_ledger_count_against_the_limit_at_their_clock(
    store: PgStore, database_url: str
) -> None:
    await store.add_user("alice", None, "UTC")
    method = await store.add_contact_method(NewContactMethod("alice", "sms", "+14155551234"))
    now = datetime.now(UTC)
    jobs = [sms_job(n, "e1", "alice", method.id, now - timedelta(seconds=n)) for n in range(3)]
    other = sms_job(77, "e2", "alice", method.id, now, "warning")  # counted by its reservation
    trail = Trail(jobs=[*jobs, other])
    await store.record_batch(trail, ["e1", "e2"], ["e1"])
    await store.record_batch(trail, ["e1", "e2"], ["e1"])  # a retry: each job once
    conn = await asyncpg.connect(database_url)
    try:
        counted = await conn.fetch("SELECT job_id::text, sent_at FROM rate_limit_sends")
    finally:
        await conn.close()
    assert sorted((r["job_id"], r["sent_at"]) for r in counted) == [
        (j.job_id, j.created_at) for j in jobs
    ]
    later = Send("00000000-0000-4000-8000-000000000099", method.id, "sms", False)
    decision = await store.reserve_sends([later], LIMITS, now)
    assert decision.allowed == set(), "the three counted sends fill the limit"
    # Allowed again when the oldest of the three (made at now - 2 s) leaves the window.
    assert decision.retry_at[method.id] == now - timedelta(seconds=2) + timedelta(seconds=900)
    assert await store.routed_within(["e1"], 3600) == {"e1"}


async def test_a_batch_recorded_again_writes_each_row_once_and_says_rows_were_there(
    store: PgStore, database_url: str, router_log: RouterLog
) -> None:
    # The ledger statement runs first without conflict checks (new rows, nearly always);
    # a row already there makes PostgreSQL refuse all of it, and it runs again as
    # written: nothing half-written, nothing twice.
    now = datetime.now(UTC)
    job = sms_job(5, "e1", "alice", "00000000-0000-4000-8000-0000000000aa", now)
    trail = Trail(
        events=[("e1", b'{"event_id": "e1"}', f'["{job.job_id}"]'.encode(), now)],
        jobs=[job],
    )
    await store.record_batch(trail, ["e1"], ["e1"])
    assert "ledger_rows_already_there" not in [e["event"] for e in router_log()]
    await store.record_batch(trail, ["e1"], ["e1"])  # its answer lost the first time
    [said] = [e for e in router_log() if e["event"] == "ledger_rows_already_there"]
    assert said["events"] == 1
    conn = await asyncpg.connect(database_url)
    try:
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM page_events) AS events,"
            " (SELECT count(*) FROM page_jobs) AS jobs,"
            " (SELECT count(*) FROM routed_events) AS routed,"
            " (SELECT count(*) FROM rate_limit_sends) AS counted"
        )
    finally:
        await conn.close()
    assert dict(counts) == {"events": 1, "jobs": 1, "routed": 1, "counted": 1}


async def test_a_batchs_events_and_decisions_are_kept_as_they_came_nul_and_all(
    store: PgStore, database_url: str
) -> None:
    # The trail keeps an event as it came (its spacing, key order, escapes; a \u0000
    # json keeps and jsonb refuses) and its decisions as published, each batch's
    # events with their own ids and times, every one marked routed.
    first = datetime(2026, 12, 4, 10, 0, 0, 123456, tzinfo=UTC)
    second = first + timedelta(seconds=1)
    event = b'{ "title" : "db\\u0000 down",\n  "event_id":"e\\u00e9 1" }'
    decisions = b'[{"event_id": "e\\u00e9 1", "alert_key": "x\\u0000y"}, "job-id"]'
    trail = Trail(events=[("e\u00e9 1", event, decisions, first), ("e2", b"{}", b"[]", second)])
    await store.record_batch(trail, ["e\u00e9 1", "e2"], [])
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT event_id, event::text, decisions::text, routed_at FROM page_events "
            "ORDER BY routed_at"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        ("e\u00e9 1", event.decode(), decisions.decode(), first),
        ("e2", "{}", "[]", second),
    ]
    assert await store.routed_within(["e\u00e9 1", "e2", "e3"], 3600) == {"e\u00e9 1", "e2"}


async def test_an_event_routed_again_after_its_dedup_window_is_marked_routed_anew(
    store: PgStore, database_url: str
) -> None:
    now = datetime.now(UTC)
    trail = Trail(events=[("e1", b'{"event_id": "e1"}', b"[]", now)])
    await store.record_batch(trail, ["e1"], [])
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE routed_events SET routed_at = now() - interval '2 hours'")
        assert await store.routed_within(["e1"], 3600) == set()
        # Routed again (its window is over): its trail row is there, its mark is renewed.
        await store.record_batch(trail, ["e1"], [])
        events = await conn.fetchval("SELECT count(*) FROM page_events")
    finally:
        await conn.close()
    assert await store.routed_within(["e1"], 3600) == {"e1"}
    assert events == 1


async def test_a_batchs_ledger_is_kept_whole_when_a_method_it_paged_is_deleted_meanwhile(
    store: PgStore, database_url: str
) -> None:
    # The worker publishes a critical job, then writes its ledger. A method deleted in
    # between (the API, the CLI, a bulk replace) must not cost the event its trail or
    # its routed mark: the redelivered batch would page again, and the page would have
    # no story.
    await store.add_user("alice", None, "UTC")
    method = await store.add_contact_method(NewContactMethod("alice", "sms", "+14155551234"))
    now = datetime.now(UTC)
    job = sms_job(1, "e1", "alice", method.id, now)
    await store.delete_contact_method(method.id)
    await store.record_batch(
        Trail(events=[("e1", b'{"event_id": "e1"}', b"[]", now)], jobs=[job]), ["e1"], ["e1"]
    )
    assert await store.routed_within(["e1"], 3600) == {"e1"}
    conn = await asyncpg.connect(database_url)
    try:
        events = await conn.fetch("SELECT event_id FROM page_events")
        trail = await conn.fetch("SELECT job_id::text FROM page_jobs WHERE event_id = 'e1'")
        counted = await conn.fetch(
            "SELECT job_id::text, contact_method_id::text FROM rate_limit_sends"
        )
    finally:
        await conn.close()
    assert [r["event_id"] for r in events] == ["e1"]
    assert [r["job_id"] for r in trail] == [job.job_id]
    assert [(r["job_id"], r["contact_method_id"]) for r in counted] == [(job.job_id, method.id)]


async def test_a_reservation_is_allowed_and_counted_for_a_method_deleted_meanwhile(
    store: PgStore, database_url: str
) -> None:
    # A warning page planned from the directory just before its method was deleted: the
    # reservation does not fail (the alert was dead-lettered, its plan remembered for
    # the retry named the method again), and the send is counted once, like any other.
    await store.add_user("alice", None, "UTC")
    method = await store.add_contact_method(NewContactMethod("alice", "sms", "+14155551234"))
    await store.delete_contact_method(method.id)
    send = Send("00000000-0000-4000-8000-000000000002", method.id, "sms", False)
    now = datetime.now(UTC)
    assert (await store.reserve_sends([send], LIMITS, now)).allowed == {send.job_id}
    assert (await store.reserve_sends([send], LIMITS, now)).allowed == {send.job_id}
    conn = await asyncpg.connect(database_url)
    try:
        counted = await conn.fetch(
            "SELECT job_id::text, contact_method_id::text, sent_at FROM rate_limit_sends"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in counted] == [(send.job_id, method.id, now)]


async def test_a_users_pages_are_found_by_their_jobs_when_their_decisions_are_kept_as_job_ids(
    store: PgStore,
) -> None:
    # A plain sent decision is kept as its job id, so only the job names the user.
    now = datetime.now(UTC)
    job = sms_job(3, "e1", "bob", "00000000-0000-4000-8000-0000000000aa", now)
    event = '{"event_id": "e1", "title": "db down", "severity": "critical"}'
    await store.record_batch(
        Trail(events=[("e1", event.encode(), f'["{job.job_id}"]'.encode(), now)], jobs=[job]),
        ["e1"],
        [],
    )
    [page] = await store.pages_of_user("bob", now - timedelta(hours=1))
    assert (page["event_id"], page["title"], page["jobs"]) == ("e1", "db down", 1)
    assert await store.pages_of_user("carol", now - timedelta(hours=1)) == []


async def test_a_users_pages_are_found_beside_decisions_an_earlier_release_kept_with_a_nul(
    store: PgStore,
) -> None:
    # Before dedup_key refused NUL, a skip decision could carry one in its alert key
    # (JSON: \u0000), which PostgreSQL's jsonb refuses to read: every user's pages were
    # then unreadable while the trail kept it.
    now = datetime.now(UTC)
    event = '{"event_id": "e1", "title": "db\\u0000 down", "severity": "critical"}'
    decisions = (
        '[{"event_id": "e1", "user_id": "ghost", "outcome": "skipped", '
        '"reason": "unknown_user", "alert_key": "db\\u0000key"}, '
        '{"event_id": "e1", "user_id": "dora", "outcome": "skipped", '
        '"reason": "no_contact_methods", "alert_key": "db\\\\u0000key"}]'
    )
    await store.record_batch(
        Trail(events=[("e1", event.encode(), decisions.encode(), now)]), ["e1"], []
    )
    since = now - timedelta(hours=1)
    [page] = await store.pages_of_user("ghost", since)
    assert (page["event_id"], page["title"], page["jobs"]) == ("e1", "db\x00 down", 0)
    assert [p["event_id"] for p in await store.pages_of_user("dora", since)] == ["e1"]
    assert await store.pages_of_user("carol", since) == []
