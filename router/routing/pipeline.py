"""The routing pipeline for one decoded event: recipients -> rules -> preference -> fan-out.

Pure. ``plan`` applies everything that needs only the event and a directory
snapshot; the handler then asks the store which planned jobs the shared rate
limits allow (:func:`sends` lists them), and ``finish`` turns the plan into the
jobs to publish and the decisions to record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from router.directory.models import ContactMethod, Directory, User
from router.held.digest import HeldPage, HoldReason, deferred
from router.routing.build import Paging, Rendered, build_job, new_decision, sent_decision
from router.routing.compiled import plan_user
from router.routing.plain import user_plan
from router.routing.rules import (
    RateDecision,
    RoutingOptions,
    Send,
    candidate,
    preferred,
    quiet_window_end,
    skip_reason,
)
from schemas import AlertEvent, Decision, DeliveryJob, Reason


@dataclass
class Planned:
    """An event's routing before rate limits: skip decisions and jobs not yet allowed,
    in the order the methods were considered."""

    event: AlertEvent
    now: datetime
    entries: list[Decision | DeliveryJob] = field(default_factory=list)
    #: Pages deferred by quiet hours (their decisions are among the entries).
    holds: list[HeldPage] = field(default_factory=list)
    #: A step of an escalating page: its jobs and decisions say which.
    paging: Paging | None = None


@dataclass
class Routed:
    """Everything the router will publish for one event."""

    event: AlertEvent
    jobs: list[DeliveryJob] = field(default_factory=list)
    #: What was decided, method by method in order: a decision, or a job of ``jobs``,
    #: which stands for its sent decision (:attr:`decisions` makes it), so the hot path
    #: writes that decision without making it (:func:`router.routing.build.sent_value`).
    outcomes: list[Decision | DeliveryJob] = field(default_factory=list)
    #: Pages deferred (quiet hours, rate limits): written to the store with the sends.
    holds: list[HeldPage] = field(default_factory=list)
    #: When the jobs were decided, and the page step they are: their sent decisions say.
    decided_at: datetime | None = None
    paging: Paging | None = None

    @property
    def decisions(self) -> list[Decision]:
        """Every decision, in order, the sent ones made from their jobs."""
        return [
            entry if isinstance(entry, Decision) else self.sent(entry) for entry in self.outcomes
        ]

    def sent(self, job: DeliveryJob) -> Decision:
        """The decision that sends ``job``, one of :attr:`jobs`."""
        assert self.decided_at is not None, "finish() sets it with the jobs"
        return sent_decision(job, self.decided_at, self.paging)


def skipped(
    event: AlertEvent,
    now: datetime,
    reason: Reason,
    user_id: str | None,
    method: ContactMethod | None = None,
    paging: Paging | None = None,
) -> Decision:
    """A skip decision; ``user_id`` and ``method`` are None for event-level outcomes."""
    return new_decision(
        event_id=event.event_id,
        user_id=user_id,
        contact_method_id=method.id if method else None,
        transport=method.transport if method else None,
        outcome="skipped",
        reason=reason,
        decided_at=now,
        alert_key=event.alert_key(),
        paging=paging,
    )


def duplicate(event: AlertEvent, now: datetime) -> Routed:
    """The outcome for an event already fully routed: one decision, no jobs."""
    return Routed(event=event, outcomes=[skipped(event, now, "duplicate_event", None)])


def _plan_user(
    event: AlertEvent,
    user: User,
    methods: tuple[ContactMethod, ...],
    directory: Directory,
    options: RoutingOptions,
    out: Planned,
) -> None:
    paging = out.paging
    if not methods:
        out.entries.append(skipped(event, out.now, "no_contact_methods", user.id, None, paging))
        return
    reasons: dict[str, Reason | None] = {}
    for method in methods:
        reasons[method.id] = skip_reason(
            candidate(event, user, method, directory, options, out.now)
        )
    # A page deferred by quiet hours still goes where the user prefers, later.
    defer = user.quiet_action == "defer"
    waiting = {m.id for m in methods if defer and reasons[m.id] == "quiet_hours"}
    eligible = [m for m in methods if reasons[m.id] is None or m.id in waiting]
    chosen = preferred(user, event, eligible)
    for method in methods:
        reason = reasons[method.id]
        if method.id in waiting and method.id in chosen:
            assert event.occurred_at is not None, "decode fills occurred_at"
            _hold(out, user.id, method, "quiet_hours", quiet_window_end(user, event.occurred_at))
            continue
        if method.id in waiting or (reason is None and method.id not in chosen):
            reason = "not_preferred"
        if reason is not None:
            out.entries.append(skipped(event, out.now, reason, user.id, method, paging))
        elif method.notify_after_seconds:
            later = out.now + timedelta(seconds=method.notify_after_seconds)
            _hold(out, user.id, method, "notify_after", later)
        else:
            out.entries.append(build_job(event, method, out.now, options, paging))


def _hold(
    out: Planned, user_id: str, method: ContactMethod, reason: HoldReason, until: datetime
) -> None:
    decision, page = deferred(
        out.event, user_id, method.id, method.transport, reason, until, out.now, out.paging
    )
    out.entries.append(decision)
    out.holds.append(page)


def plan(
    event: AlertEvent,
    directory: Directory,
    now: datetime,
    options: RoutingOptions,
    step: tuple[Paging | None, list[str]] | None = None,
    *,
    by_rules: bool = False,
) -> Planned:
    """Every decision for ``event`` except rate limiting; there is always at least one entry.

    ``step``: an escalating page's step and whom it pages (an event naming a policy
    the router does not know comes without: ``unknown_policy``). Each user is routed
    by their compiled plan (:mod:`router.routing.compiled`); ``by_rules`` routes by
    the rule functions instead, the specification the compiled plan is tested against."""
    out = Planned(event=event, now=now, paging=step[0] if step else None)
    if step is not None:
        user_ids = step[1]
    elif event.escalation_policy_id is not None:
        out.entries.append(skipped(event, now, "unknown_policy", None))
        return out
    elif event.schedule_id is not None:
        assert event.occurred_at is not None, "decode fills occurred_at"
        on_call = directory.on_call.get((event.schedule_id, event.occurred_at))
        if on_call is None:
            out.entries.append(skipped(event, now, "unknown_schedule", None))
            return out
        if not on_call:
            out.entries.append(skipped(event, now, "no_one_on_call", None))
            return out
        user_ids = list(on_call)
    else:
        user_ids = event.recipients()
    rendered = Rendered(event)
    for user_id in user_ids:
        if by_rules:
            user = directory.users.get(user_id)
            if user is not None:
                _plan_user(event, user, directory.methods_of(user_id), directory, options, out)
                continue
        else:
            compiled = user_plan(directory, user_id, options)
            if compiled is not None:
                plan_user(rendered, compiled, now, out.paging, out.entries, out.holds)
                continue
        out.entries.append(skipped(event, now, "unknown_user", user_id, None, out.paging))
    return out


def sends(planned: Planned) -> list[Send]:
    """The planned jobs, as the rate limiter sees them."""
    critical = planned.event.severity == "critical"
    return [
        Send(e.job_id, e.contact_method_id, e.transport, critical)
        for e in planned.entries
        if not isinstance(e, Decision)
    ]


def unlimited(planned: Planned) -> bool:
    """Whether no rate limit can hold back any job of ``planned``: it has none, or its
    event is critical (limits never hold back a critical job)."""
    return planned.event.severity == "critical" or all(
        isinstance(e, Decision) for e in planned.entries
    )


def finish(planned: Planned, rate: RateDecision | None = None) -> Routed:
    """Jobs, decisions and held pages: a planned job the rate limits hold back becomes a
    ``deferred`` (``rate_limited``) decision and a held page, due when every bucket of
    its method allows again. ``rate=None`` means no rate limit applies.
    """
    event, now, paging = planned.event, planned.now, planned.paging
    out = Routed(event=event, holds=list(planned.holds), decided_at=now, paging=paging)
    for entry in planned.entries:
        if isinstance(entry, Decision):
            out.outcomes.append(entry)
            continue
        if rate is not None and entry.job_id not in rate.allowed:
            decision, page = deferred(
                event,
                entry.user_id,
                entry.contact_method_id,
                entry.transport,
                "rate_limited",
                rate.retry_at.get(entry.contact_method_id, now),
                now,
                paging,
            )
            out.outcomes.append(decision)
            out.holds.append(page)
            continue
        out.jobs.append(entry)
        out.outcomes.append(entry)  # and its sent decision (Routed.decisions)
    return out


def route(
    event: AlertEvent, directory: Directory, now: datetime, options: RoutingOptions
) -> Routed:
    """``plan`` then ``finish`` with no rate limit: for tests and tools without a store."""
    return finish(plan(event, directory, now, options))
