"""Delivery status closes the loop: failover, unreachable, automatic opt-out, the trail.

Black-box through `router run` and the topics, except the timeout path, which runs the
worker in this process with a clock the test sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from router.db.store import PgStore
from router.delivery.trail import JobRow, status_row
from router.delivery.watchers import fail_silent_jobs, repair_failovers
from router.directory.models import ContactMethod
from router.directory.writes import NewContactMethod
from router.kafka.adapters import create_producer
from router.kafka.publish import ProducerPublisher
from router.kafka.topics import ensure_topics
from router.routing.dlq import SourceRecord
from router.routing.handler import Worker
from router.settings import Settings
from schemas import DeliveryStatus
from tests.integration.conftest import (
    RouterProcess,
    add_contact,
    cli_ok,
    collect,
    produce,
    run_cli,
    wait_for_topics,
)


def alert(event_id: str, user: str, severity: str = "error", title: str | None = None) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "kind": "down",
            "severity": severity,
            "title": title or f"{event_id} is down",
            "user_ids": [user],
        }
    ).encode()


def status(job_id: str, state: str, permanent: bool = True, detail: str | None = None) -> bytes:
    return json.dumps(
        {
            "job_id": job_id,
            "status": state,
            "permanent": permanent,
            "detail": detail,
            "at": datetime.now(UTC).isoformat(),
        }
    ).encode()


def values(records: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records]


@pytest.mark.long
async def test_a_failed_sms_fails_over_to_email_then_the_page_ends_unreachable(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    env = router_env
    cli_ok(
        env, "users", "add", "carol", "--delivery-mode", "preferred", "--channel-order", "sms,email"
    )
    add_contact(env, "carol", "sms", "+14155550177", "--verified")
    email = add_contact(env, "carol", "email", "carol@example.com", "--verified")
    start_router(env)
    bootstrap = env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    sms_t, email_t, decisions_t, status_t = (
        env["ROUTER_TOPIC_SMS"],
        env["ROUTER_TOPIC_EMAIL"],
        env["ROUTER_TOPIC_DECISIONS"],
        env["ROUTER_TOPIC_STATUS"],
    )
    await wait_for_topics(bootstrap, [status_t])
    await produce(bootstrap, env["ROUTER_TOPIC_ALERTS"], alert("db-down", "carol"))
    seen = await collect(bootstrap, [sms_t], until=lambda s: len(s[sms_t]) >= 1, settle=0)
    [sms_job] = values(seen[sms_t])

    # The SMS provider gives up for good; the report arrives twice (redelivered).
    failed = status(sms_job["job_id"], "failed", detail="unknown subscriber")
    await produce(bootstrap, status_t, failed, failed)
    seen = await collect(bootstrap, [email_t, status_t], until=lambda s: len(s[email_t]) >= 1)
    [email_job] = values(seen[email_t])
    assert (email_job["event_id"], email_job["user_id"]) == ("db-down", "carol")
    assert email_job["contact_method_id"] == email.id
    reported_at = seen[status_t][0].timestamp
    assert seen[email_t][0].timestamp - reported_at < 1000  # within a second of the report

    # The email bounces too (temporary first: nothing happens), then nothing is left.
    await produce(
        bootstrap,
        status_t,
        status(email_job["job_id"], "failed", permanent=False),
        status(email_job["job_id"], "failed", detail="mailbox full"),
    )
    seen = await collect(
        bootstrap,
        [decisions_t, email_t, sms_t],
        until=lambda s: any(json.loads(r.value)["reason"] == "unreachable" for r in s[decisions_t]),
    )
    assert len(seen[email_t]) == 1 and len(seen[sms_t]) == 1  # the repeat changed nothing
    outcomes = [
        (d["outcome"], d["reason"], d.get("failover_of")) for d in values(seen[decisions_t])
    ]
    assert outcomes.count(("sent", "failover", sms_job["job_id"])) == 1
    assert outcomes.count(("skipped", "unreachable", email_job["job_id"])) == 1

    story = cli_ok(env, "trail", "db-down").splitlines()
    kinds = [line.split()[1] for line in story]
    assert kinds[0] == "event"
    assert kinds.count("job") == 2 and kinds.count("status") == 3  # the repeat once
    assert any("failover" in line and sms_job["job_id"] in line for line in story)
    assert "unreachable" in story[-1]
    as_json = [json.loads(line) for line in cli_ok(env, "trail", "db-down", "--json").splitlines()]
    assert [entry["type"] for entry in as_json] == kinds
    # Every decision on the trail is the one published, field for field: the sent ones,
    # kept as their job ids, made whole from the jobs' rows.
    on_trail = [
        json.dumps({k: v for k, v in e.items() if k not in ("at", "type")})
        for e in as_json
        if e["type"] == "decision"
    ]
    assert sorted(on_trail) == sorted(json.dumps(d) for d in values(seen[decisions_t]))
    pages = cli_ok(env, "trail", "--user", "carol", "--since", "1h")
    assert "db-down" in pages and "jobs 2, delivered 0, failed 2" in pages
    assert run_cli(env, "trail", "no-such-event").returncode == 1


@pytest.mark.long
async def test_a_bounce_opts_the_address_out_and_odd_statuses_are_kept_and_ignored(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    env = router_env
    cli_ok(env, "users", "add", "dave")
    add_contact(env, "dave", "email", "dave@example.com", "--verified")
    add_contact(env, "dave", "sms", "+14155550166", "--verified")
    router = start_router(env)
    bootstrap = env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    email_t, decisions_t, status_t, dlq_t = (
        env["ROUTER_TOPIC_EMAIL"],
        env["ROUTER_TOPIC_DECISIONS"],
        env["ROUTER_TOPIC_STATUS"],
        env["ROUTER_TOPIC_DLQ"],
    )
    await wait_for_topics(bootstrap, [status_t])
    await produce(bootstrap, env["ROUTER_TOPIC_ALERTS"], alert("first", "dave", "warning"))
    sms_t = env["ROUTER_TOPIC_SMS"]
    seen = await collect(
        bootstrap,
        [email_t, sms_t],
        until=lambda s: len(s[email_t]) >= 1 and len(s[sms_t]) >= 1,
        settle=0,
    )
    [job] = values(seen[email_t])
    [sms_job] = values(seen[sms_t])
    await produce(
        bootstrap,
        status_t,
        status(str(uuid.uuid4()), "delivered"),  # a job the router never made
        status("\x00" * 8, "delivered"),  # nor this one
        b"not a status",
        # A provider's text with a NUL byte in it (PostgreSQL's text cannot hold one).
        status(job["job_id"], "bounced", detail="550 no such user\x00\x07"),
        status(sms_job["job_id"], "delivered", permanent=False, detail="opt_out"),  # STOP
    )
    seen = await collect(bootstrap, [dlq_t], until=lambda s: len(s[dlq_t]) >= 1, settle=1.0)
    assert [r.value for r in seen[dlq_t]] == [b"not a status"]
    for _ in range(50):
        listed = cli_ok(env, "optout", "list")
        if "dave@example.com" in listed and "+14155550166" in listed:
            break
        await asyncio.sleep(0.1)
    opted = cli_ok(env, "optout", "list")
    assert "email  dave@example.com" in opted and "sms  +14155550166" in opted
    await produce(bootstrap, env["ROUTER_TOPIC_ALERTS"], alert("second", "dave", "warning"))
    seen = await collect(
        bootstrap, [decisions_t], until=lambda s: len(s[decisions_t]) >= 4, settle=0.5
    )
    second = [d for d in values(seen[decisions_t]) if d["event_id"] == "second"]
    assert [(d["outcome"], d["reason"]) for d in second] == [("skipped", "opted_out")] * 2
    assert '"status_for_unknown_job"' in router.log()


@dataclass
class InProcess:
    """The worker in this process, on the real broker and database, with a fixed clock;
    the user has an SMS and an email method and prefers SMS."""

    settings: Settings
    store: PgStore
    worker: Worker
    mail: ContactMethod

    async def page(self, event_id: str, user: str, title: str | None = None) -> JobRow:
        """An error page for ``user``; its one job (the SMS)."""
        record = SourceRecord("alerts", 0, 1, None, None, alert(event_id, user, title=title), ())
        await self.worker.handle([record])
        _, [job], _ = await self.store.trail(event_id)
        return job

    async def emailed(self) -> list[dict[str, Any]]:
        email_t = self.settings.topic_email
        seen = await collect(
            self.settings.kafka_bootstrap_servers, [email_t], until=lambda s: len(s[email_t]) >= 1
        )
        return values(seen[email_t])


@contextlib.asynccontextmanager
async def in_process(
    router_env: dict[str, str], user: str, number: str, now: datetime, **extra: str
) -> AsyncIterator[InProcess]:
    values_ = {k.removeprefix("ROUTER_").lower(): v for k, v in router_env.items()}
    settings = Settings(**{**values_, "topic_partitions": 1, **extra})
    await ensure_topics(settings)
    store = await PgStore.connect(settings.database_url.get_secret_value())
    producer = create_producer(settings)
    await producer.start()
    try:
        await store.add_user(user, None, "UTC")
        await store.update_user(user, {"delivery_mode": "preferred"})
        await store.add_contact_method(NewContactMethod(user, "sms", number, verified=True))
        mail = await store.add_contact_method(
            NewContactMethod(user, "email", f"{user}@example.com", verified=True)
        )
        worker = Worker(
            store,
            ProducerPublisher(producer, settings.kafka_max_request_bytes),
            settings,
            clock=lambda: now,
        )
        yield InProcess(settings, store, worker, mail)
    finally:
        await producer.stop()
        await store.close()


async def test_a_job_without_a_status_in_time_fails_over_on_the_test_clock(
    router_env: dict[str, str],
) -> None:
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    async with in_process(
        router_env, "erin", "+14155550188", now, failover_timeout_sms="120s"
    ) as rig:
        await rig.page("quiet-sms", "erin")
        timeouts = rig.settings.failover_timeouts()
        assert timeouts == {"sms": 120.0}
        store, worker = rig.store, rig.worker
        assert await fail_silent_jobs(store, worker, timeouts, now + timedelta(seconds=119)) == []
        [silent] = await fail_silent_jobs(store, worker, timeouts, now + timedelta(seconds=120))
        assert silent.transport == "sms"
        assert await fail_silent_jobs(store, worker, timeouts, now + timedelta(hours=1)) == []
    [job] = await rig.emailed()
    assert (job["event_id"], job["contact_method_id"]) == ("quiet-sms", rig.mail.id)


async def test_a_failover_interrupted_by_a_crash_is_taken_by_the_next_sweep(
    router_env: dict[str, str],
) -> None:
    now = datetime.now(UTC)
    async with in_process(router_env, "fay", "+14155550199", now) as rig:
        # Its title holds a NUL byte, which the trail keeps as it came (JSON: \u0000).
        sms = await rig.page("crashy", "fay", title="db\x00 down")
        # The status handler recorded the failure, then the process died.
        report = DeliveryStatus.model_validate_json(status(sms.job_id, "failed"))
        await rig.store.record_statuses([(status_row(report, sms), "failed", True)])
        [orphan] = await repair_failovers(rig.store, rig.worker, now, grace_seconds=0)
        assert orphan.job_id == sms.job_id
        assert await repair_failovers(rig.store, rig.worker, now, grace_seconds=0) == []
    [job] = await rig.emailed()
    assert (job["event_id"], job["contact_method_id"]) == ("crashy", rig.mail.id)
