"""One record can fail only itself: poison messages on the real broker."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from tests.integration.conftest import RouterProcess, collect, wait_for_topics
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
