"""Held pages and failover together: a failed digest fails over each page it carried,
judged at the moment of the failover, and a page still held for a method is not sent
to that method a second time under another job id.

The worker (routing and delivery statuses) and the held-page delivery run in this
process on the real broker and database, with a clock the test sets.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from router.db.store import PgStore
from router.delivery.watchers import repair_failovers
from router.directory.models import ContactMethod
from router.directory.writes import NewContactMethod
from router.held.scheduler import HeldDelivery
from router.kafka.adapters import create_producer
from router.kafka.publish import ProducerPublisher
from router.kafka.topics import ensure_topics
from router.routing.dlq import SourceRecord
from router.routing.handler import Worker
from router.settings import Settings
from schemas import DeliveryJob, job_id_for
from tests.integration.conftest import collect

Output = dict[str, list[dict[str, Any]]]
NIGHT = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)  # quiet hours 22:00-07:00 UTC
MORNING = datetime(2026, 1, 15, 7, 0, tzinfo=UTC)


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
    methods: dict[str, ContactMethod] = field(default_factory=dict)
    offset: int = 0

    def record(self, topic: str, value: dict[str, Any]) -> SourceRecord:
        self.offset += 1
        return SourceRecord(topic, 0, self.offset, None, None, json.dumps(value).encode(), ())

    async def page(self, event_id: str, severity: str, kind: str = "down") -> None:
        event = {
            "event_id": event_id,
            "kind": kind,
            "severity": severity,
            "title": f"title of {event_id}",
            "user_ids": ["dana"],
            "occurred_at": self.clock.now.isoformat(),
        }
        await self.worker.handle([self.record("alerts", event)])

    async def fails(self, job_id: str) -> None:
        """The delivery worker reports ``job_id`` failed for good."""
        report = {
            "job_id": job_id,
            "status": "failed",
            "permanent": True,
            "detail": "provider gave up",
            "at": self.clock.now.isoformat(),
        }
        await self.worker.handle_statuses([self.record("status", report)])

    async def deliver_due(self) -> list[DeliveryJob]:
        delivery = HeldDelivery(
            self.store,
            ProducerPublisher(self.producer, self.settings.kafka_max_request_bytes),
            self.settings,
            self.clock,
        )
        return (await delivery.deliver_due()).jobs

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


async def make_rig(router_env: dict[str, str], **user: Any) -> AsyncIterator[Rig]:
    values = {k.removeprefix("ROUTER_").lower(): v for k, v in router_env.items()}
    settings = Settings(
        **{
            **values,
            "topic_partitions": 1,
            "rate_limit_sms": "100/60s",
            "rate_limit_email": "1/900s",
        }
    )
    await ensure_topics(settings)
    store = await PgStore.connect(settings.database_url.get_secret_value())
    producer = create_producer(settings)
    await producer.start()
    clock = Clock(NIGHT)
    try:
        await store.add_user("dana", "Dana", "UTC")
        await store.update_user("dana", user)
        rig = Rig(
            settings,
            store,
            producer,
            clock,
            Worker(
                store,
                ProducerPublisher(producer, settings.kafka_max_request_bytes),
                settings,
                clock=clock,
            ),
        )
        for transport, value in (("sms", "+14155550142"), ("email", "dana@example.com")):
            rig.methods[transport] = await store.add_contact_method(
                NewContactMethod("dana", transport, value, verified=True)  # type: ignore[arg-type]
            )
        yield rig
    finally:
        await producer.stop()
        await store.close()


@pytest.fixture
async def night_rig(router_env: dict[str, str]) -> AsyncIterator[Rig]:
    """dana prefers SMS, then email, and keeps quiet hours 22:00-07:00 (UTC)."""
    async for rig in make_rig(
        router_env,
        delivery_mode="preferred",
        channel_order=("sms", "email"),
        quiet_hours_start=time(22, 0),
        quiet_hours_end=time(7, 0),
    ):
        yield rig


@pytest.fixture
async def day_rig(router_env: dict[str, str]) -> AsyncIterator[Rig]:
    """dana gets every page on SMS and email, no quiet hours; email allows 1 per 15 min."""
    async for rig in make_rig(router_env, delivery_mode="all"):
        rig.clock.now = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
        yield rig


def failovers(decisions: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    return [
        (d["event_id"], d["transport"], d.get("failover_of"))
        for d in decisions
        if d["reason"] == "failover"
    ]


async def test_a_quiet_hours_digest_failing_at_seven_fails_over_judged_at_seven(
    night_rig: Rig,
) -> None:
    rig = night_rig
    await rig.page("night-error", "error")  # 03:00: held for SMS until 07:00
    rig.clock.now = MORNING
    [digest] = await rig.deliver_due()
    assert (digest.transport, digest.digest_of) == ("sms", ["night-error"])
    rig.clock.now = MORNING + timedelta(minutes=2)
    await rig.fails(digest.job_id)

    seen = await rig.output(lambda s: len(s["email"]) >= 1)
    [email] = seen["email"]
    assert email["job_id"] == job_id_for("night-error", rig.methods["email"].id)
    assert failovers(seen["decisions"]) == [("night-error", "email", digest.job_id)]
    assert not [d for d in seen["decisions"] if d["reason"] == "unreachable"]


async def test_a_failed_digest_fails_over_every_error_page_it_carried_and_is_swept_once(
    night_rig: Rig,
) -> None:
    rig = night_rig
    for n, severity in enumerate(("warning", "error", "error")):
        await rig.page(f"held-{n}", severity)  # the first event is a warning
        rig.clock.now += timedelta(minutes=10)
    rig.clock.now = MORNING
    [digest] = await rig.deliver_due()
    assert digest.digest_of == ["held-0", "held-1", "held-2"]
    assert (digest.event_id, digest.severity) == ("held-0", "error")
    await rig.fails(digest.job_id)

    seen = await rig.output(lambda s: len(s["email"]) >= 2)
    emailed = sorted(j["event_id"] for j in seen["email"])
    assert emailed == ["held-1", "held-2"]  # a warning page never fails over
    assert sorted(failovers(seen["decisions"])) == [
        ("held-1", "email", digest.job_id),
        ("held-2", "email", digest.job_id),
    ]
    # Nothing is left without a next step: the repair sweep finds nothing, every poll.
    for _ in range(3):
        assert await repair_failovers(rig.store, rig.worker, rig.clock.now, grace_seconds=0) == []

    # The failover jobs fail too: each page ends unreachable, once.
    for job in seen["email"]:
        await rig.fails(job["job_id"])
    seen = await rig.output(
        lambda s: sum(d["reason"] == "unreachable" for d in s["decisions"]) >= 2
    )
    unreachable = sorted(d["event_id"] for d in seen["decisions"] if d["reason"] == "unreachable")
    assert unreachable == ["held-1", "held-2"]
    assert await repair_failovers(rig.store, rig.worker, rig.clock.now, grace_seconds=0) == []


async def test_a_page_held_by_a_rate_limit_is_not_failed_over_to_that_method_under_another_id(
    day_rig: Rig,
) -> None:
    rig = day_rig
    start = rig.clock.now
    await rig.page("first", "error")  # SMS and email; email's one send per 15 min used
    rig.clock.now += timedelta(minutes=1)
    await rig.page("second", "error")  # SMS now; email held until start + 15 min
    seen = await rig.output(lambda s: len(s["sms"]) >= 2)
    sms = {j["event_id"]: j for j in seen["sms"]}
    [held] = [d for d in seen["decisions"] if d["outcome"] == "deferred"]
    assert (held["event_id"], held["transport"], held["reason"]) == (
        "second",
        "email",
        "rate_limited",
    )

    # The SMS of the second page fails: its email is still to come, as the held digest.
    await rig.fails(sms["second"]["job_id"])
    assert await repair_failovers(rig.store, rig.worker, rig.clock.now, grace_seconds=0) == []
    rig.clock.now = start + timedelta(minutes=15)
    [digest] = await rig.deliver_due()
    assert (digest.transport, digest.digest_of) == ("email", ["second"])

    seen = await rig.output(lambda s: len(s["email"]) >= 2)
    second = [
        j["job_id"] for j in seen["email"] if "second" in (j.get("digest_of") or [j["event_id"]])
    ]
    assert second == [digest.job_id]  # one job for (second, email), not a failover and a digest
    assert failovers(seen["decisions"]) == []

    # The digest fails too: the page has no method left.
    await rig.fails(digest.job_id)
    seen = await rig.output(lambda s: any(d["reason"] == "unreachable" for d in s["decisions"]))
    [end] = [d for d in seen["decisions"] if d["reason"] == "unreachable"]
    assert (end["event_id"], end["failover_of"]) == ("second", digest.job_id)
    assert len(seen["email"]) == 2
