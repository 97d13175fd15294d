"""What a routed batch tells operators: its metrics, tallied per batch (one increment
per label, not a labelled lookup per job), and one ``event_routed`` line per event."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import structlog

from router import metrics
from router.routing.pipeline import Routed

log = structlog.get_logger("router.handler")
#: The standard logger under ``log``: its level says whether per-event lines are wanted.
_EVENT_LINES = logging.getLogger("router.handler")


def report(routed_events: Sequence[Routed]) -> tuple[int, int]:
    """Count ``routed_events``' jobs and decisions in the metrics and log a line per
    event (below INFO, not even its arguments are worked out); returns (jobs, decisions)."""
    transports: dict[str, int] = {}
    outcomes_seen: dict[tuple[str, str], int] = {}
    jobs = decisions = 0
    for routed in routed_events:  # plain counting: a Counter.update per event cost more
        for job in routed.jobs:
            transports[job.transport] = transports.get(job.transport, 0) + 1
        for d in routed.decisions:
            seen = (d.outcome, d.reason or "")
            outcomes_seen[seen] = outcomes_seen.get(seen, 0) + 1
        jobs += len(routed.jobs)
        decisions += len(routed.decisions)
    if _EVENT_LINES.isEnabledFor(logging.INFO):
        for routed in routed_events:
            structlog.contextvars.bind_contextvars(event_id=routed.event.event_id)
            log.info(
                "event_routed",
                kind=routed.event.kind,
                severity=routed.event.severity,
                jobs=len(routed.jobs),
                skipped=sum(d.outcome == "skipped" for d in routed.decisions),
                reasons=sorted({d.reason for d in routed.decisions if d.reason}),
            )
        structlog.contextvars.unbind_contextvars("event_id")
    metrics.EVENTS.inc(len(routed_events))
    for transport, count in transports.items():
        metrics.JOBS.labels(transport).inc(count)
    for (decided, reason), count in outcomes_seen.items():
        metrics.DECISIONS.labels(decided, reason).inc(count)
    return jobs, decisions
