"""One page through every path that decides about a contact method: routed at once,
held then flushed, failed over, and a verification code. Each path reads the same
site settings (``Settings.routing_options``), so each decides the same: with an
allowed internal webhook, plain http and ``ROUTER_REQUIRE_VERIFIED``, the webhook
is called and the unverified email is skipped on every path; with the strict
defaults the same webhook is ``unsafe_target`` on every path."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from router.db.memstore import InMemoryStore
from router.directory.verification import verification_job
from router.directory.writes import NewContactMethod
from router.held.scheduler import HeldDelivery
from router.routing.dlq import SourceRecord
from router.routing.handler import Worker
from router.routing.rules import webhook_problem
from router.settings import Settings
from tests.unit.test_handler import RecordingPublisher

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
HOOK = "http://127.0.0.1:8080/hook"
SITE = {
    "webhook_allowed_hosts": "127.0.0.1",
    "webhook_allow_http": True,
    "require_verified": True,
    "rate_limit_webhook": "1/3600s",
}


def alert(event_id: str, user: str) -> SourceRecord:
    value = {
        "event_id": event_id,
        "kind": "down",
        "severity": "error",
        "title": f"{event_id} is down",
        "user_ids": [user],
        "occurred_at": NOW.isoformat(),
    }
    return SourceRecord(
        "alerts", 0, hash(event_id) % 1000, None, None, json.dumps(value).encode(), ()
    )


async def directory(store: InMemoryStore) -> dict[str, Any]:
    """alice (every method paged) and bob (his preferred method first): each with the
    internal webhook, verified, and an email never verified; bob also has an SMS."""
    ids = {}
    await store.add_user("alice")
    await store.add_user("bob")
    await store.update_user(
        "bob", {"delivery_mode": "preferred", "channel_order": ("sms", "webhook", "email")}
    )
    for user in ("alice", "bob"):
        hook = await store.add_contact_method(
            NewContactMethod(user, "webhook", HOOK, verified=True)
        )
        await store.add_contact_method(NewContactMethod(user, "email", f"{user}@example.com"))
        ids[user] = hook
    sms = await store.add_contact_method(
        NewContactMethod("bob", "sms", "+14155550100", verified=True)
    )
    ids["bob-sms"] = sms
    return ids


def outcomes(publisher: RecordingPublisher, settings: Settings, event_id: str) -> dict[str, Any]:
    """transport -> (outcome, reason) of the decisions about ``event_id``."""
    found = {}
    for d in publisher.on(settings.topic_decisions):
        if d["event_id"] == event_id or event_id in (d.get("digest_of") or []):
            found[d["transport"]] = (d["outcome"], d["reason"])
    return found


@pytest.mark.parametrize(
    ("site", "webhook"),
    [
        (SITE, ("sent", None)),
        ({"require_verified": True, "rate_limit_webhook": "1/3600s"}, ("skipped", "unsafe_target")),
    ],
    ids=["allowed internal webhook", "strict defaults"],
)
async def test_every_path_decides_alike_with_the_sites_settings(
    site: dict[str, Any], webhook: tuple[str, str | None]
) -> None:
    settings = Settings(**site)
    clock = lambda: NOW  # noqa: E731
    store = InMemoryStore(clock=clock)
    ids = await directory(store)
    publisher = RecordingPublisher()
    options = settings.routing_options()
    worker = Worker(store, publisher, settings, clock=clock, options=options)
    skipped_email = ("skipped", "unverified")

    # Routed at once.
    await worker.handle([alert("first", "alice")])
    assert outcomes(publisher, settings, "first") == {"webhook": webhook, "email": skipped_email}

    # Held by the webhook's rate limit (only when the first one went), then flushed.
    await worker.handle([alert("second", "alice")])
    if webhook[0] == "sent":
        assert outcomes(publisher, settings, "second")["webhook"] == ("deferred", "rate_limited")
        held = HeldDelivery(store, publisher, settings, clock, options=options)  # type: ignore[arg-type]
        outcome = await held.deliver_due("alice", force=True)
        assert [j.to for j in outcome.jobs] == [HOOK], outcome.refused
        assert outcomes(publisher, settings, "second")["webhook"] == ("sent", None)

    # Failed over: bob's SMS fails for good; his next method is the webhook.
    await worker.handle([alert("third", "bob")])
    [sms_job] = [j for j in publisher.on(settings.topic_sms) if j["event_id"] == "third"]
    report = {
        "job_id": sms_job["job_id"],
        "status": "failed",
        "permanent": True,
        "at": NOW.isoformat(),
    }
    await worker.handle_statuses(
        [SourceRecord("status", 0, 1, None, None, json.dumps(report).encode(), ())]
    )
    third = [d for d in publisher.on(settings.topic_decisions) if d["event_id"] == "third"]
    failover = [d for d in third if d["reason"] in ("failover", "unreachable")]
    if webhook[0] == "sent":
        assert [(d["transport"], d["reason"]) for d in failover] == [("webhook", "failover")]
        assert [
            j["to"] for j in publisher.on(settings.topic_webhook) if j["event_id"] == "third"
        ] == [HOOK]
    else:
        assert [d["reason"] for d in failover] == ["unreachable"]

    # A verification code: the same rule says whether the webhook may be called.
    method = ids["alice"]
    problem = webhook_problem(method, options.target_policy)
    assert (problem is None) == (webhook[0] == "sent")
    if problem is None:
        job = verification_job(method, "123456", NOW, NOW)
        assert (job.to, job.purpose) == (HOOK, "verification")
