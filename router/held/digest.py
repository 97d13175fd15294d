"""Held pages and their digests. Pure.

A page deferred by quiet hours or a rate limit is a :class:`HeldPage`. When
pages fall due, :func:`plan_delivery` decides, per contact method, what becomes
of each: sent in one digest job (a "bundle" when throttling held them), refused
with a reason (method deleted, disabled, muted, opted out...), expired, or held
longer (the user is in quiet hours again, or the limit still says no). Every
held page ends as exactly one of sent, refused or expired.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from router.directory.models import Directory
from router.routing.build import Paging, digest_job, new_decision
from router.routing.rules import (
    RoutingOptions,
    Send,
    candidate,
    disabled,
    muted,
    opted_out,
    quiet_hours,
    quiet_window_end,
    skip_reason,
    unsafe_target,
    unverified,
)
from schemas import AlertEvent, Decision, DeliveryJob, Reason, Transport

HoldReason = Literal["quiet_hours", "rate_limited", "notify_after"]
PageKey = tuple[str, str]  # (event_id, contact_method_id)

#: What is checked again when a held page falls due: the method may have changed, and
#: quiet hours are judged at the delivery, with the user's bypass and quiet action,
#: by the same rule functions routing uses.
RULES_AT_DELIVERY = (disabled, unsafe_target, opted_out, unverified, muted, quiet_hours)
#: ``router held flush`` sends whatever the window: the same checks but quiet hours.
RULES_AT_FLUSH = RULES_AT_DELIVERY[:-1]


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

    def summary(self) -> dict[str, Any]:
        """What ``router held list --json`` and ``GET /v1/held`` show of the page."""
        return {
            "event_id": self.event.event_id,
            "user_id": self.user_id,
            "contact_method_id": self.contact_method_id,
            "transport": self.transport,
            "reason": self.reason,
            "severity": self.event.severity,
            "title": self.event.title,
            "deliver_at": self.deliver_at.isoformat(),
            "held_at": self.held_at.isoformat(),
        }


def deferred(
    event: AlertEvent,
    user_id: str,
    method_id: str,
    transport: Transport,
    reason: HoldReason,
    deliver_at: datetime,
    now: datetime,
    paging: Paging | None = None,
) -> tuple[Decision, HeldPage]:
    """The decision and the held page for a page deferred until ``deliver_at``."""
    decision = new_decision(
        event_id=event.event_id,
        user_id=user_id,
        contact_method_id=method_id,
        transport=transport,
        outcome="deferred",
        reason=reason,
        decided_at=now,
        deliver_at=deliver_at,
        alert_key=event.alert_key(),
        paging=paging,
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
        return new_decision(
            event_id=self.job.event_id,
            user_id=self.job.user_id,
            contact_method_id=self.job.contact_method_id,
            transport=self.job.transport,
            outcome="sent",
            job_id=self.job.job_id,
            decided_at=now,
            digest_of=list(self.job.digest_of or []),
        )


@dataclass
class DeliveryPlan:
    """What becomes of the due pages, before the rate limits have their say."""

    digests: list[Digest] = field(default_factory=list)
    refused: list[tuple[HeldPage, Reason]] = field(default_factory=list)
    postponed: dict[PageKey, datetime] = field(default_factory=dict)


def _refusal(page: HeldPage, reason: Reason, now: datetime) -> Decision:
    return new_decision(
        event_id=page.event.event_id,
        user_id=page.user_id,
        contact_method_id=page.contact_method_id,
        transport=page.transport,
        outcome="skipped",
        reason=reason,
        decided_at=now,
        alert_key=page.event.alert_key(),
    )


def plan_delivery(
    pages: Iterable[HeldPage],
    directory: Directory,
    now: datetime,
    options: RoutingOptions,
    *,
    max_age: timedelta,
    force: bool = False,
    answered: Mapping[str, Reason] | None = None,
) -> DeliveryPlan:
    """Per contact method: refuse what may no longer go, expire what waited too long,
    and put the rest in one digest, oldest page first.

    Each page is judged by the routing rules at ``now`` (:func:`router.rules.candidate`
    with the site's ``options``). A page in the user's quiet hours now (below their
    bypass) waits for the window's end when their quiet action is ``defer`` and is
    refused (``quiet_hours``) when it is ``drop``, as at routing; ``force``
    (``router held flush``) sends it whatever the window.
    """
    plan = DeliveryPlan()
    rules = RULES_AT_FLUSH if force else RULES_AT_DELIVERY
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
            answer = (answered or {}).get(page.event.alert_key())
            if page.reason == "notify_after" and answer is not None:
                plan.refused.append((page, answer))
                continue
            if now - page.held_at >= max_age:
                plan.refused.append((page, "expired"))
                continue
            if user is None or method is None:
                plan.refused.append((page, "method_deleted"))
                continue
            reason = skip_reason(
                candidate(page.event, user, method, directory, options, now, later=True), rules
            )
            if reason == "quiet_hours" and user.quiet_action == "defer":
                plan.postponed[page.key] = quiet_window_end(user, now)
            elif reason is not None:
                plan.refused.append((page, reason))
            else:
                going.append(page)
        if going and method is not None:
            job = digest_job([p.event for p in going], method, now, options)
            plan.digests.append(Digest(job, going, bypass_limits=force))
    return plan


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
