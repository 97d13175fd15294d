"""The Kafka adapters of the worker: its producer and the FastStream publisher, FastStream's
broker, and the batch subscribers that hand records to a handler.

Nothing here decides anything about a page: records in, the handler's methods
called, the batch committed only when they are done (see ``register_subscriber``;
the alerts' ledger and commit overlap the next batch, see router.kafka.overlap).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from itertools import chain
from typing import Any, Protocol

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import IllegalStateError
from faststream import AckPolicy
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker, KafkaMessage, Topic
from faststream.kafka.prometheus import KafkaPrometheusMiddleware

from router.kafka.consume import PartitionGuard
from router.kafka.overlap import OnRebalance, Overlap, next_offsets
from router.kafka.publish import OneByOne, partition_for
from router.kafka.security import broker_security, client_options
from router.metrics import REGISTRY
from router.routing.dlq import SourceRecord
from router.settings import Settings

log = structlog.get_logger("router.consume")


class BatchHandler(Protocol):
    """What the subscribers hand their batches to (the routing worker)."""

    async def route(self, records: Sequence[SourceRecord]) -> Any: ...
    def written(self, result: Any) -> Callable[[], Awaitable[None]]: ...
    async def handle_statuses(self, records: Sequence[SourceRecord]) -> int: ...
    async def handle_contact_events(self, records: Sequence[SourceRecord]) -> int: ...


class PagesHandler(Protocol):
    """What the pages.acks and deliveries.replies subscribers hand their batches to."""

    async def handle_acks(self, records: Sequence[SourceRecord]) -> int: ...
    async def handle_replies(self, records: Sequence[SourceRecord]) -> int: ...


def create_producer(settings: Settings) -> AIOKafkaProducer:
    """The worker's producer: acks from all in-sync replicas, idempotent where the broker can."""
    return AIOKafkaProducer(
        **client_options(settings),
        partitioner=partition_for,
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        max_request_size=settings.kafka_max_request_bytes,
        linger_ms=settings.kafka_linger_ms,
        max_batch_size=settings.kafka_batch_bytes,
        compression_type=(
            None if settings.kafka_compression == "none" else settings.kafka_compression
        ),
    )


class KafkaPublisher(OneByOne):
    """:class:`router.kafka.publish.Publisher` on the FastStream broker's producer (tests use it
    with FastStream's TestKafkaBroker)."""

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, headers: dict[str, str]
    ) -> Awaitable[Any] | None:
        """Queue one message; the returned future resolves when the broker has it."""
        return await self._broker.publish(value, topic, key=key, headers=headers, no_confirm=True)


async def broker_answers(bootstrap_servers: str) -> bool:
    """Whether any bootstrap server accepts a TCP connection within a second."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]") or "localhost", int(port or 9092)),
                1.0,
            )
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        return True
    return False


class RouterBroker(KafkaBroker):
    """FastStream's Kafka broker, starting its subscribers side by side.

    Each subscriber's consumer waits for its group's assignment when it starts,
    and FastStream starts them one after the other; the alerts and
    contact-events groups join at the same time instead, which halves the time
    a restarted pod takes to route again.
    """

    async def start(self) -> None:
        """Connect, then start every subscriber at once, then the publishers."""
        await self.connect()
        await asyncio.gather(*(subscriber.start() for subscriber in self.subscribers))
        for publisher in self.publishers:
            await publisher.start()
        self.running = True


def create_broker(settings: Settings) -> KafkaBroker:
    """A broker whose producer waits for all in-sync replicas."""
    return RouterBroker(
        settings.kafka_bootstrap_servers,
        client_id=settings.kafka_client_id,
        security=broker_security(settings),
        # FastStream's own message metrics (router_faststream_*), beside router.metrics.
        middlewares=[
            KafkaPrometheusMiddleware(
                registry=REGISTRY,
                app_name=settings.kafka_client_id,
                metrics_prefix="router_faststream",
            )
        ],
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        max_request_size=settings.kafka_max_request_bytes,
        linger_ms=5,  # lets a batch's jobs share produce requests
        graceful_timeout=settings.shutdown_timeout_seconds,
        logger=logging.getLogger("router.kafka"),
        log_level=logging.DEBUG,  # per-batch "Received"/"Processed" lines; the router logs its own
    )


def _escape_header(record: ConsumerRecord[Any, Any]) -> ConsumerRecord[Any, Any]:
    headers = tuple((k, v.decode("utf-8", "backslashreplace").encode()) for k, v in record.headers)
    return (
        record if headers == tuple(record.headers) else dataclasses.replace(record, headers=headers)
    )


async def _tolerant_parser(
    records: tuple[ConsumerRecord[Any, Any], ...], default: Callable[..., Awaitable[Any]]
) -> Any:
    # FastStream decodes headers as strict UTF-8; one foreign header must not
    # turn a batch into a poison pill. Values are left untouched.
    return await default(tuple(_escape_header(r) for r in records))


async def _raw_records(message: KafkaMessage, _default: Callable[..., Awaitable[Any]]) -> Any:
    # The router decodes bodies itself (router.routing.decode) so bad JSON becomes a DLQ
    # record instead of a decode error inside the framework.
    return message.raw_message


def _source(record: ConsumerRecord[Any, Any]) -> SourceRecord:
    return SourceRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers),
    )


def _guarded_fetch(subscriber: Any, settings: Settings, guard: PartitionGuard) -> None:
    """Make ``subscriber`` fetch through ``guard`` (see router.kafka.consume).

    FastStream's consume loop calls ``get_msg(consumer)`` for each batch; this
    replaces that one method on this one subscriber, nothing else.
    """

    async def get_msg(consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord[Any, Any], ...]:
        batches = await guard.getmany(
            consumer, timeout_ms=settings.batch_timeout_ms, max_records=settings.batch_max_records
        )
        if not batches and guard.incidents:
            await asyncio.sleep(settings.batch_timeout_ms / 1000)  # no busy loop while paused
        return tuple(chain.from_iterable(batches.values()))

    subscriber.get_msg = get_msg


def _batch_subscriber(
    broker: KafkaBroker,
    settings: Settings,
    topic: str,
    group_id: str,
    instance_id: str | None,
    guard: PartitionGuard,
    overlap: Overlap | None = None,
) -> Any:
    subscriber = broker.subscriber(
        Topic(topic, declare=False),  # router.kafka.topics manages topics, not FastStream
        group_id=group_id,
        group_instance_id=instance_id,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        auto_offset_reset=settings.kafka_auto_offset_reset,
        isolation_level=settings.kafka_isolation_level,
        # ack = commit after the handler returns; an exception rewinds to the
        # batch's first offsets so the same records are tried again. With an
        # overlap, the handler does both itself (see router.kafka.overlap).
        ack_policy=AckPolicy.NACK_ON_ERROR if overlap is None else AckPolicy.MANUAL,
        listener=None if overlap is None else OnRebalance(overlap),
        parser=_tolerant_parser,
        decoder=_raw_records,
    )
    _guarded_fetch(subscriber, settings, guard)
    if overlap is not None:
        _drain_on_stop(subscriber, overlap)
    return subscriber


async def _rewind(message: KafkaMessage) -> None:
    """Seek the batch's partitions back to its first offsets (FastStream's nack)."""
    try:
        await message.nack()
    except IllegalStateError as error:  # revoked meanwhile: their next owner reads them
        log.warning("rewind_skipped", error=str(error))


def _drain_on_stop(subscriber: Any, overlap: Overlap) -> None:
    """Make ``subscriber`` finish the batch handed over (ledger, commit) before its
    consumer stops: no new batch is fetched, the one in hand is waited for, and a
    batch whose handler is still running finishes in that handler."""
    stop = subscriber.stop

    async def drain_then_stop() -> None:
        overlap.stopping = True
        subscriber.running = False
        await overlap.drain()
        await stop()

    subscriber.stop = drain_then_stop


def _document_outputs(broker: KafkaBroker, settings: Settings) -> None:
    """Declare the output topics with their models, for the AsyncAPI document.

    The worker publishes through the broker's producer directly (router.routing.handler);
    these publishers describe the contract delivery workers read.
    """
    from schemas import Decision, EmailJob, SmsJob, WebhookJob

    outputs = (
        (settings.topic_email, EmailJob, "One email to send. Key: contact_method_id."),
        (settings.topic_sms, SmsJob, "One SMS to send. Key: contact_method_id."),
        (settings.topic_webhook, WebhookJob, "One webhook request. Key: contact_method_id."),
        (settings.topic_decisions, Decision, "What was decided per method. Key: event_id."),
    )
    for topic, model, description in outputs:
        broker.publisher(topic, schema=model, title=topic, description=description)
    broker.publisher(
        settings.topic_dlq,
        schema=bytes,
        title=settings.topic_dlq,
        description="Records the router could not route: the original key, value and "
        "headers, plus router.dlq.reason and Kafka Connect / Spring Kafka error headers.",
    )


def register_subscriber(
    broker: KafkaBroker,
    settings: Settings,
    worker: Callable[[], BatchHandler],
    guard: PartitionGuard | None = None,
    pages: Callable[[], PagesHandler] | None = None,
) -> Any:
    """Consume alerts and contact events in batches; commit only after the output is acked.
    With ``pages``, also acknowledgements and SMS replies."""

    def on_batch(
        method: str, name: str, handler: Callable[[], Any] = worker
    ) -> Callable[[Any], Awaitable[None]]:
        # The worker has already logged a failed batch (once, with the traceback
        # only when it is not a known outage) and waited its backoff; NackMessage
        # rewinds the batch without FastStream logging the traceback again.
        async def handle(body: Any) -> None:
            records = body  # the batch's records as consumed (_raw_records)
            assert isinstance(records, tuple)
            try:
                await getattr(handler(), method)([_source(r) for r in records])
            except Exception as error:
                raise NackMessage() from error

        handle.__name__ = handle.__qualname__ = name  # the AsyncAPI operation is named after it
        return handle

    # Half the shutdown time for the batches in hand, so that with FastStream's own wait
    # for a handler a stop stays within the pod's grace period (45 s for 30).
    overlap = Overlap(settings.shutdown_timeout_seconds / 2)

    async def on_alerts(body: Any) -> None:
        # The message from FastStream's context, not a parameter: a parameter naming it
        # is filled by a synchronous dependency, which FastStream runs on a worker
        # thread, one thread hop (and a wait for the GIL) for every batch.
        message: KafkaMessage = broker.context.get_local("message")
        records = body  # message.raw_message, as _raw_records decodes it
        assert isinstance(records, tuple)
        routing = worker()
        overlap.routing()
        try:
            try:
                result = await routing.route([_source(r) for r in records])
            except Exception:
                # The worker has logged it and waited its backoff: rewind to the batch's
                # first offsets, so the same records are tried again.
                await _rewind(message)
                return
            await overlap.hand_over(
                routing.written(result), message.consumer, next_offsets(records)
            )
        finally:
            overlap.routed()

    on_statuses = on_batch("handle_statuses", "on_statuses")
    on_contact_events = on_batch("handle_contact_events", "on_contact_events")

    _document_outputs(broker, settings)
    # One consumer group per input stream: a rebalance of one never pauses the other.
    alerts = _batch_subscriber(
        broker,
        settings,
        settings.topic_alerts,
        settings.group_id,
        settings.group_instance_id(),
        guard or PartitionGuard(settings.undecodable_retry_seconds),
        overlap,
    )
    alerts(on_alerts)
    _batch_subscriber(
        broker,
        settings,
        settings.topic_contact_events,
        settings.contact_events_group_id(),
        settings.group_instance_id(".contact-events"),
        PartitionGuard(settings.undecodable_retry_seconds),
    )(on_contact_events)
    _batch_subscriber(
        broker,
        settings,
        settings.topic_status,
        settings.status_group_id(),
        settings.group_instance_id(".status"),
        PartitionGuard(settings.undecodable_retry_seconds),
    )(on_statuses)
    if pages is not None:
        for topic, group, suffix, method, name in (
            (settings.topic_acks, settings.acks_group_id(), ".acks", "handle_acks", "on_acks"),
            (
                settings.topic_replies,
                settings.replies_group_id(),
                ".replies",
                "handle_replies",
                "on_replies",
            ),
        ):
            _batch_subscriber(
                broker,
                settings,
                topic,
                group,
                settings.group_instance_id(suffix),
                PartitionGuard(settings.undecodable_retry_seconds),
            )(on_batch(method, name, pages))
    return alerts
