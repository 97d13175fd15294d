"""Benchmark: events per second through `router run`, next to a bare aiokafka loop.

Both read the same alerts from one topic and write, per event, three jobs and
three decisions (the router: one email, one SMS and one webhook method per
user), waiting for the broker's acks before committing. The rate is measured
between the broker timestamps of the first and last output record, so start-up
and group joins do not count. Uses embedded Tansu and PostgreSQL unless
ROUTER_KAFKA_BOOTSTRAP_SERVERS / ROUTER_DATABASE_URL are set.

    .venv/bin/python bench/throughput.py [--events 20000] [--users 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from router.embedded import EmbeddedKafka, EmbeddedPostgres
from router.migrate import migrate
from router.settings import Settings
from router.store import PgStore
from router.topics import ensure_topics

PARTITIONS = 6


async def seed(url: str, users: int) -> None:
    store = await PgStore.connect(url)
    try:
        rows = []
        for n in range(users):
            base = dict.fromkeys(("is_primary", "verified", "disabled", "muted"), False)
            flags = dict.fromkeys(
                (
                    "suppress_up",
                    "suppress_down",
                    "suppress_first",
                    "suppress_diagnostic",
                    "suppress_all",
                ),
                False,
            )
            for transport, value in (
                ("email", f"u{n}@example.com"),
                ("sms", f"+1415{200 + n // 10000:03d}{n % 10000:04d}"),
                ("webhook", f"https://hooks.example.com/{n}"),
            ):
                rows.append(
                    (
                        f"user{n}",
                        transport,
                        value,
                        None,
                        base["is_primary"],
                        True,
                        False,
                        False,
                        None,
                        *flags.values(),
                        None,
                        None,
                        {},
                        {},
                        None,
                        {},
                        [],
                    )
                )
        await store.import_contact_methods(rows, create_users=True)
    finally:
        await store.close()


async def produce_alerts(bootstrap: str, topic: str, events: int, users: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        batch = []
        for i in range(events):
            alert = {
                "event_id": f"bench-{i}",
                "kind": "down",
                "severity": "critical",
                "user_ids": [f"user{random.randrange(users)}"],
                "title": f"check {i} failed",
                "body": "connection refused from 3 probes",
            }
            batch.append(await producer.send(topic, json.dumps(alert).encode()))
        await asyncio.gather(*batch)
    finally:
        await producer.stop()


async def rate(bootstrap: str, topic: str, expected: int, give_up_after: float) -> float:
    """Output records per second between the first and last record's timestamps."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen, first, last = 0, None, None
        deadline = time.monotonic() + give_up_after
        while seen < expected:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"only {seen} of {expected} records on {topic} in {give_up_after}s"
                )
            for records in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
                for record in records:
                    seen += 1
                    first = record.timestamp if first is None else min(first, record.timestamp)
                    last = record.timestamp if last is None else max(last, record.timestamp)
        assert first is not None
        assert last is not None
        return seen / max((last - first) / 1000, 0.001)
    finally:
        await consumer.stop()


async def bare_loop(bootstrap: str, source: str, sink: str, events: int) -> None:
    """The yardstick: consume a batch, produce six records per event, await acks, commit."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id="bench-bare",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await consumer.start()
    await producer.start()
    try:
        done = 0
        while done < events:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            acks = []
            for records in batches.values():
                for record in records:
                    for _ in range(6):
                        acks.append(await producer.send(sink, record.value, key=record.key))
                    done += 1
            await asyncio.gather(*acks)
            await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


async def run(args: argparse.Namespace, bootstrap: str, url: str) -> None:
    env = {
        "kafka_bootstrap_servers": bootstrap,
        "database_url": url,
        "kafka_enable_idempotence": os.environ.get("ROUTER_KAFKA_ENABLE_IDEMPOTENCE", "false"),
        "create_topics": True,
        "topic_partitions": PARTITIONS,
        "topic_alerts": "bench.alerts",
        "topic_decisions": "bench.decisions",
        "group_id": "bench-router",
    }
    settings = Settings(**env)  # type: ignore[arg-type]
    await migrate(url)
    await ensure_topics(settings)
    bare = Settings(**{**env, "topic_alerts": "bench.bare.in", "topic_decisions": "bench.bare.out"})  # type: ignore[arg-type]
    await ensure_topics(bare)
    await seed(url, args.users)
    print(
        f"{args.events} events, {args.users} users x 3 methods, {PARTITIONS} partitions, "
        f"{os.cpu_count()} CPUs"
    )

    await produce_alerts(bootstrap, "bench.bare.in", args.events, args.users)
    loop_task = asyncio.create_task(
        bare_loop(bootstrap, "bench.bare.in", "bench.bare.out", args.events)
    )
    bare_rate = await rate(bootstrap, "bench.bare.out", 6 * args.events, 600) / 6
    await loop_task
    print(f"bare aiokafka loop: {bare_rate:8.0f} events/s")

    await produce_alerts(bootstrap, settings.topic_alerts, args.events, args.users)
    router_env = {
        **os.environ,
        **{
            f"ROUTER_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in env.items()
        },
        "ROUTER_LOG_LEVEL": "WARNING",
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "run", env=router_env
    )
    try:
        router_rate = await rate(bootstrap, settings.topic_decisions, 3 * args.events, 600) / 3
    finally:
        child.send_signal(signal.SIGTERM)
        await asyncio.wait_for(child.wait(), 60)
    print(
        f"router run:         {router_rate:8.0f} events/s  "
        f"({100 * router_rate / bare_rate:.0f}% of the bare loop)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp:
        kafka = postgres = None
        bootstrap = os.environ.get("ROUTER_KAFKA_BOOTSTRAP_SERVERS")
        url = os.environ.get("ROUTER_DATABASE_URL")
        try:
            if not bootstrap:
                kafka = EmbeddedKafka(log_path=Path(tmp) / "tansu.log").start()
                bootstrap = kafka.bootstrap_servers
            if not url:
                postgres = EmbeddedPostgres(Path(tmp) / "pg").start()
                url = postgres.url
            asyncio.run(run(args, bootstrap, url))
        finally:
            if kafka:
                kafka.stop()
            if postgres:
                postgres.stop()


if __name__ == "__main__":
    main()
