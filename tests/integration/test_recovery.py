"""Outages delay routing and lose nothing; routing resumes as soon as the dependency answers."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import RouterProcess, collect, database_refused, produce
from tests.integration.test_end_to_end import add_alice, alert, publish_when_ready, topics


@pytest.mark.long
async def test_after_a_20_s_database_outage_every_alert_is_routed_and_routing_resumes_at_once(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
    postgres_url: str,
) -> None:
    add_alice(router_env)
    env = {**router_env, "ROUTER_RETRY_BACKOFF_MAX_SECONDS": "30"}  # the default backoff
    router = start_router(env)
    t = topics(env)
    bootstrap = env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    await publish_when_ready(bootstrap, t, alert("before", ["alice"]))
    await collect(
        bootstrap, [t["decisions"]], until=lambda s: len(s[t["decisions"]]) >= 3, settle=0
    )

    async with database_refused(postgres_url, env["ROUTER_DATABASE_URL"]):
        outage_started = time.monotonic()
        for n in range(40):  # 40 alerts over the 20 s outage
            await produce(bootstrap, t["alerts"], alert(f"during-{n}", ["alice"]))
            await asyncio.sleep(max(0.0, outage_started + (n + 1) * 0.5 - time.monotonic()))
    back_at = time.time()

    seen = await collect(
        bootstrap, [t["decisions"]], until=lambda s: len(s[t["decisions"]]) >= 3 * 41, timeout=60
    )
    decisions = [json.loads(r.value) for r in seen[t["decisions"]]]
    assert sorted({d["event_id"] for d in decisions}) == sorted(
        ["before", *(f"during-{n}" for n in range(40))]
    )
    first_after = min(r.timestamp for r in seen[t["decisions"]] if b'"during-' in r.value)
    log = router.log()
    print(
        f"\n20 s database outage, 40 alerts meanwhile: routing resumed "
        f"{first_after / 1000 - back_at:.2f} s after the database answered again "
        f"({log.count('batch_failed')} failed attempts logged)"
    )
    assert "dependency_answers" in log
    assert "Traceback" not in log


def catches_sigterm(pid: int) -> bool:
    """Whether the process has a SIGTERM handler yet (the SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) & (1 << (signal.SIGTERM - 1)))


async def test_sigterm_while_starting_exits_0_at_once(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    """A pod told to stop while it imports, connects or joins its group goes with status 0.

    Measured from the moment the router's first code runs (it installs the
    handler before importing anything heavy); a SIGTERM during the Python
    interpreter's own start, before that, still ends the process with 143.
    """
    took = []
    for delay in (0.0, 0.5, 1.2, 2.0):
        router = start_router(router_env)
        assert router.process is not None
        for _ in range(300):
            if catches_sigterm(router.process.pid):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(delay)
        signalled = time.monotonic()
        router.process.terminate()
        status = await asyncio.to_thread(router.process.wait, 30)
        took.append(time.monotonic() - signalled)
        assert status == 0, (delay, router.log())
        assert "Traceback" not in router.log()
    print("\nSIGTERM during start-up: exit 0 in " + ", ".join(f"{t:.2f}" for t in took) + " s")
