"""``router demo`` / ``make demo``: the whole path on one machine, nothing to install by hand.

Starts embedded Kafka (Tansu) and PostgreSQL, migrates, seeds a small
directory, runs the real ``router run`` worker and ``router ingest`` as child
processes, publishes sample alerts (good and bad) to Kafka and posts an
Alertmanager webhook over HTTP, and prints every job, decision and dead letter
as it comes out. Ctrl-C stops everything cleanly at any point.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from router.db.migrate import migrate
from router.db.store import PgStore
from router.dev.demo_data import (
    ALERTMANAGER_WEBHOOK,
    EXPECTED_DEAD_LETTERS,
    EXPECTED_DECISIONS,
    FAILOVER_EVENT,
    INGEST_TOKEN,
    QUIET_FOR,
    SAMPLES,
    quiet_samples,
    seed,
)
from router.dev.demo_pages import ACK_SECRET, escalate_and_acknowledge
from router.dev.embedded import (
    EmbeddedKafka,
    EmbeddedPostgres,
    die_with_parent,
    embedded_env,
    free_port,
)
from router.directory.addresses import mask
from router.kafka.topics import ensure_topics
from router.redact import redact_dsn
from router.schedules.oncall import timeline, who
from router.settings import Settings

DEMO_DIR = Path(".demo")


def _stop(process: subprocess.Popen[bytes] | None, name: str, grace_seconds: float) -> None:
    """SIGTERM, then SIGKILL after ``grace_seconds``; says how it ended."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
    print(f"{name} stopped (exit status {process.wait()})")


def _show(topic: str, value: bytes, headers: dict[str, str]) -> str:
    if topic.endswith(".dlq"):
        return f"dead letter  reason={headers.get('router.dlq.reason')}  {value[:40]!r}"
    record = json.loads(value)
    if "outcome" in record:
        who = record["user_id"] or "-"
        what = record["transport"] or "-"
        detail = record["reason"] or f"job {record['job_id'][:8]}"
        if record.get("deliver_at"):
            detail += f" until {record['deliver_at']}"
        if record.get("digest_of"):
            detail += f" digest of {', '.join(record['digest_of'])}"
        outcome = record["outcome"]
        return f"decision     {record['event_id']:<7} {who:<8} {what:<8} {outcome:<8} {detail}"
    text = record.get("text") or record.get("subject") or record.get("method")
    return (
        f"job          {record['event_id']:<7} {record['user_id']:<8} {record['transport']:<8}"
        f" to {mask(record['transport'], record['to'])}  {str(text).splitlines()[0][:60]}"
    )


async def _tail(settings: Settings, keep_running: bool) -> None:
    topics = [*settings.output_topics()]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign(
            [TopicPartition(t, p) for t in topics for p in range(settings.topic_partitions)]
        )
        decisions = dead = 0
        reported = False
        deadline = time.monotonic() + 90
        while keep_running or (decisions < EXPECTED_DECISIONS or dead < EXPECTED_DEAD_LETTERS):
            if not keep_running and time.monotonic() > deadline:
                print("demo: timed out waiting for output; see .demo/worker.log", file=sys.stderr)
                raise SystemExit(1)
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    print(f"  [{tp.topic:<18}] {_show(tp.topic, r.value, headers)}", flush=True)
                    decisions += tp.topic == settings.topic_decisions
                    dead += tp.topic == settings.topic_dlq
                    if tp.topic == settings.topic_sms and not reported:
                        job = json.loads(r.value)
                        if job["event_id"] == FAILOVER_EVENT:
                            reported = True
                            await _report_failure(settings, job["job_id"])
        print(
            f"\nAll {EXPECTED_DECISIONS} decisions and {EXPECTED_DEAD_LETTERS} dead letters seen."
        )
    finally:
        await consumer.stop()


async def _post_alertmanager(port: int, ingest: subprocess.Popen[bytes]) -> None:
    """Send an Alertmanager webhook to `router ingest`, as Alertmanager would."""
    base = f"http://127.0.0.1:{port}"

    def call(path: str, body: bytes | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(  # noqa: S310 - http to the local ingest
            base + path,
            data=body,
            headers={
                "content-type": "application/json",
                "authorization": f"Bearer {INGEST_TOKEN}",
            },
            method="POST" if body is not None else "GET",
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    deadline = time.monotonic() + 30
    while True:
        try:
            if (await asyncio.to_thread(call, "/readyz"))[0] == 200:
                break
        except OSError:
            pass
        if ingest.poll() is not None or time.monotonic() > deadline:
            print("demo: router ingest did not start; see .demo/ingest.log", file=sys.stderr)
            raise SystemExit(1)
        await asyncio.sleep(0.2)
    path = "/v1/alertmanager?users=bob"
    status, answer = await asyncio.to_thread(call, path, json.dumps(ALERTMANAGER_WEBHOOK).encode())
    print(
        f"POST {base}{path} (an Alertmanager webhook, 1 alert) -> {status} "
        f"{answer.decode(errors='replace')}\n"
    )
    if status != 200:
        raise SystemExit(1)


async def _report_failure(settings: Settings, job_id: str) -> None:
    """What an SMS delivery worker would publish when the carrier refuses for good."""
    status = {
        "job_id": job_id,
        "status": "failed",
        "permanent": True,
        "detail": "unknown subscriber",
        "at": datetime.now(UTC).isoformat(),
    }
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=False
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic_status, json.dumps(status).encode(), key=job_id.encode()
        )
    finally:
        await producer.stop()
    print(
        f"\n  (as the SMS delivery worker: {FAILOVER_EVENT}'s sms job {job_id[:8]} failed "
        f"permanently, reported on '{settings.topic_status}')\n",
        flush=True,
    )


async def _print_trail(settings: Settings, event_id: str) -> None:
    from router.delivery.trail import story

    store = await PgStore.connect(settings.database_url.get_secret_value(), min_size=1, max_size=1)
    try:
        event, jobs, rows = await store.trail(event_id)
    finally:
        await store.close()
    print(f"\n$ router trail {event_id}")
    for line in story(event, jobs, rows):
        print("  " + line.text())


async def _print_schedule(store: PgStore) -> None:
    """What ``router schedules who primary`` and ``show`` print for the seeded rotation."""
    now = datetime.now(UTC)
    schedule = await store.schedule("primary", now, now + timedelta(weeks=2))
    print("\n$ router schedules who primary")
    for entry in who(schedule, now):
        print(f"  {entry.user_id}  {'; '.join(str(r) for r in entry.reasons)}")
    print("$ router schedules show primary  (the next two weeks' handoffs, Europe/Berlin)")
    for handoff in timeline(schedule, now, now + timedelta(weeks=2)):
        users = ", ".join(handoff.users) or "nobody"
        print(f"  {handoff.at.astimezone(schedule.zone):%Y-%m-%d %H:%M %a}  {users}")
    print()


async def _prepare(settings: Settings) -> None:
    url = settings.database_url.get_secret_value()
    print(f"migrations: {', '.join(await migrate(url)) or 'none'}")
    store = await PgStore.connect(url, min_size=1, max_size=2)
    try:
        await seed(store)
        print(
            "seeded: alice (email, sms, webhook that suppresses 'up'), bob (email, disabled sms;"
            " on call for 'primary'), carol (prefers sms over email), dan (quiet hours, defer)"
        )
        await _print_schedule(store)
    finally:
        await store.close()
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=False
    )
    await producer.start()
    try:
        for value in [*SAMPLES, *quiet_samples()]:
            await producer.send_and_wait(settings.topic_alerts, value)
    finally:
        await producer.stop()
    print(
        f"published {len(SAMPLES) + 3} sample alerts to '{settings.topic_alerts}' "
        f"(2 of them invalid on purpose; 2 for dan in his quiet hours, which end in "
        f"{QUIET_FOR.seconds} s: held, then sent as one digest; {FAILOVER_EVENT} for carol, "
        "whose sms will fail)\n"
    )


def main(keep_running: bool = False) -> None:
    """Run the demo; returns when the expected output has been shown, or on Ctrl-C."""
    DEMO_DIR.mkdir(exist_ok=True)
    worker: subprocess.Popen[bytes] | None = None
    ingest: subprocess.Popen[bytes] | None = None
    with (
        tempfile.TemporaryDirectory(prefix="router-demo-") as tmp,
        EmbeddedKafka(log_path=DEMO_DIR / "tansu.log") as kafka,
        EmbeddedPostgres(Path(tmp) / "pg") as postgres,
    ):
        env = embedded_env(kafka, postgres)
        print(
            f"kafka (Tansu):  {kafka.bootstrap_servers}\npostgres:       {redact_dsn(postgres.url)}"
        )
        port = free_port()  # router ingest's, where the ack links point
        env.update(
            ROUTER_ACK_BASE_URL=f"http://127.0.0.1:{port}",
            ROUTER_ACK_SECRET=ACK_SECRET,
            ROUTER_ESCALATION_POLL_SECONDS="0.5",
        )
        os.environ.update(env)  # for Settings() here and for the worker child process
        settings = Settings()
        try:
            asyncio.run(_prepare(settings))
            with (
                open(DEMO_DIR / "worker.log", "wb") as log,
                open(DEMO_DIR / "ingest.log", "wb") as ingest_log,
            ):
                worker = subprocess.Popen(
                    [sys.executable, "-m", "router", "run"],
                    env={
                        **os.environ,
                        "ROUTER_LOG_FORMAT": "json",
                        "ROUTER_HELD_POLL_SECONDS": "1",
                    },
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent,
                )
                ingest = subprocess.Popen(
                    [sys.executable, "-m", "router", "ingest"],
                    env={
                        **os.environ,
                        "ROUTER_LOG_FORMAT": "json",
                        "ROUTER_INGEST_PORT": str(port),
                        "ROUTER_INGEST_HOST": "127.0.0.1",
                        "ROUTER_INGEST_TOKENS": INGEST_TOKEN,
                    },
                    stdout=ingest_log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent,
                )
                print(
                    "worker: `router run` started (log: .demo/worker.log); `router ingest` "
                    f"on port {port} (log: .demo/ingest.log)"
                )
                asyncio.run(_post_alertmanager(port, ingest))
                print("output as it comes out:\n")
                asyncio.run(_tail(settings, keep_running))
                asyncio.run(_print_trail(settings, FAILOVER_EVENT))
                if not keep_running:
                    asyncio.run(escalate_and_acknowledge(settings))
        except KeyboardInterrupt:
            print("\ninterrupted")
        finally:
            _stop(ingest, "router ingest", 15)
            _stop(worker, "worker", 30)
    print("embedded Kafka and PostgreSQL stopped")
