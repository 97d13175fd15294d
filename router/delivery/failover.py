"""Failover: when a page's job fails for good, the user's next method. Pure.

A page (one event, one user) fails over only when every job it got so far has
failed (a permanent failure, or no status within the transport's timeout): with
delivery mode ``all`` the other jobs may still get through. The next method is
the first eligible one, in the user's channel order (primary first within a
transport), that this page has not tried; the usual rules apply. Its job id is
derived from the event and the method as always, so two workers that handle two
failures of the same page at once choose the same job and only one publishes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from router.delivery.trail import JobRow, TrailRow, decision_rows, job_row
from router.directory.models import Directory
from router.routing.pipeline import RoutingOptions, build_job
from router.routing.rules import Candidate, channel_order, skip_reason
from schemas import AlertEvent, Decision, DeliveryJob

#: Pages at or above this severity fail over.
FAILOVER_SEVERITIES = frozenset({"error", "critical"})


@dataclass(frozen=True)
class Step:
    """What a failure leads to: a new job and its ``failover`` decision, an
    ``unreachable`` decision, or nothing (``decision`` None)."""

    decision: Decision | None = None
    job: DeliveryJob | None = None

    def rows(self, failed_job_id: str) -> tuple[JobRow | None, TrailRow | None]:
        """What the trail records for this step."""
        if self.decision is None:
            return None, None
        row = decision_rows(self.decision)[0]
        return (job_row(self.job, failover_of=failed_job_id) if self.job else None), row


def next_step(
    failed: JobRow,
    event: AlertEvent,
    jobs: Sequence[JobRow],
    directory: Directory,
    now: datetime,
    options: RoutingOptions,
) -> Step:
    """The failover step for ``failed`` (a job of ``event`` for its user); ``jobs`` are
    every job of that page so far, with their failures recorded."""
    if event.severity not in FAILOVER_SEVERITIES:
        return Step()
    if any(job.failed_at is None and job.job_id != failed.job_id for job in jobs):
        return Step()  # another job of this page may still get through
    user = directory.users.get(failed.user_id)
    tried = {job.contact_method_id for job in jobs}
    candidates = [m for m in directory.methods_of(failed.user_id) if m.id not in tried]
    eligible = []
    if user is not None:
        for method in candidates:
            candidate = Candidate(
                event=event,
                user=user,
                method=method,
                now=now,
                opt_outs=directory.opt_outs,
                require_verified=options.require_verified,
                target_policy=options.target_policy,
            )
            if skip_reason(candidate) is None:
                eligible.append(method)
    if user is not None:
        for transport in channel_order(user):
            of_transport = [m for m in eligible if m.transport == transport]
            if of_transport:
                method = next((m for m in of_transport if m.is_primary), of_transport[0])
                job = build_job(event, method, now, options)
                decision = Decision.model_construct(
                    event_id=event.event_id,
                    user_id=failed.user_id,
                    contact_method_id=method.id,
                    transport=method.transport,
                    outcome="sent",
                    reason="failover",
                    job_id=job.job_id,
                    decided_at=now,
                    deliver_at=None,
                    digest_of=None,
                    failover_of=failed.job_id,
                )
                return Step(decision, job)
    unreachable = Decision.model_construct(
        event_id=event.event_id,
        user_id=failed.user_id,
        contact_method_id=None,
        transport=None,
        outcome="skipped",
        reason="unreachable",
        job_id=None,
        decided_at=now,
        deliver_at=None,
        digest_of=None,
        failover_of=failed.job_id,
    )
    return Step(unreachable)
