"""No page silently dropped: quiet hours defer, throttled pages bundle, held pages survive.

The worker and the held-page delivery run in this process, on the real broker and
database, with a clock the test sets (hours pass in an instant, nothing sleeps).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from router.db.store import PgStore
from router.delivery.trail import story
from router.directory.writes import NewContactMethod
from router.held.scheduler import HeldDelivery
from router.kafka.adapters import create_producer
from router.kafka.publish import Outgoing, ProducerPublisher, Sent
from router.kafka.topics import ensure_topics
from router.routing.dlq import SourceRecord
from router.routing.handler import Worker
from router.settings import Settings
from tests.integration.conftest import (
    RouterProcess,
    add_contact,
    cli_ok,
    collect,
    produce,
    wait_for_topics,
)

Output = dict[str, list[dict[str, Any]]]
NIGHT = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)  # 03:00 in Berlin; quiet 22:00-07:00
MORNING = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)  # 07:00 in Berlin


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    settings: Settings
    store: PgStore
    producer: AIOKafkaProducer
    clock: Clock
    worker: Worker
    offset: int = 0

    async def page(self, event_id: str, severity: str = "warning", user: str = "alice") -> None:
        await self.worker.handle([self.record(event_id, severity, user)])

    def record(
        self, event_id: str, severity: str = "warning", user: str = "alice", **fields: Any
    ) -> SourceRecord:
        """The next alert record on the partition; ``fields`` replace the event's own
        (``occurred_at=None`` leaves it out)."""
        event = {
            "event_id": event_id,
            "kind": "down",
            "severity": severity,
            "title": f"title of {event_id}",
            "user_ids": [user],
            "occurred_at": self.clock.now.isoformat(),
            **fields,
        }
        self.offset += 1
        return SourceRecord(
            topic="alerts",
            partition=0,
            offset=self.offset,
            timestamp_ms=None,
            key=None,
            value=json.dumps({k: v for k, v in event.items() if v is not None}).encode(),
            headers=(),
        )

    def worker_behind(self, outage: Outage) -> Worker:
        """A worker on this rig's store and clock whose broker fails as ``outage`` says."""
        return Worker(self.store, outage, self.settings, clock=self.clock)

    def delivery(self, **kwargs: Any) -> HeldDelivery:
        return HeldDelivery(
            self.store,
            ProducerPublisher(self.producer, self.settings.kafka_max_request_bytes),
            self.settings,
            self.clock,
            **kwargs,
        )

    async def output(self, until: Callable[[Output], bool]) -> Output:
        names = {
            "email": self.settings.topic_email,
            "sms": self.settings.topic_sms,
            "decisions": self.settings.topic_decisions,
        }
        seen = await collect(
            self.settings.kafka_bootstrap_servers,
            list(names.values()),
            until=lambda s: until(
                {k: [json.loads(r.value) for r in s[t]] for k, t in names.items()}
            ),
            settle=0.5,
        )
        return {k: [json.loads(r.value) for r in seen[t]] for k, t in names.items()}


class Outage:
    """The real publisher, except that messages to the topics in ``down`` fail as a broker
    outage (the first attempt at a batch gets some acknowledgements, not all)."""

    def __init__(self, producer: AIOKafkaProducer, settings: Settings, down: set[str]) -> None:
        self._publisher = ProducerPublisher(producer, settings.kafka_max_request_bytes)
        self.down = down

    async def send_all(self, messages: Sequence[Outgoing], *, singly: bool = False) -> list[Sent]:
        lost: list[Sent] = [
            ((m,), KafkaConnectionError(f"{m.topic} is unreachable"))
            for m in messages
            if m.topic in self.down
        ]
        up = [m for m in messages if m.topic not in self.down]
        return lost + await self._publisher.send_all(up, singly=singly)


def settings_from(env: dict[str, str], **extra: Any) -> Settings:
    values = {k.removeprefix("ROUTER_").lower(): v for k, v in env.items()}
    return Settings(**{**values, **extra})


@pytest.fixture
async def rig(router_env: dict[str, str]) -> AsyncIterator[Rig]:
    settings = settings_from(router_env, topic_partitions=1, rate_limit_sms="5/900s")
    await ensure_topics(settings)
    store = await PgStore.connect(settings.database_url.get_secret_value())
    producer = create_producer(settings)
    await producer.start()
    clock = Clock(NIGHT)
    await store.add_user("alice", "Alice", "Europe/Berlin")
    await store.update_user(
        "alice", {"quiet_hours_start": time(22, 0), "quiet_hours_end": time(7, 0)}
    )
    await store.add_contact_method(
        NewContactMethod("alice", "email", "alice@example.com", verified=True)
    )
    worker = Worker(
        store, ProducerPublisher(producer, settings.kafka_max_request_bytes), settings, clock=clock
    )
    try:
        yield Rig(settings, store, producer, clock, worker)
    finally:
        await producer.stop()
        await store.close()


def of(decisions: list[dict[str, Any]], outcome: str) -> list[dict[str, Any]]:
    return [d for d in decisions if d["outcome"] == outcome]


async def test_warnings_in_quiet_hours_wait_for_the_windows_end_and_go_as_one_digest(
    rig: Rig,
) -> None:
    for n in (1, 2, 3):
        await rig.page(f"night-{n}")
        rig.clock.now += timedelta(minutes=10)
    await rig.page("fire", severity="critical")  # never held

    seen = await rig.output(lambda s: len(s["decisions"]) >= 4)
    deferred = of(seen["decisions"], "deferred")
    assert [(d["event_id"], d["reason"]) for d in deferred] == [
        (f"night-{n}", "quiet_hours") for n in (1, 2, 3)
    ]
    assert {d["deliver_at"] for d in deferred} == {"2026-01-15T06:00:00Z"}
    assert [j["event_id"] for j in seen["email"]] == ["fire"]

    rig.clock.now = MORNING - timedelta(seconds=1)
    assert (await rig.delivery().deliver_due()).jobs == []
    rig.clock.now = MORNING
    outcome = await rig.delivery().deliver_due()
    assert len(outcome.jobs) == 1

    seen = await rig.output(lambda s: len(s["email"]) >= 2)
    digest = seen["email"][-1]
    assert digest["digest_of"] == ["night-1", "night-2", "night-3"]
    assert digest["title"] == "3 alerts held for you (highest: warning)"
    assert all(f"title of night-{n}" in digest["text"] for n in (1, 2, 3))
    [sent] = [d for d in seen["decisions"] if d["job_id"] == digest["job_id"]]
    assert sent["digest_of"] == ["night-1", "night-2", "night-3"]
    assert await rig.store.list_held() == []
    assert (await rig.delivery().deliver_due()).jobs == []  # nothing twice


async def test_the_sms_over_the_limit_is_held_and_bundled_when_the_window_slides(
    rig: Rig,
) -> None:
    rig.clock.now = MORNING + timedelta(hours=3)  # outside quiet hours
    start = rig.clock.now
    await rig.store.add_contact_method(
        NewContactMethod("alice", "sms", "+14155550123", verified=True)
    )
    for n in range(1, 8):
        await rig.page(f"burst-{n}")
    seen = await rig.output(
        lambda s: len(s["sms"]) >= 5 and len(of(s["decisions"], "deferred")) >= 2
    )
    assert [j["event_id"] for j in seen["sms"]] == [f"burst-{n}" for n in range(1, 6)]
    held = [d for d in of(seen["decisions"], "deferred") if d["transport"] == "sms"]
    assert [(d["event_id"], d["reason"]) for d in held] == [
        ("burst-6", "rate_limited"),
        ("burst-7", "rate_limited"),
    ]
    assert {d["deliver_at"] for d in held} == {
        (start + timedelta(seconds=900)).isoformat().replace("+00:00", "Z")
    }
    rig.clock.now = start + timedelta(seconds=899)
    assert (await rig.delivery().deliver_due()).jobs == []
    rig.clock.now = start + timedelta(seconds=900)
    assert len((await rig.delivery().deliver_due()).jobs) == 1
    seen = await rig.output(lambda s: len(s["sms"]) >= 6)
    bundle = seen["sms"][-1]
    assert bundle["digest_of"] == ["burst-6", "burst-7"]
    assert bundle["segments"] <= rig.settings.sms_max_segments
    assert bundle["text"].startswith(
        "2 alerts, highest WARNING: title of burst-6; title of burst-7"
    )


async def test_two_workers_sharing_the_database_send_each_digest_once(
    rig: Rig, router_env: dict[str, str]
) -> None:
    for n in range(1, 6):
        await rig.page(f"night-{n}")
    other_store = await PgStore.connect(rig.settings.database_url.get_secret_value())
    try:
        rig.clock.now = MORNING
        other = HeldDelivery(
            other_store,
            ProducerPublisher(rig.producer, rig.settings.kafka_max_request_bytes),
            rig.settings,
            rig.clock,
        )
        outcomes = await asyncio.gather(
            *(d.deliver_due() for d in (rig.delivery(), other, rig.delivery(), other))
        )
    finally:
        await other_store.close()
    assert sum(len(o.jobs) for o in outcomes) == 1
    seen = await rig.output(lambda s: len(s["email"]) >= 1)
    assert [j["digest_of"] for j in seen["email"]] == [[f"night-{n}" for n in range(1, 6)]]


async def test_a_method_one_worker_claimed_is_skipped_whole_by_another(rig: Rig) -> None:
    """Held pages are claimed by whole methods: while one claim holds some of a method's
    due pages (its bound reached), another claim takes none of the rest, which would be
    a second digest to the same address at the same time. Row locks alone gave the
    second claim the three pages the first had not reached."""
    for n in range(1, 6):
        await rig.page(f"night-{n}")
    other_store = await PgStore.connect(rig.settings.database_url.get_secret_value())
    try:
        async with rig.store.claim_held(MORNING, limit=2) as first:
            assert [p.event.event_id for p in first.pages] == ["night-1", "night-2"]
            async with other_store.claim_held(MORNING) as second:
                assert second.pages == []
        # The first claim settled nothing: the method is free again, with all five.
        async with other_store.claim_held(MORNING) as after:
            assert [p.event.event_id for p in after.pages] == [f"night-{n}" for n in range(1, 6)]
    finally:
        await other_store.close()


async def test_a_worker_killed_between_publish_and_mark_leaves_the_same_job_to_resend(
    rig: Rig,
) -> None:
    await rig.page("night-1")
    await rig.page("night-2")
    rig.clock.now = MORNING

    async def crash() -> None:
        raise RuntimeError("killed between the acks and the commit")

    with pytest.raises(RuntimeError, match="killed"):
        await rig.delivery(after_publish=crash).deliver_due()
    assert len(await rig.store.list_held()) == 2  # not marked: still held
    assert len((await rig.delivery().deliver_due()).jobs) == 1
    seen = await rig.output(lambda s: len(s["email"]) >= 2)
    first, second = seen["email"]
    assert first["job_id"] == second["job_id"]
    assert first["digest_of"] == second["digest_of"] == ["night-1", "night-2"]


async def test_a_page_whose_method_changes_while_it_waits_is_refused_with_the_reason(
    rig: Rig,
) -> None:
    await rig.page("night-1")
    [method] = [m for m in (await rig.store.directory_for(["alice"])).methods_of("alice")]
    await rig.store.set_disabled(method.id, True)
    rig.clock.now = MORNING
    outcome = await rig.delivery().deliver_due()
    assert outcome.jobs == []
    assert [(d.event_id, d.outcome, d.reason) for d in outcome.decisions] == [
        ("night-1", "skipped", "disabled")
    ]
    await rig.store.set_disabled(method.id, False)
    rig.clock.now = NIGHT + timedelta(days=2)  # a page held longer than a day expires
    await rig.page("night-2")
    rig.clock.now += timedelta(hours=25)
    outcome = await rig.delivery().deliver_due()
    assert [(d.event_id, d.reason) for d in outcome.decisions] == [("night-2", "expired")]
    assert await rig.store.list_held() == []


async def test_held_list_and_flush_from_the_command_line(
    rig: Rig, router_env: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    rig.clock.now = now
    await rig.store.update_user(
        "alice",
        {
            "timezone": "UTC",
            "quiet_hours_start": (now - timedelta(hours=1)).time().replace(second=0, microsecond=0),
            "quiet_hours_end": (now + timedelta(hours=2)).time().replace(second=0, microsecond=0),
        },
    )
    await rig.page("late-1")
    await rig.page("late-2")
    listed = [
        json.loads(line) for line in cli_ok(router_env, "held", "list", "--json").splitlines()
    ]
    assert [(p["event_id"], p["reason"], p["transport"]) for p in listed] == [
        ("late-1", "quiet_hours", "email"),
        ("late-2", "quiet_hours", "email"),
    ]
    assert "late-1" in cli_ok(router_env, "held", "list", "--user", "alice")
    out = cli_ok(router_env, "held", "flush", "--user", "alice")
    assert out.strip() == "flushed alice: 1 digest(s) carrying 2 page(s); 0 refused, 0 expired"
    seen = await rig.output(lambda s: len(s["email"]) >= 1)
    assert seen["email"][0]["digest_of"] == ["late-1", "late-2"]
    assert cli_ok(router_env, "held", "list") == ""


async def test_a_digest_is_on_the_trail_of_every_event_it_carries(rig: Rig) -> None:
    await rig.page("night-1")
    await rig.page("night-2")
    rig.clock.now = MORNING
    [digest] = (await rig.delivery().deliver_due()).jobs
    for event_id in ("night-1", "night-2"):
        lines = story(*(await rig.store.trail(event_id)))
        decided = [line.data for line in lines if line.type == "decision"]
        assert [d["outcome"] for d in decided] == ["deferred", "sent"]
        assert decided[-1]["job_id"] == digest.job_id


async def test_held_pages_for_a_webhook_the_site_allows_go_out_when_due_and_on_flush(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    env = {
        **router_env,
        "ROUTER_WEBHOOK_ALLOW_HTTP": "true",
        "ROUTER_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "ROUTER_RATE_LIMIT_WEBHOOK": "1/3s",
        "ROUTER_HELD_POLL_SECONDS": "0.5",
    }
    now = datetime.now(UTC)
    window = f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=2):%H:%M}"
    cli_ok(env, "users", "add", "bob")  # no quiet hours: his second page is rate limited
    cli_ok(env, "users", "add", "carol", "--quiet-hours", window)  # in quiet hours now
    hooks = {
        user: add_contact(env, user, "webhook", f"http://127.0.0.1:9/{user}").id
        for user in ("bob", "carol")
    }
    start_router(env)
    bootstrap = env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    webhook_t, decisions_t = env["ROUTER_TOPIC_WEBHOOK"], env["ROUTER_TOPIC_DECISIONS"]
    await wait_for_topics(bootstrap, [env["ROUTER_TOPIC_ALERTS"]])

    def alert(event_id: str, user: str) -> bytes:
        return json.dumps(
            {
                "event_id": event_id,
                "kind": "down",
                "severity": "warning",
                "title": f"{event_id} is down",
                "user_ids": [user],
            }
        ).encode()

    await produce(
        bootstrap,
        env["ROUTER_TOPIC_ALERTS"],
        alert("bob-1", "bob"),
        alert("bob-2", "bob"),
        alert("carol-1", "carol"),
    )

    def decided(seen: dict[str, list[Any]]) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in seen[decisions_t]]

    for _ in range(100):  # carol's page is held once the router has routed it
        if "carol-1" in cli_ok(env, "held", "list", "--user", "carol"):
            break
        await asyncio.sleep(0.2)
    out = cli_ok(env, "held", "flush", "--user", "carol")
    assert out.strip() == "flushed carol: 1 digest(s) carrying 1 page(s); 0 refused, 0 expired"

    # bob-2 falls due within ~3 s and router run's own held delivery sends it.
    seen = await collect(
        bootstrap, [webhook_t, decisions_t], until=lambda s: len(s[webhook_t]) >= 3
    )
    jobs = {
        tuple(j.get("digest_of") or [j["event_id"]]): j
        for j in map(json.loads, (r.value for r in seen[webhook_t]))
    }
    assert set(jobs) == {("bob-1",), ("bob-2",), ("carol-1",)}
    assert jobs[("bob-2",)]["to"] == "http://127.0.0.1:9/bob"
    assert jobs[("carol-1",)]["contact_method_id"] == hooks["carol"]
    assert all(j["method"] == "POST" for j in jobs.values())
    assert [d for d in decided(seen) if d["reason"] == "unsafe_target"] == []


# -- a batch retried after an outage ----------------------------------------------


def carrying(jobs: list[dict[str, Any]], event_id: str) -> list[dict[str, Any]]:
    """The jobs that deliver ``event_id``: its own, and digests holding it."""
    return [j for j in jobs if event_id in (j.get("digest_of") or [j["event_id"]])]


async def test_a_batch_retried_after_a_mute_ended_sends_the_job_its_sent_decision_names(
    rig: Rig,
) -> None:
    rig.clock.now = MORNING + timedelta(hours=3)  # outside quiet hours
    await rig.store.update_user("alice", {"delivery_mode": "preferred"})  # SMS first
    sms = await rig.store.add_contact_method(
        NewContactMethod("alice", "sms", "+14155550123", verified=True)
    )
    await rig.store.update_contact_method(
        sms.id, {"mute_until": rig.clock.now + timedelta(seconds=1)}
    )
    outage = Outage(rig.producer, rig.settings, down={rig.settings.topic_decisions})
    worker = rig.worker_behind(outage)
    batch = [rig.record("e1")]
    with pytest.raises(KafkaConnectionError):
        await worker.handle(batch)  # the email job is acknowledged, the decisions are not
    rig.clock.now += timedelta(seconds=2)  # the mute is over by the retry
    outage.down.clear()
    await worker.handle(batch)

    seen = await rig.output(lambda s: len(s["decisions"]) >= 2)
    jobs = seen["email"] + seen["sms"]
    sent = [d["job_id"] for d in of(seen["decisions"], "sent")]
    assert sorted(sent) == sorted(j["job_id"] for j in jobs), "a sent decision, its job"
    assert [j["to"] for j in jobs] == ["alice@example.com"]
    assert sorted((d["transport"], d["reason"]) for d in seen["decisions"]) == [
        ("email", None),
        ("sms", "muted"),
    ]


async def test_a_schedule_alert_retried_across_a_shift_change_pages_the_one_on_call_then(
    rig: Rig,
) -> None:
    rig.clock.now = MORNING + timedelta(hours=3)
    change = rig.clock.now + timedelta(seconds=1)
    await rig.store.add_user("bob", "Bob", "UTC")
    await rig.store.add_contact_method(NewContactMethod("bob", "email", "bob@example.com"))
    await rig.store.add_shift("ops", "alice", change - timedelta(hours=8), change)
    await rig.store.add_shift("ops", "bob", change, change + timedelta(hours=8))
    outage = Outage(rig.producer, rig.settings, down={rig.settings.topic_decisions})
    worker = rig.worker_behind(outage)
    # No occurred_at: it happened when the router received it, on every attempt.
    batch = [rig.record("e1", user_ids=None, schedule_id="ops", occurred_at=None)]
    with pytest.raises(KafkaConnectionError):
        await worker.handle(batch)
    rig.clock.now += timedelta(seconds=2)  # bob's shift has begun by the retry
    outage.down.clear()
    await worker.handle(batch)

    seen = await rig.output(lambda s: len(s["decisions"]) >= 1)
    assert [(d["user_id"], d["outcome"]) for d in seen["decisions"]] == [("alice", "sent")]
    assert [(j["to"], j["job_id"]) for j in seen["email"]] == [
        ("alice@example.com", seen["decisions"][0]["job_id"])
    ]


async def test_a_page_held_by_the_rate_limit_before_an_outage_is_delivered_once(
    rig: Rig,
) -> None:
    rig.clock.now = start = MORNING + timedelta(hours=3)
    await rig.store.add_contact_method(
        NewContactMethod("alice", "sms", "+14155550123", verified=True)
    )
    for n in range(1, 6):  # the limit: 5 SMS in 900 s
        await rig.page(f"burst-{n}")
    outage = Outage(rig.producer, rig.settings, down={rig.settings.topic_decisions})
    worker = rig.worker_behind(outage)
    batch = [rig.record("burst-6")]
    with pytest.raises(KafkaConnectionError):
        await worker.handle(batch)  # the SMS page is held; its decision is not acknowledged
    rig.clock.now = start + timedelta(seconds=901)  # the window has slid by the retry
    outage.down.clear()
    await worker.handle(batch)
    await rig.delivery().deliver_due()  # the held page is due

    seen = await rig.output(lambda s: len(s["sms"]) >= 6 and len(of(s["decisions"], "sent")) >= 12)
    assert len(carrying(seen["sms"], "burst-6")) == 1, "one delivery per page and method"
    assert await rig.store.list_held() == []
