"""The Kafka edge: every record ends as jobs and decisions or a dead letter, all acked."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import anyio.to_thread
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from faststream.kafka import TestKafkaBroker
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from router.db.memstore import InMemoryStore
from router.directory.writes import NewContactMethod
from router.errors import StoreError, StoreUnavailable
from router.kafka.adapters import KafkaPublisher, create_broker, register_subscriber
from router.kafka.publish import OneByOne
from router.routing.dlq import SourceRecord
from router.routing.handler import Worker
from router.settings import Settings
from tests.conftest import T0

SETTINGS = Settings(retry_backoff_max_seconds=0.01)
DELIVERY_TOPICS = ("deliveries.email", "deliveries.sms", "deliveries.webhook")


class RecordingPublisher(OneByOne):
    """Collects what would be published; each send returns a future acked later."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, dict[str, str]]] = []
        self.unacked: list[asyncio.Future[None]] = []

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, headers: dict[str, str]
    ) -> asyncio.Future[None]:
        self.sent.append((topic, value, key, headers))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, None)
        self.unacked.append(future)
        return future

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(v) for t, v, _, _ in self.sent if t == topic]


def record(value: bytes | None, offset: int = 0) -> SourceRecord:
    return SourceRecord(
        topic="alerts",
        partition=0,
        offset=offset,
        timestamp_ms=None,
        key=None,
        value=value,
        headers=(),
    )


def alert(
    event_id: str = "e1",
    users: list[str] | None = None,
    severity: str = "critical",
    **extra: object,
) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "kind": "down",
            "severity": severity,
            "user_ids": users or ["alice"],
            "title": "db down",
            **extra,
        }
    ).encode()


async def directory() -> InMemoryStore:
    store = InMemoryStore()
    await store.add_user("alice")
    await store.add_contact_method(NewContactMethod("alice", "email", "alice@example.com"))
    await store.add_contact_method(NewContactMethod("alice", "sms", "+14155551234"))
    await store.add_contact_method(NewContactMethod("alice", "webhook", "https://h.example/a"))
    return store


async def test_a_valid_event_yields_one_job_per_topic_and_a_decision_each() -> None:
    publisher = RecordingPublisher()
    worker = Worker(await directory(), publisher, SETTINGS, clock=lambda: T0)
    result = await worker.handle([record(alert())])
    assert (result.events, result.jobs, result.decisions, result.rejected) == (1, 3, 3, 0)
    for topic, to in (
        ("deliveries.email", "alice@example.com"),
        ("deliveries.sms", "+14155551234"),
        ("deliveries.webhook", "https://h.example/a"),
    ):
        [job] = publisher.on(topic)
        assert job["to"] == to
    keys = {t: k for t, _, k, _ in publisher.sent}
    assert keys["deliveries.sms"] == publisher.on("deliveries.sms")[0]["contact_method_id"].encode()
    assert keys["routing.decisions"] == b"e1"
    assert all(f.done() for f in publisher.unacked), "handle returns only after every ack"


async def test_bad_records_go_to_the_dlq_and_the_rest_of_the_batch_is_routed() -> None:
    publisher = RecordingPublisher()
    worker = Worker(await directory(), publisher, SETTINGS, clock=lambda: T0)
    result = await worker.handle(
        [record(b"nope", 0), record(b'{"event_id": "x"}', 1), record(alert("e2"), 2)]
    )
    assert (result.rejected, result.events, result.jobs) == (2, 1, 3)
    dead = [
        (v, h["router.dlq.reason"], h["__connect.errors.offset"])
        for t, v, _, h in publisher.sent
        if t == "alerts.dlq"
    ]
    assert dead == [(b"nope", "not_json", "0"), (b'{"event_id": "x"}', "schema_invalid", "1")]


async def test_unknown_user_is_a_skip_decision_without_jobs() -> None:
    publisher = RecordingPublisher()
    worker = Worker(await directory(), publisher, SETTINGS, clock=lambda: T0)
    await worker.handle([record(alert(users=["ghost"]))])
    assert [d["reason"] for d in publisher.on("routing.decisions")] == ["unknown_user"]
    assert not [t for t, *_ in publisher.sent if t.startswith("deliveries.")]


async def test_the_directory_is_read_once_per_batch() -> None:
    store = await directory()
    worker = Worker(store, RecordingPublisher(), SETTINGS, clock=lambda: T0)
    await worker.handle([record(alert(f"e{i}"), i) for i in range(50)])
    assert store.reads == 1


async def test_an_unreachable_store_fails_the_batch_without_publishing() -> None:
    store = await directory()
    store.down = True
    publisher = RecordingPublisher()
    worker = Worker(store, publisher, SETTINGS, clock=lambda: T0)
    with pytest.raises(StoreUnavailable):
        await worker.handle([record(alert())])
    assert publisher.sent == []
    store.down = False
    assert (await worker.handle([record(alert())])).jobs == 3


inputs = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.builds(
            lambda i, users: alert(f"e{i}", users),
            st.integers(0, 9),
            st.lists(st.sampled_from(["alice", "ghost"]), min_size=1, max_size=2),
        ),
    ),
    min_size=1,
    max_size=8,
)


@hsettings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(inputs)
def test_every_input_ends_as_jobs_decisions_or_a_dead_letter(values: list[bytes]) -> None:
    async def scenario() -> None:
        publisher = RecordingPublisher()
        worker = Worker(await directory(), publisher, SETTINGS, clock=lambda: T0)
        result = await worker.handle([record(v, i) for i, v in enumerate(values)])
        decided = {d["event_id"] for d in publisher.on("routing.decisions")}
        dead_offsets = {
            int(h["__connect.errors.offset"]) for t, _, _, h in publisher.sent if t == "alerts.dlq"
        }
        for offset, value in enumerate(values):
            try:
                event_id = json.loads(value)["event_id"]
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                event_id = None
            assert offset in dead_offsets or event_id in decided
        assert result.rejected == len(dead_offsets)

    asyncio.run(scenario())


async def test_subscriber_wiring_routes_through_faststream() -> None:
    broker = create_broker(SETTINGS)
    store = await directory()
    worker = Worker(store, KafkaPublisher(broker), SETTINGS, clock=lambda: T0)
    register_subscriber(broker, SETTINGS, lambda: worker)
    seen: dict[str, list[Any]] = {}

    def collector(topic: str) -> Any:
        async def collect(body: Any) -> None:
            seen.setdefault(topic, []).append(body)

        return collect

    async def raw(message: Any, _default: Any) -> Any:
        return message.body  # dead letters keep their original bytes and content-type

    for topic in SETTINGS.output_topics():
        decoder = raw if topic == SETTINGS.topic_dlq else None
        broker.subscriber(topic, decoder=decoder)(collector(topic))

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(alert("e-fs"), SETTINGS.topic_alerts)
        await test_broker.publish(
            b"{broken", SETTINGS.topic_alerts, headers={"content-type": "application/json"}
        )

    assert [j["to"] for j in seen["deliveries.email"]] == ["alice@example.com"]
    assert [j["to"] for j in seen["deliveries.sms"]] == ["+14155551234"]
    assert len(seen["routing.decisions"]) == 3
    assert seen["alerts.dlq"] == [b"{broken"]


async def test_a_batch_reaches_its_handler_without_a_thread_hop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # FastStream fills a parameter naming the message by a synchronous dependency, run
    # on a worker thread for every batch; the router's handlers take none.
    broker = create_broker(SETTINGS)
    worker = Worker(await directory(), KafkaPublisher(broker), SETTINGS)
    register_subscriber(broker, SETTINGS, lambda: worker)
    hops: list[Any] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(func)
        return await run_sync(func, *args, **kwargs)

    emailed: list[Any] = []

    @broker.subscriber("deliveries.email")
    async def collect(body: Any) -> None:
        emailed.append(body)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(alert("e-hop"), SETTINGS.topic_alerts)
        await test_broker.publish(b"{}", SETTINGS.topic_status)  # a status batch, refused
    assert [job["event_id"] for job in emailed] == ["e-hop"]
    assert hops == []


# -- duplicates, redelivery, shared rate limits, opt-outs -----------------------------


class FailingPublisher(RecordingPublisher):
    """The broker takes the messages but never acknowledges them (a crash mid-batch)."""

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, headers: dict[str, str]
    ) -> asyncio.Future[None]:
        self.sent.append((topic, value, key, headers))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_exception(ConnectionError("broker went away"))
        return future


def decisions_of(publisher: RecordingPublisher) -> list[tuple[str, str | None]]:
    return [(d["event_id"], d["reason"]) for d in publisher.on("routing.decisions")]


async def test_an_event_routed_before_yields_only_a_duplicate_decision() -> None:
    store = await directory()
    publisher = RecordingPublisher()
    worker = Worker(store, publisher, SETTINGS, clock=lambda: T0)
    await worker.handle([record(alert("e1"))])
    await worker.handle([record(alert("e1"), 1)])
    assert len(publisher.on("deliveries.email")) == 1
    assert decisions_of(publisher)[-1] == ("e1", "duplicate_event")


async def test_the_same_event_twice_in_one_batch_is_routed_once() -> None:
    publisher = RecordingPublisher()
    worker = Worker(await directory(), publisher, SETTINGS, clock=lambda: T0)
    await worker.handle([record(alert("e1"), 0), record(alert("e1"), 1)])
    assert len(publisher.on("deliveries.sms")) == 1
    assert decisions_of(publisher).count(("e1", "duplicate_event")) == 1


async def test_a_batch_whose_output_was_not_acked_is_routed_again_with_the_same_job_ids() -> None:
    store = await directory()
    crashed = FailingPublisher()
    with pytest.raises(ConnectionError):
        await Worker(store, crashed, SETTINGS, clock=lambda: T0).handle([record(alert("e1"))])
    assert store.routed == {}, "nothing is recorded as routed before its output is acked"
    retry = RecordingPublisher()
    await Worker(store, retry, SETTINGS, clock=lambda: T0).handle([record(alert("e1"))])
    first_ids = {
        json.loads(v)["job_id"] for t, v, *_ in crashed.sent if t.startswith("deliveries.")
    }
    retry_ids = {
        j["job_id"]
        for t in ("deliveries.email", "deliveries.sms", "deliveries.webhook")
        for j in retry.on(t)
    }
    assert first_ids == retry_ids and len(retry_ids) == 3
    assert "rate_limited" not in {r for _, r in decisions_of(retry)}


async def test_two_workers_share_one_rate_limit() -> None:
    store = await directory()
    limited = Settings(retry_backoff_max_seconds=0.01, rate_limit_sms_count=3)
    a, b = RecordingPublisher(), RecordingPublisher()
    worker_a = Worker(store, a, limited, clock=lambda: T0)
    worker_b = Worker(store, b, limited, clock=lambda: T0)
    for i in range(3):
        await worker_a.handle([record(alert(f"a{i}", severity="warning"), i)])
        await worker_b.handle([record(alert(f"b{i}", severity="warning"), i)])
    assert len(a.on("deliveries.sms")) + len(b.on("deliveries.sms")) == 3
    reasons = [
        r
        for p in (a, b)
        for d in p.on("routing.decisions")
        if d["transport"] == "sms"
        for r in [d["reason"]]
    ]
    assert reasons.count("rate_limited") == 3


async def test_critical_jobs_count_against_the_limit_the_next_page_meets() -> None:
    # Critical jobs go out without a reservation; the batch's ledger counts each
    # against its method, at the clock it was made at.
    store = await directory()
    limited = Settings(retry_backoff_max_seconds=0.01, rate_limit_sms_count=3)
    publisher = RecordingPublisher()
    ticks = iter(range(1000))
    # The worker reads its clock more than once a batch: each read a second later.
    worker = Worker(store, publisher, limited, clock=lambda: T0 + timedelta(seconds=next(ticks)))
    await worker.handle([record(alert(f"c{i}"), i) for i in range(2)])
    jobs = {
        j["job_id"]: (j["contact_method_id"], datetime.fromisoformat(j["created_at"]))
        for t in ("deliveries.email", "deliveries.sms", "deliveries.webhook")
        for j in publisher.on(t)
    }
    assert len(jobs) == 6
    assert store.sends == jobs, "each counted against its method at the clock it was made at"
    later = RecordingPublisher()
    await Worker(store, later, limited, clock=lambda: T0).handle(
        [record(alert(f"w{i}", severity="warning"), i) for i in range(2)]
    )
    sms = [d["reason"] for d in later.on("routing.decisions") if d["transport"] == "sms"]
    assert sms == [None, "rate_limited"], "two of three counted: one SMS left"


async def test_an_opt_out_message_applies_to_the_next_alert_and_opt_in_restores() -> None:
    store = await directory()
    publisher = RecordingPublisher()
    worker = Worker(store, publisher, SETTINGS, clock=lambda: T0)
    opt_out = json.dumps({"type": "opt_out", "transport": "sms", "address": "+1 415 555 1234"})
    assert await worker.handle_contact_events([record(opt_out.encode())]) == 1
    await worker.handle([record(alert("e1"))])
    assert publisher.on("deliveries.sms") == []
    assert ("e1", "opted_out") in decisions_of(publisher)
    opt_in = json.dumps({"type": "opt_in", "transport": "sms", "address": "+14155551234"})
    await worker.handle_contact_events([record(opt_in.encode())])
    await worker.handle([record(alert("e2"))])
    assert [j["event_id"] for j in publisher.on("deliveries.sms")] == ["e2"]


async def test_bad_contact_events_go_to_the_dlq() -> None:
    publisher = RecordingPublisher()
    worker = Worker(await directory(), publisher, SETTINGS, clock=lambda: T0)
    bad = [
        b"nope",
        b'{"type": "opt_out", "transport": "fax", "address": "1"}',
        b'{"type": "opt_out", "transport": "sms", "address": "555-1234"}',
    ]
    assert await worker.handle_contact_events([record(v, i) for i, v in enumerate(bad)]) == 0
    reasons = [h["router.dlq.reason"] for t, _, _, h in publisher.sent if t == "alerts.dlq"]
    assert reasons == ["not_json", "schema_invalid", "invalid_address"]


async def test_an_event_the_pipeline_fails_on_goes_to_the_dlq_and_the_batch_carries_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from router.routing import handler

    real_plan = handler.plan

    def flaky_plan(event: Any, *args: Any) -> Any:
        if event.event_id == "poison":
            raise ZeroDivisionError("a bug")
        return real_plan(event, *args)

    monkeypatch.setattr(handler, "plan", flaky_plan)
    publisher = RecordingPublisher()
    worker = Worker(await directory(), publisher, SETTINGS, clock=lambda: T0)
    result = await worker.handle([record(alert("poison"), 0), record(alert("fine"), 1)])
    assert (result.rejected, result.events, result.jobs) == (1, 1, 3)
    [(value, headers)] = [(v, h) for t, v, _, h in publisher.sent if t == "alerts.dlq"]
    assert value == alert("poison")
    assert headers["router.dlq.reason"] == "routing_failed"
    assert headers["kafka_dlt-exception-fqcn"] == "ZeroDivisionError"


class RefusingPublisher(RecordingPublisher):
    """Acks everything except messages ``refuse`` picks, which fail as too large;
    then, while ``down``, fails the rest as a broker outage."""

    def __init__(self, refuse: Any = lambda topic, value: False, down: int = 0) -> None:
        super().__init__()
        self.refuse = refuse
        self.down = down

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, headers: dict[str, str]
    ) -> asyncio.Future[None]:
        self.sent.append((topic, value, key, headers))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.refuse(topic, value):
            future.set_exception(MessageSizeTooLargeError())
        elif self.down > 0:
            self.down -= 1
            future.set_exception(KafkaConnectionError("broker gone"))
        else:
            future.set_result(None)
        return future


async def test_output_the_broker_refuses_sends_only_its_record_to_the_dlq() -> None:
    publisher = RefusingPublisher(refuse=lambda t, v: t == "deliveries.sms" and b'"e2"' in v)
    worker = Worker(await directory(), publisher, SETTINGS, clock=lambda: T0)
    result = await worker.handle([record(alert("e1"), 0), record(alert("e2"), 1)])
    [letter] = [(v, h) for t, v, _, h in publisher.sent if t == "alerts.dlq"]
    assert letter[0] == alert("e2")
    assert letter[1]["router.dlq.reason"] == "publish_refused"
    assert letter[1]["kafka_dlt-exception-fqcn"] == "MessageSizeTooLargeError"
    assert [r.event.event_id for r in result.routed] == ["e1"]
    assert {j["event_id"] for j in publisher.on("deliveries.email")} == {"e1", "e2"}


async def test_a_dead_letter_the_broker_refuses_is_cut_until_it_is_taken() -> None:
    publisher = RefusingPublisher(refuse=lambda t, v: t == "alerts.dlq" and len(v) > 1024)
    worker = Worker(await directory(), publisher, SETTINGS, clock=lambda: T0)
    big = b"\x00" + b"x" * 100_000
    await worker.handle([record(big, 0), record(alert("e1"), 1)])
    letters = [(v, h) for t, v, _, h in publisher.sent if t == "alerts.dlq"]
    assert [len(v) for v, _ in letters] == [len(big), 1024]
    assert letters[-1][1]["router.dlq.original_size"] == str(len(big))
    assert letters[-1][1]["router.dlq.reason"] == "not_json"
    assert len(publisher.on("deliveries.email")) == 1


async def test_a_retry_after_an_outage_sends_only_what_was_not_acknowledged() -> None:
    publisher = RefusingPublisher(down=2)
    worker = Worker(await directory(), publisher, SETTINGS, clock=lambda: T0)
    batch = [record(alert("e1"), 0), record(alert("e2"), 1)]
    with pytest.raises(KafkaConnectionError):
        await worker.handle(batch)
    first = len(publisher.sent)
    await worker.handle(batch)
    assert len(publisher.sent) - first == 2, "only the two messages that failed are sent again"
    jobs = [j["job_id"] for t in DELIVERY_TOPICS for j in publisher.on(t)]
    assert len(set(jobs)) == 6


class PickyStore(InMemoryStore):
    """Refuses (as PostgreSQL refuses bad input) any directory read naming ``poison``."""

    async def directory_for(self, user_ids: Any, shifts: Any) -> Any:
        if "poison" in user_ids:
            raise StoreError("PostgreSQL refused the operation: invalid byte sequence.")
        return await super().directory_for(user_ids, shifts)


async def test_a_record_the_store_refuses_is_dead_lettered_and_the_batch_goes_on() -> None:
    store = PickyStore()
    await store.add_user("alice")
    await store.add_contact_method(NewContactMethod("alice", "email", "alice@example.com"))
    publisher = RecordingPublisher()
    worker = Worker(store, publisher, SETTINGS, clock=lambda: T0)
    batch = [record(alert("e1"), 0), record(alert("e2", ["poison"]), 1), record(alert("e3"), 2)]
    result = await worker.handle(batch)
    assert sorted(r.event.event_id for r in result.routed) == ["e1", "e3"]
    [letter] = [(v, h) for t, v, _, h in publisher.sent if t == "alerts.dlq"]
    assert letter[0] == alert("e2", ["poison"])
    assert letter[1]["router.dlq.reason"] == "routing_failed"
    assert letter[1]["kafka_dlt-exception-fqcn"] == "StoreError"


def test_an_identifier_with_a_nul_byte_is_schema_invalid() -> None:
    from router.routing.decode import Rejection, decode

    rejected = decode(alert("e1", ["a\x00b"]), max_bytes=10_000, received_at=T0)
    assert isinstance(rejected, Rejection) and rejected.reason == "schema_invalid"


@pytest.mark.parametrize("field", ["event_id", "dedup_key", "schedule_id", "escalation_policy_id"])
def test_a_nul_byte_in_any_text_postgresql_keeps_is_schema_invalid(field: str) -> None:
    """What PostgreSQL keeps as text (an id, an alert key) cannot hold NUL: refused at the
    edge with the reason, not by PostgreSQL in the middle of a batch."""
    from router.routing.decode import Rejection, decode

    event = json.loads(alert("e1"))
    if field in ("schedule_id", "escalation_policy_id"):
        del event["user_ids"]
    event[field] = "a\x00b"
    rejected = decode(json.dumps(event).encode(), max_bytes=10_000, received_at=T0)
    assert isinstance(rejected, Rejection) and rejected.reason == "schema_invalid"
    assert field in rejected.message
    event[field] = "ab"
    kept = decode(json.dumps(event).encode(), max_bytes=10_000, received_at=T0)
    assert not isinstance(kept, Rejection)


@pytest.mark.parametrize("field", ["alert_key", "user_id", "source"])
def test_a_page_ack_with_a_nul_byte_is_schema_invalid(field: str) -> None:
    from router.routing.decode import Rejection, parse
    from schemas.pages import PageAck

    ack = {
        "alert_key": "k",
        "user_id": "u",
        "action": "ack",
        "source": "t",
        "at": "2026-01-01T00:00:00Z",
    }
    ack[field] = "a\x00b"
    rejected = parse(json.dumps(ack).encode(), PageAck, max_bytes=10_000)
    assert isinstance(rejected, Rejection) and rejected.reason == "schema_invalid"
    ack[field] = "ab"
    assert isinstance(parse(json.dumps(ack).encode(), PageAck, max_bytes=10_000), PageAck)
