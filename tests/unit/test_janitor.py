"""The janitor purges on start and then every interval, and stops when told."""

from __future__ import annotations

import asyncio

from router.db.janitor import run_janitor
from router.errors import StoreUnavailable
from router.settings import Settings


class CountingStore:
    def __init__(self, fail_first: bool = False) -> None:
        self.calls: list[tuple[float, float, float, float]] = []
        self.fail_first = fail_first
        self.audit: list[float] = []

    async def purge(
        self,
        routed_older_than: float,
        sends_older_than: float,
        held_older_than: float = 0,
        trail_older_than: float = 0,
        audit_older_than: float = 0,
    ) -> None:
        self.calls.append((routed_older_than, sends_older_than, held_older_than, trail_older_than))
        self.audit.append(audit_older_than)
        if self.fail_first and len(self.calls) == 1:
            raise StoreUnavailable("down")


async def test_purges_past_the_windows_until_stopped() -> None:
    store, stop = CountingStore(), asyncio.Event()
    settings = Settings(janitor_interval_seconds=0.01)
    task = asyncio.create_task(run_janitor(store, settings, stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 1)
    assert len(store.calls) >= 2
    # dedup window, longest rate-limit window, settled held pages as long as routed
    # events, the page trail's retention
    week = 7 * 24 * 3600
    assert store.calls[0] == (week, 15 * 60, week, week)
    assert store.audit[0] == 90 * 24 * 3600  # the audit log's retention


async def test_a_failed_purge_is_retried_on_the_next_round() -> None:
    store, stop = CountingStore(fail_first=True), asyncio.Event()
    task = asyncio.create_task(run_janitor(store, Settings(janitor_interval_seconds=0.01), stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 1)
    assert len(store.calls) >= 2
