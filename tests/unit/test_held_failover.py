"""Held pages and failover together, through the worker, the held-page delivery and the
in-memory store, on a clock that jumps: one job id per (page, method), and every held
page ends exactly once."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from router.db.memstore import InMemoryStore
from router.directory.writes import NewContactMethod
from router.held.scheduler import HeldDelivery
from router.routing.dlq import SourceRecord
from router.routing.handler import Worker
from router.settings import Settings
from tests.unit.test_handler import RecordingPublisher

SETTINGS = Settings(
    rate_limit_sms="1/600s",
    rate_limit_email="1/900s",
    rate_limit_webhook="2/300s",
    held_max_age_seconds=6 * 3600,
    retry_backoff_max_seconds=0.01,
)
DELIVERY = {SETTINGS.topic_email, SETTINGS.topic_sms, SETTINGS.topic_webhook}
START = datetime(2026, 1, 15, 20, 0, tzinfo=UTC)

Step = tuple[Any, ...]
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("page"),
            st.sampled_from(["info", "warning", "error", "error", "critical"]),
            st.sampled_from(["down", "up"]),
        ),
        st.tuples(st.just("wait"), st.sampled_from([1, 5, 30, 240])),
        st.tuples(st.just("deliver")),
        st.tuples(st.just("fail"), st.integers(0, 3)),
        st.tuples(st.just("flush")),
    ),
    min_size=1,
    max_size=25,
)


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    clock: Clock
    store: InMemoryStore
    publisher: RecordingPublisher
    worker: Worker
    offset: int = 0
    failed: set[str] = field(default_factory=set)

    def record(self, topic: str, value: dict[str, Any]) -> SourceRecord:
        self.offset += 1
        return SourceRecord(topic, 0, self.offset, None, None, json.dumps(value).encode(), ())

    def delivery(self) -> HeldDelivery:
        return HeldDelivery(self.store, self.publisher, SETTINGS, self.clock)  # type: ignore[arg-type]

    def jobs(self) -> list[dict[str, Any]]:
        return [json.loads(v) for t, v, _, _ in self.publisher.sent if t in DELIVERY]

    def decisions(self) -> list[dict[str, Any]]:
        return self.publisher.on(SETTINGS.topic_decisions)


async def fail(world: World, job_id: str) -> None:
    """The delivery worker reports ``job_id`` failed for good."""
    world.failed.add(job_id)
    report = {
        "job_id": job_id,
        "status": "failed",
        "permanent": True,
        "at": world.clock.now.isoformat(),
    }
    await world.worker.handle_statuses([world.record("status", report)])


async def play(user: dict[str, Any], script: list[Step], failing: bool, hour: int = 20) -> World:
    """Run ``script``; then let time pass until every held page is due or expired, every
    new job failing when ``failing`` (failover chains to their end)."""
    clock = Clock(START.replace(hour=hour))
    store = InMemoryStore(clock=clock)
    await store.add_user("alice")
    await store.update_user("alice", user)
    for transport, value in (
        ("sms", "+14155550100"),
        ("email", "alice@example.com"),
        ("webhook", "https://hooks.example.com/alice"),
    ):
        await store.add_contact_method(NewContactMethod("alice", transport, value, verified=True))  # type: ignore[arg-type]
    publisher = RecordingPublisher()
    world = World(clock, store, publisher, Worker(store, publisher, SETTINGS, clock=clock))
    pages = 0
    for step in script:
        if step[0] == "page":
            pages += 1
            event = {
                "event_id": f"e{pages}",
                "kind": step[2],
                "severity": step[1],
                "title": f"page {pages}",
                "user_ids": ["alice"],
                "occurred_at": clock.now.isoformat(),
            }
            await world.worker.handle([world.record("alerts", event)])
        elif step[0] == "wait":
            clock.now += timedelta(minutes=step[1])
        elif step[0] == "deliver":
            await world.delivery().deliver_due()
        elif step[0] == "flush":
            await world.delivery().deliver_due("alice", force=True)
        else:
            live = [j["job_id"] for j in world.jobs() if j["job_id"] not in world.failed]
            if live:
                await fail(world, live[-1 - step[1] % len(live)])
    for _ in range(20):
        clock.now += timedelta(minutes=30)
        await world.delivery().deliver_due()
        while failing and (live := [j for j in world.jobs() if j["job_id"] not in world.failed]):
            for job in live:
                await fail(world, job["job_id"])
    clock.now += timedelta(hours=7)  # whatever still waits expires
    await world.delivery().deliver_due()
    return world


users = st.fixed_dictionaries(
    {
        "delivery_mode": st.sampled_from(["all", "preferred"]),
        "quiet_hours_start": st.sampled_from([None, time(22, 0)]),
        "quiet_hours_end": st.just(time(7, 0)),
        "quiet_bypass": st.sampled_from(["error", "critical"]),
        "quiet_action": st.sampled_from(["defer", "drop"]),
    }
).map(lambda u: u if u["quiet_hours_start"] else {**u, "quiet_hours_end": None})


def carried(item: dict[str, Any]) -> list[str]:
    return item.get("digest_of") or [item["event_id"]]


EVERY_METHOD = {
    "delivery_mode": "all",
    "quiet_hours_start": None,
    "quiet_hours_end": None,
    "quiet_bypass": "critical",
    "quiet_action": "defer",
}
PREFERS_SMS_AT_NIGHT = {
    **EVERY_METHOD,
    "delivery_mode": "preferred",
    "quiet_hours_start": time(22, 0),
    "quiet_hours_end": time(7, 0),
}


@given(users, steps, st.booleans(), st.sampled_from([3, 6, 12, 21]))
# The second page's SMS and email are held by the limits; its webhook job fails.
@example(
    EVERY_METHOD, [("page", "error", "down"), ("page", "error", "down"), ("fail", 0)], False, 12
)
# Pages held for the night go out as one SMS digest at 07:00, which fails, then the rest.
@example(
    PREFERS_SMS_AT_NIGHT,
    [("page", "warning", "down"), ("page", "error", "up"), ("wait", 240), ("deliver",)],
    True,
    3,
)
@settings(max_examples=100, deadline=None)
def test_one_job_id_per_page_and_method_and_every_held_page_ends_exactly_once(
    user: dict[str, Any], script: list[Step], failing: bool, hour: int
) -> None:
    world = asyncio.run(play(user, script, failing, hour))

    ids: dict[tuple[str, str], set[str]] = {}
    for job in world.jobs():
        for event_id in carried(job):
            ids.setdefault((event_id, job["contact_method_id"]), set()).add(job["job_id"])
    doubled = {page: found for page, found in ids.items() if len(found) > 1}
    assert not doubled, f"two job ids for one (page, method): {doubled}"

    # Every held page ends exactly once (the store refuses a second ending), and with
    # exactly one decision of its own: the digest that carried it, or why not.
    assert set(world.store.held_done) == set(world.store.held)
    decisions = world.decisions()
    for event_id, method_id in world.store.held:
        endings = [
            d
            for d in decisions
            if d["contact_method_id"] == method_id
            and event_id in carried(d)
            and d["outcome"] != "deferred"
            and d.get("failover_of") is None
        ]
        assert len(endings) == 1, (event_id, method_id, endings)
        how, job_id, _ = world.store.held_done[(event_id, method_id)]
        assert endings[0]["job_id"] == job_id
        assert (how == "sent") == (endings[0]["outcome"] == "sent")

    published = {j["job_id"] for j in world.jobs()}
    assert {d["job_id"] for d in decisions if d["outcome"] == "sent"} <= published
