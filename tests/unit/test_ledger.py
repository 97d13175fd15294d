"""A routed batch's ledger (trail, routed marks, counted sends) is written after its acks,
while the next batch is routed: nothing that needs it reads around it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from router.db.memstore import InMemoryStore
from router.delivery.statuses import record_statuses
from router.errors import StoreError, StoreUnavailable
from router.routing.handler import Worker
from router.settings import Settings
from schemas import DeliveryStatus
from tests.conftest import T0, RouterLog
from tests.unit.test_handler import RecordingPublisher, alert, directory, record

SETTINGS = Settings(retry_backoff_max_seconds=0.01, recovery_probe_seconds=0.01)


class GatedStore(InMemoryStore):
    """Holds each ledger write until the test opens the gate; notes the order of calls."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.calls: list[str] = []
        self.failures: list[Exception] = []

    async def record_batch(self, *args: Any) -> None:
        await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        await super().record_batch(*args)
        self.calls.append("ledger written")

    async def reserve_sends(self, *args: Any) -> Any:
        self.calls.append("reservation")
        return await super().reserve_sends(*args)


async def gated_team() -> GatedStore:
    store = GatedStore()
    source = await directory()
    store.users, store.methods = source.users, source.methods
    return store


def decisions(publisher: RecordingPublisher) -> list[tuple[str, str | None]]:
    return [(d["event_id"], d["reason"]) for d in publisher.on("routing.decisions")]


async def test_a_routed_batch_is_marked_routed_only_when_its_ledger_is_written() -> None:
    store = await gated_team()
    publisher = RecordingPublisher()
    worker = Worker(store, publisher, SETTINGS, clock=lambda: T0)
    result = await worker.route([record(alert("e1"))])
    assert len(publisher.on("deliveries.email")) == 1, "routed: the broker has the job"
    assert store.routed == {} and store.page_jobs == {}, "the ledger is not written yet"
    store.gate.set()
    await worker.record(result)
    assert set(store.routed) == {"e1"} and len(store.page_jobs) == 3


async def test_an_event_whose_ledger_is_still_being_written_is_a_duplicate_in_the_next_batch() -> (
    None
):
    store = await gated_team()
    publisher = RecordingPublisher()
    worker = Worker(store, publisher, SETTINGS, clock=lambda: T0)
    first = await worker.route([record(alert("e1"), 0)])
    writing = asyncio.create_task(worker.record(first))
    await worker.route([record(alert("e1"), 1)])
    assert len(publisher.on("deliveries.sms")) == 1
    assert decisions(publisher)[-1] == ("e1", "duplicate_event")
    store.gate.set()
    await writing


async def test_a_rate_limit_reservation_waits_for_the_ledger_that_counts_earlier_jobs() -> None:
    store = await gated_team()
    publisher = RecordingPublisher()
    worker = Worker(store, publisher, SETTINGS, clock=lambda: T0)
    critical = await worker.route([record(alert("c1", severity="critical"), 0)])
    writing = asyncio.create_task(worker.record(critical))
    routing = asyncio.create_task(worker.route([record(alert("w1", severity="warning"), 1)]))
    await asyncio.sleep(0.02)
    assert not routing.done() and store.calls == [], "the reservation waits for the ledger"
    store.gate.set()
    await asyncio.gather(writing, routing)
    assert store.calls[:2] == ["ledger written", "reservation"]


async def test_a_status_waits_for_the_ledger_that_writes_its_job() -> None:
    store = await gated_team()
    publisher = RecordingPublisher()
    worker = Worker(store, publisher, SETTINGS, clock=lambda: T0)
    result = await worker.route([record(alert("e1"))])
    writing = asyncio.create_task(worker.record(result))
    worker.unknown_job_wait = 0  # no second look: this worker's own ledger is waited for
    [job] = publisher.on("deliveries.sms")
    status = {"job_id": job["job_id"], "status": "failed", "permanent": True, "at": T0.isoformat()}
    handling = asyncio.create_task(worker.handle_statuses([record(json.dumps(status).encode())]))
    await asyncio.sleep(0.02)
    assert not handling.done(), "the status waits for its job to be on the trail"
    store.gate.set()
    await writing
    assert await handling == 1
    assert store.page_jobs[job["job_id"]].failed_at is not None, "the job failed for good"


async def test_a_ledger_write_waits_out_an_outage(router_log: RouterLog) -> None:
    store = await gated_team()
    store.failures = [StoreUnavailable("database restarting")]
    store.gate.set()
    worker = Worker(store, RecordingPublisher(), SETTINGS, clock=lambda: T0)
    await worker.handle([record(alert("e1"))])
    assert set(store.routed) == {"e1"}
    assert [e["event"] for e in router_log() if e["level"] == "error"] == ["ledger_failed"]


async def test_a_ledger_the_database_refuses_is_written_event_by_event(
    router_log: RouterLog,
) -> None:
    store = await gated_team()
    store.failures = [StoreError("refused"), StoreError("refused again")]
    store.gate.set()
    publisher = RecordingPublisher()
    worker = Worker(store, publisher, SETTINGS, clock=lambda: T0)
    await worker.handle([record(alert("e1"), 0), record(alert("e2"), 1)])
    errors = [(e["event"], e.get("event_id")) for e in router_log() if e["level"] == "error"]
    assert errors == [("ledger_refused", None), ("event_ledger_refused", "e1")]
    assert set(store.routed) == {"e2"}, "one event's bad row costs only its own ledger"
    jobs = [j for t, *_ in publisher.sent if t.startswith("deliveries.") for j in publisher.on(t)]
    e2_jobs = {j["job_id"] for j in jobs if j["event_id"] == "e2"}
    assert len(e2_jobs) == 3 and set(store.sends) == e2_jobs, "its critical jobs counted with it"


async def test_a_status_from_another_worker_finds_a_job_written_just_after_it() -> None:
    store = await directory()
    publisher = RecordingPublisher()
    other = Worker(store, publisher, SETTINGS, clock=lambda: T0)
    result = await other.route([record(alert("e1"))])
    [job] = publisher.on("deliveries.email")
    status = {"job_id": job["job_id"], "status": "failed", "permanent": True, "at": T0}
    failed: list[Any] = []

    async def fail_over(jobs: Any, now: Any) -> None:
        failed.extend(jobs)

    late = asyncio.get_running_loop().call_later(
        0.05, lambda: asyncio.ensure_future(other.record(result))
    )
    new = await record_statuses(
        store,
        [DeliveryStatus.model_validate(status)],
        T0,
        fail_over,
        unknown_job_wait=0.3,
    )
    late.cancel()
    assert new == 1 and [j.job_id for j in failed] == [job["job_id"]]


class RefusingStore(GatedStore):
    """Refuses (not an outage) any directory read naming ``poison``: the batch is then
    routed record by record."""

    async def directory_for(self, user_ids: Any, shifts: Any) -> Any:
        if "poison" in user_ids:
            raise StoreError("PostgreSQL refused the operation: invalid byte sequence.")
        return await super().directory_for(user_ids, shifts)


async def test_routed_record_by_record_an_event_twice_is_still_routed_once() -> None:
    store = RefusingStore()
    source = await directory()
    store.users, store.methods = source.users, source.methods
    store.gate.set()
    publisher = RecordingPublisher()
    worker = Worker(store, publisher, SETTINGS, clock=lambda: T0)
    batch = [record(alert("e1"), 0), record(alert("e2", ["poison"]), 1), record(alert("e1"), 2)]
    await worker.handle(batch)
    assert len(publisher.on("deliveries.email")) == 1
    assert decisions(publisher)[-1] == ("e1", "duplicate_event")
