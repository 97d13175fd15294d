"""The fetch edge: one partition the client cannot decode must not stall or lose the others.

aiokafka raises :class:`~aiokafka.errors.UnsupportedCodecError` (a codec it has
no library for, or one from the future) or
:class:`~aiokafka.errors.CorruptRecordException` (a bad CRC) from ``getmany``
when it unpacks a fetched batch. Two things go wrong if that is left alone:

- the error comes back on every poll, so FastStream logs a traceback and
  sleeps, forever, and every partition of the consumer waits;
- records of *other* partitions drained earlier in the same ``getmany`` call
  have already moved their positions but are never returned, and the next
  commit (which commits the consumer's positions) would skip them for good.

:class:`PartitionGuard` wraps the fetch. It notes every position first; on a
decode error it rewinds every partition to it and reads the failing partition
one record at a time, so the records ahead of the bad batch are still routed.
When the bad batch itself is reached, only that partition is paused, one line
says what to do, and it is tried again on its own after ``retry_seconds``.
Everything else keeps flowing.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CorruptRecordException, IllegalStateError, UnsupportedCodecError

from router import metrics

log = structlog.get_logger("router.consume")

DECODE_ERRORS = (UnsupportedCodecError, CorruptRecordException)


@dataclass
class Incident:
    """A partition paused because its records cannot be decoded."""

    topic: str
    partition: int
    offset: int | None
    error: str
    since: float
    retry_at: float


def _failed_partition(error: BaseException) -> TopicPartition | None:
    """The partition aiokafka was unpacking when ``error`` was raised.

    aiokafka's message does not name it (except for CRC errors), but its fetch
    loop holds it in a local ``tp``; the innermost one is the partition.
    """
    found: TopicPartition | None = None
    for frame, _ in traceback.walk_tb(error.__traceback__):
        candidate = frame.f_locals.get("tp")
        if isinstance(candidate, TopicPartition):
            found = candidate
    return found


@dataclass
class _Suspect:
    """A partition read one record at a time until it passes ``until`` or fails."""

    until: int


class PartitionGuard:
    """Fetches batches so that an undecodable partition is paused, not retried in a loop."""

    def __init__(
        self,
        retry_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[dict[TopicPartition, Incident]], None] | None = None,
    ) -> None:
        self.incidents: dict[TopicPartition, Incident] = {}
        self._suspects: dict[TopicPartition, _Suspect] = {}
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._on_change = on_change
        self._lag_labels: set[TopicPartition] = set()
        self._topics: set[str] = set()

    async def getmany(
        self, consumer: AIOKafkaConsumer, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        """Like ``consumer.getmany``; a partition that cannot be decoded is paused, not raised."""
        self._retry_due(consumer)
        batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = {}
        for tp in list(self._suspects):
            batches.update(await self._one_record(consumer, tp))
        active = consumer.assignment() - consumer.paused() - set(self._suspects)
        if not active:
            return batches
        positions = await self._positions(consumer, active)
        self._measure(consumer, positions)
        try:
            batches.update(
                await consumer.getmany(
                    *active,
                    timeout_ms=0 if batches else timeout_ms,
                    max_records=max(1, max_records - sum(len(b) for b in batches.values())),
                )
            )
        except DECODE_ERRORS as error:
            # Partitions drained before the failing one have moved on: rewind
            # them all, so nothing fetched in this call is skipped.
            for tp, offset in positions.items():
                if tp in consumer.assignment():
                    consumer.seek(tp, offset)
            failed = _failed_partition(error)
            if failed is None or failed not in positions:
                log.error(
                    "fetch_undecodable",
                    error=str(error),
                    error_class=type(error).__name__,
                    hint="a fetched batch could not be decoded and aiokafka did not say for "
                    "which partition; the fetch is retried",
                )
            else:
                self._suspect(consumer, failed)
        return batches

    def _measure(self, consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int]) -> None:
        """Lag per owned partition (high watermark minus position) and partitions owned."""
        owned = consumer.assignment()
        for tp in self._lag_labels - owned:
            metrics.LAG.remove(tp.topic, str(tp.partition))
        self._lag_labels = set(owned)
        topics = {tp.topic for tp in owned} | self._topics
        self._topics = topics
        for topic in topics:
            metrics.ASSIGNED.labels(topic).set(sum(tp.topic == topic for tp in owned))
        for tp, position in positions.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                metrics.LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))

    def _suspect(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        # The bad batch lies below the high watermark known now; read up to it
        # one record at a time, so everything ahead of it is still routed.
        self._suspects[tp] = _Suspect(until=consumer.highwater(tp) or 0)

    async def _one_record(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        if tp not in consumer.assignment():
            self._forget(tp)
            return {}
        try:
            position = await consumer.position(tp)
        except IllegalStateError:
            self._forget(tp)
            return {}
        try:
            batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = await consumer.getmany(
                tp, timeout_ms=0, max_records=1
            )
        except DECODE_ERRORS as error:
            consumer.seek(tp, position)
            del self._suspects[tp]
            self._quarantine(consumer, tp, position, error)
            return {}
        if batches:
            if tp in self.incidents:  # it decodes again after its retry
                incident = self.incidents.pop(tp)
                log.warning(
                    "partition_decodable_again",
                    topic=tp.topic,
                    partition=tp.partition,
                    paused_seconds=round(self._clock() - incident.since, 1),
                )
                self._changed()
            if position + 1 >= self._suspects[tp].until:
                del self._suspects[tp]
        return batches

    async def _positions(
        self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]
    ) -> dict[TopicPartition, int]:
        positions = {}
        for tp in partitions:
            try:
                positions[tp] = await consumer.position(tp)
            except IllegalStateError:  # unassigned by a rebalance meanwhile
                continue
        return positions

    def _quarantine(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, error: BaseException
    ) -> None:
        consumer.pause(tp)
        now = self._clock()
        known = self.incidents.get(tp)
        self.incidents[tp] = Incident(
            topic=tp.topic,
            partition=tp.partition,
            offset=offset,
            error=f"{type(error).__name__}: {error}",
            since=known.since if known else now,
            retry_at=now + self._retry_seconds,
        )
        if known is None:
            log.error(
                "partition_undecodable",
                topic=tp.topic,
                partition=tp.partition,
                offset=offset,
                error=str(error),
                error_class=type(error).__name__,
                retry_in_seconds=self._retry_seconds,
                hint="this partition is paused at this offset and every other one keeps routing. "
                "Usual causes: a compression codec this router cannot read (install the codecs "
                "or upgrade the router) or a corrupt batch (skip it by resetting the group's "
                "offset past it). The partition is retried on its own.",
            )
        self._changed()

    def _retry_due(self, consumer: AIOKafkaConsumer) -> None:
        now = self._clock()
        for tp, incident in list(self.incidents.items()):
            if tp not in consumer.assignment():
                self._forget(tp)  # another member owns it now, and reports it
            elif now >= incident.retry_at and tp in consumer.paused():
                consumer.resume(tp)
                self._suspect(consumer, tp)

    def _forget(self, tp: TopicPartition) -> None:
        self._suspects.pop(tp, None)
        if self.incidents.pop(tp, None) is not None:
            self._changed()

    def _changed(self) -> None:
        metrics.UNDECODABLE.set(len(self.incidents))
        if self._on_change is not None:
            self._on_change(dict(self.incidents))
