"""One record can fail only itself: poison messages on the real broker."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from tests.integration.conftest import RouterProcess, cli_ok, collect, produce, wait_for_topics
from tests.integration.test_end_to_end import add_alice, alert, topics


async def test_a_5_mb_alert_is_one_cut_dead_letter_and_the_alert_behind_it_is_routed_once(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    add_alice(router_env)
    t = topics(router_env)
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    router = start_router(router_env)  # default sizes: 256 KiB events, 2 MiB requests
    await wait_for_topics(bootstrap, [t["alerts"]])
    huge = b'{"event_id": "huge", "title": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    try:
        await producer.send_and_wait(t["alerts"], huge, partition=0)
        await producer.send_and_wait(t["alerts"], alert("behind", ["alice"]), partition=0)
        sent_at = time.time()
    finally:
        await producer.stop()

    seen = await collect(
        bootstrap,
        [t["dlq"], t["decisions"]],
        until=lambda s: len(s[t["decisions"]]) >= 3 and len(s[t["dlq"]]) >= 1,
        timeout=30,
        settle=3,
    )
    [letter] = seen[t["dlq"]]
    headers = {k: v.decode() for k, v in letter.headers}
    assert headers["router.dlq.reason"] == "too_large"
    assert headers["router.dlq.truncated"] == "true"
    assert headers["router.dlq.original_size"] == str(len(huge))
    assert headers["router.dlq.original_sha256"] == hashlib.sha256(huge).hexdigest()
    assert huge.startswith(letter.value) and 0 < len(letter.value) < 2 * 1024 * 1024
    decisions = [json.loads(r.value) for r in seen[t["decisions"]]]
    assert sorted(d["event_id"] for d in decisions) == ["behind"] * 3, "routed once"
    routed_after = max(r.timestamp for r in seen[t["decisions"]]) / 1000 - sent_at
    print(f"\nthe alert behind the 5 MB one was routed {routed_after:.2f} s after it was sent")
    assert "batch_failed" not in router.log()


async def test_non_finite_numbers_and_dates_out_of_range_are_one_dead_letter_each(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    """NaN/Infinity anywhere (the trail's PostgreSQL json refuses them) and an
    ``occurred_at`` the quiet-hours window cannot compute with end as exactly one
    dead letter each, never as jobs and a decision *and* a dead letter."""
    add_alice(router_env)
    cli_ok(router_env, "users", "update", "alice", "--quiet-hours", "22:00-07:00")
    t = topics(router_env)
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    router = start_router(router_env)
    await wait_for_topics(bootstrap, [t["alerts"]])

    def with_extra(event_id: str, **extra: object) -> bytes:
        base = json.loads(alert(event_id, ["alice"]))
        return json.dumps({**base, **extra}).encode()

    bad = {
        "nan": with_extra("nan", note=float("nan")),
        "inf": with_extra("inf", labels={}, extra=[1, float("inf")]),
        "late": with_extra("late", severity="warning", occurred_at="9999-12-31T23:59:59Z"),
        "early": with_extra("early", occurred_at="0001-01-01T00:00:00+14:00"),
    }
    assert b"NaN" in bad["nan"] and b"Infinity" in bad["inf"]  # what Python's json writes
    await produce(bootstrap, t["alerts"], *bad.values(), alert("behind", ["alice"]))

    seen = await collect(
        bootstrap,
        [t["dlq"], t["decisions"], t["email"], t["sms"], t["webhook"]],
        until=lambda s: len(s[t["dlq"]]) >= 4 and len(s[t["decisions"]]) >= 3,
        timeout=30,
        settle=3,
    )
    reasons = sorted(dict(r.headers)["router.dlq.reason"].decode() for r in seen[t["dlq"]])
    assert reasons == ["not_json", "not_json", "schema_invalid", "schema_invalid"]
    decided = [json.loads(r.value)["event_id"] for r in seen[t["decisions"]]]
    assert decided == ["behind"] * 3, "the refused events have no decision"
    jobs = [
        json.loads(r.value)["event_id"]
        for topic in ("email", "sms", "webhook")
        for r in seen[t[topic]]
    ]
    assert set(jobs) <= {"behind"}, "the refused events have no job"
    log = router.log()
    assert "batch_failed" not in log and "routing_failed" not in log
