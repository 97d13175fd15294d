"""Failover: when a page's job fails for good, the user's next method. Pure.

A page (one event, one user) fails over only when every job it got so far has
failed (a permanent failure, or no status within the transport's timeout): with
delivery mode ``all`` the other jobs may still get through, and a page still
held for one of its methods (quiet hours, a rate limit) waits for that digest,
so no (page, method) gets two jobs. A digest is a job of every page it carried:
when it fails, each of them is a page that may fail over. The next method is
the first eligible one, in the user's channel order (primary first within a
transport), that this page has not tried; the usual rules apply, judged at the
moment of the failover (quiet hours, mute-until), with the site's options. Its
job id is derived from the event and the method as always, so two workers that
handle two failures of the same page at once choose the same job and only one
publishes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from router.delivery.trail import JobRow, PageState, TrailRow, decision_rows, job_row
from router.directory.models import Directory
from router.routing.build import build_job, new_decision
from router.routing.rules import RoutingOptions, candidate, channel_order, skip_reason
from schemas import FAILURES, Decision, DeliveryJob, DeliveryStatus

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
    page: PageState,
    directory: Directory,
    now: datetime,
    options: RoutingOptions,
) -> Step:
    """The failover step for ``failed`` (a job of ``page``, for its user: its own, or a
    digest that carried it); ``page.jobs`` are every job of that page so far, with
    their failures recorded."""
    event = page.event
    if event.severity not in FAILOVER_SEVERITIES:
        return Step()
    if any(job.failed_at is None and job.job_id != failed.job_id for job in page.jobs):
        return Step()  # another job of this page may still get through
    if page.held:
        return Step()  # a digest to that method is still to come: it is the next try
    user = directory.users.get(failed.user_id)
    tried = {job.contact_method_id for job in page.jobs} | {failed.contact_method_id}
    candidates = [m for m in directory.methods_of(failed.user_id) if m.id not in tried]
    eligible = []
    if user is not None:
        for method in candidates:
            judged = candidate(event, user, method, directory, options, now, later=True)
            if skip_reason(judged) is None:
                eligible.append(method)
    if user is not None:
        for transport in channel_order(user):
            of_transport = [m for m in eligible if m.transport == transport]
            if of_transport:
                method = next((m for m in of_transport if m.is_primary), of_transport[0])
                job = build_job(event, method, now, options)
                decision = new_decision(
                    event_id=event.event_id,
                    user_id=failed.user_id,
                    contact_method_id=method.id,
                    transport=method.transport,
                    outcome="sent",
                    reason="failover",
                    job_id=job.job_id,
                    decided_at=now,
                    failover_of=failed.job_id,
                )
                return Step(decision, job)
    unreachable = new_decision(
        event_id=event.event_id,
        user_id=failed.user_id,
        contact_method_id=None,
        transport=None,
        outcome="skipped",
        reason="unreachable",
        decided_at=now,
        failover_of=failed.job_id,
    )
    return Step(unreachable)


def failed_for_good(status: DeliveryStatus, job: JobRow | None) -> bool:
    """Whether ``status`` ends its (known) job for good: a permanent failure."""
    return job is not None and status.permanent and status.status in FAILURES


def opt_out_from(status: DeliveryStatus, job: JobRow) -> tuple[str, str, str] | None:
    """The (transport, address, source) ``status`` puts on the opt-out list: a
    permanent email bounce, or an SMS the recipient answered with STOP."""
    if job.transport == "email" and status.status == "bounced" and status.permanent:
        return ("email", job.address, "bounce")
    if job.transport == "sms" and status.detail == "opt_out":
        return ("sms", job.address, "status")
    return None
