"""A running worker's directory cache follows every kind of directory change within a
second: the CLI, a bulk import, an opt-out message, and a plain SQL UPDATE.

The cache's TTL is an hour here, so only the database's notifications can explain a
change reaching the worker; each change is followed by one second, then an alert.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from router.dev.embedded import free_port
from tests.integration.conftest import (
    RouterProcess,
    add_contact,
    cli_ok,
    collect,
    produce,
    wait_for_topics,
)


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


async def wait_for_log(router: RouterProcess, line: str, timeout: float = 30) -> None:
    for _ in range(int(timeout * 10)):
        if line in router.log():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{line!r} never appeared in the router's log:\n{router.log()}")


async def test_every_kind_of_directory_change_reaches_a_running_worker_within_a_second(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {
        **router_env,
        "ROUTER_DIRECTORY_CACHE_TTL_SECONDS": "3600",
        "ROUTER_HTTP_PORT": str(port),
    }
    cli_ok(env, "users", "add", "alice")
    email = add_contact(env, "alice", "email", "alice@example.com", "--verified")
    router = start_router(env)
    await wait_for_log(router, "directory_cache_live")
    bootstrap = env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    alerts, decisions = env["ROUTER_TOPIC_ALERTS"], env["ROUTER_TOPIC_DECISIONS"]
    await wait_for_topics(bootstrap, [alerts, decisions])
    routed = 0

    async def page() -> str | None:
        """One alert for alice; the reason of its decision (None: sent)."""
        nonlocal routed
        routed += 1
        event = {
            "event_id": f"cache:{routed}",
            "kind": "down",
            "severity": "warning",
            "title": "disk full",
            "occurred_at": datetime.now(UTC).isoformat(),
            "user_ids": ["alice"],
        }
        await produce(bootstrap, alerts, json.dumps(event).encode())
        seen = await collect(
            bootstrap, [decisions], until=lambda s: len(s[decisions]) >= routed, settle=0
        )
        [decision] = [
            d
            for d in (json.loads(r.value) for r in seen[decisions])
            if d["event_id"] == f"cache:{routed}"
        ]
        reason: str | None = decision["reason"]
        return reason

    async def database(statement: str, *args: object) -> None:
        conn = await asyncpg.connect(env["ROUTER_DATABASE_URL"])
        try:
            await conn.execute(statement, *args)
        finally:
            await conn.close()

    assert await page() is None  # reads alice and keeps her
    assert await page() is None  # from the cache

    cli_ok(env, "contacts", "mute", email.id)  # the CLI
    await asyncio.sleep(1.0)
    assert await page() == "muted"

    await database("UPDATE contact_methods SET muted = false WHERE id = $1", email.id)  # SQL
    await asyncio.sleep(1.0)
    assert await page() is None

    change = {"type": "opt_out", "transport": "email", "address": "Alice@Example.com"}
    await produce(bootstrap, env["ROUTER_TOPIC_CONTACT_EVENTS"], json.dumps(change).encode())
    for _ in range(100):  # the worker applies it; then the clock starts
        if "opt_out_applied" in router.log():
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    assert await page() == "opted_out"

    cli_ok(env, "optout", "remove", "--transport", "email", "--address", "alice@example.com")
    await asyncio.sleep(1.0)
    assert await page() is None

    rows = tmp_path / "disable.csv"
    rows.write_text(
        "user_id,transport,value,verified,disabled\nalice,email,alice@example.com,true,true\n"
    )
    cli_ok(env, "contacts", "import", str(rows))  # a bulk import
    await asyncio.sleep(1.0)
    assert await page() == "disabled"

    # The cache answered (a hit per page after the first read of each change) and
    # stayed on throughout: the reasons above came through it, not around it.
    assert "directory_cache_off" not in router.log()
    text = await asyncio.to_thread(metrics_text, port)
    hits = re.search(r'router_directory_cache_lookups_total\{result="hit"\} (\S+)', text)
    assert hits is not None and float(hits.group(1)) >= 1, text
