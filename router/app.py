"""The one wiring module: settings -> store, broker, subscriber, app and lifespan.

Everything else receives what it needs as arguments; only this module knows
how the pieces fit together.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from itertools import chain
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from faststream import AckPolicy, FastStream
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker, KafkaMessage, Topic
from faststream.kafka.prometheus import KafkaPrometheusMiddleware

from router import logging as router_logging
from router.cache import CachedDirectory, DirectoryCache
from router.consume import PartitionGuard
from router.dlq import SourceRecord
from router.errors import ConfigError
from router.handler import Worker, utc_now
from router.health import HttpServer, Readiness, create_http_app
from router.ingest_http import (
    ENDPOINTS,
    BrokerUnavailable,
    IngestConfig,
    RateLimiter,
    create_ingest_app,
    publish_all,
)
from router.janitor import run_janitor
from router.metrics import REGISTRY
from router.scheduler import HeldDelivery, watch_failovers
from router.security import broker_security, client_options
from router.settings import Settings
from router.store import PgStore, Store
from router.topics import ensure_topics
from schemas import AlertEvent

log = structlog.get_logger("router.app")


class ProducerPublisher:
    """:class:`router.handler.Publisher` straight on an aiokafka producer: the worker's
    output does not pass through FastStream's per-message publish path."""

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


def create_producer(settings: Settings) -> AIOKafkaProducer:
    """The worker's producer: acks from all in-sync replicas, idempotent where the broker can."""
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        max_request_size=settings.kafka_max_request_bytes,
        linger_ms=settings.kafka_linger_ms,
        max_batch_size=settings.kafka_batch_bytes,
        compression_type=(
            None if settings.kafka_compression == "none" else settings.kafka_compression
        ),
    )


class KafkaPublisher:
    """:class:`router.handler.Publisher` on the FastStream broker's producer (tests use it
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
    # The router decodes bodies itself (router.decode) so bad JSON becomes a DLQ
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
    """Make ``subscriber`` fetch through ``guard`` (see router.consume).

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
) -> Any:
    subscriber = broker.subscriber(
        Topic(topic, declare=False),  # router.topics manages topics, not FastStream
        group_id=group_id,
        group_instance_id=instance_id,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        auto_offset_reset=settings.kafka_auto_offset_reset,
        isolation_level=settings.kafka_isolation_level,
        # ack = commit after the handler returns; an exception rewinds to the
        # batch's first offsets so the same records are tried again.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=_tolerant_parser,
        decoder=_raw_records,
    )
    _guarded_fetch(subscriber, settings, guard)
    return subscriber


def _document_outputs(broker: KafkaBroker, settings: Settings) -> None:
    """Declare the output topics with their models, for the AsyncAPI document.

    The worker publishes through the broker's producer directly (router.handler);
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
    worker: Callable[[], Worker],
    guard: PartitionGuard | None = None,
) -> Any:
    """Consume alerts and contact events in batches; commit only after the output is acked."""

    # The worker has already logged a failed batch (once, with the traceback
    # only when it is not a known outage) and waited its backoff; NackMessage
    # rewinds the batch without FastStream logging the traceback again.
    async def on_alerts(body: Any, message: KafkaMessage) -> None:
        records = message.raw_message
        assert isinstance(records, tuple)
        try:
            await worker().handle([_source(r) for r in records])
        except Exception as error:
            raise NackMessage() from error

    async def on_statuses(body: Any, message: KafkaMessage) -> None:
        records = message.raw_message
        assert isinstance(records, tuple)
        try:
            await worker().handle_statuses([_source(r) for r in records])
        except Exception as error:
            raise NackMessage() from error

    async def on_contact_events(body: Any, message: KafkaMessage) -> None:
        records = message.raw_message
        assert isinstance(records, tuple)
        try:
            await worker().handle_contact_events([_source(r) for r in records])
        except Exception as error:
            raise NackMessage() from error

    _document_outputs(broker, settings)
    # One consumer group per input stream: a rebalance of one never pauses the other.
    alerts = _batch_subscriber(
        broker,
        settings,
        settings.topic_alerts,
        settings.group_id,
        settings.group_instance_id(),
        guard or PartitionGuard(settings.undecodable_retry_seconds),
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
    return alerts


def _readiness(broker: KafkaBroker, store: Store, alerts: Any, guard: PartitionGuard) -> Readiness:
    """/readyz: the broker and PostgreSQL answer, and the worker owns alert partitions
    (or is still joining its group) of which none is paused as undecodable."""

    async def broker_check() -> str | None:
        return None if await broker.ping(timeout=1.0) else "the Kafka brokers do not answer"

    async def database_check() -> str | None:
        return None if await store.ping() else "PostgreSQL does not answer"

    async def partitions_check() -> str | None:
        consumer = alerts.consumer
        if consumer is None:
            return None  # still starting: the startup probe covers this
        if consumer.assignment():
            return None
        state = getattr(consumer, "_subscription", None)
        joining = state is not None and (
            state.reassignment_in_progress
            or state.subscription is None
            or state.subscription.assignment is None
        )
        return None if joining else "no partitions of the alerts topic are assigned to this worker"

    async def decodable_check() -> str | None:
        if not guard.incidents:
            return None
        return "undecodable records pause " + ", ".join(
            f"{i.topic}[{i.partition}]@{i.offset}" for i in guard.incidents.values()
        )

    return Readiness(
        {
            "broker": broker_check,
            "database": database_check,
            "partitions": partitions_check,
            "decodable": decodable_check,
        }
    )


def create_app(settings: Settings, store: Store | None = None) -> FastStream:
    """The runnable router: topics checked, schema checked, then consuming."""
    broker = create_broker(settings)
    workers: list[Worker] = []

    def current_worker() -> Worker:
        return workers[0]

    guard = PartitionGuard(settings.undecodable_retry_seconds)
    alerts = register_subscriber(broker, settings, current_worker, guard)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        created = await ensure_topics(settings)
        if created:
            log.info("topics_created", topics=created, partitions=settings.topic_partitions)
        own_store: PgStore | None = None
        cached: CachedDirectory | None = None
        active: Store
        if store is None:
            own_store = await PgStore.connect(
                settings.database_url.get_secret_value(),
                min_size=settings.db_pool_min_size,
                max_size=settings.db_pool_max_size,
            )
            await own_store.check_schema()
            active = own_store
            if settings.directory_cache_users:
                cached = CachedDirectory(
                    own_store,
                    DirectoryCache(
                        settings.directory_cache_users, settings.directory_cache_ttl_seconds
                    ),
                )
                await cached.start()
                active = cached
        else:
            active = store
        http = (
            HttpServer(
                create_http_app(_readiness(broker, active, alerts, guard)),
                settings.http_host,
                settings.http_port,
            )
            if settings.http_port
            else None
        )
        if http is not None:
            await http.start()
        producer = create_producer(settings)
        await producer.start()
        # One set of routing options for routing, held delivery and failover alike.
        options = settings.routing_options()
        workers.append(
            Worker(
                active,
                ProducerPublisher(producer),
                settings,
                broker_probe=functools.partial(broker_answers, settings.kafka_bootstrap_servers),
                options=options,
            )
        )
        stop = asyncio.Event()
        janitor = (
            asyncio.create_task(run_janitor(own_store, settings, stop), name="router-janitor")
            if own_store is not None
            else None
        )
        held = (
            asyncio.create_task(
                HeldDelivery(
                    own_store, ProducerPublisher(producer), settings, utc_now, options=options
                ).run(stop),
                name="router-held-pages",
            )
            if own_store is not None
            else None
        )
        silent = (
            asyncio.create_task(
                watch_failovers(own_store, workers[0], settings, utc_now, stop),
                name="router-failovers",
            )
            if own_store is not None
            else None
        )
        log.info(
            "router_started",
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.group_id,
            topic=settings.topic_alerts,
        )
        try:
            yield
        finally:
            stop.set()
            for task in (janitor, held, silent):
                if task is None:
                    continue
                try:
                    await asyncio.wait_for(task, timeout=5)
                except Exception as error:  # it must not keep the process from stopping
                    log.warning(
                        "background_task_stop_failed", task=task.get_name(), error=repr(error)
                    )
            await producer.stop()  # flushes what is queued
            if http is not None:
                await http.stop()
            if cached is not None:
                await cached.close()
            if own_store is not None:
                await own_store.close()
            log.info("router_stopped")

    return FastStream(broker, lifespan=lifespan, logger=logging.getLogger("router.app"))


async def run(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then drain the batch in flight and stop.

    A signal that arrives while the router is still starting (connecting,
    joining its group) cancels the start instead of waiting for it, so a pod
    told to go while it starts goes promptly, with status 0.
    """
    router_logging.configure(settings.log_format, settings.log_level)
    app = create_app(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with app.lifespan_context():
        starting = asyncio.create_task(app.start(), name="router-start")
        stopping = asyncio.create_task(stop.wait(), name="router-stop-signal")
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            # Nothing was consumed yet, so nothing is left to commit: leave now.
            # aiokafka's group join does not always yield to cancellation at
            # once, so neither waiting for it nor stopping the broker may hold
            # the exit for more than a moment.
            log.info("stop_requested_while_starting")
            starting.cancel()
            await asyncio.wait({starting}, timeout=0.2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(app.stop(), timeout=1.0)
            return
        else:
            starting.result()  # a start-up failure ends the command here
            log.info("router_consuming")
            await stopping
        await app.stop()


async def run_ingest(settings: Settings) -> None:
    """``router ingest``: serve the HTTP endpoints until SIGINT or SIGTERM.

    The producer connects in the background: while the broker is unreachable the
    service answers, with 503 for alerts and on ``/readyz``.
    """
    router_logging.configure(settings.log_format, settings.log_level)
    tokens = settings.ingest_tokens_list()
    if not tokens:
        raise ConfigError(
            "router ingest needs at least one bearer token: set ROUTER_INGEST_TOKENS "
            "(comma-separated, several while rotating) or ROUTER_INGEST_TOKENS_FILE."
        )
    created = await ensure_topics(settings)
    if created:
        log.info("topics_created", topics=created, partitions=settings.topic_partitions)
    producer = create_producer(settings)
    connected = asyncio.Event()

    async def connect() -> None:
        delay = 0.5
        while True:
            try:
                await producer.start()
            except Exception as error:  # unreachable broker: keep answering 503, retry
                log.warning("ingest_broker_unreachable", error=str(error), retry_in_seconds=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            else:
                connected.set()
                return

    async def send(event: AlertEvent) -> asyncio.Future[Any]:
        if not connected.is_set():
            raise BrokerUnavailable("not connected to the broker yet")
        future: asyncio.Future[Any] = await producer.send(
            settings.topic_alerts,
            event.model_dump_json(exclude_none=True).encode(),
            key=event.event_id.encode(),
        )
        return future

    async def publish(events: list[AlertEvent]) -> None:
        await publish_all(send, events, settings.ingest_publish_timeout_seconds)

    async def broker_check() -> str | None:
        if not connected.is_set():
            return "not connected to the broker yet"
        if not await broker_answers(settings.kafka_bootstrap_servers):
            return f"no bootstrap server answers: {settings.kafka_bootstrap_servers}"
        return None

    app = create_ingest_app(
        IngestConfig(tokens, settings.ingest_max_bytes, settings.ingest_mapping()),
        RateLimiter(settings.ingest_rate_per_second, settings.ingest_burst),
        publish,
        Readiness({"broker": broker_check}),
    )
    server = HttpServer(
        app,
        settings.ingest_host,
        settings.ingest_port,
        [*sorted(ENDPOINTS), "/healthz", "/readyz", "/metrics"],
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    connecting = asyncio.create_task(connect(), name="ingest-connect")
    await server.start()
    log.info(
        "ingest_listening",
        port=settings.ingest_port,
        endpoints=sorted(ENDPOINTS),
        topic=settings.topic_alerts,
        tokens=len(tokens),
    )
    try:
        await stop.wait()
    finally:
        await server.stop()  # in-flight requests finish, with their acks
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        if connected.is_set():
            await producer.stop()
        log.info("ingest_stopped")
