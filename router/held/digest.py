"""Held pages and their digests. Pure.

A page deferred by quiet hours or a rate limit is a :class:`HeldPage`. When
pages fall due, :func:`plan_delivery` decides, per contact method, what becomes
of each: sent in one digest job (a "bundle" when throttling held them), refused
with a reason (method deleted, disabled, muted, opted out...), expired, or held
longer (the user is in quiet hours again, or the limit still says no). Every
held page ends as exactly one of sent, refused or expired.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from router.directory.models import ContactMethod, Directory, User
from router.routing import render
from router.routing.rules import (
    Candidate,
    Send,
    disabled,
    in_quiet_window,
    muted,
    opted_out,
    quiet_window_end,
    skip_reason,
    unsafe_target,
    unverified,
)
from schemas import (
    SEVERITY_RANK,
    AlertEvent,
    Decision,
    DeliveryJob,
    EmailJob,
    Reason,
    SmsJob,
    Transport,
    WebhookJob,
    digest_job_id,
)

HoldReason = Literal["quiet_hours", "rate_limited"]
PageKey = tuple[str, str]  # (event_id, contact_method_id)

#: What is checked again when a held page falls due: the method may have changed.
RULES_AT_DELIVERY = (disabled, unsafe_target, opted_out, unverified, muted)


@dataclass(frozen=True)
class HeldPage:
    """One page for one contact method, waiting."""

    event: AlertEvent
    contact_method_id: str
    user_id: str
    transport: Transport
    reason: HoldReason
    deliver_at: datetime
    held_at: datetime

    @property
    def key(self) -> PageKey:
        return (self.event.event_id, self.contact_method_id)


def deferred(
    event: AlertEvent,
    user_id: str,
    method_id: str,
    transport: Transport,
    reason: HoldReason,
    deliver_at: datetime,
    now: datetime,
) -> tuple[Decision, HeldPage]:
    """The decision and the held page for a page deferred until ``deliver_at``."""
    decision = Decision.model_construct(
        event_id=event.event_id,
        user_id=user_id,
        contact_method_id=method_id,
        transport=transport,
        outcome="deferred",
        reason=reason,
        job_id=None,
        decided_at=now,
        deliver_at=deliver_at,
        digest_of=None,
    )
    page = HeldPage(
        event=event,
        contact_method_id=method_id,
        user_id=user_id,
        transport=transport,
        reason=reason,
        deliver_at=deliver_at,
        held_at=now,
    )
    return decision, page


# -- rendering -------------------------------------------------------------------


def _highest(events: Sequence[AlertEvent]) -> str:
    return max((e.severity for e in events), key=lambda s: SEVERITY_RANK[s])


def digest_title(events: Sequence[AlertEvent]) -> str:
    if len(events) == 1:
        return events[0].title
    return f"{len(events)} alerts held for you (highest: {_highest(events)})"


def digest_sms(events: Sequence[AlertEvent], max_segments: int) -> str:
    """How many, the highest severity, then the titles, cut to fit ``max_segments``."""
    if len(events) == 1:
        return render.sms_text(events[0], max_segments)
    titles = "; ".join(render.one_line(e.title) for e in events)
    return render.fit_sms(
        f"{len(events)} alerts, highest {_highest(events).upper()}: {titles}", max_segments
    )


def digest_email(events: Sequence[AlertEvent]) -> tuple[str, str]:
    """Subject and text of a digest email: one section per event, oldest first."""
    if len(events) == 1:
        return render.email_subject(events[0]), render.email_text(events[0])
    subject = f"[{_highest(events).upper()}] {digest_title(events)}"
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
        "highest_severity": _highest(events),
        "events": [
            render.webhook_payload(e, user_id=method.user_id, job_id=job_id) for e in events
        ],
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def digest_job(
    events: Sequence[AlertEvent], method: ContactMethod, now: datetime, sms_max_segments: int
) -> DeliveryJob:
    """One job carrying ``events`` (oldest first) to ``method``; its id depends only on
    the events and the method, so a re-sent digest is the same job."""
    ids = [e.event_id for e in events]
    job_id = digest_job_id(ids, method.id)
    first = events[0]
    assert first.occurred_at is not None, "decode fills occurred_at"
    common: dict[str, Any] = {
        "job_id": job_id,
        "event_id": first.event_id,
        "user_id": method.user_id,
        "contact_method_id": method.id,
        "kind": first.kind if len(events) == 1 else "down",
        "severity": _highest(events),
        "title": digest_title(events),
        "body": first.body if len(events) == 1 else None,
        "url": first.url if len(events) == 1 else None,
        "verified": method.verified,
        "occurred_at": first.occurred_at,
        "created_at": now,
        "digest_of": ids,
    }
    if method.transport == "email":
        subject, text = digest_email(events)
        return EmailJob.model_construct(**common, to=method.value, subject=subject, text=text)
    if method.transport == "sms":
        text = digest_sms(events, sms_max_segments)
        return SmsJob.model_construct(
            **common,
            to=method.value,
            text=text,
            encoding=render.sms_encoding(text),
            segments=render.sms_segments(text),
        )
    return WebhookJob.model_construct(
        **common,
        to=render.webhook_url(method),
        method="POST",
        headers={**render.webhook_headers(method), "Content-Type": "application/json"},
        body=digest_webhook_body(events, method, job_id),
    )


# -- delivery --------------------------------------------------------------------


@dataclass
class Digest:
    """A job about to go out and the pages it carries."""

    job: DeliveryJob
    pages: list[HeldPage]
    bypass_limits: bool

    def send(self) -> Send:
        """As the rate limiter sees it: one send, whatever it carries."""
        return Send(
            self.job.job_id, self.job.contact_method_id, self.job.transport, self.bypass_limits
        )

    def decision(self, now: datetime) -> Decision:
        return Decision.model_construct(
            event_id=self.job.event_id,
            user_id=self.job.user_id,
            contact_method_id=self.job.contact_method_id,
            transport=self.job.transport,
            outcome="sent",
            reason=None,
            job_id=self.job.job_id,
            decided_at=now,
            deliver_at=None,
            digest_of=list(self.job.digest_of or []),
        )


@dataclass
class DeliveryPlan:
    """What becomes of the due pages, before the rate limits have their say."""

    digests: list[Digest] = field(default_factory=list)
    refused: list[tuple[HeldPage, Reason]] = field(default_factory=list)
    postponed: dict[PageKey, datetime] = field(default_factory=dict)


def _refusal(page: HeldPage, reason: Reason, now: datetime) -> Decision:
    return Decision.model_construct(
        event_id=page.event.event_id,
        user_id=page.user_id,
        contact_method_id=page.contact_method_id,
        transport=page.transport,
        outcome="skipped",
        reason=reason,
        job_id=None,
        decided_at=now,
        deliver_at=None,
        digest_of=None,
    )


def plan_delivery(
    pages: Iterable[HeldPage],
    directory: Directory,
    now: datetime,
    *,
    max_age: timedelta,
    sms_max_segments: int,
    require_verified: bool = False,
    force: bool = False,
) -> DeliveryPlan:
    """Per contact method: refuse what may no longer go, expire what waited too long,
    hold longer what falls in quiet hours again (unless ``force``), and put the rest
    in one digest, oldest page first."""
    plan = DeliveryPlan()
    by_method: dict[str, list[HeldPage]] = {}
    for page in pages:
        by_method.setdefault(page.contact_method_id, []).append(page)
    for method_id, waiting in by_method.items():
        waiting.sort(key=lambda p: (p.held_at, p.event.event_id))
        user = directory.users.get(waiting[0].user_id)
        method = next(
            (m for m in directory.methods_of(waiting[0].user_id) if m.id == method_id), None
        )
        going: list[HeldPage] = []
        for page in waiting:
            if now - page.held_at >= max_age:
                plan.refused.append((page, "expired"))
            elif user is None or method is None:
                plan.refused.append((page, "method_deleted"))
            else:
                reason = _reason_at_delivery(page, user, method, directory, now, require_verified)
                if reason is not None:
                    plan.refused.append((page, reason))
                else:
                    going.append(page)
        if not going or user is None or method is None:
            continue
        if not force and user.quiet_action == "defer" and in_quiet_window(user, now):
            later = quiet_window_end(user, now)
            for page in going:
                plan.postponed[page.key] = later
            continue
        job = digest_job([p.event for p in going], method, now, sms_max_segments)
        plan.digests.append(Digest(job, going, bypass_limits=force))
    return plan


def _reason_at_delivery(
    page: HeldPage,
    user: User,
    method: ContactMethod,
    directory: Directory,
    now: datetime,
    require_verified: bool,
) -> Reason | None:
    candidate = Candidate(
        event=page.event,
        user=user,
        method=method,
        now=now,
        opt_outs=directory.opt_outs,
        require_verified=require_verified,
    )
    return skip_reason(candidate, RULES_AT_DELIVERY)


@dataclass
class Outcome:
    """The delivery round's result: what to publish, and how each page ends."""

    jobs: list[DeliveryJob] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    sent: dict[PageKey, str] = field(default_factory=dict)  # page -> digest job id
    refused: dict[PageKey, str] = field(default_factory=dict)  # page -> "refused"/"expired"
    postponed: dict[PageKey, datetime] = field(default_factory=dict)


def settle(
    plan: DeliveryPlan, allowed: set[str], retry_at: Mapping[str, datetime], now: datetime
) -> Outcome:
    """The plan after the rate limits: a digest not allowed now waits until they allow."""
    out = Outcome(postponed=dict(plan.postponed))
    for page, reason in plan.refused:
        out.decisions.append(_refusal(page, reason, now))
        out.refused[page.key] = "expired" if reason == "expired" else "refused"
    for digest in plan.digests:
        if digest.job.job_id in allowed:
            out.jobs.append(digest.job)
            out.decisions.append(digest.decision(now))
            for page in digest.pages:
                out.sent[page.key] = digest.job.job_id
        else:
            later = retry_at.get(digest.job.contact_method_id, now)
            for page in digest.pages:
                out.postponed[page.key] = later
    return out
