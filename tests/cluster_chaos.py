"""Cluster chaos: two `router run` workers in one group while every fault a cluster
has comes at random, and nothing is lost, doubled under another id, or dead-lettered.

    python -m tests.cluster_chaos --events 100000 --faults 20          # memory broker
    python -m tests.cluster_chaos --events 4000 --faults 8 --persistent --broker-restarts 4

The directory has three kinds of users (one email and one SMS method each):

- *plain* (60%): every method, at once: each event needs an email and an SMS job;
- *failover* (20%): SMS preferred, then email; a fake delivery worker reports every
  SMS job of theirs failed for good, so each event needs its SMS job and exactly one
  failover email job;
- *held* (20%): quiet hours all day and non-critical alerts, so every page is held;
  at the end ``router held flush`` sends them, and each held (event, method) must be
  in exactly one digest (by ``job_id``) and never also sent directly.

A backlog is put on `alerts` first, then a steady stream runs while the faults come
in random order at random times: SIGKILL of a worker, SIGTERM of a worker, a pause
(SIGSTOP longer than the session timeout, then SIGCONT: the zombie may only publish
duplicates with the same ``job_id``), a PostgreSQL restart (fast shutdown, start)
and, with ``--persistent`` (Tansu on S3 storage in ``moto_server``), broker restarts.
A worker that dies is started again with its static group instance id, as a pod
would be. Printed: events, faults of each kind, lost, duplicates, mismatched job
ids, held pages and failovers checked, dead letters, and the time to resume (jobs
flowing again) after each fault.

``tests/integration/test_cluster_chaos.py`` runs a short form in ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from tests.chaos import _cli, _create_topics, _read_jobs, _start

#: Users by number modulo 10: 60% plain, 20% failover, 20% held.
KINDS = ("plain",) * 6 + ("failover",) * 2 + ("held",) * 2
WORKER_FAULTS = ("sigkill", "sigterm", "pause")


def say(text: str) -> None:
    """Progress on stderr (the figures go to stdout at the end)."""
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def kind_of(user: int) -> str:
    return KINDS[user % len(KINDS)]


@dataclass
class ClusterResult:
    events: int
    faults: Counter[str] = field(default_factory=Counter)
    expected_pairs: int = 0
    lost: int = 0
    duplicates: int = 0
    mismatched_job_ids: int = 0
    held_pages: int = 0
    held_not_once: int = 0
    held_also_sent_directly: int = 0
    failovers: int = 0
    failovers_not_once: int = 0
    dead_letters: int = 0
    unexpected_exits: list[int] = field(default_factory=list)
    resume_seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    elapsed_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.mismatched_job_ids
            or self.held_not_once
            or self.held_also_sent_directly
            or self.failovers_not_once
            or self.dead_letters
        )

    def summary(self) -> str:
        faults = ", ".join(f"{n} {k}" for k, n in sorted(self.faults.items()))
        resumes = "; ".join(
            f"{k}: " + ", ".join(f"{s:.1f}" for s in v)
            for k, v in sorted(self.resume_seconds.items())
        )
        return (
            f"cluster chaos: {self.events} events, 2 workers, faults: {faults} "
            f"({sum(self.faults.values())} in all); {self.expected_pairs} (event, method) "
            f"pairs: {self.lost} lost, {self.duplicates} duplicates "
            f"({self.mismatched_job_ids} with another job_id); {self.held_pages} held pages: "
            f"{self.held_not_once} not in exactly one digest, {self.held_also_sent_directly} "
            f"also sent directly; {self.failovers} failovers: {self.failovers_not_once} not "
            f"exactly once; {self.dead_letters} dead letters; workers that exited by "
            f"themselves (exit statuses): {self.unexpected_exits or 'none'}; "
            f"time to resume (s) {resumes}; "
            f"{self.elapsed_seconds:.0f} s in all"
        )


async def _directory(env: dict[str, str], users: int, workdir: Path) -> None:
    conn = await asyncpg.connect(env["ROUTER_DATABASE_URL"])
    try:
        rows = []
        for n in range(users):
            kind = kind_of(n)
            rows.append(
                (
                    f"cc-{n}",
                    "preferred" if kind == "failover" else "all",
                    ["sms", "email"],
                    # Quiet all day (but the last minute): non-critical pages are held.
                    "00:00" if kind == "held" else None,
                    "23:59" if kind == "held" else None,
                )
            )
        await conn.executemany(
            "INSERT INTO users (id, delivery_mode, channel_order, quiet_hours_start, "
            "quiet_hours_end) VALUES ($1, $2, $3, $4::text::time, $5::text::time)",
            rows,
        )
    finally:
        await conn.close()
    lines = ["user_id,transport,value"]
    for n in range(users):
        lines.append(f"cc-{n},email,cc-{n}@example.com")
        lines.append(f"cc-{n},sms,+1415556{n:04d}")
    path = workdir / "cluster-contacts.csv"
    path.write_text("\n".join(lines) + "\n")
    _cli(env, "contacts", "import", str(path), "--allow-landline")


def _event(n: int, users: int) -> dict[str, Any]:
    user = n % users
    return {
        "event_id": f"cc-{n}",
        "kind": "down",
        # Held users get a non-critical page (held in quiet hours); the others a
        # critical one (never held).
        "severity": "error" if kind_of(user) == "held" else "critical",
        "user_ids": [f"cc-{user}"],
        "title": f"cluster chaos {n}",
    }


async def _send_all(producer: AIOKafkaProducer, topic: str, values: list[bytes]) -> None:
    """Send every value, again and again until the broker has acknowledged each one
    (a broker restart fails sends in flight; a resend is a duplicate the router
    deduplicates by event id)."""
    todo = values
    while todo:
        futures = []
        for value in todo:
            try:
                futures.append((value, await producer.send(topic, value)))
            except KafkaError:
                futures.append((value, None))
        failed = []
        for value, future in futures:
            try:
                if future is None:
                    raise KafkaError("not sent")
                await future
            except KafkaError:
                failed.append(value)
        if failed:
            await asyncio.sleep(0.5)
        todo = failed


async def _produce(bootstrap: str, topic: str, numbers: range, users: int, rate: float) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        linger_ms=5,
        request_timeout_ms=10_000,
        retry_backoff_ms=500,
    )
    await producer.start()
    try:
        chunk = 500 if rate <= 0 else max(1, int(rate / 10))
        started = time.monotonic()
        for first in range(numbers.start, numbers.stop, chunk):
            batch = range(first, min(first + chunk, numbers.stop))
            values = [json.dumps(_event(n, users)).encode() for n in batch]
            await _send_all(producer, topic, values)
            if rate > 0:  # a steady stream: wait for this chunk's slot
                due = started + (batch.stop - numbers.start) / rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
    finally:
        await producer.stop()


async def _fail_sms_of_failover_users(
    bootstrap: str, sms_topic: str, status_topic: str, stop: asyncio.Event
) -> None:
    """A delivery worker whose SMS provider rejects the failover users' numbers for good."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await consumer.start()
    await producer.start()
    reported: set[str] = set()
    try:
        await consumer.topics()
        parts = [TopicPartition(sms_topic, p) for p in consumer.partitions_for_topic(sms_topic)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        while not stop.is_set():
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            except KafkaError:
                await asyncio.sleep(0.5)
                continue
            reports = []
            for records in batch.values():
                for record in records:
                    job = json.loads(record.value)
                    user = int(job["user_id"].removeprefix("cc-"))
                    if kind_of(user) != "failover" or job["job_id"] in reported:
                        continue
                    reported.add(job["job_id"])
                    reports.append(
                        json.dumps(
                            {
                                "job_id": job["job_id"],
                                "status": "failed",
                                "permanent": True,
                                "detail": "unknown subscriber",
                                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            }
                        ).encode()
                    )
            if reports:
                await _send_all(producer, status_topic, reports)
    finally:
        await consumer.stop()
        await producer.stop()


class _Jobs:
    """Every job on the job topics, read as they come (each record once)."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._topics = topics
        self.jobs: list[dict[str, Any]] = []
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
            try:
                batch = await self._consumer.getmany(timeout_ms=200, max_records=10_000)
            except KafkaError:  # the broker restarting
                await asyncio.sleep(0.5)
                continue
            for records in batch.values():
                self.jobs += [json.loads(r.value) for r in records]

    async def count(self) -> int:
        await asyncio.sleep(0)
        return len(self.jobs)

    async def settled(self, quiet: float = 3.0) -> list[dict[str, Any]]:
        """The jobs once no new one came for ``quiet`` seconds."""
        count, since = len(self.jobs), time.monotonic()
        while time.monotonic() - since < quiet:
            await asyncio.sleep(0.1)
            if len(self.jobs) != count:
                count, since = len(self.jobs), time.monotonic()
        return self.jobs

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


class _Pod:
    """One `router run` worker with its static group instance id, restarted when it dies."""

    def __init__(self, env: dict[str, str], name: str, log: Path) -> None:
        self.env = {**env, "ROUTER_KAFKA_GROUP_INSTANCE_ID": name}
        self.name = name
        self.log = log
        self.process = _start(self.env, log)

    def restart(self) -> None:
        self.process = _start(self.env, self.log)

    def ensure_running(self) -> int | None:
        """Start it again if it exited by itself; its exit status then, else None."""
        status = self.process.poll()
        if status is None:
            return None
        errors = [
            line
            for line in self.log.read_text(errors="replace").splitlines()
            if '"level": "error"' in line or '"level":"error"' in line or "Traceback" in line
        ]
        say(f"{self.name} exited by itself with status {status}; last error: {errors[-1:]}")
        self.restart()
        return status

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


async def _resumed(outputs: _Jobs, since: int, within: float = 60.0) -> bool:
    """Whether jobs flow again (beyond ``since``) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while await outputs.count() <= since:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _fault(
    kind: str,
    pods: list[_Pod],
    restart_postgres: Callable[[float], object],
    restart_broker: Callable[[float], object] | None,
    session_seconds: float,
    rng: random.Random,
) -> None:
    pod = rng.choice(pods)
    if kind == "sigkill":
        pod.process.send_signal(signal.SIGKILL)
        pod.process.wait()
        pod.restart()
    elif kind == "sigterm":
        pod.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(pod.process.wait, 60)
        pod.restart()
    elif kind == "pause":
        pod.process.send_signal(signal.SIGSTOP)
        await asyncio.sleep(session_seconds * 2)  # its partitions move to the other pod
        pod.process.send_signal(signal.SIGCONT)
    elif kind == "postgres":
        await asyncio.to_thread(restart_postgres, rng.uniform(1.0, 3.0))
    elif kind == "broker":
        assert restart_broker is not None
        await asyncio.to_thread(restart_broker, rng.uniform(1.0, 3.0))
    else:  # pragma: no cover
        raise ValueError(kind)


async def run_cluster_chaos(
    env: dict[str, str],
    workdir: Path,
    restart_postgres: Callable[[float], object],
    restart_broker: Callable[[float], object] | None = None,
    *,
    events: int,
    faults: int,
    broker_restarts: int = 0,
    users: int = 200,
    fault_every: float = 10.0,
    seed: int = 1,
    timeout: float = 1800,
) -> ClusterResult:
    """Run the scenario against the servers ``env`` names; the figures."""
    rng = random.Random(seed)
    env = {
        **env,
        "ROUTER_RATE_LIMIT_SMS_COUNT": "1000000",
        "ROUTER_RATE_LIMIT_EMAIL_COUNT": "1000000",
        "ROUTER_LOG_LEVEL": os.environ.get("CHAOS_LOG_LEVEL", "WARNING"),
        "ROUTER_KAFKA_AUTO_OFFSET_RESET": "earliest",
        "ROUTER_BATCH_MAX_RECORDS": "200",
    }
    session_seconds = int(env.get("ROUTER_KAFKA_SESSION_TIMEOUT_MS", "10000")) / 1000
    bootstrap = env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    alerts = env.get("ROUTER_TOPIC_ALERTS", "alerts")
    email, sms = (
        env.get("ROUTER_TOPIC_EMAIL", "deliveries.email"),
        env.get("ROUTER_TOPIC_SMS", "deliveries.sms"),
    )
    status = env.get("ROUTER_TOPIC_STATUS", "deliveries.status")
    dlq = env.get("ROUTER_TOPIC_DLQ", "alerts.dlq")
    _cli(env, "db", "migrate")
    await _directory(env, users, workdir)
    await _create_topics(env)
    result = ClusterResult(events=events)
    started = time.monotonic()
    deadline = started + timeout
    backlog = events // 3
    # The stream lasts as long as the faults come, so every fault meets live traffic.
    rate = (events - backlog) / ((0.75 * fault_every + 5) * faults + fault_every)
    await _produce(bootstrap, alerts, range(backlog), users, rate=0)
    say(f"backlog of {backlog} alerts on {alerts}; starting two workers")
    outputs = _Jobs(bootstrap, [email, sms])
    await outputs.start()
    stop = asyncio.Event()
    reporter = asyncio.create_task(_fail_sms_of_failover_users(bootstrap, sms, status, stop))
    log = workdir / "cluster-router.log"
    pods = [_Pod(env, f"cc-pod-{i}", log) for i in range(2)]
    kinds = (*WORKER_FAULTS, "postgres")
    others = faults - broker_restarts
    plan = [*kinds[:others], *(rng.choice(kinds) for _ in range(others - len(kinds)))]
    plan += ["broker"] * broker_restarts
    rng.shuffle(plan)
    stream = asyncio.create_task(
        _produce(bootstrap, alerts, range(backlog, events), users, rate=rate)
    )
    try:
        for kind in plan:
            await asyncio.sleep(rng.uniform(0.5 * fault_every, 1.0 * fault_every))
            for pod in pods:
                if (status := pod.ensure_running()) is not None:
                    result.unexpected_exits.append(status)
            before = await outputs.count()
            say(f"fault: {kind} ({before} jobs so far)")
            await _fault(kind, pods, restart_postgres, restart_broker, session_seconds, rng)
            ended = time.monotonic()
            result.faults[kind] += 1
            # Once the stream is over and drained, nothing more flows: no figure then.
            if await _resumed(outputs, before, within=5.0 if stream.done() else 60.0):
                result.resume_seconds[kind].append(time.monotonic() - ended)
        await stream
        # Drain: every direct pair there, and the failover jobs after their statuses.
        expected = _expected(events, users)
        while time.monotonic() < deadline:
            for pod in pods:
                if (status := pod.ensure_running()) is not None:
                    result.unexpected_exits.append(status)
            pairs, _ = _pairs(outputs.jobs)
            missing = len(expected - set(pairs))
            say(f"draining: {missing} direct pairs missing")
            if not missing:
                break
            await asyncio.sleep(1)
        say("flushing held pages")
        held_users = [f"cc-{n}" for n in range(users) if kind_of(n) == "held"]
        for first in range(0, len(held_users), 4):  # `router held flush`, four at a time
            await asyncio.gather(
                *(
                    asyncio.to_thread(_cli, env, "held", "flush", "--user", user)
                    for user in held_users[first : first + 4]
                )
            )
        jobs = await outputs.settled()
        _judge(result, jobs, expected, events, users)
        result.dead_letters = len(await _read_jobs(bootstrap, [dlq]))
        result.elapsed_seconds = time.monotonic() - started
        return result
    finally:
        stop.set()
        stream.cancel()
        with contextlib.suppress(asyncio.CancelledError, KafkaError):
            await stream
        with contextlib.suppress(asyncio.CancelledError, KafkaError):
            await reporter
        for pod in pods:
            pod.stop()
        await outputs.stop()


def _expected(events: int, users: int) -> set[tuple[str, str]]:
    """The direct (event, transport) pairs that must have a job."""
    pairs = set()
    for n in range(events):
        kind = kind_of(n % users)
        if kind in ("plain", "failover"):  # failover: SMS, then the failover email
            pairs |= {(f"cc-{n}", "email"), (f"cc-{n}", "sms")}
    return pairs


def _pairs(
    jobs: list[dict[str, Any]],
) -> tuple[dict[tuple[str, str], set[str]], dict[tuple[str, str], set[str]]]:
    direct: dict[tuple[str, str], set[str]] = defaultdict(set)
    held: dict[tuple[str, str], set[str]] = defaultdict(set)
    for job in jobs:
        if job.get("digest_of"):
            for event_id in job["digest_of"]:
                held[(event_id, job["transport"])].add(job["job_id"])
        else:
            direct[(job["event_id"], job["transport"])].add(job["job_id"])
    return direct, held


def _judge(
    result: ClusterResult,
    jobs: list[dict[str, Any]],
    expected: set[tuple[str, str]],
    events: int,
    users: int,
) -> None:
    direct, held = _pairs(jobs)
    held_expected = {
        (f"cc-{n}", t)
        for n in range(events)
        if kind_of(n % users) == "held"
        for t in ("email", "sms")
    }
    result.expected_pairs = len(expected) + len(held_expected)
    result.lost = len(expected - set(direct)) + len(held_expected - set(held))
    result.duplicates = len(jobs) - len({job["job_id"] for job in jobs})
    result.mismatched_job_ids = sum(1 for ids in direct.values() if len(ids) > 1)
    result.held_pages = len(held_expected)
    result.held_not_once = sum(1 for key in held_expected if len(held.get(key, ())) != 1)
    result.held_also_sent_directly = sum(1 for key in held_expected if key in direct)
    failover_emails = [
        (f"cc-{n}", "email") for n in range(events) if kind_of(n % users) == "failover"
    ]
    result.failovers = len(failover_emails)
    result.failovers_not_once = sum(1 for key in failover_emails if len(direct.get(key, ())) != 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--faults", type=int, default=20)
    parser.add_argument("--broker-restarts", type=int, default=0, help="needs --persistent")
    parser.add_argument("--persistent", action="store_true", help="Tansu on S3 (moto_server)")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument(
        "--fault-every", type=float, default=10.0, help="mean seconds between faults"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    if args.broker_restarts and not args.persistent:
        parser.error("--broker-restarts needs --persistent (a memory broker forgets its data)")
    from router.dev.embedded import EmbeddedKafka, EmbeddedPostgres, EmbeddedS3, embedded_env

    with tempfile.TemporaryDirectory(prefix="router-cluster-chaos-") as tmp:
        workdir = Path(os.environ.get("CHAOS_WORKDIR") or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            storage = None
            if args.persistent:
                storage = stack.enter_context(EmbeddedS3(log_path=workdir / "moto.log"))
            kafka = stack.enter_context(
                EmbeddedKafka(log_path=workdir / "tansu.log", storage=storage)
            )
            postgres = stack.enter_context(EmbeddedPostgres(workdir / "pg"))
            env = {**embedded_env(kafka, postgres), "ROUTER_LOG_FORMAT": "json"}
            result = asyncio.run(
                run_cluster_chaos(
                    env,
                    workdir,
                    lambda down: postgres.restart(down),
                    (lambda down: kafka.restart(down)) if args.persistent else None,
                    events=args.events,
                    faults=args.faults,
                    broker_restarts=args.broker_restarts,
                    users=args.users,
                    fault_every=args.fault_every,
                    seed=args.seed,
                    timeout=args.timeout,
                )
            )
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
