"""What the embedded broker itself spends at a steady alert rate, with and without a consumer.

The latency phase of ``bench/throughput.py`` offers alerts one at a time (a record
batch each) and measures the router on the same CPUs as the broker. This probe
separates the broker's share: it produces ``--rate`` one-record batches a second for
``--seconds`` to a topic of six partitions on its own embedded Tansu (memory
storage), first with nothing reading, then with one plain aiokafka consumer reading
them, and prints the broker's CPU second by second.

    .venv/bin/python bench/broker_fetch.py [--rate 1000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from throughput import PARTITIONS, process_cpu

from router.dev.embedded import MEMORY_BROKER_FETCH_WAIT, EmbeddedKafka

FETCH_MAX_WAIT_MS = int(MEMORY_BROKER_FETCH_WAIT["ROUTER_KAFKA_FETCH_MAX_WAIT_MS"])


async def offered(
    bootstrap: str, topic: str, rate: int, seconds: float, broker: int
) -> list[float]:
    """The broker's CPU (share of one CPU) each second while ``rate`` records a second
    are produced singly to ``topic``."""
    cpu = process_cpu(lambda: [broker])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    shares: list[float] = []
    try:
        start = mark = time.monotonic()
        used = cpu()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            await producer.send(topic, b'{"event_id":"probe","title":"probe"}')
            if time.monotonic() - mark >= 1:
                now = cpu()
                shares.append(round((now - used) / (time.monotonic() - mark), 2))
                used, mark = now, time.monotonic()
    finally:
        await producer.stop()
    return shares


async def reading(bootstrap: str, topic: str, stop: asyncio.Event) -> None:
    """A plain consumer in a group of its own, reading ``topic`` until ``stop``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"probe-{topic}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            await consumer.getmany(timeout_ms=100)
    finally:
        await consumer.stop()


async def run(kafka: EmbeddedKafka, rate: int, seconds: float) -> None:
    bootstrap = kafka.bootstrap_servers
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in ("alone", "read")])
    finally:
        await admin.close()
    assert kafka.pid is not None
    alone = await offered(bootstrap, "alone", rate, seconds, kafka.pid)
    print(f"broker CPU, {rate} records/s, nothing reading: {alone}")
    stop = asyncio.Event()
    consumer = asyncio.create_task(reading(bootstrap, "read", stop))
    read = await offered(bootstrap, "read", rate, seconds, kafka.pid)
    stop.set()
    await consumer
    print(f"broker CPU, {rate} records/s, one consumer:  {read} (it joins in the first seconds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1_000, help="records a second")
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="router-broker-fetch-") as tmp:
        kafka = EmbeddedKafka(log_path=Path(tmp) / "tansu.log").start()
        try:
            asyncio.run(run(kafka, args.rate, args.seconds))
        finally:
            kafka.stop()


if __name__ == "__main__":
    main()
