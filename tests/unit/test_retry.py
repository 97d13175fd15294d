"""A batch retried after an outage publishes what its first attempt decided, whatever the clock.

The worker runs on the in-memory store with a clock the test moves between
attempts, and a publisher that fails as a broker outage where the test says.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Collection
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from router.db.memstore import InMemoryStore
from router.directory.writes import NewContactMethod
from router.errors import StoreUnavailable
from router.kafka.publish import OneByOne
from router.routing import handler as handler_module
from router.routing.dlq import SourceRecord
from router.routing.handler import Worker
from router.settings import Settings
from tests.unit.test_handler import alert, record

NINE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SETTINGS = Settings(
    retry_backoff_max_seconds=0.001, recovery_probe_seconds=0.001, rate_limit_sms="2/60s"
)
DELIVERY_TOPICS = ("deliveries.email", "deliveries.sms", "deliveries.webhook")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class OutagePublisher(OneByOne):
    """Keeps what the broker acknowledged. A send to a topic in ``down``, or whose number
    in the current attempt is in ``failing``, fails as a broker outage."""

    def __init__(self) -> None:
        self.acked: list[tuple[str, bytes, dict[str, str]]] = []
        self.down: set[str] = set()
        self.failing: set[int] = set()
        self.sends = 0

    def attempt(self, failing: Collection[int] = (), down: Collection[str] = ()) -> None:
        self.failing, self.down, self.sends = set(failing), set(down), 0

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, headers: dict[str, str]
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        number, self.sends = self.sends, self.sends + 1
        if topic in self.down or number in self.failing:
            future.set_exception(KafkaConnectionError("broker gone"))
        else:
            self.acked.append((topic, value, headers))
            future.set_result(None)
        return future

    def on(self, *topics: str) -> list[dict[str, Any]]:
        return [json.loads(v) for t, v, _ in self.acked if t in topics]

    def jobs(self) -> list[dict[str, Any]]:
        return self.on(*DELIVERY_TOPICS)

    def decisions(self) -> list[dict[str, Any]]:
        return self.on("routing.decisions")


class FlakyStore(InMemoryStore):
    """Fails as an outage the next time the worker calls the method named ``fail_on``
    (``reserve_sends_committed``: after the reservation is made)."""

    fail_on: str | None = None

    def _flake(self, name: str) -> None:
        if self.fail_on == name:
            self.fail_on = None
            raise StoreUnavailable(f"The in-memory store failed {name}.")

    async def routed_within(self, *args: Any) -> Any:
        self._flake("routed_within")
        return await super().routed_within(*args)

    async def directory_for(self, *args: Any) -> Any:
        self._flake("directory_for")
        return await super().directory_for(*args)

    async def reserve_sends(self, *args: Any) -> Any:
        self._flake("reserve_sends")
        decision = await super().reserve_sends(*args)
        self._flake("reserve_sends_committed")  # the commit's answer lost on the way
        return decision

    async def write_trail(self, *args: Any) -> Any:
        self._flake("write_trail")
        return await super().write_trail(*args)

    async def mark_routed(self, *args: Any) -> Any:
        self._flake("mark_routed")
        return await super().mark_routed(*args)

    async def record_batch(self, *args: Any) -> Any:
        self._flake("record_batch")
        await super().record_batch(*args)
        self._flake("record_batch_committed")  # the commit's answer lost on the way


async def a_team(clock: Clock) -> FlakyStore:
    """alice (email, then SMS muted until 09:00; one method per page) on call until
    09:00, then bob (email, SMS; quiet from 09:01 UTC)."""
    store = FlakyStore(clock)
    await store.add_user("alice")
    await store.update_user("alice", {"delivery_mode": "preferred"})
    await store.add_contact_method(NewContactMethod("alice", "email", "alice@example.com"))
    sms = await store.add_contact_method(NewContactMethod("alice", "sms", "+14155551234"))
    await store.update_contact_method(sms.id, {"mute_until": NINE})
    await store.add_user("bob")
    await store.update_user("bob", {"quiet_hours_start": time(9, 1), "quiet_hours_end": time(10)})
    await store.add_contact_method(NewContactMethod("bob", "email", "bob@example.com"))
    await store.add_contact_method(NewContactMethod("bob", "sms", "+14155550000"))
    await store.add_shift("oncall", "alice", NINE - timedelta(hours=8), NINE)
    await store.add_shift("oncall", "bob", NINE, NINE + timedelta(hours=8))
    return store


def on_call_alert(event_id: str, severity: str = "warning") -> bytes:
    """A schedule alert without ``occurred_at``: it happened when it was received."""
    body = {
        "event_id": event_id,
        "kind": "down",
        "severity": severity,
        "schedule_id": "oncall",
        "title": "db down",
    }
    return json.dumps(body).encode()


def assert_one_delivery_per_sent_decision(publisher: OutagePublisher) -> None:
    jobs = Counter(j["job_id"] for j in publisher.jobs())
    sent = {d["job_id"] for d in publisher.decisions() if d["outcome"] == "sent"}
    assert {job_id: jobs[job_id] for job_id in sent} == dict.fromkeys(sent, 1), (
        "every sent decision has exactly one published job with its job_id"
    )
    assert set(jobs) <= sent, "every published job has its sent decision"


async def test_a_retry_after_a_mute_ends_still_sends_the_job_its_sent_decision_names() -> None:
    clock = Clock(NINE - timedelta(seconds=1))
    store = await a_team(clock)
    publisher = OutagePublisher()
    worker = Worker(store, publisher, SETTINGS, clock=clock)
    batch = [record(alert("e1", ["alice"], severity="warning"))]
    publisher.attempt(down={"routing.decisions"})  # the email job is acked, decisions are not
    with pytest.raises(KafkaConnectionError):
        await worker.handle(batch)
    clock.now = NINE + timedelta(seconds=1)  # the SMS mute is over by the retry
    publisher.attempt()
    await worker.handle(batch)
    assert_one_delivery_per_sent_decision(publisher)
    assert [j["to"] for j in publisher.jobs()] == ["alice@example.com"]
    assert sorted((d["transport"], d["outcome"], d["reason"]) for d in publisher.decisions()) == [
        ("email", "sent", None),
        ("sms", "skipped", "muted"),
    ]
    assert list(store.routed) == ["e1"]


async def test_a_schedule_alert_retried_across_a_shift_change_pages_who_was_on_call() -> None:
    clock = Clock(NINE - timedelta(seconds=1))
    store = await a_team(clock)
    publisher = OutagePublisher()
    worker = Worker(store, publisher, SETTINGS, clock=clock)
    batch = [record(on_call_alert("e1"))]
    publisher.attempt(down={"routing.decisions"})
    with pytest.raises(KafkaConnectionError):
        await worker.handle(batch)
    clock.now = NINE + timedelta(seconds=1)  # bob's shift has begun by the retry
    publisher.attempt()
    await worker.handle(batch)
    assert_one_delivery_per_sent_decision(publisher)
    assert {d["user_id"] for d in publisher.decisions()} == {"alice"}
    assert [j["to"] for j in publisher.jobs()] == ["alice@example.com"]


async def test_a_page_held_by_the_rate_limit_is_not_also_sent_by_the_retry() -> None:
    clock = Clock(NINE + timedelta(hours=2))  # bob is out of quiet hours
    store = await a_team(clock)
    publisher = OutagePublisher()
    worker = Worker(store, publisher, SETTINGS, clock=clock)
    for n in (1, 2):  # the SMS limit is 2 a minute
        await worker.handle([record(alert(f"e{n}", ["bob"], "warning"), n)])
    clock.now += timedelta(seconds=30)
    batch = [record(alert("e3", ["bob"], "warning"), 3)]
    publisher.attempt(down={"routing.decisions"})
    with pytest.raises(KafkaConnectionError):
        await worker.handle(batch)
    [held] = store.held.values()
    assert (held.event.event_id, held.reason) == ("e3", "rate_limited")
    clock.now += timedelta(seconds=60)  # the window has slid by the retry
    publisher.attempt()
    await worker.handle(batch)
    assert_one_delivery_per_sent_decision(publisher)
    assert [j["event_id"] for j in publisher.on("deliveries.sms")] == ["e1", "e2"]
    [sms] = [d for d in publisher.decisions() if d["event_id"] == "e3" and d["transport"] == "sms"]
    assert (sms["outcome"], sms["reason"]) == ("deferred", "rate_limited")


async def test_a_hold_whose_commit_went_unheard_is_not_undone_by_the_retry() -> None:
    clock = Clock(NINE + timedelta(hours=2))
    store = await a_team(clock)
    publisher = OutagePublisher()
    worker = Worker(store, publisher, SETTINGS, clock=clock)
    for n in (1, 2):
        await worker.handle([record(alert(f"e{n}", ["bob"], "warning"), n)])
    clock.now += timedelta(seconds=30)
    batch = [record(alert("e3", ["bob"], "warning"), 3)]
    store.fail_on = "reserve_sends_committed"
    with pytest.raises(StoreUnavailable):
        await worker.handle(batch)
    assert [p.event.event_id for p in store.held.values()] == ["e3"]  # committed all the same
    clock.now += timedelta(seconds=60)
    await worker.handle(batch)
    assert_one_delivery_per_sent_decision(publisher)
    assert [j["event_id"] for j in publisher.on("deliveries.sms")] == ["e1", "e2"]
    assert [p.event.event_id for p in store.held.values()] == ["e3"]


async def test_a_retry_that_fetches_more_records_routes_the_new_ones_at_its_own_clock() -> None:
    clock = Clock(NINE - timedelta(seconds=1))
    store = await a_team(clock)
    publisher = OutagePublisher()
    worker = Worker(store, publisher, SETTINGS, clock=clock)
    publisher.attempt(down={"routing.decisions"})
    with pytest.raises(KafkaConnectionError):
        await worker.handle([record(on_call_alert("e1"), 0)])
    clock.now = NINE + timedelta(seconds=1)
    publisher.attempt()
    await worker.handle([record(on_call_alert("e1"), 0), record(on_call_alert("e2"), 1)])
    assert_one_delivery_per_sent_decision(publisher)
    assert sorted((j["event_id"], j["user_id"]) for j in publisher.jobs()) == [
        ("e1", "alice"),
        ("e2", "bob"),
        ("e2", "bob"),
    ]


async def test_what_a_retry_remembers_is_forgotten_once_its_batch_is_done() -> None:
    clock = Clock(NINE)
    publisher = OutagePublisher()
    worker = Worker(await a_team(clock), publisher, SETTINGS, clock=clock)
    batch = [record(alert("e1", ["alice"]), 0), record(alert("e2", ["alice"]), 1)]
    publisher.attempt(failing={1})
    with pytest.raises(KafkaConnectionError):
        await worker.handle(batch)
    status = SourceRecord("statuses", 0, 7, None, None, b"nope", ())
    await worker.handle_statuses([status])  # another stream's success keeps the alerts' memory
    assert worker._settled and worker._acked
    publisher.attempt()
    await worker.handle(batch)
    assert not worker._settled and not worker._acked


async def test_a_bug_after_the_acks_sends_nothing_twice_when_the_batch_goes_record_by_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock(NINE)
    publisher = OutagePublisher()
    worker = Worker(await a_team(clock), publisher, SETTINGS, clock=clock)
    batch = [record(alert("e1", ["alice"], "critical"), 0), record(alert("e2", ["bob"]), 1)]
    calls: list[int] = []

    def report_once(*args: Any) -> tuple[int, int]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug met after the broker acknowledged the batch")
        return original(*args)

    original = handler_module.report
    monkeypatch.setattr(handler_module, "report", report_once)
    publisher.attempt()
    result = await worker.handle(batch)
    assert len(calls) == 3, "the batch once, then each record on its own"
    assert result.events == 2
    assert_one_delivery_per_sent_decision(publisher)
    jobs = [j["job_id"] for j in publisher.jobs()]
    assert len(jobs) == len(set(jobs)) == 4, "alice's two methods and bob's, each once"
    assert not worker._settled and not worker._acked


# -- the property -----------------------------------------------------------------

STORE_CALLS = (
    "routed_within",
    "directory_for",
    "reserve_sends",
    "reserve_sends_committed",
    "write_trail",
    "mark_routed",
    "record_batch",
    "record_batch_committed",
)

values = st.one_of(
    st.builds(
        lambda i, users, severity, when: alert(
            f"e{i}", users, severity, **({"occurred_at": when.isoformat()} if when else {})
        ),
        st.integers(0, 5),
        st.sampled_from([["alice"], ["bob"], ["alice", "bob"]]),
        st.sampled_from(["warning", "critical"]),
        st.none() | st.just(NINE - timedelta(minutes=5)),
    ),
    st.builds(on_call_alert, st.integers(0, 5).map(lambda i: f"s{i}")),
    st.just(b"not json"),
)
attempts = st.lists(
    st.tuples(
        st.integers(1, 6),  # records fetched, from the batch's first offset
        st.sampled_from([0, 1, 20, 45, 61, 90]),  # seconds the clock moves before the attempt
        st.sets(st.integers(0, 12), max_size=3),  # sends that fail as a broker outage
        st.none() | st.sampled_from(STORE_CALLS),  # the store call that fails
    ),
    min_size=1,
    max_size=12,
)


#: One SMS a minute, so that pages are held back often.
TIGHT = Settings(
    retry_backoff_max_seconds=0.001, recovery_probe_seconds=0.001, rate_limit_sms="1/60s"
)


@hsettings(max_examples=100, deadline=None)
@given(st.lists(values, min_size=1, max_size=8), attempts)
def test_outages_and_a_moving_clock_never_lose_double_or_mislabel_a_page(
    inputs: list[bytes], plan: list[tuple[int, int, set[int], str | None]]
) -> None:
    async def scenario() -> None:
        clock = Clock(NINE - timedelta(seconds=45))
        store = await a_team(clock)
        publisher = OutagePublisher()
        worker = Worker(store, publisher, TIGHT, clock=clock)
        records = [record(v, i) for i, v in enumerate(inputs)]
        position = 0
        steps = iter(plan)
        while position < len(records):
            fetched, moved, failing, store_call = next(steps, (len(records), 0, set(), None))
            clock.now += timedelta(seconds=moved)
            publisher.attempt(failing)
            store.fail_on = store_call
            batch = records[position : position + fetched]
            try:
                await worker.handle(batch)
            except (KafkaConnectionError, StoreUnavailable):
                continue
            position += len(batch)

        assert_one_delivery_per_sent_decision(publisher)
        per_page: dict[tuple[str, str], set[str]] = {}
        for job in publisher.jobs():
            per_page.setdefault((job["event_id"], job["contact_method_id"]), set()).add(
                job["job_id"]
            )
        assert all(len(ids) == 1 for ids in per_page.values()), "one job_id per page and method"
        assert not set(per_page) & set(store.held), "a held page is not also sent as a job"

        # Every record ends as exactly one outcome: one dead letter, or the decisions
        # of one plan (one per event, user and method), or a duplicate decision.
        letters = Counter(
            h["__connect.errors.offset"] for t, _, h in publisher.acked if t == "alerts.dlq"
        )
        decided = Counter(
            (d["event_id"], d["user_id"], d["contact_method_id"])
            for d in publisher.decisions()
            if d["reason"] != "duplicate_event"
        )
        assert all(n == 1 for n in decided.values()), "one decision per event, user and method"
        duplicates = Counter(
            d["event_id"] for d in publisher.decisions() if d["reason"] == "duplicate_event"
        )
        events: Counter[str] = Counter()
        for offset, value in enumerate(inputs):
            if value == b"not json":
                assert letters[str(offset)] == 1
            else:
                events[json.loads(value)["event_id"]] += 1
        assert sum(letters.values()) == inputs.count(b"not json")
        for event_id, count in events.items():
            assert any(key[0] == event_id for key in decided)
            assert duplicates[event_id] == count - 1

    asyncio.run(scenario())


async def test_records_handled_one_by_one_are_not_sent_again_when_a_later_one_meets_an_outage() -> (
    None
):
    clock = Clock(NINE - timedelta(minutes=30))
    store = await a_team(clock)

    async def refuse_once(*args: Any) -> Any:  # the data, not the world: record by record
        store.routed_within = original  # type: ignore[method-assign]
        raise ValueError("a value PostgreSQL refused")

    original, store.routed_within = store.routed_within, refuse_once  # type: ignore[method-assign]
    publisher = OutagePublisher()
    worker = Worker(store, publisher, SETTINGS, clock=clock)
    batch = [record(alert("e1", ["alice"], "critical"), 0), record(alert("e2", ["bob"]), 1)]
    publisher.attempt(failing=range(3, 50))  # e1's job and decisions go; e2's meet an outage
    with pytest.raises(KafkaConnectionError):
        await worker.handle(batch)
    first = len(publisher.acked)
    assert first == 3
    publisher.attempt()
    await worker.handle(batch)
    assert [d["event_id"] for d in publisher.decisions()].count("e1") == 2, "e1's, once"
    assert_one_delivery_per_sent_decision(publisher)
    assert {j["event_id"] for j in publisher.jobs()} == {"e1", "e2"}
