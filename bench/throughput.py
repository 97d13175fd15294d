"""Benchmark: `router run` next to a bare aiokafka loop, and what a page costs.

Both read the same alerts from one topic and write, per event, three jobs and
three decisions (the router: one email, one SMS and one webhook method per
user), waiting for the broker's acks before committing. The rate is measured
between the timestamps of the first and last output record, so start-up and
group joins do not count, and read once a loop has finished (the bare and
reference loops run in this process; a worker's finish is read from its
/metrics, asking for one counter), so no reader competes with the loop it
measures. Uses embedded Tansu
and PostgreSQL unless ROUTER_KAFKA_BOOTSTRAP_SERVERS / ROUTER_DATABASE_URL are set.

The three loops run ``--rounds`` times (3 unless told), one after the other in each
round, each over ``--events`` alerts of its own: on a shared machine a loop's rate
moves by a quarter from one minute to the next, so a ratio is taken between loops run
within the same round, and each figure below is the median of the rounds' (each
round's own under ``rounds``). The last round also measures latency, the directory's
loading time and the worker's memory.

One run prints, as a table and with ``--json`` as one JSON object on the last line:

- ``bare_events_per_s``, ``router_events_per_s`` and ``ratio`` (the median of the
  rounds' ratios, not of the medians' ratio);
- ``reference_events_per_s`` (and ``reference_ratio``): a lean loop written to find the
  ceiling, not project code: the real ``AlertEvent`` decoded, three methods per user
  from a dict, the mute/disabled/suppression checks on plain values, three jobs and
  three decisions as dicts (ids by ``uuid5``, rendered email and SMS texts), orjson,
  the router's own producer settings, acks awaited per batch, then a commit;
- ``db_round_trips_per_event``: queries the worker sent to PostgreSQL (counted by
  asyncpg's query logger, read from its /metrics) per event, between 20% and 80%
  of the backlog, so at steady state;
- ``latency_ms`` (``p50``, ``p95``, ``p99``): alert produced (its record
  timestamp) to job produced (the job record's timestamp, set when the router
  sends it; the broker's acknowledgement follows within the same batch), with
  alerts offered at a fixed ``--rate`` for ``--latency-seconds``;
- ``reference_latency_ms`` (``p50``, ``p95``, ``p99``): the same for the reference loop,
  on topics of its own, offered once its consumer has its partitions;
- ``cpu_us_per_event``: CPU microseconds per event between 20% and 80% of the backlog,
  of the ``bare`` and ``reference`` loops (this process), the ``router`` (the worker's
  process) and ``postgres`` (the embedded server's processes; null with
  ROUTER_DATABASE_URL): what each costs, less moved by the machine's phase than rates;
- ``machine_cpu_us_per_event`` (``bare``, ``reference``, ``router``): over the same
  stretch, the CPU every process on the machine used per event (``/proc/stat``: the
  loop, the broker, PostgreSQL, this process). A loop cannot route faster than the
  machine's CPUs allow it: ``cpus`` x 1,000,000 / this figure events/s;
- ``peak_rss_mb`` of the worker process (VmHWM);
- ``batch``: where the last round's batches went, means from the worker's histograms:
  ``records`` a batch, ``ms`` to route one (until the broker has its output),
  ``ledger_wait_ms`` waiting for the batch before to be recorded (PostgreSQL holding
  the worker back), and each PostgreSQL call's milliseconds (``record_batch_ms``: the
  ledger, written while the next batch is routed);
- ``rounds``: each round's rates, ratios, round trips and CPU per event;
- ``users`` (``--users``, up to 100,000: three methods each);
- with ``--users`` other than ``--baseline-users`` (1,000 unless told), the router's
  rate at both sizes from the same run: each round also routes a backlog of
  ``--events`` alerts with a directory of ``baseline_users`` (a database of its own on
  the same server, the worker started as the other), beside the router's run (after it
  in odd rounds, before it in even ones). ``baseline_events_per_s`` is that rate
  (median of the rounds), ``users_ratio`` the median of the rounds' router rate at
  ``--users`` over the rate at ``baseline_users``: target 4's "within 10%" without
  two runs minutes apart, which differ by more than that on a shared machine;
- with ``--workers N`` (N > 1), ``workers_events_per_s``: N ``router run`` processes in
  one consumer group routing a backlog of ``--events`` alerts, their combined rate.

    .venv/bin/python bench/throughput.py [--events 20000] [--users 1000] [--rate 1000]
        [--rounds 3] [--workers 3] [--baseline-users 1000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from router.db.migrate import migrate
from router.db.store import PgStore
from router.dev.embedded import (
    MEMORY_BROKER_FETCH_WAIT,
    EmbeddedKafka,
    EmbeddedPostgres,
    free_port,
)
from router.kafka.adapters import create_producer
from router.kafka.topics import ensure_topics
from router.routing import render
from router.settings import Settings
from schemas import AlertEvent, job_id_for

PARTITIONS = 6
#: Where a loop's CPU per event is read: between these shares of the backlog.
STEADY = (0.2, 0.8)


class CpuPerEvent:
    """CPU seconds (``cpu()``) per event between :data:`STEADY`'s shares of ``events``,
    from the first reading at or past each share."""

    def __init__(self, events: int, cpu: Callable[[], float] = time.process_time) -> None:
        self._marks = [share * events for share in STEADY]
        self._cpu = cpu
        self._readings: list[tuple[float, float]] = []

    def seen(self, done: float) -> None:
        """``done`` events so far."""
        if len(self._readings) < len(self._marks) and done >= self._marks[len(self._readings)]:
            self._readings.append((done, self._cpu()))

    @property
    def complete(self) -> bool:
        return len(self._readings) == len(self._marks)

    def microseconds(self) -> float | None:
        if not self.complete:
            return None
        (done_a, cpu_a), (done_b, cpu_b) = self._readings
        return round(1e6 * (cpu_b - cpu_a) / max(done_b - done_a, 1), 1)


def process_cpu(pids: Callable[[], list[int]]) -> Callable[[], float]:
    """The CPU seconds (user and system) the processes ``pids()`` names have used."""
    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        total = 0
        for pid in pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone: a connection closed
            total += int(fields[11]) + int(fields[12])
        return total / tick

    return cpu


def machine_cpu() -> float:
    """The CPU seconds every process on the machine has used (user, system, interrupts;
    not idle, waiting for I/O or stolen by the host), from ``/proc/stat``: the loop, the
    broker, PostgreSQL and this process together."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def server_pids(datadir: Path) -> Callable[[], list[int]]:
    """The embedded PostgreSQL's processes: the postmaster (``postmaster.pid`` under
    ``datadir``) and its children, looked up again at each reading."""

    def pids() -> list[int]:
        found = list(datadir.rglob("postmaster.pid"))
        if not found:
            return []
        postmaster = int(found[0].read_text().split()[0])
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except OSError:
                    continue
                if parent == postmaster:
                    children.append(int(entry.name))
        return [postmaster, *children]

    return pids


async def seed(url: str, users: int) -> None:
    store = await PgStore.connect(url)
    try:
        rows: list[tuple[Any, ...]] = []
        for n in range(users):
            base = dict.fromkeys(("is_primary", "verified", "disabled", "muted"), False)
            flags = dict.fromkeys(
                (
                    "suppress_up",
                    "suppress_down",
                    "suppress_first",
                    "suppress_diagnostic",
                    "suppress_all",
                ),
                False,
            )
            for transport, value in (
                ("email", f"u{n}@example.com"),
                ("sms", f"+1415{200 + n // 10000:03d}{n % 10000:04d}"),
                ("webhook", f"https://hooks.example.com/{n}"),
            ):
                rows.append(
                    (
                        f"user{n}",
                        transport,
                        value,
                        None,
                        base["is_primary"],
                        True,
                        False,
                        False,
                        None,
                        *flags.values(),
                        None,
                        None,
                        {},
                        {},
                        None,
                        {},
                        [],
                    )
                )
        await store.import_contact_methods(rows, create_users=True)
    finally:
        await store.close()


def alert_value(n: int, user: int, prefix: str = "bench") -> bytes:
    """The benchmarks' alert number ``n``: critical, down, to ``user{user}`` alone."""
    return json.dumps(
        {
            "event_id": f"{prefix}-{n}",
            "kind": "down",
            "severity": "critical",
            "user_ids": [f"user{user}"],
            "title": f"check {n} failed",
            "body": "connection refused from 3 probes",
        }
    ).encode()


async def produce_alerts(
    bootstrap: str, topic: str, events: int, users: int, prefix: str = "bench"
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        batch = []
        for i in range(events):
            value = alert_value(i, random.randrange(users), prefix)
            batch.append(await producer.send(topic, value))
        await asyncio.gather(*batch)
    finally:
        await producer.stop()


@dataclass(frozen=True)
class Since:
    """Where a round's output starts on a topic: at or past ``offsets`` (each partition's
    end when the round began: Tansu may give an end a batch short, so never more than
    the true one), and at or after ``ms`` (the clock then; every output record's
    timestamp is its loop's send time, later)."""

    offsets: dict[int, int]
    ms: int


async def since_now(bootstrap: str, topic: str) -> Since:
    """Where output written to ``topic`` from now on starts."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ms = int(time.time() * 1000)
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
        return Since({tp.partition: offset for tp, offset in ends.items()}, ms)
    finally:
        await consumer.stop()


async def rate(
    bootstrap: str,
    topic: str,
    expected: int,
    give_up_after: float,
    since: Since | None = None,
) -> float:
    """Output records per second between the first and last record's timestamps, of the
    records written ``since`` (default: all of the topic's)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        if since is None:
            await consumer.seek_to_beginning(*partitions)
        else:
            for tp in partitions:
                consumer.seek(tp, since.offsets.get(tp.partition, 0))
        after = since.ms if since is not None else 0
        seen, first, last = 0, None, None
        deadline = time.monotonic() + give_up_after
        while seen < expected:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"only {seen} of {expected} records on {topic} in {give_up_after}s"
                )
            for records in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
                for record in records:
                    if record.timestamp < after:
                        continue  # an earlier round's
                    seen += 1
                    first = record.timestamp if first is None else min(first, record.timestamp)
                    last = record.timestamp if last is None else max(last, record.timestamp)
        assert first is not None
        assert last is not None
        return float(seen / max((last - first) / 1000, 0.001))
    finally:
        await consumer.stop()


async def bare_loop(
    bootstrap: str,
    source: str,
    sink: str,
    events: int,
    group: str = "bench-bare",
    machine: CpuPerEvent | None = None,
) -> float | None:
    """The yardstick: consume a batch, produce six records per event, await acks, commit.
    Returns its CPU microseconds per event at steady state; ``machine`` is told each
    batch's progress too."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await consumer.start()
    await producer.start()
    meter = CpuPerEvent(events)
    try:
        done = 0
        while done < events:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            acks = []
            for records in batches.values():
                for record in records:
                    for _ in range(6):
                        acks.append(await producer.send(sink, record.value, key=record.key))
                    done += 1
            await asyncio.gather(*acks)
            await consumer.commit()
            meter.seen(done)
            if machine is not None:
                machine.seen(done)
    finally:
        await producer.stop()
        await consumer.stop()
    return meter.microseconds()


#: A reference loop's output record: topic, value, key and headers.
ReferenceRecord = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


def reference_directory(users: int) -> dict[str, list[dict[str, Any]]]:
    """The reference loop's directory: three methods per user, at the addresses ``seed``
    gives them (the ids are the reference's own)."""
    return {
        f"user{n}": [
            {
                "id": f"m{n}-{t}",
                "transport": t,
                "to": to,
                "disabled": False,
                "muted": False,
                "suppress": frozenset(),
                "verified": True,
            }
            for t, to in (
                ("email", f"u{n}@example.com"),
                ("sms", f"+1415{200 + n // 10000:03d}{n % 10000:04d}"),
                ("webhook", f"https://hooks.example.com/{n}"),
            )
        ]
        for n in range(users)
    }


def reference_outputs(
    value: bytes,
    directory: dict[str, list[dict[str, Any]]],
    topics: dict[str, str],
    sink: str,
    stamp: str,
) -> list[ReferenceRecord]:
    """The reference loop's work for one alert, not project code: the real ``AlertEvent``
    validated from the record, each recipient's methods from a dict, the
    mute/disabled/suppression checks on plain values, a job (ids by ``uuid5``, the email
    subject and text and the SMS text rendered) and a decision per method as dicts,
    orjson; ``stamp`` is the batch's time as text. Its records in the order sent."""
    out: list[ReferenceRecord] = []
    event = AlertEvent.model_validate_json(value)
    occurred = stamp if event.occurred_at is None else event.occurred_at
    for user_id in event.recipients():
        for m in directory.get(user_id, ()):
            decision: dict[str, Any] = {
                "event_id": event.event_id,
                "user_id": user_id,
                "contact_method_id": m["id"],
                "transport": m["transport"],
                "outcome": "sent",
                "reason": None,
                "job_id": None,
                "decided_at": stamp,
                "deliver_at": None,
                "digest_of": None,
                "failover_of": None,
            }
            if m["disabled"] or m["muted"] or event.kind in m["suppress"]:
                decision["outcome"] = "skipped"
                decision["reason"] = "disabled"
            else:
                job_id = job_id_for(event.event_id, m["id"])
                decision["job_id"] = job_id
                job: dict[str, Any] = {
                    "purpose": "alert",
                    "job_id": job_id,
                    "event_id": event.event_id,
                    "user_id": user_id,
                    "contact_method_id": m["id"],
                    "to": m["to"],
                    "kind": event.kind,
                    "severity": event.severity,
                    "title": event.title,
                    "body": event.body,
                    "url": event.url,
                    "verified": m["verified"],
                    "occurred_at": occurred,
                    "created_at": stamp,
                    "digest_of": None,
                    "transport": m["transport"],
                }
                if m["transport"] == "email":
                    job["subject"] = render.email_subject(event)
                    job["text"] = render.email_text(event)
                elif m["transport"] == "sms":
                    text = render.sms_text(event, 3)
                    job.update(text=text, encoding="GSM-7", segments=1)
                else:
                    job.update(
                        method="POST",
                        headers={"Content-Type": "application/json"},
                        body=orjson.dumps(
                            {"event_id": event.event_id, "job_id": job_id, "title": event.title}
                        ).decode(),
                    )
                headers = [
                    ("router.event_id", event.event_id.encode()),
                    ("router.job_id", job_id.encode()),
                ]
                out.append((topics[m["transport"]], orjson.dumps(job), m["id"].encode(), headers))
            out.append(
                (
                    sink,
                    orjson.dumps(decision),
                    event.event_id.encode(),
                    [("router.event_id", event.event_id.encode())],
                )
            )
    return out


async def reference_loop(
    settings: Settings,
    source: str,
    sink: str,
    events: int,
    users: int,
    ready: asyncio.Event | None = None,
    group: str = "bench-reference",
    machine: CpuPerEvent | None = None,
) -> float | None:
    """The ceiling, not project code: what routing costs with nothing but the work itself.

    The real ``AlertEvent`` (validated from the record), a dict directory of three
    methods per user, the mute/disabled/suppression checks on plain values, three jobs
    and three decisions per event as dicts with the router's fields (ids by ``uuid5``,
    the email subject and text and the SMS text rendered), orjson, and the router's
    producer (``create_producer``: linger, compression, acks=all); acks awaited per
    batch, then a commit; its consumer waits for records as the router's does
    (``fetch_max_wait_ms``). ``ready`` is set once it has its partitions. Returns its
    CPU microseconds per event at steady state.
    """
    directory = reference_directory(users)
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    producer = create_producer(settings)
    await consumer.start()
    await producer.start()
    # Kept out of the garbage collector's sight, as the worker keeps its directory
    # (router/directory/cache.py): otherwise each full collection walks every user's
    # dicts (some 120 ms at 100,000 users) and the ceiling measures the collector.
    gc.collect()
    gc.freeze()
    topics = {
        "email": settings.topic_email,
        "sms": settings.topic_sms,
        "webhook": settings.topic_webhook,
    }
    meter = CpuPerEvent(events)
    try:
        done = 0
        while done < events:
            batches = await consumer.getmany(
                timeout_ms=settings.batch_timeout_ms, max_records=settings.batch_max_records
            )
            if ready is not None and consumer.assignment():
                ready.set()
            acks = []
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time()))
            for records in batches.values():
                for record in records:
                    done += 1
                    for topic, value, key, headers in reference_outputs(
                        record.value, directory, topics, sink, stamp
                    ):
                        acks.append(await producer.send(topic, value, key=key, headers=headers))
            await asyncio.gather(*acks)
            await consumer.commit()
            meter.seen(done)
            if machine is not None:
                machine.seen(done)
    finally:
        await producer.stop()
        await consumer.stop()
        gc.unfreeze()
    return meter.microseconds()


async def run(
    args: argparse.Namespace,
    bootstrap: str,
    url: str,
    postgres: Callable[[], list[int]] | None = None,
) -> None:
    """The whole benchmark; ``postgres`` names the database server's processes, if local."""
    baseline_url = None
    if args.users != args.baseline_users:
        baseline_url = await baseline_database(url)
    env: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "database_url": url,
        "kafka_enable_idempotence": os.environ.get("ROUTER_KAFKA_ENABLE_IDEMPOTENCE", "false"),
        "create_topics": True,
        "topic_partitions": PARTITIONS,
        "topic_alerts": "bench.alerts",
        "topic_decisions": "bench.decisions",
        "group_id": "bench-router",
    }
    settings = Settings(**env)
    await migrate(url)
    await ensure_topics(settings)
    await seed(url, args.users)
    print(
        f"{args.events} events, {args.users} users x 3 methods, {PARTITIONS} partitions, "
        f"{os.cpu_count()} CPUs"
    )

    ref = Settings(
        **{
            **env,
            "topic_alerts": "bench.ref.in",
            "topic_decisions": "bench.ref.out",
            "topic_email": "bench.ref.email",
            "topic_sms": "bench.ref.sms",
            "topic_webhook": "bench.ref.webhook",
        }
    )
    await ensure_topics(ref)
    baseline = None
    if baseline_url is not None:
        baseline = await baseline_env(env, baseline_url, args.baseline_users)
    # Each round runs the three loops one after the other, each over alerts of its own,
    # the router's waiting as a backlog for a worker started after them; a ratio is
    # taken within a round, and the figures are the rounds' medians. The last round
    # also measures latency, the directory's loading and the worker's memory.
    rounds: list[Round] = []
    for n in range(1, args.rounds + 1):
        last = n == args.rounds
        this = Round(*await bare_round(env, n, args.events, args.users))
        this.reference, this.reference_cpu, this.reference_machine = await reference_round(
            ref, n, args.events, args.users
        )
        if last:
            reference_latency = await reference_offered_latency(
                Settings(
                    **{
                        **env,
                        **{
                            f"topic_{name}": f"bench.ref-latency.{name}"
                            for name in ("alerts", "decisions", "email", "sms", "webhook")
                        },
                    }
                ),
                args.rate,
                args.latency_seconds,
                args.users,
            )
        if baseline is not None and n % 2 == 0:
            this.baseline = await baseline_round(baseline, n, args)
        since = await since_now(bootstrap, settings.topic_decisions)
        # Ids of their own: the database knows the earlier rounds' as routed.
        await produce_alerts(bootstrap, settings.topic_alerts, args.events, args.users, f"bench{n}")
        port = free_port()
        started = time.monotonic()
        async with running_worker(env, port, args.log_level) as child:
            loading = asyncio.create_task(directory_loaded(port, args.users, started))
            watch = asyncio.create_task(steady_state(port, args.events, child.pid, postgres))
            spy = await start_profile(child.pid, args.profile) if args.profile and last else None
            await until_routed([port], args.events, 600)
            this.router = (
                await rate(bootstrap, settings.topic_decisions, 3 * args.events, 600, since) / 3
            )
            if spy is not None:
                await stop_profile(spy, args.profile)
            this.trips, this.router_cpu, this.postgres_cpu, this.router_machine = await watch
            this.loaded_in = await loading
            if last:
                breakdown = await asyncio.to_thread(batch_breakdown, port)
                latency = await offered_latency(
                    bootstrap, settings, args.rate, args.latency_seconds, args.users
                )
                peak_rss_mb = peak_rss(child.pid)
        if baseline is not None and n % 2 == 1:
            this.baseline = await baseline_round(baseline, n, args)
        rounds.append(this)
        print(f"round {n}: {this}")
    workers_rate = None
    if args.workers > 1:
        workers_rate = await several_workers(
            bootstrap, env, args.workers, args.events, args.users, args.log_level
        )
    bare_rate = median(r.bare for r in rounds)
    router_rate = median(r.router for r in rounds)
    ratio = median(r.router / r.bare for r in rounds)
    trips_per_event = median(r.trips for r in rounds)
    cpu = {
        "bare": rounded(median(r.bare_cpu for r in rounds)),
        "reference": rounded(median(r.reference_cpu for r in rounds)),
        "router": rounded(median(r.router_cpu for r in rounds)),
        "postgres": rounded(median(r.postgres_cpu for r in rounds)),
    }
    machine = {
        "bare": rounded(median(r.bare_machine for r in rounds)),
        "reference": rounded(median(r.reference_machine for r in rounds)),
        "router": rounded(median(r.router_machine for r in rounds)),
    }
    report = {
        "bare_events_per_s": round(bare_rate),
        "router_events_per_s": round(router_rate),
        "ratio": round(ratio, 3),
        "reference_events_per_s": round(median(r.reference for r in rounds)),
        "reference_ratio": round(median(r.reference / r.bare for r in rounds), 3),
        "db_round_trips_per_event": round(trips_per_event, 4),
        "cpu_us_per_event": cpu,
        "machine_cpu_us_per_event": machine,
        "batch": breakdown,
        "directory_loaded_s": rounded(median(r.loaded_in for r in rounds)),
        "latency_ms": latency,
        "reference_latency_ms": reference_latency,
        "latency_offered_events_per_s": args.rate,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "users": args.users,
        "events": args.events,
        "rounds": [r.figures() for r in rounds],
        "cpus": os.cpu_count(),
        "log_level": args.log_level,
    }
    if baseline is not None:
        report["baseline_users"] = args.baseline_users
        report["baseline_events_per_s"] = round(median(r.baseline for r in rounds))
        ratios = [r.router / r.baseline for r in rounds if r.baseline]
        report["users_ratio"] = round(median(ratios), 3)
    if workers_rate is not None:
        report["workers"] = args.workers
        report["workers_events_per_s"] = round(workers_rate)
    loaded_in = report["directory_loaded_s"]
    across = f"median of {len(rounds)} rounds" if len(rounds) > 1 else "one round"
    print(
        f"{across}:\n"
        f"bare aiokafka loop: {bare_rate:8.0f} events/s\n"
        f"reference loop:     {report['reference_events_per_s']:8.0f} events/s "
        f"({report['reference_ratio']:.2f} of the bare loop)\n"
        f"router run:         {router_rate:8.0f} events/s  ({ratio:.2f} of the bare loop)\n"
        f"db round trips:     {trips_per_event:8.4f} per event (steady state)\n"
        f"CPU per event (µs): bare loop {cpu['bare']}, reference loop {cpu['reference']}, "
        f"router {cpu['router']} + PostgreSQL {cpu['postgres']} (steady state)\n"
        f"machine CPU (µs):   bare loop {machine['bare']}, reference loop "
        f"{machine['reference']}, router {machine['router']} per event, every process "
        f"on the {os.cpu_count()} CPUs (the broker's and PostgreSQL's among them)\n"
        f"per batch (mean):   {breakdown}\n"
        f"directory loaded:   {loaded_in} s after the worker started\n"
        f"latency at {args.rate}/s:  p50 {latency['p50']} ms, p95 {latency['p95']} ms, "
        f"p99 {latency['p99']} ms (reference loop: p50 {reference_latency['p50']} ms, "
        f"p95 {reference_latency['p95']} ms, p99 {reference_latency['p99']} ms)\n"
        f"worker peak RSS:    {peak_rss_mb:8.1f} MB with {args.users} users"
    )
    if baseline is not None:
        print(
            f"router, {args.baseline_users} users: {report['baseline_events_per_s']:8.0f} "
            f"events/s in the same rounds; with {args.users} users "
            f"{report['users_ratio']:.2f} of that (median of the rounds' ratios)"
        )
    if workers_rate is not None:
        print(f"{args.workers} workers, one group: {workers_rate:8.0f} events/s combined")
    if args.json:
        print(json.dumps(report))


@dataclass
class Round:
    """One run of each loop over ``--events`` alerts of its own: rates and CPU per event."""

    bare: float
    bare_cpu: float | None
    bare_machine: float | None = None
    reference: float = 0.0
    reference_cpu: float | None = None
    reference_machine: float | None = None
    router: float = 0.0
    router_cpu: float | None = None
    postgres_cpu: float | None = None
    router_machine: float | None = None
    trips: float = 0.0
    loaded_in: float | None = None
    #: The router's rate with ``--baseline-users`` (None: not measured).
    baseline: float | None = None

    def figures(self) -> dict[str, Any]:
        more = {} if self.baseline is None else {"baseline_events_per_s": round(self.baseline)}
        return {
            "bare_events_per_s": round(self.bare),
            "reference_events_per_s": round(self.reference),
            "router_events_per_s": round(self.router),
            "ratio": round(self.router / self.bare, 3),
            "reference_ratio": round(self.reference / self.bare, 3),
            "db_round_trips_per_event": round(self.trips, 4),
            "cpu_us_per_event": {
                "bare": self.bare_cpu,
                "reference": self.reference_cpu,
                "router": self.router_cpu,
                "postgres": self.postgres_cpu,
            },
            "machine_cpu_us_per_event": {
                "bare": self.bare_machine,
                "reference": self.reference_machine,
                "router": self.router_machine,
            },
        } | more

    def __str__(self) -> str:
        also = "" if self.baseline is None else f", router at the baseline {self.baseline:.0f}"
        return (
            f"bare {self.bare:.0f}, reference {self.reference:.0f}, router {self.router:.0f} "
            f"events/s ({self.router / self.bare:.2f} of the bare loop){also}"
        )


def median(values: Iterable[float | None]) -> Any:
    """The median of the values known (None when none is: a CPU figure is missing when
    its loop ended before the second reading, the directory's load when not seen)."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


async def bare_round(
    env: dict[str, Any], n: int, events: int, users: int
) -> tuple[float, float | None, float | None]:
    """The bare loop over ``events`` alerts on a topic of the ``n``-th round's, in a group
    of its own (Tansu holds a group's new member back while its last one's session
    lasts): its rate, its CPU per event and the machine's."""
    source = f"bench.bare.in.{n}"
    await ensure_topics(
        Settings(**{**env, "topic_alerts": source, "topic_decisions": "bench.bare.out"})
    )
    bootstrap = env["kafka_bootstrap_servers"]
    since = await since_now(bootstrap, "bench.bare.out")
    await produce_alerts(bootstrap, source, events, users)
    machine = CpuPerEvent(events, machine_cpu)
    cpu = await asyncio.wait_for(
        bare_loop(bootstrap, source, "bench.bare.out", events, f"bench-bare-{n}", machine), 600
    )
    bare = await rate(bootstrap, "bench.bare.out", 6 * events, 600, since) / 6
    return bare, cpu, machine.microseconds()


async def reference_round(
    ref: Settings, n: int, events: int, users: int
) -> tuple[float, float | None, float | None]:
    """The reference loop over ``events`` alerts, as :func:`bare_round`: its rate, its CPU
    per event and the machine's."""
    source = f"bench.ref.in.{n}"
    ref = ref.model_copy(update={"topic_alerts": source})
    await ensure_topics(ref)
    bootstrap = ref.kafka_bootstrap_servers
    since = await since_now(bootstrap, ref.topic_decisions)
    await produce_alerts(bootstrap, source, events, users)
    machine = CpuPerEvent(events, machine_cpu)
    cpu = await asyncio.wait_for(
        reference_loop(
            ref,
            source,
            ref.topic_decisions,
            events,
            users,
            group=f"bench-reference-{n}",
            machine=machine,
        ),
        600,
    )
    reference = await rate(bootstrap, ref.topic_decisions, 3 * events, 600, since) / 3
    return reference, cpu, machine.microseconds()


BASELINE_DATABASE = "router_bench_baseline"


async def database_beside(url: str, name: str) -> str:
    """The URL of the database ``name`` on ``url``'s server, made now unless it is there
    (``url``'s user then needs CREATEDB)."""
    connection = await asyncpg.connect(url)
    try:
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path=f"/{name}"))


async def baseline_database(url: str) -> str:
    """The URL of the baseline's database on ``url``'s server (:func:`database_beside`); a
    benchmark that cannot make it says so in a line, before starting anything else."""
    try:
        return await database_beside(url, BASELINE_DATABASE)
    except (OSError, asyncpg.PostgresError) as error:
        raise SystemExit(
            f"--baseline-users: cannot make the baseline's database ({BASELINE_DATABASE}) "
            f"beside the benchmark's (its user needs CREATEDB): {error}"
        ) from None


async def baseline_env(env: dict[str, Any], url: str, users: int) -> dict[str, Any]:
    """The worker settings of the baseline's runs: its database (``url``, migrated and
    seeded with ``users`` users now), topics and a group of its own."""
    baseline: dict[str, Any] = {
        **env,
        "database_url": url,
        "group_id": "bench-router-baseline",
        **{
            f"topic_{topic}": f"bench.baseline.{topic}"
            for topic in ("alerts", "decisions", "email", "sms", "webhook")
        },
    }
    await migrate(url)
    await seed(url, users)
    await ensure_topics(Settings(**baseline))
    return baseline


async def baseline_round(env: dict[str, Any], n: int, args: argparse.Namespace) -> float:
    """The router over ``--events`` alerts with the baseline's directory (``env``), as in
    the round's own run: a worker started on the backlog, its rate from its decisions."""
    bootstrap = env["kafka_bootstrap_servers"]
    since = await since_now(bootstrap, env["topic_decisions"])
    await produce_alerts(
        bootstrap, env["topic_alerts"], args.events, args.baseline_users, f"baseline{n}"
    )
    port = free_port()
    async with running_worker(env, port, args.log_level):
        await until_routed([port], args.events, 600)
        return await rate(bootstrap, env["topic_decisions"], 3 * args.events, 600, since) / 3


@contextlib.asynccontextmanager
async def running_worker(
    env: dict[str, Any], port: int, log_level: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """:func:`start_worker` for the block, then stopped as a pod is (SIGTERM), waiting
    for it to finish its batches."""
    child = await start_worker(env, port, log_level)
    try:
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        await asyncio.wait_for(child.wait(), 60)


async def start_worker(
    env: dict[str, Any], port: int, log_level: str
) -> asyncio.subprocess.Process:
    """``router run`` in a process of its own, configured by ``env`` (Settings' names),
    writing its log lines from ``log_level`` up to this process's stderr."""
    router_env = {
        **os.environ,
        **{
            f"ROUTER_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in env.items()
        },
        "ROUTER_LOG_LEVEL": log_level,
        "ROUTER_LOG_FORMAT": "json",  # as in production, from a terminal too
        "ROUTER_HTTP_PORT": str(port),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "run", env=router_env
    )


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def several_workers(
    bootstrap: str, env: dict[str, Any], workers: int, events: int, users: int, log_level: str
) -> float:
    """``workers`` router processes in one group, started on empty topics and left to
    settle, then a backlog of ``events`` alerts: their combined rate (decisions / 3)."""
    env = {
        **env,
        "topic_alerts": "bench.multi.alerts",
        "topic_decisions": "bench.multi.decisions",
        "group_id": "bench-router-multi",
    }
    await ensure_topics(Settings(**env))
    ports = [free_port() for _ in range(workers)]
    children = [await start_worker(env, port, log_level) for port in ports]
    try:
        deadline = time.monotonic() + 120
        while not all(await asyncio.gather(*(asyncio.to_thread(ready, p) for p in ports))):
            if time.monotonic() > deadline:
                raise SystemExit(f"{workers} workers not ready in 120 s")
            await asyncio.sleep(0.5)
        await asyncio.sleep(10)  # the group's joins and rebalances, before the backlog
        # Ids of their own: the database already knows the single worker's as routed.
        await produce_alerts(bootstrap, "bench.multi.alerts", events, users, prefix="multi")
        await until_routed(ports, events, 600)
        return await rate(bootstrap, "bench.multi.decisions", 3 * events, 600) / 3
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        await asyncio.gather(*(asyncio.wait_for(c.wait(), 60) for c in children))


async def directory_loaded(port: int, users: int, started: float) -> float | None:
    """Seconds from starting the worker until its directory cache holds every user (the
    whole directory read at start), or None if that did not happen within 60 s."""
    while time.monotonic() - started < 60:
        try:
            (held,) = await asyncio.to_thread(scrape, port, "router_directory_cache_users")
        except OSError:
            held = 0.0
        if held >= users:
            return round(time.monotonic() - started, 1)
        await asyncio.sleep(0.2)
    return None


def batch_breakdown(port: int) -> dict[str, float]:
    """Where a batch's wall time went, from the worker's own histograms (means over the
    throughput run): records per batch, milliseconds per batch (routing it, until the
    broker has its output), milliseconds per batch waiting for the batch before to be
    recorded (``ledger_wait_ms``: the worker held back by PostgreSQL), and milliseconds
    per batch in each PostgreSQL call (``record_batch``, the ledger, runs while the next
    batch is routed)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()

    def total(name: str) -> float:
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    batches = max(total("router_batch_size_count"), 1.0)
    found = {
        "records": round(total("router_batch_size_sum") / batches, 1),
        "ms": round(1000 * total("router_batch_duration_seconds_sum") / batches, 1),
        # Waiting for the batch before to be recorded (its ledger, its commit).
        "ledger_wait_ms": round(1000 * total("router_ledger_wait_seconds_sum") / batches, 1),
    }
    for operation, seconds in re.findall(
        r'^router_db_query_duration_seconds_sum\{operation="([a-z_]+)"\} (\S+)$',
        text,
        re.MULTILINE,
    ):
        found[f"{operation}_ms"] = round(1000 * float(seconds) / batches, 1)
    return found


async def until_routed(ports: list[int], events: int, give_up_after: float) -> None:
    """Wait until the workers on ``ports`` have routed ``events`` events between them
    (their ``router_events_total``), reading their /metrics twice a second."""
    deadline = time.monotonic() + give_up_after
    while True:
        counts = await asyncio.gather(
            *(asyncio.to_thread(scrape, port, "router_events_total") for port in ports),
            return_exceptions=True,
        )
        routed = sum(c[0] for c in counts if isinstance(c, list))
        if routed >= events:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"only {routed:.0f} of {events} events routed in {give_up_after}s")
        await asyncio.sleep(0.5)


def scrape(port: int, *names: str) -> list[float]:
    """Counters' values from one read of the worker's /metrics, asking for those only
    (``name[]``): the whole page cost the worker about 5 ms of CPU a read on a slow
    machine, these about 1 ms."""
    query = urllib.parse.urlencode([("name[]", name) for name in names])
    url = f"http://127.0.0.1:{port}/metrics?{query}"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    found = []
    for name in names:
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        found.append(float(match.group(1)) if match else 0.0)
    return found


async def steady_state(
    port: int, events: int, worker: int, postgres: Callable[[], list[int]] | None
) -> tuple[float, float | None, float | None, float | None]:
    """Between 20% and 80% of the backlog (by routed-event count): the worker's queries
    per event, and the CPU microseconds per event of the worker (process ``worker``),
    of PostgreSQL (the processes ``postgres()`` names, if known) and of the machine.

    Read four times a second, both counters in one read (see :func:`scrape`), the CPU
    right after it. (Every 20 ms, as this once did, the reads cost the worker about 5%
    of its CPU in the run it measures: py-spy, ``--profile``.)"""
    router_cpu = CpuPerEvent(events, process_cpu(lambda: [worker]))
    postgres_cpu = CpuPerEvent(events, process_cpu(postgres)) if postgres else None
    machine = CpuPerEvent(events, machine_cpu)
    samples: list[tuple[float, float]] = []
    for share in STEADY:
        while True:
            try:
                routed, trips = await asyncio.to_thread(
                    scrape, port, "router_events_total", "router_db_round_trips_total"
                )
            except OSError:
                routed = trips = 0.0
            if routed >= share * events:
                router_cpu.seen(routed)
                machine.seen(routed)
                if postgres_cpu is not None:
                    postgres_cpu.seen(routed)
                samples.append((routed, trips))
                break
            await asyncio.sleep(0.25)
    (events_a, trips_a), (events_b, trips_b) = samples
    return (
        (trips_b - trips_a) / max(events_b - events_a, 1),
        router_cpu.microseconds(),
        postgres_cpu.microseconds() if postgres_cpu else None,
        machine.microseconds(),
    )


async def offered_latency(
    bootstrap: str, settings: Settings, per_second: int, seconds: float, users: int
) -> dict[str, float]:
    """Alert produced to job produced, at a fixed offered rate; percentiles in ms."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    sent: dict[str, int] = {}
    try:
        total = int(per_second * seconds)
        start = time.monotonic()
        pending = []
        for i in range(total):
            await asyncio.sleep(max(0.0, start + i / per_second - time.monotonic()))
            alert = {
                "event_id": f"latency-{i}",
                "kind": "down",
                "severity": "critical",
                "user_ids": [f"user{random.randrange(users)}"],
                "title": f"latency probe {i}",
            }
            pending.append(
                (
                    alert["event_id"],
                    await producer.send(settings.topic_alerts, json.dumps(alert).encode()),
                )
            )
        for event_id, ack in pending:
            sent[str(event_id)] = (await ack).timestamp
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    latencies: list[float] = []
    try:
        parts = [TopicPartition(settings.topic_email, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + 120
        while len(latencies) < len(sent) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
                for record in records:
                    job: dict[str, Any] = json.loads(record.value)
                    if job["event_id"] in sent:
                        latencies.append(record.timestamp - sent[job["event_id"]])
    finally:
        await consumer.stop()
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50": round(cuts[49], 1), "p95": round(cuts[94], 1), "p99": round(cuts[98], 1)}


async def reference_offered_latency(
    settings: Settings, per_second: int, seconds: float, users: int
) -> dict[str, float]:
    """The reference loop's own latency at the offered rate, measured as the router's
    (``offered_latency``) on topics of its own: the ceiling beside the router's figure.
    Offered once its consumer has its partitions, as the router's worker is running
    before its latency phase."""
    await ensure_topics(settings)
    ready = asyncio.Event()
    loop = asyncio.create_task(
        reference_loop(
            settings,
            settings.topic_alerts,
            settings.topic_decisions,
            int(per_second * seconds),
            users,
            ready,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 60)
        latency = await offered_latency(
            settings.kafka_bootstrap_servers, settings, per_second, seconds, users
        )
        await asyncio.wait_for(loop, 120)
    finally:
        if not loop.done():
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
    return latency


async def start_profile(pid: int, path: Path) -> asyncio.subprocess.Process:
    """py-spy sampling the worker (collapsed stacks to ``path``) until stopped."""
    spy = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("py-spy")),
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--rate",
        "250",
        "--idle",
        "--output",
        str(path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(0.5)
    return spy


async def stop_profile(spy: asyncio.subprocess.Process, path: Path) -> None:
    """Stop sampling and print where the worker's time went."""
    spy.send_signal(signal.SIGINT)
    await asyncio.wait_for(spy.wait(), 30)
    print(profile_summary(await asyncio.to_thread(path.read_text)))


def profile_summary(collapsed: str, top: int = 15) -> str:
    """Share of the worker's samples per function: inclusive (anywhere on the stack, the
    router's own code) and self (on top of the stack, any code)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or "Thread._bootstrap" in stack:  # idle helper threads
            continue
        n = int(count)
        total += n
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n
    idle = sum(n for f, n in own.items() if re.match(r"\w*\.?select \(selectors\.py\)", f))
    lines = [
        f"profile of the worker's event loop, {total} samples, "
        f"{100 * idle / max(total, 1):.1f}% idle (waiting in the selector); inclusive, router code:"
    ]
    ours = [
        (f, n) for f, n in inclusive.items() if re.search(r"\(router/(?!__main__|entry|cli/)", f)
    ]
    for frame, n in sorted(ours, key=lambda x: -x[1])[:top]:
        lines.append(f"  {100 * n / max(total, 1):5.1f}%  {frame}")
    lines.append("self (where the CPU is):")
    for frame, n in sorted(own.items(), key=lambda x: -x[1])[:top]:
        lines.append(f"  {100 * n / max(total, 1):5.1f}%  {frame}")
    return "\n".join(lines)


def peak_rss(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=1_000, help="up to 100,000")
    parser.add_argument("--rate", type=int, default=1_000, help="offered events/s for latency")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also route a backlog with this many router processes in one group",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="run the three loops this many times, one after the other; the figures are "
        "the rounds' medians (a ratio is taken within a round)",
    )
    parser.add_argument(
        "--baseline-users",
        type=int,
        default=1_000,
        help="with --users other than this, each round also routes a backlog with this "
        "many users: both rates and their ratio from one run (default 1,000)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="WARNING",
        help="the workers' ROUTER_LOG_LEVEL (default WARNING, as every figure in "
        "docs/performance.md; INFO, the router's default, adds a line per event)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="sample the worker with py-spy during the throughput run: collapsed stacks to "
        "FILE, top costs printed",
    )
    args = parser.parse_args()
    for name in ("rounds", "events", "users", "rate", "workers", "baseline_users"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.latency_seconds <= 0:
        parser.error("--latency-seconds must be more than 0")
    with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp:
        kafka = postgres = None
        bootstrap = os.environ.get("ROUTER_KAFKA_BOOTSTRAP_SERVERS")
        url = os.environ.get("ROUTER_DATABASE_URL")
        try:
            if not bootstrap:
                kafka = EmbeddedKafka(log_path=Path(tmp) / "tansu.log").start()
                bootstrap = kafka.bootstrap_servers
                for name, value in MEMORY_BROKER_FETCH_WAIT.items():  # as `router demo`
                    os.environ.setdefault(name, value)
            if not url:
                postgres = EmbeddedPostgres(Path(tmp) / "pg").start()
                url = postgres.url
            pids = server_pids(Path(tmp) / "pg") if postgres else None
            asyncio.run(run(args, bootstrap, url, pids))
        finally:
            if kafka:
                kafka.stop()
            if postgres:
                postgres.stop()


if __name__ == "__main__":
    main()
