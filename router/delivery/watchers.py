"""The failover watchers every worker runs: jobs of error/critical pages with no
status within their transport's timeout count as failed, and a page whose
failover was interrupted (a crash between recording a failure and publishing the
next step) gets its step. Each step is taken once, whoever else watches."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

import structlog
from aiokafka.errors import KafkaError

from router.db.store import PgStore
from router.delivery.trail import JobRow, TrailRow
from router.errors import RouterError
from router.settings import Settings

log = structlog.get_logger("router.failover")


class FailsOver(Protocol):
    async def fail_over(self, failed: Sequence[JobRow], now: datetime) -> None: ...


async def watch_failovers(
    store: PgStore,
    worker: FailsOver,
    settings: Settings,
    clock: Callable[[], datetime],
    stop: asyncio.Event,
) -> None:
    """Every ``ROUTER_HELD_POLL_SECONDS``: jobs of error/critical pages with no status
    within their transport's ``ROUTER_FAILOVER_TIMEOUT_*`` count as failed; and a page
    whose failover was interrupted (a crash between recording a failure and publishing
    the next step) gets its step now."""
    while not stop.is_set():
        try:
            timeouts = settings.failover_timeouts()
            if timeouts:
                await fail_silent_jobs(store, worker, timeouts, clock())
            await repair_failovers(store, worker, clock())
        except (RouterError, KafkaError, OSError) as error:
            log.warning("failover_watch_failed", error=str(error))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.held_poll_seconds)


async def repair_failovers(
    store: PgStore, worker: FailsOver, now: datetime, grace_seconds: float = 30
) -> list[JobRow]:
    """Fail over the pages left without a next step; the jobs it acted on."""
    orphans = await store.orphaned_failures(grace_seconds=grace_seconds)
    if orphans:
        log.warning(
            "failover_resumed",
            pages=len(orphans),
            job_ids=[j.job_id for j in orphans][:20],
            hint="a failover was interrupted (crash or outage); taking its step now",
        )
        await worker.fail_over(orphans, now)
    return orphans


async def fail_silent_jobs(
    store: PgStore, worker: FailsOver, timeouts: Mapping[str, float], now: datetime
) -> list[JobRow]:
    """One round of the timeout path; the jobs it found silent."""
    silent = await store.claim_silent_jobs(timeouts, now)
    if not silent:
        return []
    rows = []
    for job in silent:
        note = {
            "job_id": job.job_id,
            "status": "no_status",
            "permanent": True,
            "detail": f"no status within {timeouts[job.transport]:g} s",
            "at": now.isoformat(),
        }
        rows.append(
            (
                TrailRow(
                    dedup=f"s|{job.job_id}|no_status",
                    kind="status",
                    event_id=job.event_id,
                    user_id=job.user_id,
                    job_id=job.job_id,
                    at=now,
                    record=json.dumps(note),
                ),
                "no_status",
                True,
            )
        )
    await store.record_statuses(rows)
    log.warning("jobs_without_status", jobs=len(silent), job_ids=[j.job_id for j in silent][:20])
    await worker.fail_over(silent, now)
    return silent
