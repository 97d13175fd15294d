"""Delivery statuses recorded, and acted on: a permanent email bounce or an SMS
``opt_out`` puts the address on the opt-out list; a permanent failure of an
error/critical page's job fails the page over (see :mod:`router.delivery.edge`).
A redelivered status changes nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import structlog

from router import metrics
from router.db.pool import is_uuid
from router.db.store import Store
from router.delivery.failover import failed_for_good, opt_out_from
from router.delivery.trail import JobRow, status_row
from schemas import DeliveryStatus

log = structlog.get_logger("router.handler")

#: How long statuses naming jobs not on the trail wait, once, for them to appear: the
#: worker that published a job writes it to the trail just after the broker took it,
#: so a fast delivery worker's status can come back first.
UNKNOWN_JOB_WAIT_SECONDS = 1.0


async def record_statuses(
    store: Store,
    statuses: Sequence[DeliveryStatus],
    now: datetime,
    fail_over: Callable[[Sequence[JobRow], datetime], Awaitable[None]],
    actor: str | None = None,
    unknown_job_wait: float = UNKNOWN_JOB_WAIT_SECONDS,
) -> int:
    """Record ``statuses`` in the trail, apply their opt-outs, fail over the pages
    whose jobs failed for good; how many statuses were new. Opt-outs are audited as
    ``actor``. Jobs not on the trail are looked for again after ``unknown_job_wait``."""
    wanted = {s.job_id for s in statuses}
    jobs = await store.jobs_by_id(wanted)
    missing = {i for i in wanted - jobs.keys() if is_uuid(i)}  # others are never ours
    if unknown_job_wait and missing:
        await asyncio.sleep(unknown_job_wait)
        jobs.update(await store.jobs_by_id(missing))
    rows = [
        (status_row(s, jobs.get(s.job_id)), s.status, failed_for_good(s, jobs.get(s.job_id)))
        for s in statuses
    ]
    new = await store.record_statuses(rows)
    failed_jobs: dict[str, JobRow] = {}
    for status, (row, _, failed) in zip(statuses, rows, strict=True):
        job = jobs.get(status.job_id)
        if row.dedup in new:
            metrics.STATUSES.labels(status.status, str(job is not None).lower()).inc()
            if job is None:
                log.warning("status_for_unknown_job", job_id=status.job_id, status=status.status)
            else:
                log.info(
                    "delivery_status",
                    job_id=job.job_id,
                    event_id=job.event_id,
                    transport=job.transport,
                    status=status.status,
                    permanent=status.permanent,
                )
        if job is None:
            continue
        # Idempotent, so done again for a redelivered status (a crash may have come
        # between recording it and acting on it).
        opt_out = opt_out_from(status, job)
        if opt_out is not None:
            await store.add_opt_out(*opt_out, actor)
        if failed:
            failed_jobs[job.job_id] = job
    await fail_over(list(failed_jobs.values()), now)
    return len(new)
