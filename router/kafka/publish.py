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
refuses is sent again one message to a batch, so a refusal is still tied to the
one message it is about.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTimestampError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from murmurhash2 import murmurhash2 as _murmurhash2

#: Errors that say "never this message", as opposed to "not now".
REFUSALS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
)

Identity = tuple[str, int, int, int]
#: A record's headers as Kafka carries them: (name, value) pairs, values as bytes (a
#: list: aiokafka's record builder takes nothing else).
Headers = list[tuple[str, bytes]]


class Outgoing(NamedTuple):
    """One message to publish, and the consumed record (by batch index) it is for.
    A named tuple: six are made for every routed event."""

    topic: str
    value: bytes
    key: bytes | None
    headers: Headers
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
Sent = tuple[Sequence[Outgoing], Awaitable[Any] | BaseException | None]


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
                headers = {name: value.decode() for name, value in message.headers}
                ack = await self.send(
                    message.topic, message.value, key=message.key, headers=headers
                )
            except Exception as error:  # the client refused it before sending
                sent.append(((message,), error))
            else:
                sent.append(((message,), ack))
        return sent


async def deliver(
    publisher: Publisher, messages: list[Outgoing], acked: set[Identity], *, keep: bool = False
) -> Delivery:
    """Send every message not in ``acked``; when any is refused or an outage stops
    them (or ``keep`` says so), add those acknowledged now to ``acked``, for the
    attempt that follows.

    Waits for every acknowledgement before returning, so no failure goes
    unobserved and a broker outage is one result, not one per message. A group
    the broker refuses as a whole is sent again one message at a time, so only
    the message it will not take is refused, not the others sent with it. When
    every message is acknowledged, ``acked`` is left as it was: no attempt will
    send these again, and the thousands of identities of a batch are neither
    added nor, once the batch is committed, taken out. ``keep``: a part of a batch
    handled record by record, which a later record's outage sends back whole.
    """
    result = Delivery()
    done: list[Sequence[Outgoing]] = []  # the groups acknowledged
    todo = [m for m in messages if m.identity not in acked] if acked else messages
    again = await _round(publisher, todo, done, result, singly=False)
    if again:
        await _round(publisher, again, done, result, singly=True)
    if keep or result.refused or result.outage is not None:
        acked.update(message.identity for group in done for message in group)
    return result


async def _round(
    publisher: Publisher,
    messages: Sequence[Outgoing],
    acked: list[Sequence[Outgoing]],
    result: Delivery,
    *,
    singly: bool,
) -> list[Outgoing]:
    """One sending of ``messages``, the groups acknowledged into ``acked``; the
    messages of refused groups of more than one."""
    again: list[Outgoing] = []
    waiting: list[tuple[Sequence[Outgoing], Awaitable[Any]]] = []
    for group, ack in await publisher.send_all(messages, singly=singly):
        if isinstance(ack, BaseException):
            _settle(result, group, ack, again)
        elif ack is None:
            acked.append(group)
        else:
            waiting.append((group, ack))
    outcomes = await asyncio.gather(*(ack for _, ack in waiting), return_exceptions=True)
    for (group, _), outcome in zip(waiting, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            _settle(result, group, outcome, again)
        else:
            acked.append(group)
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


class ProducerPublisher:
    """:class:`router.kafka.publish.Publisher` straight on an aiokafka producer: the worker's
    output does not pass through FastStream's per-message publish path.

    ``send_all`` fills one record batch per partition (``create_batch``/``send_batch``),
    placed by the producer's own partitioner, so messages land where ``send`` would
    put them, in the same order per partition, with one acknowledgement per batch
    instead of one future per message. A message without a key, or larger than
    ``ALONE_BYTES``, goes in a batch of its own (after the batch filling for its
    partition), its size checked against ``max_request_bytes`` first as ``send``
    would, so a refusal names it at once. With ``singly`` every message goes in a
    batch of its own: :func:`deliver` re-sends a batch refused whole that way, so
    only the message the broker will not take is refused (those re-sent may then
    follow later messages of their partition: the rare price of not sending the
    others' records to the DLQ with it).
    """

    ALONE_BYTES = 16 * 1024

    def __init__(self, producer: AIOKafkaProducer, max_request_bytes: int) -> None:
        self._producer = producer
        self._max_request_bytes = max_request_bytes

    async def send_all(self, messages: Sequence[Outgoing], *, singly: bool = False) -> list[Sent]:
        """One group per record batch, queued in the order of ``messages`` within each
        partition."""
        sent: list[Sent] = []
        filling: dict[tuple[str, int], _Filling] = {}
        partitions: dict[str, list[int] | BaseException] = {}

        async def close(where: tuple[str, int], batch: _Filling | None) -> None:
            if batch is None:
                return
            try:
                ack = await self._producer.send_batch(batch.batch, where[0], partition=where[1])
            except Exception as error:  # the client could not queue it
                sent.append((batch.messages, error))
            else:
                sent.append((batch.messages, ack))

        alone = self.ALONE_BYTES
        for message in messages:  # thousands a batch: partition_for and _Filling.add inline
            topic, value, key, headers, _, _ = message
            if (known := partitions.get(topic)) is None:
                try:
                    known = partitions[topic] = list(await self._producer.partitions_for(topic))
                except Exception as error:  # no metadata (the broker is away): as send fails
                    known = partitions[topic] = error
            if isinstance(known, BaseException):
                sent.append(((message,), known))
                continue
            if singly or key is None or len(value) > alone:
                where = (topic, partition_for(key, known, known))
                await close(where, filling.pop(where, None))  # what came before it first
                await close(where, self._alone(message, headers, sent))
                continue
            where = (topic, known[(_murmurhash2(key, _SEED) & 0x7FFFFFFF) % len(known)])
            batch = filling.get(where)
            if (
                batch is not None
                and batch.batch.append(timestamp=None, key=key, value=value, headers=headers)
                is not None
            ):
                batch.messages.append(message)
                continue
            await close(where, filling.pop(where, None))  # full (or none yet)
            batch = filling[where] = _Filling(self._producer.create_batch())
            batch.add(message, headers)  # the first record of a batch always fits
        for where in list(filling):
            await close(where, filling.pop(where))
        return sent

    def _alone(self, message: Outgoing, headers: Headers, sent: list[Sent]) -> _Filling | None:
        """``message`` in a batch of its own; None (its refusal in ``sent``) when it is
        larger than a request may be."""
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(message.key, message.value, headers)
        if size > self._max_request_bytes:
            sent.append(
                (
                    (message,),
                    MessageSizeTooLargeError(
                        f"The message is {size} bytes when serialized, more than the "
                        f"{self._max_request_bytes} bytes a request may be "
                        "(ROUTER_KAFKA_MAX_REQUEST_BYTES)"
                    ),
                )
            )
            return None
        batch = _Filling(self._producer.create_batch())
        batch.add(message, headers)
        return batch


@dataclass
class _Filling:
    """A record batch being filled, and the messages in it."""

    batch: BatchBuilder
    messages: list[Outgoing] = field(default_factory=list)

    def add(self, message: Outgoing, headers: Headers) -> bool:
        """Append ``message``; False when the batch is full (never for its first)."""
        appended = self.batch.append(
            timestamp=None, key=message.key, value=message.value, headers=headers
        )
        if appended is None:
            return False
        self.messages.append(message)
        return True


#: Kafka's MurmurHash2 seed (``aiokafka.partitioner.murmur2``, the Java client's).
_SEED = 0x9747B28C


def murmur2(data: bytes) -> int:
    """MurmurHash2 as Kafka's Java client computes it, native (the ``murmurhash2`` wheel, Rust):
    0.13 µs a key against 2.3 for a pure-Python one, so no hash is remembered and a
    directory of any size pays the same per key. ``tests/unit/test_publish.py`` holds
    it to ``aiokafka.partitioner.murmur2`` for arbitrary bytes."""
    return _murmurhash2(data, _SEED)


def partition_for(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's default partitioner (murmur2 of the key, as the Java client), with the
    hash native: six records an event, and aiokafka's pure-Python hash was a measurable
    share of the worker's time."""
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[(_murmurhash2(key, _SEED) & 0x7FFFFFFF) % len(all_partitions)]
