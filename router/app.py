"""The one wiring module: settings -> store, broker, subscriber, app and lifespan.

Everything else receives what it needs as arguments; only this module knows
how the pieces fit together.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from faststream import FastStream
from faststream.kafka import KafkaBroker

from router import logging as router_logging
from router.db.janitor import run_janitor
from router.db.pool import database_answers
from router.db.store import PgStore, Store
from router.delivery.watchers import watch_failovers
from router.directory.cache import CachedDirectory, DirectoryCache
from router.errors import ConfigError
from router.held.scheduler import HeldDelivery
from router.http.health import HttpServer, Readiness, create_http_app
from router.ingest.edge import (
    ACK_PATH,
    ENDPOINTS,
    AckLinkConfig,
    BrokerUnavailable,
    IngestConfig,
    RateLimiter,
    create_ingest_app,
    publish_all,
)
from router.kafka.adapters import (
    broker_answers,
    create_broker,
    create_producer,
    register_subscriber,
)
from router.kafka.consume import PartitionGuard
from router.kafka.publish import ProducerPublisher
from router.kafka.topics import ensure_topics
from router.pages.edge import PagesDesk
from router.pages.escalator import Escalator
from router.routing.handler import Worker, utc_now
from router.routing.plain import precompile
from router.settings import Settings
from router.tasks import Watched
from schemas import AlertEvent, PageAck

log = structlog.get_logger("router.app")


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


def create_app(
    settings: Settings, store: Store | None = None, watched: Watched | None = None
) -> FastStream:
    """The runnable router: topics checked, schema checked, then consuming.

    Its background tasks run under ``watched`` (a new :class:`Watched` if None):
    ``router run`` stops the worker when one of them dies.
    """
    watched = watched if watched is not None else Watched()
    broker = create_broker(settings)
    workers: list[Worker] = []
    desks: list[PagesDesk] = []

    def current_worker() -> Worker:
        return workers[0]

    def current_desk() -> PagesDesk:
        return desks[0]

    guard = PartitionGuard(settings.undecodable_retry_seconds)
    # Pages need PostgreSQL: a worker on a store of the tests' own has none.
    pages = current_desk if store is None else None
    alerts = register_subscriber(broker, settings, current_worker, guard, pages)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        created = await ensure_topics(settings)
        if created:
            log.info("topics_created", topics=created, partitions=settings.topic_partitions)
        own_store: PgStore | None = None
        cached: CachedDirectory | None = None
        active: Store
        options = settings.routing_options()  # one set for every path and a preload's plans
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
                    preload_users=settings.directory_preload_users,
                    compile_entry=functools.partial(precompile, options=options),
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
        workers.append(
            Worker(
                active,
                ProducerPublisher(producer, settings.kafka_max_request_bytes),
                settings,
                broker_probe=functools.partial(broker_answers, settings.kafka_bootstrap_servers),
                options=options,
                pages=own_store,
            )
        )
        if own_store is not None:
            publisher = ProducerPublisher(producer, settings.kafka_max_request_bytes)
            desks.append(PagesDesk(own_store, publisher, settings))
            watched.start(
                "router-escalations",
                Escalator(own_store, publisher, settings, utc_now, options).run(watched.stopping),
            )
            watched.start("router-janitor", run_janitor(own_store, settings, watched.stopping))
            watched.start(
                "router-held-pages",
                HeldDelivery(own_store, publisher, settings, utc_now, options=options).run(
                    watched.stopping
                ),
            )
            watched.start(
                "router-failovers",
                watch_failovers(own_store, workers[0], settings, utc_now, watched.stopping),
            )
        if cached is not None and cached.task is not None:
            watched.watch(cached.task)
        if http is not None and http.task is not None:
            watched.watch(http.task)
        log.info(
            "router_started",
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.group_id,
            topic=settings.topic_alerts,
        )
        try:
            yield
        finally:
            await watched.stop(grace_seconds=5)
            await producer.stop()  # flushes what is queued
            if http is not None:
                await http.stop()
            if cached is not None:
                await cached.close()
            if own_store is not None:
                await own_store.close()
            log.info("router_stopped")

    return FastStream(broker, lifespan=lifespan, logger=logging.getLogger("router.app"))


async def _dependencies_answer(settings: Settings, stop: asyncio.Event) -> bool:
    """Wait, up to ``ROUTER_STARTUP_WAIT_SECONDS``, until PostgreSQL and the broker
    answer, rather than exit into the orchestrator's back-off. False when told to
    stop meanwhile; True otherwise (the start then reports what is still missing)."""
    loop, delay = asyncio.get_running_loop(), 0.5
    deadline = loop.time() + settings.startup_wait_seconds
    while True:
        answers = {
            "postgresql": await database_answers(settings.database_url.get_secret_value()),
            "kafka": await broker_answers(settings.kafka_bootstrap_servers),
        }
        missing = sorted(name for name, answered in answers.items() if not answered)
        if not missing or loop.time() >= deadline:
            return True
        log.warning("waiting_for_dependencies", missing=missing, retry_in_seconds=delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
            return False
        delay = min(delay * 2, 5.0)


async def run(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then drain the batch in flight and stop.

    A signal that arrives while the router is still starting (connecting,
    joining its group) cancels the start instead of waiting for it, so a pod
    told to go while it starts goes promptly, with status 0. A background task
    that dies stops the worker the same way, then raises
    :class:`BackgroundTaskFailed` (a non-zero exit: the orchestrator restarts it).
    """
    router_logging.configure(settings.log_format, settings.log_level)
    watched = Watched()
    app = create_app(settings, watched=watched)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if not await _dependencies_answer(settings, stop):
        log.info("stop_requested_while_starting")
        return
    async with app.lifespan_context():
        starting = asyncio.create_task(app.start(), name="router-start")
        ending = {
            asyncio.create_task(stop.wait(), name="router-stop-signal"),
            asyncio.create_task(watched.failed.wait(), name="router-task-failed"),
        }
        try:
            await asyncio.wait({starting, *ending}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                # Nothing was consumed yet, so nothing is left to commit: leave now.
                # aiokafka's group join does not always yield to cancellation at once,
                # so neither waiting for it nor stopping the broker may hold the exit.
                log.info("stop_requested_while_starting")
                starting.cancel()
                await asyncio.wait({starting}, timeout=0.2)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(app.stop(), timeout=1.0)
            else:
                starting.result()  # a start-up failure ends the command here
                log.info("router_consuming")
                await asyncio.wait(ending, return_when=asyncio.FIRST_COMPLETED)
                await app.stop()
        finally:
            for waiter in ending:
                waiter.cancel()
    if watched.failure is not None:
        raise watched.failure


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

    async def publish_ack(ack: PageAck) -> None:
        if not connected.is_set():
            raise BrokerUnavailable("not connected to the broker yet")
        future = await producer.send(
            settings.topic_acks, ack.model_dump_json().encode(), key=ack.alert_key.encode()
        )
        await asyncio.wait_for(future, settings.ingest_publish_timeout_seconds)

    links = settings.ack_links()

    async def broker_check() -> str | None:
        if not connected.is_set():
            return "not connected to the broker yet"
        if not await broker_answers(settings.kafka_bootstrap_servers):
            return f"no bootstrap server answers: {settings.kafka_bootstrap_servers}"
        return None

    app = create_ingest_app(
        IngestConfig(
            tokens,
            settings.ingest_max_bytes,
            settings.ingest_mapping(),
            settings.ingest_body_timeout_seconds,
        ),
        RateLimiter(settings.ingest_rate_per_second, settings.ingest_burst),
        publish,
        Readiness({"broker": broker_check}),
        AckLinkConfig(links.secrets, publish_ack) if links is not None else None,
    )
    server = HttpServer(
        app,
        settings.ingest_host,
        settings.ingest_port,
        [*sorted(ENDPOINTS), *([ACK_PATH] if links else []), "/healthz", "/readyz", "/metrics"],
        header_timeout_seconds=settings.ingest_header_timeout_seconds,
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
            # Every request had its answer (what is left was answered 503 and is retried).
            try:
                await asyncio.wait_for(
                    producer.stop(), timeout=settings.ingest_publish_timeout_seconds
                )
            except TimeoutError:
                log.warning("ingest_producer_stop_timed_out")
        log.info("ingest_stopped")
