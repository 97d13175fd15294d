"""Benchmark: the worker's own CPU for a batch of alerts, without a broker.

``bench/throughput.py`` measures the router as it runs: its figures move with the
machine's minute (on a shared machine one code's worker spent 123-220 µs of CPU an
event from one round to the next). This loop measures only the worker's batch path,
steadier, to compare two versions of the code: ``Worker.route`` (decode, directory,
plan, records, publish) and ``Worker.record`` (the ledger statement) over batches of
500 alerts, one email, one SMS and one webhook method per user as in the throughput
benchmark, on a real PostgreSQL with the directory read whole as ``router run`` reads
it, the collector set as ``ROUTER_GC_YOUNG_THRESHOLD`` sets it, and a producer that
builds and compresses each record batch as aiokafka would and acknowledges it at once
without sending it. The figures are medians over the batches after the first fifth:

- ``us_per_event``: the process's CPU for ``route`` and ``record`` together, per alert;
- ``route_us_per_event``: the CPU within ``route`` alone (decode, plan, records, publish);
- ``record_us_per_event``: the CPU within ``record`` alone (the ledger's arguments and
  the driver's work; PostgreSQL's own is another process's);
- ``record_wall_ms``: how long a batch's ledger statement took;
- ``reference_us_per_event``: the CPU of the throughput benchmark's reference loop's
  work (``reference_outputs``) over the same alerts, its records made and published as
  the worker's are: the two figures differ by the routing work alone.

Uses an embedded PostgreSQL unless ROUTER_DATABASE_URL is set. To compare two trees,
run each with ``PYTHONPATH=TREE``, alternating, and profile with ``py-spy record``.

    .venv/bin/python bench/handler_cpu.py [--users 1000] [--batches 100] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from throughput import alert_value, reference_directory, reference_outputs, seed

from router.db.migrate import migrate
from router.db.store import PgStore
from router.dev.embedded import EmbeddedPostgres
from router.directory.cache import CachedDirectory, DirectoryCache
from router.kafka.publish import Outgoing, ProducerPublisher, deliver
from router.logging import configure
from router.routing.dlq import SourceRecord
from router.routing.handler import Worker
from router.routing.plain import precompile
from router.settings import Settings

BATCH = 500
PARTITIONS = 6


class BuildingProducer:
    """The part of aiokafka's producer the worker's publisher uses: record batches are
    built and compressed (zstd, as the worker's) when sent, and acknowledged at once."""

    def __init__(self, batch_bytes: int) -> None:
        self._batch_bytes = batch_bytes

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(PARTITIONS))

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self._batch_bytes, DefaultRecordBatch.CODEC_ZSTD)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        batch._build()  # what aiokafka's sender does before the request
        acked = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


def alerts(first: int, users: int, rnd: random.Random) -> list[SourceRecord]:
    """A batch of critical alerts, each to one random user, as the throughput benchmark's."""
    return [
        SourceRecord(
            topic="bench.alerts",
            partition=n % PARTITIONS,
            offset=n,
            timestamp_ms=None,
            key=None,
            value=alert_value(n, rnd.randrange(users)),
            headers=(),
        )
        for n in range(first, first + BATCH)
    ]


@contextlib.contextmanager
def database() -> Iterator[str]:
    """The URL of the PostgreSQL to measure on, for the block: ROUTER_DATABASE_URL, or an
    embedded server's, started for it and stopped after."""
    url = os.environ.get("ROUTER_DATABASE_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg").start()
        try:
            yield postgres.url
        finally:
            postgres.stop()


@contextlib.asynccontextmanager
async def batch_worker(url: str, users: int) -> AsyncIterator[tuple[Worker, ProducerPublisher]]:
    """A worker on the database ``url`` (migrated, ``users`` seeded, the directory read
    whole as ``router run`` reads it, the collector set as ``ROUTER_GC_YOUNG_THRESHOLD``
    sets it) and its publisher, on a :class:`BuildingProducer`."""
    await migrate(url)
    await seed(url, users)
    settings = Settings(database_url=url)
    if settings.gc_young_threshold:
        gc.set_threshold(settings.gc_young_threshold, 10, 10)
    options = settings.routing_options()
    store = await PgStore.connect(url)
    directory = CachedDirectory(
        store,
        DirectoryCache(settings.directory_cache_users, settings.directory_cache_ttl_seconds),
        preload_users=settings.directory_preload_users,
        compile_entry=functools.partial(precompile, options=options),
    )
    try:
        await directory.start()  # returns once the directory is read whole, as in the worker
        assert directory.live, "the directory's notifications did not start"
        publisher = ProducerPublisher(
            BuildingProducer(settings.kafka_batch_bytes),
            settings.kafka_max_request_bytes,
        )
        yield Worker(directory, publisher, settings, options=options), publisher
    finally:
        await directory.close()
        await store.close()


async def measure(url: str, users: int, batches: int) -> dict[str, Any]:
    async with batch_worker(url, users) as (worker, publisher):
        rnd = random.Random(7)
        cpu: list[float] = []
        route_cpu: list[float] = []
        record_cpu: list[float] = []
        record_wall: list[float] = []
        for n in range(batches):
            records = alerts(n * BATCH, users, rnd)
            started = time.process_time()
            result = await worker.route(records)
            recording, wall = time.process_time(), time.perf_counter()
            await worker.record(result)
            record_wall.append(time.perf_counter() - wall)
            route_cpu.append(recording - started)
            record_cpu.append(time.process_time() - recording)
            cpu.append(time.process_time() - started)
            assert result.jobs == 3 * BATCH, f"batch {n}: {result.jobs} jobs"
        reference_cpu = await reference(publisher, users, batches)

    def steady(values: list[float]) -> float:
        return statistics.median(values[len(values) // 5 :])

    return {
        "us_per_event": round(steady(cpu) * 1e6 / BATCH, 1),
        "route_us_per_event": round(steady(route_cpu) * 1e6 / BATCH, 1),
        "record_us_per_event": round(steady(record_cpu) * 1e6 / BATCH, 2),
        "record_wall_ms": round(steady(record_wall) * 1000, 1),
        "reference_us_per_event": round(steady(reference_cpu) * 1e6 / BATCH, 1),
        "users": users,
        "batches": batches,
    }


async def reference(
    publisher: ProducerPublisher,
    users: int,
    batches: int,
    before: Callable[[int], None] | None = None,
) -> list[float]:
    """The throughput benchmark's reference loop's work (``reference_outputs``) over the
    same alerts, published as the worker publishes: the CPU of each batch. ``before(n)``,
    if given, is called before batch ``n`` is made, and ``before(batches)`` after the
    last while the directory is still held (``bench/cache_misses.py`` switches its count
    on and off there: dropping the directory walks every user's dicts)."""
    directory = reference_directory(users)
    # Out of the collector's sight, as the throughput benchmark's reference loop keeps
    # it and the worker its own: a full collection would walk every user's dicts.
    gc.collect()
    gc.freeze()
    topics = {"email": "bench.email", "sms": "bench.sms", "webhook": "bench.webhook"}
    rnd = random.Random(7)
    cpu: list[float] = []
    for n in range(batches):
        if before is not None:
            before(n)
        records = alerts(n * BATCH, users, rnd)
        started = time.process_time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time()))
        outgoing = [
            # Made as the worker makes its records (router.kafka.records), not by the
            # named tuple's slower __new__.
            tuple.__new__(
                Outgoing, (topic, value, key, headers, index, (r.topic, r.partition, r.offset, k))
            )
            for index, r in enumerate(records)
            for k, (topic, value, key, headers) in enumerate(
                reference_outputs(r.value or b"", directory, topics, "bench.decisions", stamp)
            )
        ]
        delivery = await deliver(publisher, outgoing, set())
        cpu.append(time.process_time() - started)
        assert not delivery.refused, delivery
        assert delivery.outage is None, delivery
        assert len(outgoing) == 6 * BATCH, f"batch {n}: {len(outgoing)} records"
    if before is not None:
        before(batches)
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000, help="up to 100000")
    parser.add_argument("--batches", type=int, default=100, help="of 500 alerts each")
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args()
    if args.batches < 5:
        parser.error("--batches must be at least 5 (the first fifth is not counted)")
    if args.users < 1:
        parser.error("--users must be at least 1")
    configure("json", "WARNING")  # as the throughput benchmark runs the worker
    with database() as url:
        figures = asyncio.run(measure(url, args.users, args.batches))
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"{figures['us_per_event']} µs of CPU an event: {figures['route_us_per_event']} "
            f"within route, {figures['record_us_per_event']} within record; the ledger statement "
            f"{figures['record_wall_ms']} ms a batch; the reference loop's work "
            f"{figures['reference_us_per_event']} µs ({args.users} users, {args.batches} batches)"
        )


if __name__ == "__main__":
    main()
