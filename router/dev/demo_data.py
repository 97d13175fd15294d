"""What ``router demo`` sends and whom it pages: the sample alerts (good and bad),
the Alertmanager webhook it posts, and the small directory it seeds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from router.db.store import PgStore
from router.directory.writes import NewContactMethod
from router.schedules.oncall import Override, Rotation

SAMPLES: list[bytes] = [
    json.dumps(
        {
            "event_id": "demo-1",
            "kind": "down",
            "severity": "critical",
            "user_ids": ["alice"],
            "title": "db-1 is not answering",
            "body": "TCP 5432 refused from 3 probes",
            "url": "https://status.example.com/db-1",
            "source": "demo-monitor",
            "labels": {"team": "storage"},
        }
    ).encode(),
    json.dumps(
        {
            "event_id": "demo-2",
            "kind": "down",
            "severity": "warning",
            "user_ids": ["bob"],
            "title": "disk 85% on web-3",
        }
    ).encode(),
    json.dumps(
        {
            "event_id": "demo-3",
            "kind": "down",
            "severity": "error",
            "user_ids": ["mallory"],
            "title": "nobody knows mallory",
        }
    ).encode(),
    b"this is not json",
    json.dumps(
        {"event_id": "demo-4", "kind": "down", "severity": "urgent", "user_ids": ["alice"]}
    ).encode(),
    json.dumps(
        {
            "event_id": "demo-5",
            "kind": "up",
            "severity": "info",
            "user_ids": ["alice"],
            "title": "db-1 is back",
        }
    ).encode(),
    json.dumps(
        {
            "event_id": "demo-6",
            "kind": "down",
            "severity": "warning",
            "user_ids": ["carol"],
            "title": "queue lag 5 min",
        }
    ).encode(),
    json.dumps(
        {
            "event_id": "demo-7",
            "kind": "down",
            "severity": "error",
            "schedule_id": "primary",
            "title": "payments API 5xx",
        }
    ).encode(),
]
# demo-1: alice's 3 methods; demo-2: bob's email + disabled sms; demo-3: unknown
# user; demo-5: alice's 3 (webhook suppresses "up"); demo-6: carol prefers sms,
# so her email is not_preferred; demo-7: bob is on call for "primary".
# The Alertmanager webhook posted to `router ingest`: DiskFull for bob (his email,
# and his disabled sms).
# demo-8 and demo-9: warnings for dan during his quiet hours, which end 20 s after
# the demo starts: two deferred decisions, then one digest carrying both.
# demo-10: an error for carol: her sms (email not_preferred); the demo then reports
# that sms as failed for good, and the page fails over to her email.
EXPECTED_DECISIONS = 3 + 2 + 1 + 3 + 2 + 2 + 2 + 3 + 3
FAILOVER_EVENT = "demo-10"
QUIET_FOR = timedelta(seconds=20)
INGEST_TOKEN = "demo-token"  # noqa: S105 - a throwaway token for the local demo
ALERTMANAGER_WEBHOOK = {
    "version": "4",
    "groupKey": '{}:{alertname="DiskFull"}',
    "status": "firing",
    "receiver": "team-storage",
    "groupLabels": {"alertname": "DiskFull"},
    "commonLabels": {"alertname": "DiskFull", "severity": "warning"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager.example.com:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "DiskFull", "instance": "web-3:9100", "severity": "warning"},
            "annotations": {"summary": "Disk 91% full on web-3"},
            "startsAt": "2026-11-25T03:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=disk_used_ratio",
            "fingerprint": "d1f0a5c2b3e4f607",
        }
    ],
}
EXPECTED_DEAD_LETTERS = 2


async def seed(store: PgStore) -> None:
    """A small directory that shows the rules at work (see EXPECTED_DECISIONS)."""
    await store.add_user("alice", "Alice Example", "Europe/Berlin")
    await store.add_user("bob", "Bob Example", "America/New_York")
    await store.add_user("carol", "Carol Example", "Asia/Kolkata")
    await store.update_user("carol", {"delivery_mode": "preferred", "channel_order": ("sms",)})
    for new in (
        NewContactMethod("alice", "email", "alice@example.com", "work", True, True),
        NewContactMethod("alice", "sms", "+14155551234", "mobile", True, True),
        NewContactMethod("alice", "webhook", "https://hooks.example.com/alice", "chat-bridge"),
        NewContactMethod("bob", "email", "bob@example.com", None, True),
        NewContactMethod("bob", "sms", "+4915112345678", "mobile"),
        NewContactMethod("carol", "email", "carol@example.com", None, True),
        NewContactMethod("carol", "sms", "+447911123456", "mobile", True),
    ):
        method = await store.add_contact_method(new)
        if method.user_id == "bob" and method.transport == "sms":
            await store.set_disabled(method.id, True)
        if method.transport == "webhook":
            await store.update_contact_method(method.id, {"suppress_up": True})
    now = datetime.now(UTC)
    await seed_schedule(store, now)
    await store.add_user("dan", "Dan Example", "UTC")
    await store.update_user(
        "dan",
        {
            "quiet_hours_start": (now - timedelta(hours=1)).time(),
            "quiet_hours_end": (now + QUIET_FOR).time(),
        },
    )
    await store.add_contact_method(NewContactMethod("dan", "email", "dan@example.com", None, True))


async def seed_schedule(store: PgStore, now: datetime) -> None:
    """Schedule ``primary`` in Berlin: alice and bob take turns of a week from Monday
    09:00 (bob's turn is under way), and carol covers bob for a day next week."""
    berlin = ZoneInfo("Europe/Berlin")
    local = now.astimezone(berlin)
    monday = datetime.combine(local.date() - timedelta(days=local.weekday()), time(9), berlin)
    if monday > now:
        monday -= timedelta(weeks=1)
    await store.add_schedule("primary", "Primary on-call", "Europe/Berlin")
    first = monday - timedelta(weeks=1)  # alice's turn; bob's began at ``monday``
    await store.add_rotation(
        "primary", Rotation("weekly", ("alice", "bob"), timedelta(weeks=1), first)
    )
    cover = monday + timedelta(weeks=1, days=2)
    await store.add_override(
        "primary", Override(0, "carol", cover, cover + timedelta(days=1), replaces="bob")
    )


def quiet_samples() -> list[bytes]:
    """Two warnings for dan, in his quiet hours: held, then sent as one digest."""
    now = datetime.now(UTC).isoformat()
    return [
        json.dumps(
            {
                "event_id": f"demo-{n}",
                "kind": "down",
                "severity": "warning",
                "user_ids": ["dan"],
                "title": title,
                "occurred_at": now,
            }
        ).encode()
        for n, title in ((8, "backup job late"), (9, "cert expires in 7 days"))
    ] + [
        json.dumps(
            {
                "event_id": FAILOVER_EVENT,
                "kind": "down",
                "severity": "error",
                "user_ids": ["carol"],
                "title": "payments queue stuck",
            }
        ).encode()
    ]
