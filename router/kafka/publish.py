"""Publishing a batch's output: every acknowledgement observed, each failure tied to its record.

The handler turns each consumed record into messages (jobs, decisions, or a
dead letter), each an :class:`Outgoing` that knows which record it came from
and an identity that is the same on every attempt at the batch. :func:`deliver`
sends them all, waits for every acknowledgement, and sorts failures in two:

- **refused**: the broker (or the client, before sending) will never take this
  message as it is, e.g. it is too large. Retrying changes nothing, so the
  record it came from is handled on its own (sent to the DLQ, cut to fit).
- **outage**: anything else (broker unreachable, timeouts, leader moves).
  The batch is retried; messages already acknowledged are remembered in
  ``acked`` and not sent again.

The worker's publisher (:class:`ProducerPublisher`) sends the messages of one
partition as one record batch with one acknowledgement; a batch the broker
refuses is sent again one message at a time, so a refusal is still tied to the
one message it is about.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTimestampError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

#: Errors that say "never this message", as opposed to "not now".
REFUSALS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
)

Identity = tuple[str, int, int, int]


class Outgoing(NamedTuple):
    """One message to publish, and the consumed record (by batch index) it is for.
    A named tuple: six are made for every routed event."""

    topic: str
    value: bytes
    key: bytes | None
    headers: dict[str, str]
    origin: int
    identity: Identity  # (source topic, partition, offset, n-th output of that record)


@dataclass
class Delivery:
    """What happened to a batch's messages."""

    refused: dict[int, BaseException] = field(default_factory=dict)  # origin -> first refusal
    outage: BaseException | None = None


def is_refusal(error: BaseException) -> bool:
    """Whether ``error`` means the message will never be accepted as it is."""
    return isinstance(error, REFUSALS)


#: What a publisher did with some messages sent together: the acknowledgement to await
#: for all of them, ``None`` when they are already acknowledged, or the exception that
#: stopped the client before sending.
Sent = tuple[Sequence["Outgoing"], Awaitable[Any] | BaseException | None]


class Publisher(Protocol):
    """Queues messages for the broker, each group with one acknowledgement."""

    async def send_all(self, messages: Sequence[Outgoing], *, singly: bool = False) -> list[Sent]:
        """Queue ``messages`` in order; with ``singly``, each in a group of its own."""
        ...


class OneByOne:
    """A :class:`Publisher` that sends every message on its own through ``send``."""

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, headers: dict[str, str]
    ) -> Awaitable[Any] | None:
        """Queue one message; the returned future resolves when the broker has it."""
        raise NotImplementedError

    async def send_all(self, messages: Sequence[Outgoing], *, singly: bool = False) -> list[Sent]:
        """Each message in a group of its own."""
        sent: list[Sent] = []
        for message in messages:
            try:
                ack = await self.send(
                    message.topic, message.value, key=message.key, headers=message.headers
                )
            except Exception as error:  # the client refused it before sending
                sent.append(((message,), error))
            else:
                sent.append(((message,), ack))
        return sent


async def deliver(publisher: Publisher, messages: list[Outgoing], acked: set[Identity]) -> Delivery:
    """Send every message not in ``acked``; add those acknowledged now to it.

    Waits for every acknowledgement before returning, so no failure goes
    unobserved and a broker outage is one result, not one per message. A group
    the broker refuses as a whole is sent again one message at a time, so only
    the message it will not take is refused, not the others sent with it.
    """
    result = Delivery()
    todo = [message for message in messages if message.identity not in acked]
    again = await _round(publisher, todo, acked, result, singly=False)
    if again:
        await _round(publisher, again, acked, result, singly=True)
    return result


async def _round(
    publisher: Publisher,
    messages: Sequence[Outgoing],
    acked: set[Identity],
    result: Delivery,
    *,
    singly: bool,
) -> list[Outgoing]:
    """One sending of ``messages``; the messages of refused groups of more than one."""
    again: list[Outgoing] = []
    waiting: list[tuple[Sequence[Outgoing], Awaitable[Any]]] = []
    for group, ack in await publisher.send_all(messages, singly=singly):
        if isinstance(ack, BaseException):
            _settle(result, group, ack, again)
        elif ack is None:
            acked.update(message.identity for message in group)
        else:
            waiting.append((group, ack))
    outcomes = await asyncio.gather(*(ack for _, ack in waiting), return_exceptions=True)
    for (group, _), outcome in zip(waiting, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            _settle(result, group, outcome, again)
        else:
            acked.update(message.identity for message in group)
    return again


def _settle(
    result: Delivery, group: Sequence[Outgoing], error: BaseException, again: list[Outgoing]
) -> None:
    if len(group) > 1 and is_refusal(error):
        again.extend(group)
        return
    for message in group:
        _note(result, message, error)


def _note(result: Delivery, message: Outgoing, error: BaseException) -> None:
    if is_refusal(error):
        result.refused.setdefault(message.origin, error)
    elif result.outage is None:
        result.outage = error


class ProducerPublisher(OneByOne):
    """:class:`router.kafka.publish.Publisher` straight on an aiokafka producer: the worker's
    output does not pass through FastStream's per-message publish path.

    ``send_all`` fills one record batch per partition (``create_batch``/``send_batch``),
    placed by the producer's own partitioner, so messages land where ``send`` would
    put them, in the same order per partition, with one acknowledgement per batch
    instead of one future per message. A message without a key, or larger than
    ``ALONE_BYTES``, goes through ``send`` on its own (its size checked there, so a
    refusal names it at once), after the batch filling for its partition.
    """

    ALONE_BYTES = 16 * 1024

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, headers: dict[str, str]
    ) -> Awaitable[Any] | None:
        """Queue one message; the returned future resolves when the broker has it."""
        ack: Awaitable[Any] = await self._producer.send(
            topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
        )
        return ack

    async def send_all(self, messages: Sequence[Outgoing], *, singly: bool = False) -> list[Sent]:
        """One group per record batch filled, one per message sent on its own; queued
        in the order of ``messages`` within each partition."""
        if singly:
            return await super().send_all(messages)
        sent: list[Sent] = []
        filling: dict[tuple[str, int], _Filling] = {}
        partitions: dict[str, list[int] | BaseException] = {}

        async def close(where: tuple[str, int]) -> None:
            if (batch := filling.pop(where, None)) is None:
                return
            try:
                ack = await self._producer.send_batch(batch.batch, where[0], partition=where[1])
            except Exception as error:  # the client could not queue it
                sent.append((batch.messages, error))
            else:
                sent.append((batch.messages, ack))

        for message in messages:
            if message.key is None:  # no order to keep: the partitioner picks one
                sent += await super().send_all([message])
                continue
            topic = message.topic
            if (known := partitions.get(topic)) is None:
                try:
                    known = partitions[topic] = list(await self._producer.partitions_for(topic))
                except Exception as error:  # no metadata (the broker is away): as send fails
                    partitions[topic] = error
                    known = error
            if isinstance(known, BaseException):
                sent.append(((message,), known))
                continue
            where = (topic, partition_for(message.key, known, known))
            if len(message.value) > self.ALONE_BYTES:
                await close(where)  # what came before it first
                sent += await super().send_all([message])
                continue
            headers = [(k, v.encode()) for k, v in message.headers.items()]
            batch = filling.get(where)
            if batch is None or not batch.add(message, headers):
                await close(where)
                batch = filling[where] = _Filling(self._producer.create_batch())
                if not batch.add(message, headers):  # not even alone: let send say why
                    del filling[where]
                    sent += await super().send_all([message])
        for where in list(filling):
            await close(where)
        return sent


@dataclass
class _Filling:
    """A record batch being filled, and the messages in it."""

    batch: BatchBuilder
    messages: list[Outgoing] = field(default_factory=list)

    def add(self, message: Outgoing, headers: list[tuple[str, bytes]]) -> bool:
        if (
            self.batch.append(timestamp=None, key=message.key, value=message.value, headers=headers)
            is None
        ):
            return False
        self.messages.append(message)
        return True


@lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def partition_for(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's default partitioner (murmur2 of the key, as the Java client), with each
    key's hash remembered: six records an event, and a method's jobs share their key,
    so the pure-Python hash was a measurable share of the worker's time."""
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[_key_hash(key) % len(all_partitions)]
