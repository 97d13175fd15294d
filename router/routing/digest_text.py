"""What a digest of held pages says: its kind, severity and title, its SMS, its email,
its webhook body. Pure. The job that carries it is built with every other job
(:func:`router.routing.build.digest_job`)."""

from __future__ import annotations

from collections.abc import Sequence

from router.directory.models import ContactMethod
from router.routing import render
from schemas import SEVERITY_RANK, AlertEvent, Kind


def highest(events: Sequence[AlertEvent]) -> str:
    """The highest severity among ``events``: the digest's severity."""
    return max((e.severity for e in events), key=lambda s: SEVERITY_RANK[s])


def digest_kind(events: Sequence[AlertEvent]) -> Kind:
    """What the digest says happened: the events' kind when they all share one (a digest
    of recoveries is ``up``), else ``down``: something among them may still be wrong."""
    kinds = {e.kind for e in events}
    return kinds.pop() if len(kinds) == 1 else "down"


def digest_title(events: Sequence[AlertEvent]) -> str:
    if len(events) == 1:
        return events[0].title
    return f"{len(events)} alerts held for you (highest: {highest(events)})"


def digest_sms(events: Sequence[AlertEvent], max_segments: int) -> str:
    """How many, the highest severity, then the titles, cut to fit ``max_segments``."""
    if len(events) == 1:
        return render.sms_text(events[0], max_segments)
    titles = "; ".join(render.one_line(e.title) for e in events)
    return render.fit_sms(
        f"{len(events)} alerts, highest {highest(events).upper()}: {titles}", max_segments
    )


def digest_email(events: Sequence[AlertEvent]) -> tuple[str, str]:
    """Subject and text of a digest email: one section per event, oldest first."""
    if len(events) == 1:
        return render.email_subject(events[0]), render.email_text(events[0])
    subject = f"[{highest(events).upper()}] {digest_title(events)}"
    sections = [f"{len(events)} alerts arrived while they were held for you:", ""]
    for event in events:
        sections += [
            f"--- [{event.severity.upper()}] {event.kind.upper()}",
            render.email_text(event),
        ]
    return subject[:250], "\n".join(sections)


def digest_webhook_body(events: Sequence[AlertEvent], method: ContactMethod, job_id: str) -> str:
    payload = {
        "digest": True,
        "job_id": job_id,
        "user_id": method.user_id,
        "count": len(events),
        "highest_severity": highest(events),
        "events": [
            render.webhook_payload(e, user_id=method.user_id, job_id=job_id) for e in events
        ],
    }
    return render.compact_json(payload)
