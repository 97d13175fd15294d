"""What a routed batch tells operators: its metrics, tallied per batch (one increment
per label, not a labelled lookup per job), and one ``event_routed`` line per event."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import structlog

from router import metrics
from router.logging import enabled
from router.routing.build import sent_reason
from router.routing.pipeline import Routed
from schemas import Decision

log = structlog.get_logger("router.handler")


class Tally:
    """A batch's jobs by transport and decisions by (outcome, reason), counted as its
    events are routed (:meth:`add`, while each event's output is at hand)."""

    __slots__ = ("decisions", "jobs", "outcomes", "transports")

    def __init__(self, routed_events: Sequence[Routed] = ()) -> None:
        self.transports: dict[str, int] = {}
        self.outcomes: dict[tuple[str, str], int] = {}
        self.jobs = self.decisions = 0
        for routed in routed_events:
            self.add(routed)

    def add(self, routed: Routed) -> None:
        """Count one routed event's jobs and decisions."""
        transports, outcomes = self.transports, self.outcomes  # plain counting: no Counter
        for job in routed.jobs:
            transports[job.transport] = transports.get(job.transport, 0) + 1
        for entry in routed.outcomes:  # the jobs' sent decisions counted below, at once
            if isinstance(entry, Decision):
                seen = (entry.outcome, entry.reason or "")
                outcomes[seen] = outcomes.get(seen, 0) + 1
        if routed.jobs:
            seen = ("sent", sent_reason(routed.paging) or "")
            outcomes[seen] = outcomes.get(seen, 0) + len(routed.jobs)
        self.jobs += len(routed.jobs)
        self.decisions += len(routed.outcomes)


def report(routed_events: Sequence[Routed], tally: Tally) -> tuple[int, int]:
    """Count ``routed_events``' jobs and decisions (``tally``: them, already counted) in
    the metrics and log a line per event (below INFO, not even its arguments are
    worked out); returns (jobs, decisions)."""
    if enabled(logging.INFO):
        for routed in routed_events:
            # The jobs' sent decisions are not made for it: they say sent, and why.
            decisions = [e for e in routed.outcomes if isinstance(e, Decision)]
            sent = sent_reason(routed.paging) if routed.jobs else None
            log.info(
                "event_routed",
                event_id=routed.event.event_id,
                kind=routed.event.kind,
                severity=routed.event.severity,
                jobs=len(routed.jobs),
                skipped=sum(d.outcome == "skipped" for d in decisions),
                reasons=sorted(
                    {d.reason for d in decisions if d.reason} | ({sent} if sent else set())
                ),
            )
    metrics.EVENTS.inc(len(routed_events))
    for transport, count in tally.transports.items():
        metrics.JOBS.labels(transport).inc(count)
    for (decided, reason), count in tally.outcomes.items():
        metrics.DECISIONS.labels(decided, reason).inc(count)
    return tally.jobs, tally.decisions
