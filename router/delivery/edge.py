"""Failover, published: for each job that failed for good, for each page it was
part of (a digest's every event), the page's next step (a job to the user's next
method, or ``unreachable``), judged at the moment of the failover by the pure
:func:`router.delivery.failover.next_step`, recorded in the trail and published
once whoever else handles it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import structlog

from router import metrics
from router.db.store import Store
from router.delivery.failover import next_step
from router.delivery.trail import JobRow
from router.kafka.publish import Publisher, deliver
from router.kafka.records import decision_record, job_record
from router.routing.rules import RoutingOptions
from router.settings import Settings

log = structlog.get_logger("router.handler")


class FailOver:
    """Takes failed jobs' next steps; one per worker, shared with its watchers."""

    def __init__(
        self, store: Store, publisher: Publisher, settings: Settings, options: RoutingOptions
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._settings = settings
        self._options = options

    async def __call__(self, failed: Sequence[JobRow], now: datetime) -> None:
        """For each job failed for good, for each page it was part of (a digest's every
        event): the page's next step (a job to the user's next method, or
        ``unreachable``), judged at ``now``, published once whoever else handles it."""
        if not failed:
            return
        pages = await self._store.pages_state(
            {(event_id, j.user_id) for j in failed for event_id in j.pages}
        )
        directory = await self._store.directory_for({j.user_id for j in failed})
        for job, page in [(j, pages.get((e, j.user_id))) for j in failed for e in j.pages]:
            if page is None:
                continue
            event = page.event
            step = next_step(job, page, directory, now, self._options)
            new_job, row = step.rows(job.job_id)
            if step.decision is None or row is None:
                continue
            async with self._store.failover_step(new_job, row) as fresh:
                if not fresh:
                    continue
                messages = [
                    decision_record(self._settings, step.decision, 0, ("failover", 0, 0, 1))
                ]
                if step.job is not None:
                    messages.insert(
                        0, job_record(self._settings, step.job, 0, ("failover", 0, 0, 0))
                    )
                delivery = await deliver(self._publisher, messages, set())
                failure = delivery.outage or next(iter(delivery.refused.values()), None)
                if failure is not None:
                    raise failure
            metrics.DECISIONS.labels(step.decision.outcome, step.decision.reason or "").inc()
            if step.job is not None:
                metrics.JOBS.labels(step.job.transport).inc()
                log.info(
                    "failover",
                    event_id=event.event_id,
                    user_id=job.user_id,
                    failed_job_id=job.job_id,
                    job_id=step.job.job_id,
                    transport=step.job.transport,
                )
            else:
                metrics.UNREACHABLE.inc()
                log.error(
                    "page_unreachable",
                    event_id=event.event_id,
                    user_id=job.user_id,
                    failed_job_id=job.job_id,
                    hint="every method of the user was tried for this page; none worked",
                )
