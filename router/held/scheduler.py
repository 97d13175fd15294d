"""Held pages out: every worker runs :class:`HeldDelivery` on a short period.

One round: claim the due pages (``FOR UPDATE SKIP LOCKED``, so two workers never
take the same page), read their users and methods, plan the digests
(:func:`router.held.digest.plan_delivery`), count them against the rate limits, publish
jobs and decisions and wait for every acknowledgement, then record how each
page ended, all in the claim's transaction. A crash between publishing and
recording rolls the claim back; the next round sends the same digest again, with
the same ``job_id`` (it is derived from the events it carries), so delivery
workers drop the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from aiokafka.errors import KafkaError

from router import metrics
from router.db.store import PgStore
from router.delivery.trail import JobRow, Trail, TrailRow, decision_rows, job_row
from router.errors import RouterError
from router.held.digest import Outcome, plan_delivery, settle
from router.kafka.publish import Outgoing, Publisher, deliver
from router.routing.rules import RoutingOptions
from router.settings import Settings

log = structlog.get_logger("router.held")


class PublishFailed(RouterError):
    """The broker did not acknowledge every message of a delivery round."""


class HeldDelivery:
    """Sends due held pages as digests; safe to run in every worker at once."""

    def __init__(
        self,
        store: PgStore,
        publisher: Publisher,
        settings: Settings,
        clock: Callable[[], datetime],
        *,
        options: RoutingOptions | None = None,
        after_publish: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._settings = settings
        self._clock = clock
        # The same options routing and failover read (the wiring builds them once).
        self._options = options if options is not None else settings.routing_options()
        self._limits = settings.rate_limits()
        # A test's stand-in for a crash between the acks and the commit.
        self._after_publish = after_publish

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver what is due every ``ROUTER_HELD_POLL_SECONDS`` until ``stop``."""
        while not stop.is_set():
            try:
                outcome = await self.deliver_due()
                if outcome.jobs or outcome.refused:
                    log.info(
                        "held_pages_delivered",
                        digests=len(outcome.jobs),
                        pages_sent=len(outcome.sent),
                        pages_refused=len(outcome.refused),
                        pages_postponed=len(outcome.postponed),
                    )
                counts = await self._store.held_counts()
                for transport in ("email", "sms", "webhook"):
                    metrics.HELD.labels(transport).set(counts.get(transport, 0))
            except (RouterError, KafkaError, OSError) as error:
                log.warning("held_delivery_failed", error=str(error), retry_in_seconds=self._poll)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll)

    @property
    def _poll(self) -> float:
        return self._settings.held_poll_seconds

    async def deliver_due(self, user_id: str | None = None, force: bool = False) -> Outcome:
        """One round. ``force`` (``router held flush``): every held page of ``user_id``,
        now, whatever the quiet window or the limits (refusals and expiry still apply)."""
        now = self._clock()
        async with self._store.claim_held(now, user_id, everything=force) as claim:
            if not claim.pages:
                return Outcome()
            directory = await self._store.directory_for({p.user_id for p in claim.pages})
            plan = plan_delivery(
                claim.pages,
                directory,
                now,
                self._options,
                max_age=timedelta(seconds=self._settings.held_max_age_seconds),
                force=force,
            )
            rate = await claim.reserve([d.send() for d in plan.digests], self._limits, now)
            outcome = settle(plan, rate.allowed, rate.retry_at, now)
            await self._publish(outcome)
            await self._store.write_trail(
                Trail(
                    jobs=[job_row(job) for job in outcome.jobs],
                    rows=[r for d in outcome.decisions for r in decision_rows(d, keyed=False)],
                )
            )
            if self._after_publish is not None:
                await self._after_publish()
            await claim.settle(outcome, now)
        for decision in outcome.decisions:
            metrics.DECISIONS.labels(decision.outcome, decision.reason or "").inc()
        for job in outcome.jobs:
            metrics.JOBS.labels(job.transport).inc()
        return outcome

    async def _publish(self, outcome: Outcome) -> None:
        messages: list[Outgoing] = []
        for job in outcome.jobs:
            messages.append(
                Outgoing(
                    self._settings.delivery_topic(job.transport),
                    job.model_dump_json().encode(),
                    job.contact_method_id.encode(),
                    {"router.event_id": job.event_id, "router.job_id": job.job_id},
                    0,
                    ("held", 0, 0, len(messages)),
                )
            )
        for decision in outcome.decisions:
            messages.append(
                Outgoing(
                    self._settings.topic_decisions,
                    decision.model_dump_json().encode(),
                    decision.event_id.encode(),
                    {"router.event_id": decision.event_id},
                    0,
                    ("held", 0, 0, len(messages)),
                )
            )
        if not messages:
            return
        delivery = await deliver(self._publisher, messages, set())
        failure = delivery.outage or next(iter(delivery.refused.values()), None)
        if failure is not None:
            raise PublishFailed(
                f"The broker did not take the held pages' digests ({failure}); they stay held "
                "and are tried again next round."
            ) from failure


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
