"""The page trail keeps a plain sent decision as its job's id and tells it whole."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from router.db.memstore import InMemoryStore
from router.delivery.trail import story, trail_value
from router.directory.writes import NewContactMethod
from router.routing.handler import Worker
from schemas import Decision
from tests.conftest import T0
from tests.unit.test_handler import SETTINGS, RecordingPublisher, alert, record


@pytest.mark.parametrize("now", [T0, T0 + timedelta(microseconds=123456)])
async def test_the_trail_tells_every_decision_as_it_was_published(now: object) -> None:
    store = InMemoryStore()
    await store.add_user("alice")
    await store.add_contact_method(NewContactMethod("alice", "email", "alice@example.com"))
    muted = await store.add_contact_method(NewContactMethod("alice", "sms", "+14155551234"))
    await store.update_contact_method(muted.id, {"muted": True})
    await store.add_user("bob")
    await store.add_contact_method(NewContactMethod("bob", "webhook", "https://h.example/b"))
    publisher = RecordingPublisher()
    worker = Worker(store, publisher, SETTINGS, clock=lambda: now)
    await worker.handle(
        [
            record(alert("e1", ["alice", "bob", "nobody"]), 0),
            record(alert("e2", ["bob"], severity="warning", dedup_key="db"), 1),
        ]
    )
    await worker.recorded()
    published = publisher.on("routing.decisions")
    assert {d["outcome"] for d in published} == {"sent", "skipped"}
    events = {e[0]: e for t in store.trail for e in t.events}
    jobs = list(store.page_jobs.values())
    told = []
    for event_id, raw, decisions, routed_at in events.values():
        kept = json.loads(decisions)
        # A sent decision is kept as its job id alone; the others as published.
        assert all(
            (type(k) is str) == (d["outcome"] == "sent")
            for k, d in zip(kept, [p for p in published if p["event_id"] == event_id], strict=True)
        )
        lines = story((raw, decisions, routed_at), [j for j in jobs if j.event_id == event_id], [])
        told += [line.data for line in lines if line.type == "decision"]
    assert sorted(map(json.dumps, told)) == sorted(map(json.dumps, published))


def test_a_sent_decision_whose_job_row_is_missing_is_told_with_what_the_event_gives() -> None:
    event = ('{"event_id": "e1", "dedup_key": "db"}', '["job-1"]', T0)
    [_, line] = story(event, [], [])
    assert line.data == {
        "event_id": "e1",
        "user_id": None,
        "contact_method_id": None,
        "transport": None,
        "outcome": "sent",
        "reason": None,
        "job_id": "job-1",
        "decided_at": "2026-03-01T12:00:00Z",
        "deliver_at": None,
        "digest_of": None,
        "failover_of": None,
        "alert_key": "db",
        "escalation_step": None,
        "escalation_round": None,
    }


SENT = {
    "event_id": "e1",
    "user_id": "alice",
    "contact_method_id": "m1",
    "transport": "sms",
    "outcome": "sent",
    "job_id": "j1",
    "decided_at": T0,
}


@pytest.mark.parametrize(
    ("extra", "whole"),
    [
        ({}, False),
        ({"reason": "failover", "failover_of": "j0"}, True),
        ({"reason": "escalated", "escalation_step": 2, "escalation_round": 1}, True),
        ({"escalation_step": 1, "escalation_round": 1}, True),
        ({"digest_of": ["e0", "e1"]}, True),
        ({"outcome": "skipped", "reason": "muted", "job_id": None}, True),
    ],
)
def test_only_a_plain_sent_decision_is_kept_as_its_job_id(
    extra: dict[str, object], whole: bool
) -> None:
    decision = Decision.model_validate({"reason": None, **SENT, **extra})
    kept = trail_value(decision, b"{published}")
    assert kept == (b"{published}" if whole else b'"j1"')
