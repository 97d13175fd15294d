"""The routing pipeline for one decoded event: recipients -> rules -> fan-out. Pure.

``route`` takes an event and a directory snapshot and returns every job to
publish and every decision to record. It performs no I/O; the Kafka handler
feeds it and publishes what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from router import render
from router.directory import ContactMethod, Directory, User
from router.rules import Candidate, skip_reason
from schemas import (
    AlertEvent,
    Decision,
    DeliveryJob,
    EmailJob,
    Reason,
    SmsJob,
    WebhookJob,
    job_id_for,
)


@dataclass(frozen=True)
class RoutingOptions:
    """The settings the pure stages need, taken from :class:`router.settings.Settings`."""

    sms_max_segments: int = 3


@dataclass
class Routed:
    """Everything the router will publish for one event."""

    event: AlertEvent
    jobs: list[DeliveryJob] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


def recipients(event: AlertEvent) -> list[str]:
    """The user ids an event names directly (schedules are looked up in the directory)."""
    return event.recipients()


def build_job(
    event: AlertEvent, method: ContactMethod, now: datetime, options: RoutingOptions
) -> DeliveryJob:
    """The delivery job for ``method``; its id depends only on the event and the method."""
    job_id = job_id_for(event.event_id, method.id)
    assert event.occurred_at is not None, "decode fills occurred_at"
    common = {
        "job_id": job_id,
        "event_id": event.event_id,
        "user_id": method.user_id,
        "contact_method_id": method.id,
        "kind": event.kind,
        "severity": event.severity,
        "title": event.title,
        "url": event.url,
        "verified": method.verified,
        "occurred_at": event.occurred_at,
        "created_at": now,
    }
    if method.transport == "email":
        return EmailJob(
            **common,
            to=method.value,
            body=event.body,
            subject=render.email_subject(event),
            text=render.email_text(event),
        )
    if method.transport == "sms":
        text = render.sms_text(event, options.sms_max_segments)
        return SmsJob(
            **common,
            to=method.value,
            body=event.body,
            text=text,
            encoding=render.sms_encoding(text),
            segments=render.sms_segments(text),
        )
    return WebhookJob(
        **common,
        to=render.webhook_url(method),
        method=render.webhook_method(method),
        headers=render.webhook_headers(method),
        body=render.webhook_body(event, method, job_id=job_id),
    )


def _skipped(
    event: AlertEvent,
    now: datetime,
    reason: Reason,
    user_id: str | None,
    method: ContactMethod | None = None,
) -> Decision:
    return Decision(
        event_id=event.event_id,
        user_id=user_id,
        contact_method_id=method.id if method else None,
        transport=method.transport if method else None,
        outcome="skipped",
        reason=reason,
        job_id=None,
        decided_at=now,
    )


def _route_user(
    event: AlertEvent,
    user: User,
    methods: tuple[ContactMethod, ...],
    now: datetime,
    options: RoutingOptions,
    out: Routed,
) -> None:
    if not methods:
        out.decisions.append(_skipped(event, now, "no_contact_methods", user.id))
        return
    for method in methods:
        reason = skip_reason(Candidate(event=event, user=user, method=method, now=now))
        if reason is not None:
            out.decisions.append(_skipped(event, now, reason, user.id, method))
            continue
        job = build_job(event, method, now, options)
        out.jobs.append(job)
        out.decisions.append(
            Decision(
                event_id=event.event_id,
                user_id=user.id,
                contact_method_id=method.id,
                transport=method.transport,
                outcome="sent",
                reason=None,
                job_id=job.job_id,
                decided_at=now,
            )
        )


def route(
    event: AlertEvent, directory: Directory, now: datetime, options: RoutingOptions
) -> Routed:
    """Every job and decision for ``event``. There is always at least one decision."""
    out = Routed(event=event)
    if event.schedule_id is not None:
        on_call = directory.on_call.get(event.schedule_id)
        if on_call is None:
            out.decisions.append(_skipped(event, now, "unknown_schedule", None))
            return out
        user_ids = list(on_call)
    else:
        user_ids = recipients(event)
    for user_id in user_ids:
        user = directory.users.get(user_id)
        if user is None:
            out.decisions.append(_skipped(event, now, "unknown_user", user_id))
            continue
        _route_user(event, user, directory.methods_of(user_id), now, options, out)
    return out
