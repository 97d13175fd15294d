"""`router run` against a real broker and real PostgreSQL, driven as an operator would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from tests.integration.conftest import (
    RouterProcess,
    add_contact,
    cli_ok,
    collect,
    database_refused,
    produce,
    run_cli,
    wait_for_topics,
)

OUTPUTS = ("email", "sms", "webhook", "decisions", "dlq")


def topics(env: dict[str, str]) -> dict[str, str]:
    return {name: env[f"ROUTER_TOPIC_{name.upper()}"] for name in ("alerts", *OUTPUTS)}


def alert(event_id: str, users: list[str]) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "kind": "down",
            "severity": "critical",
            "user_ids": users,
            "title": f"{event_id} is down",
        }
    ).encode()


async def publish_when_ready(bootstrap: str, t: dict[str, str], *values: bytes) -> None:
    """Publish alerts once the router has created its topics at start-up."""
    await wait_for_topics(bootstrap, [t["alerts"]])
    await produce(bootstrap, t["alerts"], *values)


def add_alice(env: dict[str, str]) -> dict[str, str]:
    """alice with one method per transport, through the directory commands; returns ids."""
    cli_ok(env, "users", "add", "alice", "--timezone", "Europe/Berlin")
    values = {
        "email": "Alice@Example.com",
        "sms": "+1 415 555 1234",
        "webhook": "https://hooks.example.com/alice",
    }
    return {t: add_contact(env, "alice", t, v).id for t, v in values.items()}


async def test_event_for_user_with_three_methods_yields_one_job_per_topic(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    ids = add_alice(router_env)
    router = start_router(router_env)
    t = topics(router_env)
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    await publish_when_ready(bootstrap, t, alert("e1", ["alice"]))
    seen = await collect(
        bootstrap, [t[o] for o in OUTPUTS], until=lambda s: len(s[t["decisions"]]) >= 3
    )
    for transport, to in (
        ("email", "alice@example.com"),
        ("sms", "+14155551234"),
        ("webhook", "https://hooks.example.com/alice"),
    ):
        [record] = seen[t[transport]]
        job = json.loads(record.value)
        assert (job["to"], job["transport"], job["event_id"]) == (to, transport, "e1")
        assert record.key == ids[transport].encode(), "jobs are keyed by contact_method_id"
    decisions = [json.loads(r.value) for r in seen[t["decisions"]]]
    assert sorted((d["transport"], d["outcome"]) for d in decisions) == [
        ("email", "sent"),
        ("sms", "sent"),
        ("webhook", "sent"),
    ]
    assert seen[t["dlq"]] == []
    assert router.stop() == 0, router.log()


async def test_bad_messages_go_to_the_dlq_unchanged_and_the_next_event_is_routed(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    add_alice(router_env)
    start_router(router_env)
    t = topics(router_env)
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    not_json = b"\x00\x01 definitely not json"
    invalid = json.dumps({"event_id": "bad", "kind": "down", "severity": "urgent"}).encode()
    await publish_when_ready(bootstrap, t, not_json, invalid, alert("good", ["alice"]))
    seen = await collect(
        bootstrap,
        [t["dlq"], t["decisions"]],
        until=lambda s: len(s[t["dlq"]]) >= 2 and len(s[t["decisions"]]) >= 3,
    )
    by_value = {r.value: dict((k, v.decode()) for k, v in r.headers) for r in seen[t["dlq"]]}
    assert set(by_value) == {not_json, invalid}
    assert by_value[not_json]["router.dlq.reason"] == "not_json"
    assert by_value[invalid]["router.dlq.reason"] == "schema_invalid"
    for headers in by_value.values():
        assert headers["__connect.errors.topic"] == t["alerts"]
        assert headers["kafka_dlt-original-topic"] == t["alerts"]
        assert headers["__connect.errors.offset"].isdigit()
        assert headers["__connect.errors.partition"].isdigit()
        assert headers["__connect.errors.exception.class.name"]
    assert {json.loads(r.value)["event_id"] for r in seen[t["decisions"]]} == {"good"}


async def test_a_nul_in_an_alert_key_is_refused_and_the_users_trail_still_reads(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    """A NUL byte in ``dedup_key`` (the alert key: a page's key in PostgreSQL text, and in
    the trail's decisions, which ``router trail --user`` reads as JSON) or in a PageAck is
    refused as ``schema_invalid`` and kept on the DLQ, as one in an id is. Routed, its skip
    decision for "ghost" made ``router trail --user`` fail for every user without a job in
    that event, for as long as the trail kept it; the ack was dead-lettered as
    ``routing_failed``, PostgreSQL's refusal."""
    env = {**router_env, "ROUTER_TOPIC_ACKS": router_env["ROUTER_TOPIC_ALERTS"] + ".acks"}
    add_alice(env)
    start_router(env)
    t = topics(env)
    bootstrap = env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    nul_key = json.loads(alert("nul-key", ["alice", "ghost"]))
    nul_key["dedup_key"] = "db\x00primary"
    refused = json.dumps(nul_key).encode()
    nul_ack = json.dumps(
        {"alert_key": "x\x00y", "action": "ack", "source": "t", "at": "2026-01-01T00:00:00Z"}
    ).encode()
    await wait_for_topics(bootstrap, [env["ROUTER_TOPIC_ACKS"]])
    await produce(bootstrap, env["ROUTER_TOPIC_ACKS"], nul_ack)
    await publish_when_ready(bootstrap, t, refused, alert("after", ["alice", "ghost"]))
    seen = await collect(
        bootstrap,
        [t["dlq"], t["decisions"]],
        until=lambda s: len(s[t["dlq"]]) >= 2 and len(s[t["decisions"]]) >= 4,
    )
    letters = {r.value: dict((k, v.decode()) for k, v in r.headers) for r in seen[t["dlq"]]}
    assert set(letters) == {refused, nul_ack}
    assert {h["router.dlq.reason"] for h in letters.values()} == {"schema_invalid"}
    assert {json.loads(r.value)["event_id"] for r in seen[t["decisions"]]} == {"after"}
    for user in ("alice", "ghost"):
        pages = cli_ok(env, "trail", "--user", user, "--since", "1h")
        assert "after" in pages and "nul-key" not in pages


async def test_event_for_an_unknown_user_is_skipped_without_jobs(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    start_router(router_env)
    t = topics(router_env)
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    await publish_when_ready(bootstrap, t, alert("e-ghost", ["ghost"]))
    seen = await collect(
        bootstrap, [t[o] for o in OUTPUTS], until=lambda s: len(s[t["decisions"]]) >= 1
    )
    [decision] = [json.loads(r.value) for r in seen[t["decisions"]]]
    assert (decision["user_id"], decision["outcome"], decision["reason"]) == (
        "ghost",
        "skipped",
        "unknown_user",
    )
    assert decision["contact_method_id"] is None and decision["job_id"] is None
    assert all(seen[t[o]] == [] for o in ("email", "sms", "webhook", "dlq"))


@pytest.mark.long
async def test_a_restarted_router_resumes_after_the_committed_offsets(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    add_alice(router_env)
    t = topics(router_env)
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    first = start_router(router_env)
    await publish_when_ready(bootstrap, t, alert("before", ["alice"]))
    await collect(
        bootstrap, [t["decisions"]], until=lambda s: len(s[t["decisions"]]) >= 3, settle=0
    )
    assert first.stop() == 0, first.log()

    start_router(router_env)
    await produce(bootstrap, t["alerts"], alert("after", ["alice"]))
    seen = await collect(
        bootstrap, [t["email"]], until=lambda s: len(s[t["email"]]) >= 2, settle=2.0
    )
    assert sorted(json.loads(r.value)["event_id"] for r in seen[t["email"]]) == ["after", "before"]


def test_missing_topics_stop_the_router_with_a_clear_message(router_env: dict[str, str]) -> None:
    env = {**router_env, "ROUTER_CREATE_TOPICS": "false"}
    done = run_cli(env, "run")
    assert done.returncode == 3
    assert "Topics missing" in done.stderr and "ROUTER_CREATE_TOPICS=true" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unmigrated_database_stops_the_router_with_a_clear_message(
    router_env: dict[str, str],
    empty_database_url: str,
) -> None:
    done = run_cli({**router_env, "ROUTER_DATABASE_URL": empty_database_url}, "run")
    assert done.returncode == 3
    assert "router db migrate" in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_database_outage_mid_run_delays_routing_but_loses_nothing(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
    postgres_url: str,
) -> None:
    add_alice(router_env)
    router = start_router(router_env)
    t = topics(router_env)
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    await publish_when_ready(bootstrap, t, alert("before", ["alice"]))
    await collect(
        bootstrap, [t["decisions"]], until=lambda s: len(s[t["decisions"]]) >= 3, settle=0
    )

    async with database_refused(postgres_url, router_env["ROUTER_DATABASE_URL"]):
        await produce(bootstrap, t["alerts"], alert("during", ["alice"]))
        for _ in range(100):
            if "batch_failed" in router.log():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the router never reported the failed batch:\n" + router.log())

    seen = await collect(bootstrap, [t["decisions"]], until=lambda s: len(s[t["decisions"]]) >= 6)
    assert sorted({json.loads(r.value)["event_id"] for r in seen[t["decisions"]]}) == [
        "before",
        "during",
    ]
    assert "Traceback" not in router.log(), "an outage is reported in one line per retry"
    assert router.stop() == 0
