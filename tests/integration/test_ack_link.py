"""The ack link in a real browser (issue 22, acceptance 2): headless Chromium opens a
job's ``ack_url`` served by ``router ingest``, sees the alert's title, presses the
button, and the page is acknowledged; GET alone acknowledges nothing; a tampered
token shows the refusal page."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from router.db.store import PgStore
from router.dev.embedded import free_port
from router.directory.writes import NewContactMethod
from router.pages.policy import PolicyStep
from tests.integration.conftest import RouterProcess, produce
from tests.integration.test_escalation import Tap

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"Debian's chromium is not installed ({CHROMIUM})"
)


class Ingest(RouterProcess):
    command = "ingest"


async def _listening(port: int, timeout: float = 30) -> None:
    for _ in range(int(timeout * 10)):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise AssertionError(f"router ingest never listened on {port}")


async def _status(store: PgStore, key: str) -> str:
    found = await store.page(key)
    assert found is not None
    return found[0].status


async def test_an_ack_link_acknowledges_only_when_its_button_is_pressed(
    router_env: dict[str, str], start_router: Any, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    prefix = router_env["ROUTER_GROUP_ID"].rsplit(".", 1)[0] + "."
    env = {
        **router_env,
        "ROUTER_TOPIC_ACKS": prefix + "acks",
        "ROUTER_TOPIC_REPLIES": prefix + "replies",
        "ROUTER_ACK_SECRET": "link-secret",
        "ROUTER_INGEST_TOKENS": "ingest-token",
        "ROUTER_ESCALATION_POLL_SECONDS": "0.2",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env.update(ROUTER_INGEST_PORT=str(port), ROUTER_ACK_BASE_URL=base)
    ingest = Ingest(env, tmp_path / "ingest.log").start()
    start_router(env)
    store = await PgStore.connect(env["ROUTER_DATABASE_URL"])
    tap = Tap(env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"], {"email": env["ROUTER_TOPIC_EMAIL"]})
    try:
        for user in ("alice", "bob"):
            await store.add_user(user, None, "UTC")
            await store.add_contact_method(
                NewContactMethod(user_id=user, transport="email", value=f"{user}@example.com")
            )
        await store.add_policy("db", "db", 0)
        await store.add_policy_step("db", PolicyStep(delay_seconds=8, user_ids=("alice",)))
        await store.add_policy_step("db", PolicyStep(delay_seconds=8, user_ids=("bob",)))
        await _listening(port)
        await tap.start()
        alert = {
            "event_id": "e1",
            "dedup_key": "db-primary",
            "kind": "down",
            "severity": "critical",
            "title": "Primary database <unreachable>",
            "escalation_policy_id": "db",
        }
        await produce(
            env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"],
            env["ROUTER_TOPIC_ALERTS"],
            json.dumps(alert).encode(),
        )
        await tap.wait(lambda: bool(tap.of("db-primary", "email")))
        job = tap.of("db-primary", "email")[0][0]
        url = job["ack_url"]
        assert url.startswith(base + "/v1/ack/") and url in job["text"]

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = await browser.new_page()
            shown = await page.goto(url)
            assert shown is not None and shown.status == 200
            assert await page.locator("#title").inner_text() == alert["title"]
            await asyncio.sleep(1.5)  # were GET to acknowledge, the worker would have it by now
            assert await _status(store, "db-primary") == "open", "GET alone acknowledged"

            await page.click("#ack")
            await page.wait_for_load_state()
            assert "Acknowledged" in await page.locator("h1").inner_text()
            for _ in range(100):
                if await _status(store, "db-primary") == "acknowledged":
                    break
                await asyncio.sleep(0.1)
            found = await store.page("db-primary")
            assert found is not None
            assert (found[0].status, found[0].answered_by, found[0].answered_via) == (
                "acknowledged",
                "alice",
                "link",
            )

            token = url.rsplit("/", 1)[1]
            tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
            refused = await page.goto(url.rsplit("/", 1)[0] + "/" + tampered)
            assert refused is not None and refused.status == 403
            assert "Link refused" in await page.locator("h1").inner_text()
            assert await page.locator("#ack").count() == 0
            await browser.close()
        answers = (await store.page("db-primary") or (None, []))[1]
        assert [a["source"] for a in answers] == ["link"]  # the refused link changed nothing
    finally:
        await tap.stop()
        await store.close()
        ingest.stop()
