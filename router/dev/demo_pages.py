"""The demo's last act: one page escalating from alice to bob, acknowledged by a link.

A policy pages alice, waits, then pages bob; bob opens the ``ack_url`` of his job
(the page ``router ingest`` serves: the alert and a button), presses the button,
and the page is acknowledged: no further step is paged.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from router.db.store import PgStore
from router.pages.policy import PolicyStep
from router.settings import Settings

POLICY = "db-primary"
ALERT_KEY = "db-primary-down"
STEP_DELAY = 6
ACK_SECRET = "demo-ack-secret"  # noqa: S105 - a demo's own, on 127.0.0.1
PAGE = {
    "event_id": "demo-page",
    "dedup_key": ALERT_KEY,
    "kind": "down",
    "severity": "error",
    "title": "Primary database unreachable",
    "escalation_policy_id": POLICY,
}


def _line(topic: str, record: dict[str, object]) -> str:
    where = f"step {record.get('escalation_step')} round {record.get('escalation_round')}"
    if "outcome" in record:
        reason = record["reason"] or "-"
        return (
            f"  [{topic:<18}] decision  {record['user_id']!s:<6} {record['transport']!s:<8}"
            f" {record['outcome']!s:<8} {reason!s:<10} {where}"
        )
    return f"  [{topic:<18}] job       {record['user_id']!s:<6} {record['transport']!s:<8} {where}"


def _http(url: str, method: str) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - the local ingest
        return answer.status, answer.read().decode()


def _heading(html: str) -> str:
    found = re.search(r"<h1>(.*?)</h1>", html)
    title = re.search(r'<strong id="title">(.*?)</strong>', html)
    return f"{found.group(1) if found else '?'}: {title.group(1) if title else ''}"


async def escalate_and_acknowledge(settings: Settings) -> None:
    """Run the act; print what comes out. Raises SystemExit(1) if it does not happen."""
    store = await PgStore.connect(settings.database_url.get_secret_value(), max_size=2)
    try:
        await store.add_policy(POLICY, "Database primary", 0)
        for user in ("alice", "bob"):
            await store.add_policy_step(
                POLICY, PolicyStep(delay_seconds=STEP_DELAY, user_ids=(user,))
            )
        print(
            f"\n$ router policies add {POLICY} --name 'Database primary'\n"
            f"$ router policies add-step {POLICY} --delay {STEP_DELAY}s --user alice\n"
            f"$ router policies add-step {POLICY} --delay {STEP_DELAY}s --user bob\n"
            f"published {PAGE['event_id']} (escalation_policy_id {POLICY}, alert key {ALERT_KEY}):"
        )
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic_alerts, json.dumps(PAGE).encode())
        finally:
            await producer.stop()
        url = await _tail_until_bob(settings)
        status, html = await asyncio.to_thread(_http, url, "GET")
        print(f"bob opens the ack_url of his email: GET -> {status}, '{_heading(html)}'")
        status, html = await asyncio.to_thread(_http, url, "POST")
        print(f"bob presses the button:             POST -> {status}, '{_heading(html)}'")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = await store.page(ALERT_KEY)
            if found is not None and found[0].status == "acknowledged":
                page = found[0]
                print(
                    f"$ router pages show {ALERT_KEY}\n  {page.status} by {page.answered_by} "
                    f"via {page.answered_via} at step {page.step} round {page.round}; "
                    "no further step will be paged"
                )
                return
            await asyncio.sleep(0.3)
        print("demo: the page was never acknowledged; see .demo/worker.log")
        raise SystemExit(1)
    finally:
        await store.close()


async def _tail_until_bob(settings: Settings) -> str:
    """Print the page's jobs and decisions until bob's step-2 email and its decision have
    come (the topics are read side by side, in no set order); the email's ack_url."""
    topics = [settings.topic_email, settings.topic_sms, settings.topic_decisions]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in range(settings.topic_partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + 60
        url: str | None = None
        decided = False
        while time.monotonic() < deadline and not (url and decided):
            for tp, records in (await consumer.getmany(timeout_ms=300)).items():
                for r in records:
                    record = json.loads(r.value)
                    if record.get("alert_key") != ALERT_KEY:
                        continue
                    print(_line(tp.topic, record), flush=True)
                    if record["user_id"] == "bob" and record.get("transport") == "email":
                        if tp.topic == settings.topic_email:
                            url = str(record["ack_url"])
                        else:
                            decided = True
        if url and decided:
            return url
        print("demo: bob was never paged; see .demo/worker.log")
        raise SystemExit(1)
    finally:
        await consumer.stop()
