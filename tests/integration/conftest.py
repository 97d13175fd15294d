"""Real Kafka-protocol broker and real PostgreSQL for integration tests.

The servers are chosen and started once per test run, before any xdist worker
starts, by ``tests/servers.py``; the workers find them in ``TEST_KAFKA_BOOTSTRAP_SERVERS``
and ``TEST_DATABASE_URL``.

Tests are isolated by name, not by restarting servers: every test gets its own
database (cloned from a migrated template) and its own topics and group id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from router.db.migrate import migrate
from router.dev.embedded import MEMORY_BROKER_FETCH_WAIT, EmbeddedKafka, EmbeddedS3
from router.directory.models import ContactMethod
from tests import command_server
from tests.privacy import leaks_in

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class KafkaTarget:
    bootstrap_servers: str
    idempotence: bool  # False for Tansu, which cannot do InitProducerId


@pytest.fixture(scope="session")
def kafka() -> KafkaTarget:
    """The Kafka-protocol broker of this test run (see tests/servers.py)."""
    return KafkaTarget(
        os.environ["TEST_KAFKA_BOOTSTRAP_SERVERS"],
        os.environ.get("TEST_KAFKA_IDEMPOTENCE", "true") == "true",
    )


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server of this test run (its maintenance database)."""
    return os.environ["TEST_DATABASE_URL"]


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (host, port, socket and options kept)."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_database(postgres_url: str) -> str:
    """A migrated database that each test's database is cloned from."""
    name = f"router_template_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(postgres_url, f'CREATE DATABASE "{name}"'))
    asyncio.run(migrate(with_database(postgres_url, name)))
    return name


def _fresh_database(postgres_url: str, template: str | None) -> Iterator[str]:
    name = f"router_test_{uuid.uuid4().hex[:10]}"
    source = f' TEMPLATE "{template}"' if template else ""
    asyncio.run(_admin(postgres_url, f'CREATE DATABASE "{name}"{source}'))
    yield with_database(postgres_url, name)
    asyncio.run(_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(postgres_url: str, template_database: str) -> Iterator[str]:
    """A migrated database of this test's own."""
    yield from _fresh_database(postgres_url, template_database)


@pytest.fixture
def empty_database_url(postgres_url: str) -> Iterator[str]:
    """An empty database of this test's own (never migrated)."""
    yield from _fresh_database(postgres_url, None)


@pytest.fixture
def router_env(kafka: KafkaTarget, database_url: str) -> dict[str, str]:
    """ROUTER_* settings for this test: its own database, topics and consumer group."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    env = {
        "ROUTER_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ROUTER_KAFKA_ENABLE_IDEMPOTENCE": str(kafka.idempotence).lower(),
        "ROUTER_DATABASE_URL": database_url,
        "ROUTER_GROUP_ID": prefix + "router",
        "ROUTER_CREATE_TOPICS": "true",
        "ROUTER_TOPIC_PARTITIONS": "3",
        "ROUTER_LOG_FORMAT": "json",
        "ROUTER_RETRY_BACKOFF_MAX_SECONDS": "1",
        # Tansu holds a group join for half the session timeout: 1.5 s, not 5.
        "ROUTER_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "ROUTER_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        **MEMORY_BROKER_FETCH_WAIT,  # as `router demo` (harmless on Kafka)
        "ROUTER_HTTP_PORT": "0",  # tests that probe it choose a free port
    }
    for name in (
        "alerts",
        "contact_events",
        "status",
        "email",
        "sms",
        "webhook",
        "decisions",
        "dlq",
    ):
        env[f"ROUTER_TOPIC_{name.upper()}"] = prefix + name
    return env


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``router`` command as a user would, with ``env`` on top of ours: a process
    of its own, forked by the test process's command server (:mod:`tests.command_server`)."""
    return command_server.run(list(args), {**os.environ, **env}, timeout=60)


def cli_ok(env: dict[str, str], *args: str) -> str:
    """Run a ``router`` command that must succeed; its stdout."""
    done = run_cli(env, *args)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def cli_refused(env: dict[str, str], *args: str, code: int = 1) -> str:
    """Run a ``router`` command that must be refused with ``code`` and no traceback; its stderr."""
    done = run_cli(env, *args)
    assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stderr


def cli_ok_each(env: dict[str, str], commands: Sequence[Sequence[str]]) -> list[str]:
    """:func:`cli_ok` for each of ``commands`` (independent of one another), a few at a
    time; their stdout, in order."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: cli_ok(env, *args), commands))


def cli_refused_each(
    env: dict[str, str], commands: Sequence[Sequence[str]], code: int = 1
) -> list[str]:
    """:func:`cli_refused` for each of ``commands`` (independent refusals, run a few at
    a time: each is a process of its own, as a user would start it); their stderr, in
    order."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: cli_refused(env, *args, code=code), commands))


def add_contact(
    env: dict[str, str], user: str, transport: str, value: str, *extra: str
) -> ContactMethod:
    """``router contacts add ... --json``, parsed as the model the worker reads."""
    out = cli_ok(
        env,
        "contacts",
        "add",
        "--user",
        user,
        "--transport",
        transport,
        "--value",
        value,
        "--json",
        *extra,
    )
    return ContactMethod.model_validate_json(out)


class RouterProcess:
    """A long-running ``router`` command (``run`` by default) in a child process, its
    log kept for failure reports."""

    command = "run"

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RouterProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "router", self.command],
            env={**os.environ, **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then wait for the graceful exit; returns the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()
        return self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_router(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], RouterProcess]]:
    """Start routers; whatever is still running at the end is stopped."""
    started: list[RouterProcess] = []

    def start(env: dict[str, str]) -> RouterProcess:
        router = RouterProcess(env, tmp_path / f"router-{len(started)}.log").start()
        started.append(router)
        return router

    yield start
    for router in started:
        router.stop()
    for router in started:  # the session-wide privacy check, for child processes
        leaks = leaks_in(router.log())
        assert not leaks, f"full contact addresses in {router.log_path}: {leaks[:10]}"


async def produce(
    bootstrap: str, topic: str, *values: bytes, headers: list[tuple[str, bytes]] | None = None
) -> None:
    """Publish ``values`` to ``topic`` and wait for the broker's acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, headers=headers or [])
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def database_refused(postgres_url: str, database_url: str) -> AsyncIterator[None]:
    """An outage of one test's database: new connections refused and open ones ended,
    until the block ends (the shared server keeps serving every other test)."""
    name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


async def wait_for_topics(bootstrap: str, topics: list[str], timeout: float = 30) -> None:
    """Wait until every topic exists (the router creates them at start-up)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            existing = await consumer.topics()
            if set(topics) <= existing:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"topics never appeared: {set(topics) - existing}")
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


async def collect(
    bootstrap: str,
    topics: list[str],
    until: Callable[[dict[str, list[ConsumerRecord[Any, Any]]]], bool],
    timeout: float = 60,
    settle: float = 1.0,
) -> dict[str, list[ConsumerRecord[Any, Any]]]:
    """Read ``topics`` from the start until ``until(seen)`` holds, then ``settle`` seconds more
    so that extra, unexpected messages would show up too."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: dict[str, list[ConsumerRecord[Any, Any]]] = {t: [] for t in topics}
    try:
        await wait_for_topics(bootstrap, topics)
        await consumer.topics()  # fresh metadata, so partitions_for_topic knows them
        partitions = []
        for topic in topics:
            for partition in consumer.partitions_for_topic(topic) or {0}:
                partitions.append(TopicPartition(topic, partition))
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        settle_until: float | None = None
        while True:
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                seen[tp.topic].extend(records)
            now = loop.time()
            if settle_until is None and until(seen):
                settle_until = now + settle
            if settle_until is not None and now >= settle_until:
                return seen
            if now > deadline:
                counts = {t: len(r) for t, r in seen.items()}
                raise TimeoutError(f"expected output never arrived; got {counts}")
    finally:
        await consumer.stop()


@pytest.fixture
def persistent_kafka(tmp_path: Path) -> Iterator[EmbeddedKafka]:
    """A broker of this test's own whose records and offsets live in S3 (moto_server),
    so ``stop()`` and ``start()`` (or ``restart()``) keep them, as a rolling upgrade does."""
    with EmbeddedS3(log_path=tmp_path / "moto.log") as s3:
        kafka = EmbeddedKafka(log_path=tmp_path / "tansu.log", storage=s3).start()
        try:
            yield kafka
        finally:
            kafka.stop()
