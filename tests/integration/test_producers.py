"""What real producers write: compressed batches, batches the client cannot read, tombstones."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaProducer

from tests.integration.conftest import RouterProcess, add_contact, cli_ok, collect, wait_for_topics
from tests.integration.test_end_to_end import alert, topics

CODECS = ("gzip", "snappy", "lz4", "zstd")


def add_bob(env: dict[str, str]) -> None:
    """bob with one email method: one job and one decision per routed event."""
    cli_ok(env, "users", "add", "bob")
    add_contact(env, "bob", "email", "bob@example.com")


async def send(
    bootstrap: str,
    topic: str,
    value: bytes | None,
    *,
    partition: int = 0,
    compression: str | None = None,
    key: bytes | None = None,
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, compression_type=compression
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


def routed_event_ids(seen: dict[str, list]) -> list[str]:  # type: ignore[type-arg]
    return sorted(json.loads(r.value)["event_id"] for r in seen)


async def test_every_kafka_codec_is_read_and_each_alert_routed_once(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    add_bob(router_env)
    t = topics(router_env)
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    router = start_router(router_env)
    await wait_for_topics(bootstrap, [t["alerts"]])
    for codec in CODECS:
        await send(bootstrap, t["alerts"], alert(codec, ["bob"]), compression=codec)
    await send(bootstrap, t["alerts"], alert("plain", ["bob"]))

    seen = await collect(
        bootstrap, [t["email"], t["dlq"]], until=lambda s: len(s[t["email"]]) >= 5, settle=2
    )
    assert routed_event_ids(seen[t["email"]]) == sorted([*CODECS, "plain"])
    assert seen[t["dlq"]] == []
    assert "compression" not in router.log()


def without_codec_library(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """``env`` for a router that cannot import cramjam: it has gzip only, like a client
    older than the codec its producers switched to."""
    hidden = tmp_path / "no-codecs"
    hidden.mkdir()
    (hidden / "cramjam.py").write_text("raise ImportError('hidden by the test')\n")
    return {
        **env,
        "PYTHONPATH": f"{hidden}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "ROUTER_KAFKA_COMPRESSION": "gzip",  # what it can still write
    }


async def test_a_partition_the_client_cannot_decode_is_paused_and_the_others_keep_routing(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
    tmp_path: Path,
) -> None:
    add_bob(router_env)
    t = topics(router_env)
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    router = start_router(without_codec_library(router_env, tmp_path))
    await wait_for_topics(bootstrap, [t["alerts"]])
    await send(bootstrap, t["alerts"], alert("p0-before", ["bob"]), partition=0)
    await send(bootstrap, t["alerts"], alert("p0-snappy", ["bob"]), compression="snappy")
    await send(bootstrap, t["alerts"], alert("p0-behind", ["bob"]), partition=0)
    # Let the worker meet the bad batch several times over, then feed the others.
    await asyncio.sleep(3)
    for n in range(6):
        await send(bootstrap, t["alerts"], alert(f"p{1 + n % 2}-{n}", ["bob"]), partition=1 + n % 2)

    seen = await collect(bootstrap, [t["email"]], until=lambda s: len(s[t["email"]]) >= 7)
    assert routed_event_ids(seen[t["email"]]) == sorted(
        ["p0-before", *(f"p{1 + n % 2}-{n}" for n in range(6))]
    )
    log = router.log()
    lines = [line for line in log.splitlines() if "partition_undecodable" in line]
    assert len(lines) == 1, log
    incident = json.loads(lines[0])
    assert (incident["topic"], incident["partition"]) == (t["alerts"], 0)
    assert "snappy" in incident["error"] and incident["hint"]
    assert "Traceback" not in log
    assert "no suitable compression library" not in log


async def test_null_and_empty_values_end_as_one_dead_letter_each_on_both_input_topics(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    add_bob(router_env)
    t = topics(router_env)
    contact_events = router_env["ROUTER_TOPIC_CONTACT_EVENTS"]
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    router = start_router(router_env)
    await wait_for_topics(bootstrap, [t["alerts"], contact_events])
    odd_key = b"\xff\xfe not utf-8"
    for topic in (t["alerts"], contact_events):
        await send(bootstrap, topic, None, key=b"tombstone")
        await send(bootstrap, topic, b"", key=odd_key)
    await send(bootstrap, t["alerts"], alert("after", ["bob"]))

    seen = await collect(
        bootstrap,
        [t["dlq"], t["email"]],
        until=lambda s: len(s[t["dlq"]]) >= 4 and len(s[t["email"]]) >= 1,
    )
    letters = [
        (dict((k, v.decode()) for k, v in r.headers), r.key, r.value) for r in seen[t["dlq"]]
    ]
    assert sorted((h["kafka_dlt-original-topic"], k) for h, k, _ in letters) == sorted(
        (topic, key) for topic in (t["alerts"], contact_events) for key in (b"tombstone", odd_key)
    )
    assert all(h["router.dlq.reason"] == "empty_value" and v == b"" for h, _, v in letters)
    assert routed_event_ids(seen[t["email"]]) == ["after"]
    assert "Traceback" not in router.log()
