"""Two workers and SIGKILLs in the middle of escalation rounds (issue 22, acceptance 3).

Every due step is paged exactly once per (page, step, round) by job id, and none is
lost: a worker killed between publishing a step and marking it leaves the step to
the next round, which pages it with the same job ids.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import pytest

from router.db.store import PgStore
from router.directory.writes import NewContactMethod
from router.pages.policy import PolicyStep
from tests.integration.conftest import produce
from tests.integration.test_escalation import Tap

PAGES = 6
STEPS = 3
ROUNDS = 3  # repeat 2


@pytest.mark.long
async def test_two_workers_and_kills_page_every_step_once_and_lose_none(
    router_env: dict[str, str], start_router: Any
) -> None:
    prefix = router_env["ROUTER_GROUP_ID"].rsplit(".", 1)[0] + "."
    env = {
        **router_env,
        "ROUTER_TOPIC_ACKS": prefix + "acks",
        "ROUTER_TOPIC_REPLIES": prefix + "replies",
        "ROUTER_ESCALATION_POLL_SECONDS": "0.05",
    }
    store = await PgStore.connect(env["ROUTER_DATABASE_URL"])
    try:
        await store.add_policy("pol", "chaos", ROUNDS - 1)
        for n in range(1, STEPS + 1):
            await store.add_user(f"u{n}", None, "UTC")
            await store.add_contact_method(
                NewContactMethod(user_id=f"u{n}", transport="email", value=f"u{n}@example.com")
            )
            await store.add_policy_step("pol", PolicyStep(delay_seconds=1, user_ids=(f"u{n}",)))
    finally:
        await store.close()
    tap = Tap(
        env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"],
        {"email": env["ROUTER_TOPIC_EMAIL"], "decisions": env["ROUTER_TOPIC_DECISIONS"]},
    )
    steady = start_router(env)
    victim = start_router(env)
    await tap.start()
    events = [
        json.dumps(
            {
                "event_id": f"e{n}",
                "kind": "down",
                "severity": "critical",
                "title": f"page {n}",
                "escalation_policy_id": "pol",
            }
        ).encode()
        for n in range(PAGES)
    ]
    await produce(env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"], env["ROUTER_TOPIC_ALERTS"], *events)

    def ended() -> int:
        return sum(1 for _, r, _ in tap.seen if r.get("reason") == "unacknowledged")

    kills = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while ended() < PAGES and loop.time() < deadline:
        await asyncio.sleep(0.7)
        if ended() < PAGES and victim.process is not None:
            victim.process.kill()  # SIGKILL: no draining, no commit
            victim.process.wait()
            kills += 1
            victim = start_router(env)
    # The kills may go on for the whole minute (a group rebalancing every 0.7 s routes
    # little); then the last rounds still take their delays and one rebalance: on a
    # machine running other suites beside it, 30 s was not always enough.
    await tap.wait(lambda: ended() >= PAGES, timeout=60)
    await asyncio.sleep(1.5)  # anything paged twice would show up now
    await tap.stop()
    assert steady.process is not None and steady.process.poll() is None

    ids: dict[tuple[str, int, int], set[str]] = defaultdict(set)
    for name, record, _ in tap.seen:
        if name == "email":
            ids[(record["event_id"], record["escalation_step"], record["escalation_round"])].add(
                record["job_id"]
            )
    expected = {
        (f"e{n}", step, round_)
        for n in range(PAGES)
        for step in range(1, STEPS + 1)
        for round_ in range(1, ROUNDS + 1)
    }
    assert set(ids) == expected  # none lost, none extra
    assert all(len(job_ids) == 1 for job_ids in ids.values()), {
        k: v for k, v in ids.items() if len(v) > 1
    }  # each (step, round) paged once by job id
    ends = [r for _, r, _ in tap.seen if r.get("reason") == "unacknowledged"]
    assert sorted({r["event_id"] for r in ends}) == sorted(f"e{n}" for n in range(PAGES))
    assert kills >= 3
