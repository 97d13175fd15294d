"""A user's compiled plan as routing asks for it (:func:`user_plan`), and plain users'
plans made from their cached rows without a model. Pure.

A plan is kept with the user's cached rows when it is first asked for (for at most
10,000 users: see :class:`router.directory.rows.Plans`), or, for a directory read
whole, made for every plain user as the rows are read (:func:`precompile`): a plain
user's plan is one object over the entry's own rows, the rest shared by every plan
alike, about 70 bytes a user where the models' plan costs about 600.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from router.directory.models import ContactMethod, Directory, User
from router.directory.rows import METHOD_FIELDS, USER_FIELDS, Entry, Row
from router.routing.compiled import SHARED_MOST, MethodPlan, UserPlan, direct, shared_reasons
from router.routing.encode import make
from router.routing.rules import RoutingOptions, webhook_target_problem
from schemas import Reason


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
    defaults, and shared by every plain plan (their ids and addresses are placeholders:
    a plain plan reads its methods' own from the rows)."""

    __slots__ = ("_methods", "_tuples", "options", "user")

    def __init__(self, options: RoutingOptions) -> None:
        self.options = options
        self.user = UserPlan(make(User, {"id": "", **_AT}), (), frozenset(), options)
        self._methods: dict[tuple[str, bool], MethodPlan] = {}
        self._tuples: dict[tuple[tuple[str, bool], ...], tuple[MethodPlan, ...]] = {}

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

    def methods(self, kinds: tuple[tuple[str, bool], ...]) -> tuple[MethodPlan, ...]:
        """The defaults' plans of methods of these (transport, verified) kinds, in order."""
        found = self._tuples.get(kinds)
        if found is None:
            found = tuple(self.method(*kind) for kind in kinds)
            if len(self._tuples) < SHARED_MOST:
                self._tuples[kinds] = found
        return found


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
    from the models, as any other). One object over the entry's own rows: the methods'
    defaults and the reasons are shared with every plan alike."""
    user, rows = entry.rows
    if user is None or (user[-1] and not all(name in _USER_UNREAD for name, _ in user[-1])):
        return None
    for row in rows:
        if row[-1] and not all(name in _METHOD_UNREAD for name, _ in row[-1]):
            return None
    defaults = _defaults(options)
    methods = defaults.methods(tuple([(row[_TRANSPORT], row[_VERIFIED]) for row in rows]))
    plan = object.__new__(UserPlan)
    plan.id = user[_USER_ID]
    plan.options = options
    plan.methods = methods
    plan.rows = rows  # a plain webhook has no query to add: its jobs go to its value
    reasons = [
        _plain_reason(row, base, opt_outs, options) for row, base in zip(rows, methods, strict=True)
    ]
    plan.reasons = shared_reasons(tuple(reasons))
    base = defaults.user
    plan.every, plan.defer, plan.bypass_rank = base.every, base.defer, base.bypass_rank
    plan.quiet, plan.order = base.quiet, base.order
    plan.direct = direct(methods, plan.reasons, plan.quiet)
    return plan


def _plain_reason(
    row: Row, base: MethodPlan, opt_outs: Collection[tuple[str, str]], options: RoutingOptions
) -> Reason | None:
    """The rules that read the address, in RULES' order; the others as the defaults say
    (not disabled, not muted: only unverified is left)."""
    transport, value = row[_TRANSPORT], row[_VALUE]
    if transport == "webhook" and webhook_target_problem(value, {}, options.target_policy):
        return "unsafe_target"
    if (transport, value) in opt_outs:
        return "opted_out"
    return base.reason


def precompile(entry: Entry, options: RoutingOptions) -> None:
    """Keep ``entry``'s plan when it is plain (see :func:`_from_rows`): for a directory
    read whole, every plain user's plan is made when it is read, small enough to keep
    for all (the models' plans are made on first use, as before)."""
    plan = _from_rows(entry, entry.opted_out, options)
    if plan is not None:
        entry.preset(plan)
