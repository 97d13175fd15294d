"""Pages until someone answers, black-box through ``router run`` and the topics.

One router serves every scenario of issue 22's acceptance 1 at once, each with its own
users, policy and alert key: (a) a step escalates, (b) ``router ack``, (c) a PageAck,
(d) an ``up`` event, (e) an SMS reply (and one from a stranger's number), (f) repeat,
then ``unacknowledged``, (g) ``--notify-after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from router.db.store import PgStore
from router.directory.writes import NewContactMethod
from router.pages.policy import PolicyStep
from schemas import escalation_job_id, job_id_for
from tests.integration.conftest import cli_ok, produce, run_cli, wait_for_topics

Record = dict[str, Any]
DELAY = 5  # seconds: the acceptance's step-1 delay
#: Pages answered before their next step: room for the answer (a `router ack` process,
#: a record on a topic) to land before it is due on a loaded CI machine.
ANSWERED_DELAY = 3 * DELAY


class Tap:
    """Every job and decision the router publishes, read as it comes."""

    def __init__(self, bootstrap: str, topics: dict[str, str]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics  # short name -> topic
        self.seen: list[tuple[str, Record, float]] = []  # (short name, record, arrival)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await wait_for_topics(self.bootstrap, list(self.topics.values()))
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        await consumer.topics()
        parts = [
            TopicPartition(t, p)
            for t in self.topics.values()
            for p in consumer.partitions_for_topic(t) or {0}
        ]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        names = {t: n for n, t in self.topics.items()}
        loop = asyncio.get_running_loop()

        async def read() -> None:
            try:
                while True:
                    for tp, records in (await consumer.getmany(timeout_ms=100)).items():
                        for r in records:
                            self.seen.append((names[tp.topic], json.loads(r.value), loop.time()))
            finally:
                await consumer.stop()

        self._task = asyncio.create_task(read())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def of(self, key: str, kind: str | None = None) -> list[tuple[Record, float]]:
        return [
            (r, t)
            for n, r, t in self.seen
            if r.get("alert_key") == key
            and (kind is None or n == kind or (kind == "jobs" and n != "decisions"))
        ]

    async def wait(self, what: Callable[[], bool], timeout: float = 30) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not what():
            if loop.time() > deadline:
                raise TimeoutError(f"never happened; seen {len(self.seen)} records")
            await asyncio.sleep(0.1)


def event(name: str, kind: str = "down", **audience: Any) -> bytes:
    return json.dumps(
        {
            "event_id": f"{name}-{kind}",
            "dedup_key": f"{name}-key",
            "kind": kind,
            "severity": "error",
            "title": f"{name} is {kind}",
            **audience,
        }
    ).encode()


def ack(key: str, user: str | None, action: str = "ack") -> bytes:
    return json.dumps(
        {
            "alert_key": key,
            "user_id": user,
            "action": action,
            "source": "test",
            "at": datetime.now(UTC).isoformat(),
        }
    ).encode()


def jobs_at(tap: Tap, key: str, step: int, round_: int = 1) -> list[Record]:
    return [
        r
        for r, _ in tap.of(key, "jobs")
        if (r.get("escalation_step"), r.get("escalation_round")) == (step, round_)
    ]


@pytest.fixture
async def world(router_env: dict[str, str], start_router: Any) -> AsyncIterator[Any]:
    prefix = router_env["ROUTER_GROUP_ID"].rsplit(".", 1)[0] + "."
    env = {
        **router_env,
        "ROUTER_TOPIC_ACKS": prefix + "acks",
        "ROUTER_TOPIC_REPLIES": prefix + "replies",
        "ROUTER_ESCALATION_POLL_SECONDS": "0.2",
        "ROUTER_HELD_POLL_SECONDS": "0.3",
    }
    store = await PgStore.connect(env["ROUTER_DATABASE_URL"])
    tap = Tap(
        env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"],
        {
            "email": env["ROUTER_TOPIC_EMAIL"],
            "sms": env["ROUTER_TOPIC_SMS"],
            "decisions": env["ROUTER_TOPIC_DECISIONS"],
        },
    )
    router = start_router(env)
    await tap.start()
    try:
        yield env, store, tap
    finally:
        await tap.stop()
        await store.close()
        assert "Traceback" not in router.log(), router.log()[-3000:]


async def _people(store: PgStore, name: str, notify_after: int = 0) -> dict[str, str]:
    """Users NAME-u1 (SMS, email) and NAME-u2 (email); method ids by user and transport."""
    ids: dict[str, str] = {}
    number = 4155550100 + sum(name.encode()) % 90
    for n in (1, 2):
        user = f"{name}-u{n}"
        await store.add_user(user, None, "UTC")
        mail = await store.add_contact_method(
            NewContactMethod(user_id=user, transport="email", value=f"{user}@example.com")
        )
        ids[f"{user}/email"] = mail.id
        if n == 1:
            sms = await store.add_contact_method(
                NewContactMethod(user_id=user, transport="sms", value=f"+1{number}")
            )
            ids[f"{user}/sms"] = sms.id
            ids["number"] = f"+1{number}"
    return ids


async def _policy(store: PgStore, name: str, delay: int, repeat: int = 0) -> str:
    await store.add_policy(f"{name}-pol", name, repeat)
    for n in (1, 2):
        step = PolicyStep(delay_seconds=delay, user_ids=(f"{name}-u{n}",))
        await store.add_policy_step(f"{name}-pol", step)
    return f"{name}-pol"


async def test_pages_escalate_until_someone_answers(world: Any) -> None:
    env, store, tap = world
    bootstrap = env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    run = uuid.uuid4().hex[:6]

    async def page(name: str, delay: int = DELAY, repeat: int = 0) -> dict[str, str]:
        ids = await _people(store, name)
        policy = await _policy(store, name, delay, repeat)
        await produce(
            bootstrap, env["ROUTER_TOPIC_ALERTS"], event(name, escalation_policy_id=policy)
        )
        await tap.wait(lambda: bool(jobs_at(tap, f"{name}-key", 1)))
        return ids

    async def never_escalates(name: str) -> None:
        await asyncio.sleep(ANSWERED_DELAY + 2.5)
        assert not jobs_at(tap, f"{name}-key", 2), name
        assert not [
            r for r, _ in tap.of(f"{name}-key", "decisions") if r.get("escalation_step") == 2
        ]

    async def a() -> None:
        name = f"a{run}"
        ids = await page(name)
        key = f"{name}-key"
        await tap.wait(lambda: bool(jobs_at(tap, key, 2)))
        await asyncio.sleep(1.0)
        ((first, t1),) = [
            (r, t)
            for r, t in tap.of(key, "jobs")
            if r["escalation_step"] == 1 and r["transport"] == "email"
        ]
        seconds = next(t for r, t in tap.of(key, "jobs") if r["escalation_step"] == 2) - t1
        assert DELAY - 0.5 <= seconds <= DELAY + 3, seconds
        second = jobs_at(tap, key, 2)
        assert [j["user_id"] for j in second] == [f"{name}-u2"]  # once
        assert first["job_id"] == job_id_for(f"{name}-down", ids[f"{name}-u1/email"])
        assert second[0]["job_id"] == escalation_job_id(
            f"{name}-down", ids[f"{name}-u2/email"], 2, 1
        )
        sent = [r for r, _ in tap.of(key, "decisions") if r["escalation_step"] == 2]
        assert [(d["outcome"], d["reason"]) for d in sent] == [("sent", "escalated")]

    async def b() -> None:
        name = f"b{run}"
        await page(name, ANSWERED_DELAY)
        cli_out = await asyncio.to_thread(cli_ok, env, "ack", f"{name}-key", "--user", f"{name}-u1")
        assert "acknowledged" in cli_out
        await never_escalates(name)
        shown = json.loads(
            await asyncio.to_thread(cli_ok, env, "pages", "show", f"{name}-key", "--json")
        )
        assert (shown["status"], shown["answered_by"], shown["answered_via"]) == (
            "acknowledged",
            f"{name}-u1",
            "cli",
        )
        # The page's event's trail ends with the acknowledgement, as JSON and as text.
        trail = await asyncio.to_thread(cli_ok, env, "trail", f"{name}-down", "--json")
        answers = [line for line in map(json.loads, trail.splitlines()) if line["type"] == "ack"]
        assert [(a["action"], a["user_id"], a["source"], a["changed"]) for a in answers] == [
            ("ack", f"{name}-u1", "cli", True)
        ]
        text = await asyncio.to_thread(cli_ok, env, "trail", f"{name}-down")
        assert text.splitlines()[-1].endswith(f"ack       {name}-key  by {name}-u1 via cli")

    async def c() -> None:
        name = f"c{run}"
        await page(name, ANSWERED_DELAY)
        await produce(bootstrap, env["ROUTER_TOPIC_ACKS"], ack(f"{name}-key", f"{name}-u1"))
        await never_escalates(name)

    async def d() -> None:
        name = f"d{run}"
        await page(name, ANSWERED_DELAY)
        await produce(
            bootstrap, env["ROUTER_TOPIC_ALERTS"], event(name, "up", user_ids=[f"{name}-u1"])
        )
        await never_escalates(name)

    async def e(stranger: bool) -> None:
        name = f"e{'x' if stranger else ''}{run}"
        ids = await page(name, DELAY if stranger else ANSWERED_DELAY)
        sms = next(r for r in jobs_at(tap, f"{name}-key", 1) if r["transport"] == "sms")
        code = sms["reply_code"]
        assert sms["text"].endswith(f"Reply {code}A to ack, {code}R to resolve")
        number = "+14155550999" if stranger else ids["number"]
        reply = {"from": number, "text": f" {code} a ", "at": datetime.now(UTC).isoformat()}
        await produce(bootstrap, env["ROUTER_TOPIC_REPLIES"], json.dumps(reply).encode())
        if stranger:
            await tap.wait(lambda: bool(jobs_at(tap, f"{name}-key", 2)), timeout=DELAY + 10)
        else:
            await never_escalates(name)

    async def f() -> None:
        name = f"f{run}"
        await page(name, delay=2, repeat=1)
        key = f"{name}-key"

        def done() -> bool:
            return any(r["reason"] == "unacknowledged" for r, _ in tap.of(key, "decisions"))

        await tap.wait(done, timeout=30)
        await asyncio.sleep(1.0)
        steps = sorted(
            (r["escalation_round"], r["escalation_step"], r["user_id"])
            for r, _ in tap.of(key, "email")
        )
        assert steps == [
            (1, 1, f"{name}-u1"),
            (1, 2, f"{name}-u2"),
            (2, 1, f"{name}-u1"),
            (2, 2, f"{name}-u2"),
        ]
        ids = [r["job_id"] for r, _ in tap.of(key, "jobs")]
        assert len(ids) == len(set(ids))
        ends = [r for r, _ in tap.of(key, "decisions") if r["reason"] == "unacknowledged"]
        assert [(d["user_id"], d["outcome"]) for d in ends] == [(f"{name}-u2", "skipped")]

    async def g() -> None:
        name = f"g{run}"
        ids = await _people(store, name)
        user = f"{name}-u1"
        changed = await asyncio.to_thread(
            cli_ok, env, "contacts", "update", ids[f"{user}/sms"], "--notify-after", "5s", "--json"
        )
        assert json.loads(changed)["notify_after_seconds"] == 5
        for suffix in ("open", "acked"):
            await produce(
                bootstrap, env["ROUTER_TOPIC_ALERTS"], event(f"{name}{suffix}", user_ids=[user])
            )
        open_key, acked_key = f"{name}open-key", f"{name}acked-key"

        def deferred(key: str) -> bool:
            return any(r["reason"] == "notify_after" for r, _ in tap.of(key, "decisions"))

        await tap.wait(lambda: deferred(open_key) and deferred(acked_key))
        d = next(r for r, _ in tap.of(open_key, "decisions") if r["reason"] == "notify_after")
        assert (d["outcome"], d["transport"]) == ("deferred", "sms") and d["deliver_at"]
        await produce(bootstrap, env["ROUTER_TOPIC_ACKS"], ack(acked_key, user))

        def skipped() -> bool:
            return any(r["reason"] == "acknowledged" for r, _ in tap.of(acked_key, "decisions"))

        def sent() -> bool:
            return bool(tap.of(open_key, "sms"))

        await tap.wait(lambda: skipped() and sent(), timeout=20)
        assert not tap.of(acked_key, "sms")

    await asyncio.gather(a(), b(), c(), d(), e(False), e(True), f(), g())
    refused = await asyncio.to_thread(run_cli, env, "pages", "show", "nothing-here")
    assert refused.returncode == 1 and "no page" in refused.stderr
