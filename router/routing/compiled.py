"""The compiled routing plan of a user: the rules of :mod:`router.routing.rules` on plain
values. Pure.

What does not depend on the event is worked out once per user, when the user is
first routed after their rows were read (and kept with the cache's rows, which a
change to the user drops, for at most 10,000 users: see
:class:`router.directory.rows.Plans`): the methods in creation order, each method's job
target (:class:`router.routing.build.Target`: address, webhook URL, method and
headers), the first reason among the rules that read only the method and the
site's options (disabled, unsafe target, opted out, unverified, muted), its
mute-until, the event kinds it suppresses, its minimum severity as a rank; and
the user's delivery mode, channel order and quiet window. Per event, the
remaining rules are a few comparisons, and each job is built from its target by
:func:`router.routing.build.event_job`. A cached user whose rows set nothing routing
reads beyond ids, transport, address and verified flag (most users) is compiled from
the rows themselves, without a model (:func:`_from_rows`): about 5 µs instead of 25.

The rule functions stay the specification: ``tests/unit/test_compiled.py``
(Hypothesis) holds :func:`plan_user` to the rule path of
:func:`router.routing.pipeline.plan` (``by_rules=True``), entry for entry.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from router.directory.models import ContactMethod, Directory, User
from router.directory.rows import METHOD_FIELDS, USER_FIELDS, Entry, Row
from router.held.digest import HeldPage, HoldReason, deferred
from router.routing.build import Paging, Rendered, Target, event_job, new_decision
from router.routing.encode import make
from router.routing.rules import (
    RoutingOptions,
    channel_order,
    in_window,
    webhook_problem,
    webhook_target_problem,
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
    """A user's compiled plan, for one set of :class:`RoutingOptions`."""

    __slots__ = ("bypass_rank", "defer", "every", "id", "methods", "options", "order", "quiet")

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
        self.every = user.delivery_mode == "all"
        self.defer = user.quiet_action == "defer"
        self.bypass_rank = SEVERITY_RANK[user.quiet_bypass]
        start, end = user.quiet_hours_start, user.quiet_hours_end
        self.quiet: tuple[time, time, str] | None = (
            (start, end, user.timezone) if start is not None and end is not None else None
        )
        order = channel_order(user)
        self.order = _ORDERS.setdefault(order, order)


def user_plan(directory: Directory, user_id: str, options: RoutingOptions) -> UserPlan | None:
    """The compiled plan of ``user_id`` in ``directory`` (None: no such user): the one
    kept with the user's cached rows when it was compiled for the same options, else
    compiled now (and kept there); from the rows themselves when they are plain."""
    slot = directory.slots.get(user_id)
    kept: Any = slot.compiled if slot is not None else None
    if isinstance(kept, UserPlan) and (kept.options is options or kept.options == options):
        return kept
    compiled = _from_rows(slot, directory.opt_outs, options) if isinstance(slot, Entry) else None
    if compiled is None:
        user = directory.users.get(user_id)
        if user is None:
            return None
        compiled = UserPlan(user, directory.methods_of(user_id), directory.opt_outs, options)
    if slot is not None:
        slot.compiled = compiled
    return compiled


# -- plain rows, compiled without their models --------------------------------------
#
# Most users and methods set nothing routing reads beyond their ids, transport,
# address and verified flag: every other field that matters is at its default. Such
# a *plain* row compiles to what the same row at the defaults compiles to, with its
# own ids and address, and with the rules that read the address (a webhook's target,
# an opt-out) applied to it. The defaults' plan is made once per set of options by
# the constructors above, from a model at its defaults; only the per-row values are
# filled here. Hypothesis holds the two to each other (tests/unit/test_compiled.py).

#: Fields routing never reads: a row differing from the defaults only in them is plain.
_USER_UNREAD = frozenset({"name", "external_id"})
_METHOD_UNREAD = frozenset({"label", "metadata", "tags", "external_id"})
#: An address for each transport that no rule refuses, for the defaults' plan.
_ANY_ADDRESS: dict[str, str] = {
    "email": "someone@example.com",
    "sms": "+14155550100",
    "webhook": "https://hooks.example.com/",
}
#: Where a row holds what a plain row is compiled from.
_USER_ID = USER_FIELDS.index("id")
_ID, _USER, _TRANSPORT, _VALUE, _VERIFIED = (
    METHOD_FIELDS.index(name) for name in ("id", "user_id", "transport", "value", "verified")
)
_AT = dict.fromkeys(("created_at", "updated_at"), datetime(2000, 1, 1, tzinfo=UTC))


class _Defaults:
    """What a plain user and a plain method of each transport compile to under one set
    of options: made by :class:`UserPlan` and :class:`MethodPlan` from models at their
    defaults."""

    __slots__ = ("_methods", "options", "user")

    def __init__(self, options: RoutingOptions) -> None:
        self.options = options
        self.user = UserPlan(make(User, {"id": "", **_AT}), (), frozenset(), options)
        self._methods: dict[tuple[str, bool], MethodPlan] = {}

    def method(self, transport: str, verified: bool) -> MethodPlan:
        plan = self._methods.get((transport, verified))
        if plan is None:
            address = _ANY_ADDRESS[transport]
            fields = {"transport": transport, "value": address, "verified": verified}
            method = make(ContactMethod, {"id": "", "user_id": "", **fields, **_AT})
            plan = self._methods[(transport, verified)] = MethodPlan(
                method, frozenset(), self.options
            )
            # Only the rules that read no address may answer for every plain row: the
            # address that stands in for theirs must pass the others, under any policy.
            assert plan.reason in (None, "unverified"), (transport, plan.reason)
        return plan


#: The defaults' plans for the last set of options asked for (a worker has one).
_LAST: list[_Defaults] = []


def _defaults(options: RoutingOptions) -> _Defaults:
    if not _LAST or _LAST[0].options is not options:
        _LAST[:] = [_Defaults(options)]
    return _LAST[0]


def _from_rows(
    entry: Entry, opt_outs: Collection[tuple[str, str]], options: RoutingOptions
) -> UserPlan | None:
    """``entry``'s plan when its user and every method are plain; else None (compiled
    from the models, as any other)."""
    user, methods = entry.rows
    if user is None or (user[-1] and not all(name in _USER_UNREAD for name, _ in user[-1])):
        return None
    for row in methods:
        if row[-1] and not all(name in _METHOD_UNREAD for name, _ in row[-1]):
            return None
    defaults = _defaults(options)
    plan = object.__new__(UserPlan)
    plan.id = user[_USER_ID]
    plan.options = options
    plan.methods = tuple([_plain_method(row, defaults, opt_outs, options) for row in methods])
    base = defaults.user
    plan.every, plan.defer, plan.bypass_rank = base.every, base.defer, base.bypass_rank
    plan.quiet, plan.order = base.quiet, base.order
    return plan


def _plain_method(
    row: Row,
    defaults: _Defaults,
    opt_outs: Collection[tuple[str, str]],
    options: RoutingOptions,
) -> MethodPlan:
    transport, value, verified = row[_TRANSPORT], row[_VALUE], row[_VERIFIED]
    base = defaults.method(transport, verified)
    plan = object.__new__(MethodPlan)
    plan.id = row[_ID]
    plan.user_id = row[_USER]
    plan.transport = transport
    plan.verified = verified
    plan.to = value  # a plain webhook has no query to add
    plan.http_method, plan.headers, plan.template = base.http_method, base.headers, base.template
    # The rules that read the address, in RULES' order; the others as the defaults say
    # (not disabled, not muted: only unverified is left).
    if transport == "webhook" and webhook_target_problem(value, {}, options.target_policy):
        plan.reason = "unsafe_target"
    elif (transport, value) in opt_outs:
        plan.reason = "opted_out"
    else:
        plan.reason = base.reason
    plan.mute_until, plan.suppressed = base.mute_until, base.suppressed
    plan.min_rank, plan.primary, plan.notify_after = base.min_rank, base.primary, base.notify_after
    return plan


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
        entries.append(_skip(rendered, now, "no_contact_methods", plan.id, None, paging))
        return
    rank = SEVERITY_RANK[event.severity]
    kind = event.kind
    quiet: bool | None = None
    reasons: list[Reason | None] = []
    for m in methods:
        reason = m.reason
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
    for i, m in enumerate(methods):
        reason = reasons[i]
        if waiting[i] and i in chosen:
            assert event.occurred_at is not None
            assert plan.quiet is not None
            until = window_end(*plan.quiet, event.occurred_at)
            _hold(rendered, plan.id, m, "quiet_hours", until, now, paging, entries, holds)
            continue
        if waiting[i] or (reason is None and i not in chosen):
            reason = "not_preferred"
        if reason is not None:
            entries.append(_skip(rendered, now, reason, plan.id, m, paging))
        elif m.notify_after:
            later = now + timedelta(seconds=m.notify_after)
            _hold(rendered, plan.id, m, "notify_after", later, now, paging, entries, holds)
        else:
            entries.append(event_job(rendered, m, now, options, paging))


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
    method: MethodPlan | None,
    paging: Paging | None,
) -> Decision:
    return new_decision(
        event_id=rendered.event.event_id,
        user_id=user_id,
        contact_method_id=method.id if method else None,
        transport=method.transport if method else None,
        outcome="skipped",
        reason=reason,
        decided_at=now,
        alert_key=rendered.alert_key,
        paging=paging,
    )


def _hold(
    rendered: Rendered,
    user_id: str,
    method: MethodPlan,
    reason: HoldReason,
    until: datetime,
    now: datetime,
    paging: Paging | None,
    entries: list[Decision | DeliveryJob],
    holds: list[HeldPage],
) -> None:
    decision, page = deferred(
        rendered.event, user_id, method.id, method.transport, reason, until, now, paging
    )
    entries.append(decision)
    holds.append(page)
