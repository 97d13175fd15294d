"""deliver: a group of messages sent together and refused as a whole is sent again one
message at a time, so only the message the broker will not take is refused; an outage
fails the batch. The worker's publisher without metadata fails like ``send``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import partitioner
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError
from hypothesis import given
from hypothesis import strategies as st

from router.kafka.publish import Outgoing, ProducerPublisher, Sent, deliver, murmur2, partition_for


def message(n: int, size: int = 10) -> Outgoing:
    return Outgoing("deliveries.email", b"x" * size, b"key", {}, n, ("alerts", 0, n, 0))


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
    delivery = await deliver(publisher, messages, acked)
    assert delivery.refused == {} and delivery.outage is None
    assert publisher.groups == [[1, 2]]
    assert acked == {m.identity for m in messages}


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
