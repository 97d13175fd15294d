"""The worker's publisher on a real broker: one record batch per partition, each message
where ``send`` would put it and in the order given; a message the broker will not take
is refused on its own, and the others sent with it are acknowledged."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from router.kafka.adapters import create_producer
from router.kafka.publish import Outgoing, ProducerPublisher, deliver, partition_for
from router.kafka.topics import ensure_topics
from router.settings import Settings
from tests.integration.conftest import KafkaTarget

TOPICS = ("alerts", "email", "sms", "webhook", "decisions", "dlq", "contact_events", "status")
TOPICS += ("acks", "replies")


def settings_for(kafka: KafkaTarget, **extra: object) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    return Settings(  # type: ignore[arg-type]
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_enable_idempotence=kafka.idempotence,
        topic_partitions=3,
        create_topics=True,
        **{f"topic_{name}": prefix + name for name in TOPICS},
        **extra,
    )


async def read_all(settings: Settings, topic: str, count: int) -> list[tuple[int, bytes, bytes]]:
    """The first ``count`` records of ``topic``: (partition, key, value), in partition order."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: list[tuple[int, bytes, bytes]] = []
    try:
        while len(seen) < count:
            batches = await consumer.getmany(timeout_ms=10_000)
            assert batches, f"only {len(seen)} of {count} records arrived"
            for tp, records in batches.items():
                seen += [(tp.partition, r.key, r.value) for r in records]
    finally:
        await consumer.stop()
    return seen


@asynccontextmanager
async def publishing(
    settings: Settings,
) -> AsyncIterator[tuple[ProducerPublisher, AIOKafkaProducer]]:
    """The settings' topics made, and the worker's publisher on a started producer."""
    await ensure_topics(settings)
    producer = create_producer(settings)
    await producer.start()
    try:
        yield ProducerPublisher(producer, settings.kafka_max_request_bytes), producer
    finally:
        await producer.stop()


def message(topic: str, n: int, key: bytes, size: int = 0) -> Outgoing:
    value = f"{n:05d}".encode() + b"x" * size
    return Outgoing(topic, value, key, [("router.n", str(n).encode())], n, (topic, 0, n, 0))


async def test_each_message_lands_where_send_puts_it_in_the_order_given(kafka: KafkaTarget) -> None:
    settings = settings_for(kafka, kafka_batch_bytes=4096)  # several batches per partition
    topic = settings.topic_email
    keys = [f"method-{k}".encode() for k in range(7)]
    # Mostly small messages, some larger than a batch and one sent alone (over 16 KiB).
    messages = [
        message(topic, n, keys[n % 7], size=(20_000 if n == 40 else 3000 if n % 13 == 0 else 0))
        for n in range(300)
    ]
    acked: set[tuple[str, int, int, int]] = set()
    async with publishing(settings) as (publisher, producer):
        delivery = await deliver(publisher, messages, acked, keep=True)
        partitions = list(await producer.partitions_for(topic))
    assert delivery.refused == {} and delivery.outage is None
    assert acked == {m.identity for m in messages}

    seen = await read_all(settings, topic, len(messages))
    assert len(seen) == len(messages)  # each once
    for partition, key, _ in seen:
        assert partition == partition_for(key, partitions, partitions)
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for _, key, value in seen:
        by_key[key].append(int(value[:5]))
    for key, numbers in by_key.items():
        assert numbers == [n for n in range(300) if keys[n % 7] == key]  # in the order given


async def test_a_message_too_large_is_refused_alone_and_the_rest_go_out(kafka: KafkaTarget) -> None:
    settings = settings_for(kafka, kafka_max_request_bytes=64 * 1024)
    topic = settings.topic_email
    messages = [message(topic, n, b"one-key", size=(100_000 if n == 5 else 10)) for n in range(10)]
    acked: set[tuple[str, int, int, int]] = set()
    async with publishing(settings) as (publisher, _):
        delivery = await deliver(publisher, messages, acked)
    assert list(delivery.refused) == [5] and delivery.outage is None
    assert acked == {m.identity for m in messages if m.origin != 5}
    seen = await read_all(settings, topic, 9)
    assert [int(value[:5]) for _, _, value in seen] == [0, 1, 2, 3, 4, 6, 7, 8, 9]


async def test_singly_each_message_is_a_batch_of_its_own(kafka: KafkaTarget) -> None:
    """What deliver re-sends a batch refused whole with: the broker then answers for each
    message, so only the one it will not take is refused."""
    settings = settings_for(kafka)
    topic = settings.topic_email
    messages = [message(topic, n, b"one-key") for n in range(6)]
    async with publishing(settings) as (publisher, _):
        sent = await publisher.send_all(messages, singly=True)
        assert [[m.origin for m in group] for group, _ in sent] == [[n] for n in range(6)]
        for _, ack in sent:
            assert ack is not None and not isinstance(ack, BaseException)
            await ack
    seen = await read_all(settings, topic, 6)
    assert [int(value[:5]) for _, _, value in seen] == list(range(6))
