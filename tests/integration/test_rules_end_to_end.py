"""Every reason code through Kafka and PostgreSQL, with the directory set up by the CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from router.db.store import PgStore
from tests.integration.conftest import (
    RouterProcess,
    add_contact,
    cli_ok,
    cli_ok_each,
    collect,
    produce,
    run_cli,
    wait_for_topics,
)

NOW = datetime.now(UTC)


def cli(env: dict[str, str], *args: str) -> None:
    cli_ok(env, *args)


def method(env: dict[str, str], user: str, transport: str, value: str, *extra: str) -> str:
    return add_contact(env, user, transport, value, "--verified", *extra).id


def alert(
    event_id: str, severity: str = "warning", kind: str = "down", **audience: object
) -> bytes:
    audience = audience or {"user_ids": [event_id.split(":")[0]]}
    return json.dumps(
        {
            "event_id": event_id,
            "kind": kind,
            "severity": severity,
            "title": event_id,
            "occurred_at": NOW.isoformat(),
            **audience,
        }
    ).encode()


def build_directory(env: dict[str, str]) -> None:
    users = (
        "disabled",
        "optout",
        "unverified",
        "muted",
        "muted_until",
        "suppressed",
        "minsev",
        "quiet",
        "pref",
        "rate",
        "empty",
        "oncall",
        "dup",
    )
    cli_ok_each(env, [("users", "add", user) for user in users])

    # Each user's methods and settings, one chain per user; the chains run side by side.
    def disabled() -> None:
        cli(
            env,
            "contacts",
            "update",
            method(env, "disabled", "email", "d@example.com"),
            "--disabled",
        )

    def optout() -> None:
        method(env, "optout", "sms", "+14155550101")
        cli(
            env,
            "optout",
            "add",
            "--transport",
            "sms",
            "--address",
            "(415) 555-0101",
            "--region",
            "US",
        )

    def unverified() -> None:
        done = run_cli(
            env,
            "contacts",
            "add",
            "--user",
            "unverified",
            "--transport",
            "email",
            "--value",
            "u@example.com",
        )
        assert done.returncode == 0

    def muted() -> None:
        cli(env, "contacts", "mute", method(env, "muted", "email", "m@example.com"))
        until = (NOW + timedelta(hours=1)).isoformat()
        cli(
            env,
            "contacts",
            "mute",
            method(env, "muted_until", "email", "mu@example.com"),
            "--until",
            until,
        )

    def suppressed() -> None:
        cli(
            env,
            "contacts",
            "update",
            method(env, "suppressed", "email", "s@example.com"),
            "--suppress",
            "down",
        )
        cli(
            env,
            "contacts",
            "update",
            method(env, "minsev", "email", "ms@example.com"),
            "--min-severity",
            "critical",
        )

    def quiet() -> None:
        method(env, "quiet", "email", "q@example.com")
        # A two-hour window around the test's own moment, on the user's clock.
        local = NOW.astimezone(ZoneInfo("Asia/Kolkata"))
        window = f"{(local - timedelta(hours=1)):%H:%M}-{(local + timedelta(hours=1)):%H:%M}"
        cli(env, "users", "update", "quiet", "--timezone", "Asia/Kolkata", "--quiet-hours", window)

    def pref() -> None:
        method(env, "pref", "sms", "+14155550102")
        method(env, "pref", "email", "p@example.com", "--primary")
        cli(
            env,
            "users",
            "update",
            "pref",
            "--delivery-mode",
            "preferred",
            "--channel-order",
            "email,sms",
        )

    def others() -> None:
        method(env, "rate", "sms", "+14155550103")
        method(env, "dup", "email", "dup@example.com")

    def oncall() -> None:
        method(env, "oncall", "email", "oc@example.com")
        hour = timedelta(hours=1)
        cli(
            env,
            "schedules",
            "add-shift",
            "day",
            "--user",
            "oncall",
            "--start",
            (NOW - hour).isoformat(),
            "--end",
            (NOW + hour).isoformat(),
        )
        cli(
            env,
            "schedules",
            "add-shift",
            "night",
            "--user",
            "oncall",
            "--start",
            (NOW - 5 * hour).isoformat(),
            "--end",
            (NOW - 4 * hour).isoformat(),
        )

    chains = (disabled, optout, unverified, muted, suppressed, quiet, pref, others, oncall)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for chain in [pool.submit(c) for c in chains]:
            chain.result()


@pytest.mark.long
async def test_every_reason_code_through_kafka_and_postgres(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    env = {**router_env, "ROUTER_REQUIRE_VERIFIED": "true", "ROUTER_RATE_LIMIT_SMS_COUNT": "1"}
    build_directory(env)
    start_router(env)
    bootstrap, alerts = env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"], env["ROUTER_TOPIC_ALERTS"]
    decisions_topic = env["ROUTER_TOPIC_DECISIONS"]
    await wait_for_topics(bootstrap, [alerts])
    events = [
        alert("disabled:1"),
        alert("optout:1"),
        alert("unverified:1"),
        alert("muted:1"),
        alert("muted_until:1"),
        alert("suppressed:1"),
        alert("minsev:1"),
        alert("quiet:1"),
        alert("pref:1"),
        alert("rate:1"),
        alert("empty:1"),
        alert("ghost:1", user_ids=["ghost"]),
        alert("oncall:1", schedule_id="day"),
        alert("night:1", schedule_id="night"),
        alert("nope:1", schedule_id="nope"),
        alert("dup:1"),
    ]
    await produce(bootstrap, alerts, *events)
    # Separate messages after the first ones are routed: a second send to the
    # rate-limited number, and a re-sent event.
    await collect(
        bootstrap,
        [decisions_topic],
        until=lambda s: (
            {"dup:1", "rate:1"} <= {json.loads(r.value)["event_id"] for r in s[decisions_topic]}
        ),
        settle=0,
    )
    await produce(bootstrap, alerts, alert("rate:2"), alert("dup:1"))
    seen = await collect(
        bootstrap, [decisions_topic], until=lambda s: len(s[decisions_topic]) >= len(events) + 1 + 2
    )
    reasons: dict[str, list[str | None]] = {}
    for record in seen[decisions_topic]:
        decision = json.loads(record.value)
        reasons.setdefault(decision["event_id"], []).append(decision["reason"])
    assert reasons == {
        "disabled:1": ["disabled"],
        "optout:1": ["opted_out"],
        "unverified:1": ["unverified"],
        "muted:1": ["muted"],
        "muted_until:1": ["muted"],
        "suppressed:1": ["suppressed"],
        "minsev:1": ["below_min_severity"],
        "quiet:1": ["quiet_hours"],
        "pref:1": ["not_preferred", None],
        "rate:1": [None],
        "rate:2": ["rate_limited"],
        "empty:1": ["no_contact_methods"],
        "ghost:1": ["unknown_user"],
        "oncall:1": [None],
        "night:1": ["no_one_on_call"],
        "nope:1": ["unknown_schedule"],
        "dup:1": [None, "duplicate_event"],
    }


async def until_opt_out_is(env: dict[str, str], present: bool, address: str) -> None:
    store = await PgStore.connect(env["ROUTER_DATABASE_URL"])
    try:
        for _ in range(100):
            if (("sms", address) in await store.list_opt_outs()) == present:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"opt-out of {address} never became {present}")
    finally:
        await store.close()


async def test_opt_out_on_the_topic_applies_without_restart_and_opt_in_restores(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    cli(router_env, "users", "add", "alice")
    method(router_env, "alice", "sms", "+14155550199")
    start_router(router_env)
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    alerts, contact_events = (
        router_env["ROUTER_TOPIC_ALERTS"],
        router_env["ROUTER_TOPIC_CONTACT_EVENTS"],
    )
    decisions_topic = router_env["ROUTER_TOPIC_DECISIONS"]
    await wait_for_topics(bootstrap, [alerts, contact_events])

    def change(kind: str) -> bytes:
        return json.dumps(
            {"type": kind, "transport": "sms", "address": "+1 (415) 555-0199"}
        ).encode()

    await produce(bootstrap, contact_events, change("opt_out"))
    await until_opt_out_is(router_env, True, "+14155550199")
    await produce(bootstrap, alerts, alert("alice:1"))
    await collect(
        bootstrap, [decisions_topic], until=lambda s: len(s[decisions_topic]) >= 1, settle=0
    )
    await produce(bootstrap, contact_events, change("opt_in"), b"not an opt-out")
    await until_opt_out_is(router_env, False, "+14155550199")
    await produce(bootstrap, alerts, alert("alice:2"))
    topics = [decisions_topic, router_env["ROUTER_TOPIC_SMS"], router_env["ROUTER_TOPIC_DLQ"]]
    seen = await collect(bootstrap, topics, until=lambda s: len(s[decisions_topic]) >= 2)
    # Decisions are keyed by event id, so the two may sit on different partitions.
    assert sorted(
        (json.loads(r.value)["event_id"], json.loads(r.value)["reason"] or "sent")
        for r in seen[decisions_topic]
    ) == [("alice:1", "opted_out"), ("alice:2", "sent")]
    assert [json.loads(r.value)["event_id"] for r in seen[router_env["ROUTER_TOPIC_SMS"]]] == [
        "alice:2"
    ]
    [dead] = seen[router_env["ROUTER_TOPIC_DLQ"]]
    assert dead.value == b"not an opt-out"
    assert dict(dead.headers)["__connect.errors.topic"] == contact_events.encode()


async def test_two_routers_in_one_group_share_one_rate_limit(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    env = {**router_env, "ROUTER_RATE_LIMIT_SMS_COUNT": "3"}
    cli(env, "users", "add", "alice")
    method(env, "alice", "sms", "+14155550198")
    first, second = start_router(env), start_router(env)
    bootstrap, alerts = env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"], env["ROUTER_TOPIC_ALERTS"]
    await wait_for_topics(bootstrap, [alerts])
    for _ in range(200):  # both must own partitions, or this proves nothing
        if all(
            "assigned to partitions: (TopicPartition(topic='" + alerts in r.log()
            for r in (first, second)
        ):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(
            "the two routers never both owned partitions:\n"
            + "\n".join(
                line
                for r in (first, second)
                for line in r.log().splitlines()
                if "partitions" in line
            )
        )
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for i in range(9):  # one event per partition in turn, so both routers get some
            await producer.send_and_wait(alerts, alert(f"alice:{i}"), partition=i % 3)
    finally:
        await producer.stop()
    decisions_topic = env["ROUTER_TOPIC_DECISIONS"]
    seen = await collect(
        bootstrap,
        [decisions_topic, env["ROUTER_TOPIC_SMS"]],
        until=lambda s: len(s[decisions_topic]) >= 9,
    )
    reasons = [json.loads(r.value)["reason"] for r in seen[decisions_topic]]
    assert reasons.count(None) == 3 and reasons.count("rate_limited") == 6
    assert len(seen[env["ROUTER_TOPIC_SMS"]]) == 3
    assert "event_routed" in first.log() and "event_routed" in second.log()
