"""The page trail: what was decided, sent and reported for each page. Pure.

:func:`trail_of` turns routed events into the rows the store writes (the
handler builds them from the JSON it already made for Kafka, keeping a plain sent
decision as its job id: :func:`trail_value`); :func:`story` puts one page's rows
back in time order for ``router trail``, each decision whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas import AlertEvent, Decision, DeliveryJob, DeliveryStatus


@dataclass(frozen=True)
class JobRow:
    """A published job as the trail and failover know it."""

    job_id: str
    event_id: str
    user_id: str
    contact_method_id: str
    transport: str
    severity: str
    address: str
    created_at: datetime
    failover_of: str | None = None
    last_status: str | None = None
    failed_at: datetime | None = None
    #: A digest: every event it carried, oldest first (``event_id`` is the first).
    digest_of: tuple[str, ...] | None = None

    @property
    def pages(self) -> tuple[str, ...]:
        """The events whose pages this job is part of: a digest's every event."""
        return self.digest_of or (self.event_id,)


@dataclass(frozen=True)
class PageState:
    """One page (an event, a user) as failover sees it: the event, every job it got so
    far (its own and the digests that carried it), and the contact methods it is
    still held for (quiet hours, a rate limit)."""

    event: AlertEvent
    jobs: list[JobRow] = field(default_factory=list)
    held: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TrailRow:
    """A decision or a status, with the key that keeps it from being written twice."""

    dedup: str | None  # None: written as often as it comes (a batch's own decisions)
    kind: str  # decision | status
    event_id: str | None
    user_id: str | None
    job_id: str | None
    at: datetime
    record: str  # JSON text


@dataclass
class Trail:
    """What one batch adds to the trail."""

    #: (event id, event JSON, JSON array of the batch's decisions about it, when), the
    #: JSON as UTF-8 bytes: the event as it came and the decisions as published.
    events: list[tuple[str, bytes, bytes, datetime]] = field(default_factory=list)
    jobs: list[JobRow] = field(default_factory=list)
    rows: list[TrailRow] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.jobs or self.rows)


def job_row(job: DeliveryJob, failover_of: str | None = None) -> JobRow:
    """The trail's row of ``job``: one per job published, so built without the frozen
    dataclass's per-field ``__setattr__`` (the same fields, every one set)."""
    row = object.__new__(JobRow)
    row.__dict__.update(
        job_id=job.job_id,
        event_id=job.event_id,
        user_id=job.user_id,
        contact_method_id=job.contact_method_id,
        transport=job.transport,
        severity=job.severity,
        address=job.to,
        created_at=job.created_at,
        failover_of=failover_of,
        last_status=None,
        failed_at=None,
        digest_of=tuple(job.digest_of) if job.digest_of else None,
    )
    return row


def decision_rows(
    decision: Decision, record: str | None = None, *, keyed: bool = True
) -> list[TrailRow]:
    """A decision, once per event it concerns (a digest's, once per event it carries).

    ``keyed``: with a key that keeps it from being written twice (failover steps).
    A batch's own decisions go unkeyed, which keeps the hot path's index small: a
    redelivered batch writes them again, and :func:`story` shows each once.
    """
    text = record if record is not None else decision.model_dump_json()
    events = decision.digest_of or [decision.event_id]
    return [
        TrailRow(
            dedup=None
            if not keyed
            else "|".join(
                (
                    "d",
                    event_id,
                    decision.user_id or "",
                    decision.contact_method_id or "",
                    decision.outcome,
                    decision.reason or "",
                    decision.job_id or "",
                )
            ),
            kind="decision",
            event_id=event_id,
            user_id=decision.user_id,
            job_id=decision.job_id,
            at=decision.decided_at,
            record=text,
        )
        for event_id in events
    ]


def status_row(status: DeliveryStatus, job: JobRow | None) -> TrailRow:
    """A delivery status; one for a job the trail does not know is kept too."""
    # PostgreSQL's text cannot hold NUL, which a provider's detail (or a stranger's job
    # id) may carry: U+FFFD in its place in the key; the record keeps it (JSON escapes it).
    dedup = "|".join(
        ("s", status.job_id, status.status, status.at.isoformat(), status.detail or "")
    )
    return TrailRow(
        dedup=dedup.replace("\x00", "\ufffd"),
        kind="status",
        event_id=job.event_id if job else None,
        user_id=job.user_id if job else None,
        job_id=status.job_id if job else None,
        at=status.at,
        record=status.model_dump_json(),
    )


def trail_of(
    routed: Iterable[tuple[AlertEvent, Sequence[DeliveryJob], Sequence[Decision]]],
    now: datetime,
) -> Trail:
    """The rows for a batch's routed events."""
    trail = Trail()
    for event, jobs, decisions in routed:
        array = "[" + ",".join(d.model_dump_json() for d in decisions) + "]"
        trail.events.append((event.event_id, event.model_dump_json().encode(), array.encode(), now))
        trail.jobs.extend(job_row(job) for job in jobs)
    return trail


@dataclass(frozen=True)
class Line:
    """One entry of a page's story."""

    at: datetime
    type: str  # event | decision | job | status | ack
    data: dict[str, Any]

    def as_json(self) -> str:
        return json.dumps({"at": self.at.isoformat(), "type": self.type, **self.data})

    def text(self) -> str:
        d = self.data
        at = self.at.isoformat(timespec="milliseconds")
        if self.type == "event":
            who = ",".join(d.get("user_ids") or []) or f"schedule {d.get('schedule_id')}"
            return f"{at}  event     {d['severity']} {d['kind']} {d['title']!r} for {who}"
        if self.type == "job":
            extra = f" (failover of {d['failover_of']})" if d.get("failover_of") else ""
            return (
                f"{at}  job       {d['job_id']}  {d['user_id']} {d['transport']} "
                f"{d['contact_method_id']}{extra}"
            )
        if self.type == "ack":
            changed = "" if d.get("changed") else " (changed nothing)"
            return (
                f"{at}  {d['action']:<9} {d['alert_key']}  by {d.get('user_id') or '-'} "
                f"via {d['source']}{changed}"
            )
        if self.type == "status":
            permanent = " permanent" if d.get("permanent") else ""
            detail = f": {d['detail']}" if d.get("detail") else ""
            return f"{at}  status    {d['job_id']}  {d['status']}{permanent}{detail}"
        what = d["outcome"] + (f" {d['reason']}" if d.get("reason") else "")
        tail = []
        if d.get("job_id"):
            tail.append(f"job {d['job_id']}")
        if d.get("deliver_at"):
            tail.append(f"until {d['deliver_at']}")
        if d.get("digest_of"):
            tail.append(f"digest of {', '.join(d['digest_of'])}")
        if d.get("failover_of"):
            tail.append(f"after {d['failover_of']} failed")
        target = " ".join(x for x in (d.get("user_id"), d.get("transport")) if x)
        return f"{at}  decision  {target or '-'}  {what}  {'; '.join(tail)}".rstrip()


def story(
    event: tuple[str, str, datetime] | None,  # event JSON, decisions JSON array, routed at
    jobs: Sequence[JobRow],
    rows: Sequence[tuple[str, datetime, str]],  # kind, at, record JSON
) -> list[Line]:
    """One page's whole story, in time order (the event first)."""
    lines: list[Line] = []
    if event is not None:
        alert = json.loads(event[0])
        lines.append(Line(event[2], "event", alert))
        by_id = {job.job_id: job for job in jobs}
        for kept in json.loads(event[1]):
            decision = _sent(kept, alert, by_id.get(kept), event[2]) if type(kept) is str else kept
            at = datetime.fromisoformat(decision["decided_at"].replace("Z", "+00:00"))
            lines.append(Line(at, "decision", decision))
    for job in jobs:
        lines.append(
            Line(
                job.created_at,
                "job",
                {
                    "job_id": job.job_id,
                    "user_id": job.user_id,
                    "transport": job.transport,
                    "contact_method_id": job.contact_method_id,
                    "failover_of": job.failover_of,
                    "last_status": job.last_status,
                },
            )
        )
    seen: set[tuple[str, str]] = set()
    for kind, at, record in rows:
        if (kind, record) in seen:  # a redelivered batch wrote it twice
            continue
        seen.add((kind, record))
        lines.append(Line(at, kind, json.loads(record)))
    order = {"event": 0, "decision": 1, "job": 2, "status": 3, "ack": 4}
    return sorted(lines, key=lambda line: (line.at, order[line.type]))


def trail_value(decision: Decision, value: bytes) -> bytes:
    """What a batch's trail keeps of ``decision`` (``value``: it as published): a plain
    sent decision (no reason, step, digest or failover) holds nothing its job's row does
    not, so only its job id is kept, and :func:`story` makes it whole again. The rest
    are kept as published."""
    job_id = decision.job_id
    if job_id is None or decision.digest_of is not None or decision.failover_of is not None:
        return value
    whole = decision.reason is not None or decision.escalation_step is not None
    return sent_trail_value(job_id, value, whole)


def sent_trail_value(job_id: str, value: bytes, whole: bool) -> bytes:
    """:func:`trail_value` of the decision that routing sends job ``job_id`` (``value``: it
    as published): its job id, or the value itself when it says more than its job's row
    (``whole``: it gives a reason or an escalation step, as a step of a page does)."""
    return value if whole else b'"%s"' % job_id.encode()


def _sent(
    job_id: str, alert: dict[str, Any], job: JobRow | None, routed_at: datetime
) -> dict[str, Any]:
    """A plain sent decision as it was published: decided when its event was routed
    (one clock for both), about the event's alert, to its job's user, method and
    transport. Those three follow from the job id (the event's and the method's), so
    any row with that id names them, even one written by another path first. Should
    the row be missing, they are told as null. (The worker's clock is UTC, as the
    time read back from PostgreSQL is.)"""
    event_id = job.event_id if job is not None else str(alert["event_id"])
    decision = Decision(
        event_id=event_id,
        user_id=job.user_id if job is not None else None,
        contact_method_id=job.contact_method_id if job is not None else None,
        transport=job.transport if job is not None else None,
        outcome="sent",
        reason=None,
        job_id=job_id,
        decided_at=routed_at,
        alert_key=alert.get("dedup_key") or event_id,
    )
    return decision.model_dump(mode="json")


def round_trail(jobs: Sequence[DeliveryJob], decisions: Sequence[Decision]) -> Trail:
    """The trail of a round published outside a batch (held digests, escalation steps):
    its jobs and its decisions, unkeyed."""
    return Trail(
        jobs=[job_row(job) for job in jobs],
        rows=[row for d in decisions for row in decision_rows(d, keyed=False)],
    )
