"""deliver: a group of messages sent together and refused as a whole is sent again one
message at a time, so only the message the broker will not take is refused; an outage
fails the batch. The worker's publisher without metadata fails like ``send``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import partitioner
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from hypothesis import given
from hypothesis import strategies as st

from router.kafka.publish import Outgoing, ProducerPublisher, Sent, deliver, murmur2, partition_for
from router.kafka.records import decision_record, job_record
from router.routing.build import build_job, new_decision
from router.routing.encode import encode
from router.routing.rules import RoutingOptions
from router.settings import Settings
from schemas import AlertEvent
from tests.conftest import T0, make_method


def message(n: int, size: int = 10) -> Outgoing:
    return Outgoing("deliveries.email", b"x" * size, b"key", [], n, ("alerts", 0, n, 0))


class OneBatch:
    """Puts every message in one group; the broker refuses any group holding a message
    over 1,000 bytes, and, while ``down``, fails every group as an outage."""

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.groups: list[list[int]] = []

    async def send_all(self, messages: Sequence[Outgoing], *, singly: bool = False) -> list[Sent]:
        groups = [[m] for m in messages] if singly else [list(messages)]
        sent: list[Sent] = []
        for group in groups:
            self.groups.append([m.origin for m in group])
            ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self.down:
                ack.set_exception(KafkaConnectionError("broker gone"))
            elif any(len(m.value) > 1000 for m in group):
                ack.set_exception(MessageSizeTooLargeError())
            else:
                ack.set_result(None)
            sent.append((group, ack))
        return sent


async def test_a_refused_group_is_sent_again_singly_and_only_the_large_message_is_refused() -> None:
    messages = [message(n, size=5000 if n == 2 else 10) for n in range(4)]
    publisher, acked = OneBatch(), set()
    delivery = await deliver(publisher, messages, acked)
    assert list(delivery.refused) == [2] and delivery.outage is None
    assert acked == {messages[n].identity for n in (0, 1, 3)}
    assert publisher.groups == [[0, 1, 2, 3], [0], [1], [2], [3]]


async def test_an_outage_of_a_group_fails_the_batch_and_acknowledges_nothing() -> None:
    messages = [message(n) for n in range(3)]
    publisher, acked = OneBatch(down=True), set()
    delivery = await deliver(publisher, messages, acked)
    assert isinstance(delivery.outage, KafkaConnectionError)
    assert delivery.refused == {} and acked == set()
    assert publisher.groups == [[0, 1, 2]]  # an outage is not sent again message by message


async def test_messages_acknowledged_before_are_not_sent_again() -> None:
    messages = [message(n) for n in range(3)]
    publisher = OneBatch()
    acked = {messages[0].identity}
    delivery = await deliver(publisher, messages, acked, keep=True)
    assert delivery.refused == {} and delivery.outage is None
    assert publisher.groups == [[1, 2]]
    assert acked == {m.identity for m in messages}


async def test_a_delivery_acknowledged_whole_leaves_what_was_acknowledged_before_as_it_was() -> (
    None
):
    messages = [message(n) for n in range(3)]
    publisher = OneBatch()
    acked = {messages[0].identity}
    delivery = await deliver(publisher, messages, acked)
    assert delivery.refused == {} and delivery.outage is None
    assert publisher.groups == [[1, 2]]
    assert acked == {messages[0].identity}, "no attempt will send these again"


class NoMetadata:
    """A producer whose broker is away: no topic's partitions can be learned."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def partitions_for(self, topic: str) -> set[int]:
        self.asked.append(topic)
        raise KafkaTimeoutError()


async def test_without_metadata_every_message_fails_as_an_outage_asking_once_per_topic() -> None:
    producer = NoMetadata()
    messages = [message(n) for n in range(5)]
    acked: set[tuple[str, int, int, int]] = set()
    delivery = await deliver(ProducerPublisher(producer, 1024 * 1024), messages, acked)  # type: ignore[arg-type]
    assert isinstance(delivery.outage, KafkaTimeoutError)
    assert delivery.refused == {} and acked == set()
    assert producer.asked == ["deliveries.email"]


@given(st.binary(max_size=80))
def test_keys_hash_as_kafkas_own_partitioner_hashes_them(key: bytes) -> None:
    """A job lands on the partition the Java client and aiokafka would put it on."""
    assert murmur2(key) == partitioner.murmur2(key)
    everyone = list(range(12))
    assert partition_for(key, everyone, everyone) == partitioner.DefaultPartitioner()(
        key, everyone, everyone
    )


class Batches:
    """A producer that keeps aiokafka's own record batches instead of sending them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, BatchBuilder]] = []

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(
            16384, 4, is_transactional=False, key_serializer=None, value_serializer=None
        )

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> None:
        self.sent.append((topic, partition, batch))


async def test_the_routers_records_go_into_aiokafkas_record_batches_headers_and_all() -> None:
    settings = Settings()
    event = AlertEvent(
        event_id="e-1",
        kind="down",
        severity="critical",
        user_ids=["alice"],
        title="db down",
        occurred_at=T0,
    )
    job = build_job(event, make_method("m-1", "alice", "email"), T0, RoutingOptions())
    decision = new_decision(
        event_id="e-1", user_id="alice", outcome="sent", decided_at=T0, job_id=job.job_id
    )
    messages = [
        job_record(settings, job, 0, ("a", 0, 0, 0)),
        decision_record(settings, decision, 0, ("a", 0, 0, 1)),
    ]
    producer = Batches()
    delivery = await deliver(ProducerPublisher(producer, 1024 * 1024), messages, set())  # type: ignore[arg-type]
    assert delivery.refused == {} and delivery.outage is None
    read = {}
    for topic, partition, batch in producer.sent:
        (record,) = list(MemoryRecords(bytes(batch._build())).next_batch())
        read[topic] = (partition, record.key, record.value, list(record.headers))
        assert partition == partition_for(record.key, [0, 1, 2], [0, 1, 2])
    assert read[settings.topic_email][1:] == (
        job.contact_method_id.encode(),
        encode(job),
        [("router.event_id", b"e-1"), ("router.job_id", job.job_id.encode())],
    )
    assert read[settings.topic_decisions][1:] == (
        b"e-1",
        encode(decision),
        [("router.event_id", b"e-1")],
    )


async def test_a_full_record_batch_is_closed_and_the_next_message_starts_another_in_order() -> None:
    producer = Batches()
    messages = [  # 40 KB for one key: three record batches of at most 16 KiB
        message(n)._replace(value=f"{n:04d}".encode() * 250) for n in range(40)
    ]
    delivery = await deliver(ProducerPublisher(producer, 1024 * 1024), messages, set())  # type: ignore[arg-type]
    assert delivery.refused == {} and delivery.outage is None
    assert len(producer.sent) == 3
    assert len({(topic, partition) for topic, partition, _ in producer.sent}) == 1
    values = [
        record.value
        for _, _, batch in producer.sent
        for record in MemoryRecords(bytes(batch._build())).next_batch()
    ]
    assert values == [m.value for m in messages]
