"""The compiled routing plan of a user: the rules of :mod:`router.routing.rules` on plain
values. Pure.

What does not depend on the event is worked out once per user (when and where it is
kept: :mod:`router.routing.plain`): the methods in creation order, each method's job
target (:class:`router.routing.build.Target`: address, webhook URL, method and
headers), the first reason among the rules that read only the method and the
site's options (disabled, unsafe target, opted out, unverified, muted), its
mute-until, the event kinds it suppresses, its minimum severity as a rank; and
the user's delivery mode, channel order and quiet window. Per event, the
remaining rules are a few comparisons, and each job is built from its target by
:func:`router.routing.build.event_job`. A cached user whose rows set nothing routing
reads beyond ids, transport, address and verified flag (most users) is compiled from
the rows themselves, without a model, to a plan that shares everything but the rows
(:func:`router.routing.plain.user_plan`).

The rule functions stay the specification: ``tests/unit/test_compiled.py``
(Hypothesis) holds :func:`plan_user` to the rule path of
:func:`router.routing.pipeline.plan` (``by_rules=True``), entry for entry.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, time, timedelta

from router.directory.models import ContactMethod, User
from router.directory.rows import METHOD_FIELDS, Row
from router.held.digest import HeldPage, HoldReason, deferred
from router.routing.build import Paging, Rendered, Target, event_job, new_decision
from router.routing.rules import (
    RoutingOptions,
    channel_order,
    in_window,
    webhook_problem,
    window_end,
)
from schemas import SEVERITY_RANK, Decision, DeliveryJob, Reason, Transport

#: The event kinds each combination of suppress flags (up, down, first, diagnostic,
#: all) keeps back: one shared set per combination, not one per method.
_KINDS: dict[tuple[bool, ...], frozenset[str]] = {}
_ORDERS: dict[tuple[Transport, ...], tuple[Transport, ...]] = {}


def _suppressed(method: ContactMethod) -> frozenset[str]:
    flags = (
        method.suppress_up,
        method.suppress_down,
        method.suppress_first,
        method.suppress_diagnostic,
        method.suppress_all,
    )
    kinds = _KINDS.get(flags)
    if kinds is None:
        names = ("up", "down", "first", "diagnostic")
        on = zip(names, flags[:4], strict=True)
        kinds = _KINDS[flags] = frozenset(n for n, flag in on if flag or flags[4])
    return kinds


class MethodPlan(Target):
    """One method as the compiled plan routes it: its job target, then the rule values."""

    __slots__ = ("min_rank", "mute_until", "notify_after", "primary", "reason", "suppressed")

    def __init__(
        self, method: ContactMethod, opt_outs: Collection[tuple[str, str]], options: RoutingOptions
    ) -> None:
        super().__init__(method)
        # The rules that read only the method and the site's options, in RULES' order.
        reason: Reason | None = None
        if method.disabled:
            reason = "disabled"
        elif webhook_problem(method, options.target_policy):
            reason = "unsafe_target"
        elif (method.transport, method.value) in opt_outs:
            reason = "opted_out"
        elif options.require_verified and not method.verified:
            reason = "unverified"
        elif method.muted:
            reason = "muted"
        self.reason = reason
        self.mute_until = method.mute_until
        self.suppressed = _suppressed(method)
        floor = method.min_severity
        self.min_rank = SEVERITY_RANK[floor] if floor else -1
        self.primary = method.is_primary
        self.notify_after = method.notify_after_seconds


class UserPlan:
    """A user's compiled plan, for one set of :class:`RoutingOptions`.

    Method by method, in creation order: ``methods`` holds what routing reads of each
    but its id and address (a plain user's are the shared plans of methods at their
    defaults: :func:`_from_rows`), ``rows`` each method's id at :data:`ROW_ID` and the
    address its jobs go to at :data:`ROW_TO` (a plain user's are the cached rows
    themselves), and ``reasons`` the first reason among the rules that read only the
    method and the site's options (shared by every user with the same)."""

    __slots__ = (
        "bypass_rank",
        "defer",
        "direct",
        "every",
        "id",
        "methods",
        "options",
        "order",
        "quiet",
        "reasons",
        "rows",
    )

    def __init__(
        self,
        user: User,
        methods: Sequence[ContactMethod],
        opt_outs: Collection[tuple[str, str]],
        options: RoutingOptions,
    ) -> None:
        self.id = user.id
        self.options = options
        self.methods = tuple(MethodPlan(m, opt_outs, options) for m in methods)
        # The layout of a cached method row (METHOD_FIELDS) for what routing reads of it.
        self.rows: tuple[Row, ...] = tuple(
            (m.id, m.user_id, m.transport, m.to) for m in self.methods
        )
        self.reasons: tuple[Reason | None, ...] = shared_reasons(
            tuple(m.reason for m in self.methods)
        )
        self.every = user.delivery_mode == "all"
        self.defer = user.quiet_action == "defer"
        self.bypass_rank = SEVERITY_RANK[user.quiet_bypass]
        start, end = user.quiet_hours_start, user.quiet_hours_end
        self.quiet: tuple[time, time, str] | None = (
            (start, end, user.timezone) if start is not None and end is not None else None
        )
        order = channel_order(user)
        self.order = _ORDERS.setdefault(order, order)
        self.direct = direct(self.methods, self.reasons, self.quiet)


def direct(methods: Sequence[MethodPlan], reasons: Sequence[Reason | None], quiet: object) -> bool:
    """Whether a critical event (or any, for a user who wants every method) gets a job
    on every method, in order, whatever the event says: no rule that reads only the
    method holds any back, none is muted until a time, suppresses a kind, has a floor
    above ``info`` or a delay, and the user has no quiet hours (:func:`plan_user`'s short way)."""
    return (
        quiet is None
        and all(reason is None for reason in reasons)
        and all(
            m.mute_until is None and not m.suppressed and m.min_rank <= 0 and not m.notify_after
            for m in methods
        )
    )


#: Where :attr:`UserPlan.rows` hold a method's id and the address its jobs go to: a
#: cached row's id and value (a plain method's jobs go to its stored address).
ROW_ID, ROW_TO = METHOD_FIELDS.index("id"), METHOD_FIELDS.index("value")
assert (ROW_ID, ROW_TO) == (0, 3), "UserPlan.__init__ builds its rows in this layout"

#: Values many plans share, held once: the methods' defaults of each combination of
#: transports and verified flags, the reasons of each combination. Bounded: past it,
#: a plan holds its own.
SHARED_MOST = 4096
_REASONS: dict[tuple[Reason | None, ...], tuple[Reason | None, ...]] = {}


def shared_reasons(reasons: tuple[Reason | None, ...]) -> tuple[Reason | None, ...]:
    found = _REASONS.get(reasons)
    if found is None:
        found = reasons
        if len(_REASONS) < SHARED_MOST:
            _REASONS[reasons] = reasons
    return found


def plan_user(
    rendered: Rendered,
    plan: UserPlan,
    now: datetime,
    paging: Paging | None,
    entries: list[Decision | DeliveryJob],
    holds: list[HeldPage],
) -> None:
    """The decisions, jobs and held pages of ``plan``'s user for ``rendered.event``, in
    the order of the methods, into ``entries`` and ``holds``: what the rule path gives."""
    event = rendered.event
    options = plan.options
    methods = plan.methods
    if not methods:
        entries.append(_skip(rendered, now, "no_contact_methods", plan.id, None, None, paging))
        return
    user_id = plan.id
    if plan.direct and (plan.every or event.severity == "critical"):
        for m, row in zip(methods, plan.rows, strict=True):
            entries.append(
                event_job(rendered, m, row[ROW_ID], user_id, row[ROW_TO], now, options, paging)
            )
        return
    rank = SEVERITY_RANK[event.severity]
    kind = event.kind
    quiet: bool | None = None
    reasons: list[Reason | None] = []
    for m, reason in zip(methods, plan.reasons, strict=True):
        if reason is None:
            if m.mute_until is not None and m.mute_until > now:
                reason = "muted"
            elif kind in m.suppressed:
                reason = "suppressed"
            elif rank < m.min_rank:
                reason = "below_min_severity"
            else:
                if quiet is None:
                    quiet = _in_quiet(plan, rank, event.occurred_at)
                if quiet:
                    reason = "quiet_hours"
        reasons.append(reason)
    # A page deferred by quiet hours still goes where the user prefers, later.
    waiting = [plan.defer and r == "quiet_hours" for r in reasons]
    eligible = [i for i, r in enumerate(reasons) if r is None or waiting[i]]
    chosen = _preferred(plan, event.severity == "critical", eligible)
    for i, (m, row) in enumerate(zip(methods, plan.rows, strict=True)):
        reason = reasons[i]
        if waiting[i] and i in chosen:
            assert event.occurred_at is not None
            assert plan.quiet is not None
            until = window_end(*plan.quiet, event.occurred_at)
            _hold(
                rendered, user_id, row[ROW_ID], m, "quiet_hours", until, now, paging, entries, holds
            )
            continue
        if waiting[i] or (reason is None and i not in chosen):
            reason = "not_preferred"
        if reason is not None:
            entries.append(_skip(rendered, now, reason, user_id, row[ROW_ID], m.transport, paging))
        elif m.notify_after:
            later = now + timedelta(seconds=m.notify_after)
            _hold(
                rendered,
                user_id,
                row[ROW_ID],
                m,
                "notify_after",
                later,
                now,
                paging,
                entries,
                holds,
            )
        else:
            entries.append(
                event_job(rendered, m, row[ROW_ID], user_id, row[ROW_TO], now, options, paging)
            )


def _in_quiet(plan: UserPlan, rank: int, at: datetime | None) -> bool:
    if rank >= plan.bypass_rank or plan.quiet is None:
        return False
    assert at is not None, "decode fills occurred_at"
    return in_window(*plan.quiet, at)


def _preferred(plan: UserPlan, critical: bool, eligible: list[int]) -> Collection[int]:
    """:func:`router.routing.rules.preferred` by the methods' positions."""
    if plan.every or critical:
        return eligible
    methods = plan.methods
    for transport in plan.order:
        of_transport = [i for i in eligible if methods[i].transport == transport]
        if of_transport:
            return (next((i for i in of_transport if methods[i].primary), of_transport[0]),)
    return ()


def _skip(
    rendered: Rendered,
    now: datetime,
    reason: Reason,
    user_id: str,
    method_id: str | None,
    transport: Transport | None,
    paging: Paging | None,
) -> Decision:
    """A skip decision; ``method_id`` and ``transport`` None: about the user."""
    return new_decision(
        event_id=rendered.event.event_id,
        user_id=user_id,
        contact_method_id=method_id,
        transport=transport,
        outcome="skipped",
        reason=reason,
        decided_at=now,
        alert_key=rendered.alert_key,
        paging=paging,
    )


def _hold(
    rendered: Rendered,
    user_id: str,
    method_id: str,
    method: MethodPlan,
    reason: HoldReason,
    until: datetime,
    now: datetime,
    paging: Paging | None,
    entries: list[Decision | DeliveryJob],
    holds: list[HeldPage],
) -> None:
    decision, page = deferred(
        rendered.event, user_id, method_id, method.transport, reason, until, now, paging
    )
    entries.append(decision)
    holds.append(page)
