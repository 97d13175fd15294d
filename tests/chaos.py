"""Chaos: a backlog on `alerts`, `router run` SIGKILLed again and again, nothing lost.

    python -m tests.chaos --events 20000 --kills 10        # embedded servers
    python -m tests.chaos --events 20000 --kills 10 --dynamic
    python -m tests.chaos --events 20000 --kills 10 --signal term   # clean stops

Puts ``--events`` alerts on `alerts` (each for one of ``--users`` users with an
email and an SMS method, so every event has two eligible methods), starts the
worker, and ``--kills`` times waits until it has visibly made progress (its
jobs are on the output topics), SIGKILLs it and starts it again. At the end it
checks that every (event, eligible method) pair has a job and that every
duplicate (a pair published more than once, as at-least-once allows) carries
the same ``job_id``, and prints events, kills, lost, duplicates and the time
to resume (first new job) after each restart.

``tests/integration/test_chaos.py`` runs a short form in ``make test`` and this
long form when ``ROUTER_CHAOS_LONG=1``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

OUTPUTS = ("email", "sms")


@dataclass
class ChaosResult:
    events: int
    kills: int
    expected_pairs: int
    lost: int = 0
    duplicates: int = 0
    mismatched_job_ids: int = 0
    resume_seconds: list[float] = field(default_factory=list)
    elapsed_seconds: float = 0.0

    def summary(self) -> str:
        resumes = ", ".join(f"{s:.2f}" for s in self.resume_seconds)
        return (
            f"chaos: {self.events} events, {self.kills} kills, {self.expected_pairs} "
            f"(event, method) pairs: {self.lost} lost, {self.duplicates} duplicates "
            f"({self.mismatched_job_ids} with another job_id); time to resume after each "
            f"restart (s): {resumes}; {self.elapsed_seconds:.1f} s in all"
        )


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "router", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"router {' '.join(args)} failed: {done.stderr}")
    return done.stdout


async def _directory(env: dict[str, str], users: int, workdir: Path) -> None:
    """``users`` users (by SQL, for speed) with one email and one SMS method each
    (through the real import)."""
    conn = await asyncpg.connect(env["ROUTER_DATABASE_URL"])
    try:
        await conn.executemany(
            "INSERT INTO users (id) VALUES ($1)", [(f"chaos-{n}",) for n in range(users)]
        )
    finally:
        await conn.close()
    rows = ["user_id,transport,value"]
    for n in range(users):
        rows.append(f"chaos-{n},email,chaos-{n}@example.com")
        rows.append(f"chaos-{n},sms,+1415555{n:04d}")
    path = workdir / "chaos-contacts.csv"
    path.write_text("\n".join(rows) + "\n")
    _cli(env, "contacts", "import", str(path), "--allow-landline")


async def _create_topics(env: dict[str, str]) -> None:
    """Every topic the router uses, as `router run` with ROUTER_CREATE_TOPICS would."""
    from router.kafka.topics import ensure_topics
    from router.settings import Settings

    names = {
        k.removeprefix("ROUTER_").lower(): v for k, v in env.items() if k.startswith("ROUTER_")
    }
    await ensure_topics(Settings(**{**names, "create_topics": True}))


async def _backlog(bootstrap: str, topic: str, events: int, users: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        pending = []
        for n in range(events):
            value = json.dumps(
                {
                    "event_id": f"chaos-{n}",
                    "kind": "down",
                    "severity": "critical",  # never held back by rules
                    "user_ids": [f"chaos-{n % users}"],
                    "title": f"chaos {n}",
                }
            ).encode()
            pending.append(await producer.send(topic, value))
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


class _Outputs:
    """How many jobs are on the job topics, counted by reading them as they come.

    Not from end offsets: Tansu under-reports those (ListOffsets) once a producer
    pipelines batches, though every record is there to fetch.
    """

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        # A short fetch wait: Tansu answers a waiting fetch only at its next look for
        # records, so at aiokafka's 500 ms the count lagged the worker by up to seconds,
        # and a fast worker drained the whole backlog before the kill it was meant for.
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
        )
        self._topics = topics
        self._count = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        await self._consumer.topics()
        parts = [
            TopicPartition(t, p)
            for t in self._topics
            for p in self._consumer.partitions_for_topic(t) or {0}
        ]
        self._consumer.assign(parts)
        await self._consumer.seek_to_beginning(*parts)
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=10_000)
            self._count += sum(len(records) for records in batch.values())

    async def jobs(self) -> int:
        await asyncio.sleep(0)
        return self._count

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


async def _settled(outputs: _Outputs, quiet: float = 1.0) -> int:
    """The job count once it has stopped growing for ``quiet`` seconds (the reader
    has caught up with everything the killed worker published)."""
    count, since = await outputs.jobs(), time.monotonic()
    while time.monotonic() - since < quiet:
        await asyncio.sleep(0.05)
        now = await outputs.jobs()
        if now != count:
            count, since = now, time.monotonic()
    return count


async def _read_jobs(bootstrap: str, topics: list[str]) -> list[dict[str, Any]]:
    """Every job on ``topics``, read until they run dry.

    Not bounded by end offsets: Tansu under-reports them (ListOffsets) after a
    producer pipelines batches, though every record is there to fetch.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        await consumer.topics()
        parts = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or {0}
        ]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        jobs: list[dict[str, Any]] = []
        empty = 0
        while empty < 2:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            empty = 0 if batch else empty + 1
            for records in batch.values():
                jobs += [json.loads(r.value) for r in records]
        return jobs
    finally:
        await consumer.stop()


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "router", "run"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def run_chaos(
    env: dict[str, str],
    workdir: Path,
    *,
    events: int,
    kills: int,
    users: int = 200,
    static: bool = True,
    timeout: float = 600,
    stop_signal: signal.Signals = signal.SIGKILL,
) -> ChaosResult:
    """Run the chaos scenario against the servers ``env`` names; the figures."""
    env = {
        **env,
        "ROUTER_RATE_LIMIT_SMS_COUNT": "1000000",
        "ROUTER_RATE_LIMIT_EMAIL_COUNT": "1000000",
        "ROUTER_LOG_LEVEL": os.environ.get("CHAOS_LOG_LEVEL", "WARNING"),
        # Small batches: progress shows in small steps, so every kill lands while
        # a backlog remains, however fast the worker is.
        "ROUTER_BATCH_MAX_RECORDS": "100",
    }
    if static:
        env["ROUTER_KAFKA_GROUP_INSTANCE_ID"] = "chaos-pod-0"
    bootstrap = env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    topics = [env.get(f"ROUTER_TOPIC_{t.upper()}", f"deliveries.{t}") for t in OUTPUTS]
    alerts = env.get("ROUTER_TOPIC_ALERTS", "alerts")
    _cli(env, "db", "migrate")
    await _directory(env, users, workdir)
    started = time.monotonic()
    log = workdir / "chaos-router.log"
    # The whole backlog is on `alerts` before the worker starts, so every kill
    # lands while a backlog remains (a worker started first would drain it as
    # it arrives).
    await _create_topics(env)
    await _backlog(bootstrap, alerts, events, users)
    outputs = _Outputs(bootstrap, topics)
    result = ChaosResult(events=events, kills=kills, expected_pairs=2 * events)
    await outputs.start()
    worker = _start({**env, "ROUTER_KAFKA_AUTO_OFFSET_RESET": "earliest"}, log)
    try:
        deadline = time.monotonic() + timeout
        step = 200  # one batch of 100 events, two jobs each
        for _ in range(kills):
            floor = await outputs.jobs()
            while await outputs.jobs() < floor + step:  # visible progress first
                if worker.poll() is not None:
                    raise RuntimeError(f"the router exited by itself; see {log}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no progress; see {log}")
                await asyncio.sleep(0.05)
            worker.send_signal(stop_signal)
            worker.wait(60)
            before = await _settled(outputs)
            restarted = time.monotonic()
            worker = _start(env, log)
            while await outputs.jobs() <= before:
                if worker.poll() is not None:
                    raise RuntimeError(f"the router exited by itself; see {log}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"never resumed; see {log}")
                await asyncio.sleep(0.05)
            result.resume_seconds.append(time.monotonic() - restarted)
        # Let the last worker finish the backlog.
        pairs: dict[tuple[str, str], set[str]] = defaultdict(set)
        while True:
            jobs = await _read_jobs(bootstrap, topics)
            pairs.clear()
            for job in jobs:
                pairs[(job["event_id"], job["contact_method_id"])].add(job["job_id"])
            if len(pairs) >= result.expected_pairs or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        result.lost = result.expected_pairs - len(pairs)
        result.duplicates = len(jobs) - len(pairs)
        result.mismatched_job_ids = sum(1 for ids in pairs.values() if len(ids) > 1)
        result.elapsed_seconds = time.monotonic() - started
        return result
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        await outputs.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--dynamic", action="store_true", help="no static group membership")
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many s")
    parser.add_argument(
        "--signal", choices=("kill", "term"), default="kill", help="how the worker is stopped"
    )
    args = parser.parse_args()
    from router.dev.embedded import EmbeddedKafka, EmbeddedPostgres, embedded_env

    with tempfile.TemporaryDirectory(prefix="router-chaos-") as tmp:
        workdir = Path(tmp)
        with (
            EmbeddedKafka(log_path=workdir / "tansu.log") as kafka,
            EmbeddedPostgres(workdir / "pg") as postgres,
        ):
            env = {**embedded_env(kafka, postgres), "ROUTER_LOG_FORMAT": "json"}
            result = asyncio.run(
                run_chaos(
                    env,
                    workdir,
                    events=args.events,
                    kills=args.kills,
                    users=args.users,
                    static=not args.dynamic,
                    timeout=args.timeout,
                    stop_signal=signal.SIGTERM if args.signal == "term" else signal.SIGKILL,
                )
            )
    membership = "dynamic" if args.dynamic else "static"
    print(f"SIG{args.signal.upper()}, {membership} membership: " + result.summary())
    return 0 if result.lost == 0 and result.mismatched_job_ids == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
