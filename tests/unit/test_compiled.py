"""The compiled routing plan routes as the rule functions do.

``plan`` routes each user by their compiled plan (``router.routing.compiled``);
``plan(..., by_rules=True)`` by ``RULES``, ``preferred`` and ``quiet_window_end``,
the specification. For arbitrary users, methods, opt-outs, site options, events,
clocks, escalation steps and rate-limit answers, both give the same decisions
(outcome, reason, every field), the same jobs with the same ids, and the same held
pages, in the same order; and a plan kept with the cached rows and reused for a
later event still does.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.directory import rows
from router.directory.lru import Change, DirectoryCache
from router.directory.models import ContactMethod, Directory
from router.directory.rows import Entry, entries_from, merge
from router.directory.targets import STRICT, TargetPolicy
from router.pages.tokens import AckLinks
from router.routing.build import Paging, Rendered, build_job, event_job
from router.routing.compiled import ROW_ID, ROW_TO, MethodPlan, UserPlan
from router.routing.encode import encode
from router.routing.pipeline import Planned, finish, plan, sends
from router.routing.plain import precompile, user_plan
from router.routing.rules import RateDecision, RoutingOptions
from schemas import AlertEvent
from tests.conftest import T0, make_method, make_user

USERS = ["alice", "bob", "carol"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
instants = st.datetimes(datetime(2026, 1, 1), datetime(2027, 1, 1), timezones=st.just(UTC)).map(
    lambda t: t.replace(tzinfo=UTC)
)
clock_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 30, 59]))
severities = st.sampled_from(["critical", "error", "warning", "info"])
#: Mostly off, so that most methods get as far as the later rules.
rarely = st.integers(0, 11).map(lambda n: n == 0)

events = st.builds(
    lambda **f: AlertEvent.model_validate(f, strict=False),
    event_id=st.sampled_from(["e1", "e2", "evt-ü"]),
    kind=st.sampled_from(["down", "up", "first", "diagnostic"]),
    severity=severities,
    user_ids=st.lists(st.sampled_from([*USERS, *USERS, "nobody"]), min_size=1, max_size=4),
    title=text.filter(lambda t: t.strip()),
    body=st.none() | text,
    url=st.none() | st.just("https://status.example.com/x"),
    dedup_key=st.none() | st.just("disk-full"),
    occurred_at=instants,
)
method_rows = st.fixed_dictionaries(
    {
        "transport": st.sampled_from(["email", "sms", "webhook"]),
        "value": st.sampled_from(
            [None, None, None, "http://10.0.0.1/x", "http://hooks.example.com/a"]
        ),
        "is_primary": st.booleans(),
        "verified": st.sampled_from([True, True, True, False]),
        "disabled": rarely,
        "muted": rarely,
        "mute_until": st.none() | st.none() | st.sampled_from([-3600, 0, 1, 3600]),
        "suppress_up": rarely,
        "suppress_down": rarely,
        "suppress_first": rarely,
        "suppress_diagnostic": rarely,
        "suppress_all": rarely,
        "min_severity": st.none() | st.none() | severities,
        "notify_after_seconds": st.sampled_from([0, 0, 0, 300]),
        "webhook_method": st.none() | st.sampled_from(["GET", "POST", "PUT"]),
        "webhook_headers": st.dictionaries(
            st.sampled_from(["X-Team", "X-Team", "Content-Type", "Host"]),
            st.sampled_from(["a", "json"]),
            max_size=2,
        ),
        "webhook_query": st.dictionaries(st.sampled_from(["team", "x"]), text, max_size=1),
        "webhook_body": st.none() | st.sampled_from(['{"t": "{{title}}"}', "{{ body }}"]),
        "opted_out": rarely,
    }
)
user_rows = st.fixed_dictionaries(
    {
        "timezone": st.sampled_from(ZONES),
        "delivery_mode": st.sampled_from(["all", "preferred", "preferred"]),
        "quiet_hours_start": st.none() | clock_times,
        "quiet_hours_end": st.none() | clock_times,
        "quiet_action": st.sampled_from(["defer", "drop"]),
        "quiet_bypass": severities,
        "channel_order": st.lists(st.sampled_from(["sms", "email", "webhook"]), max_size=3).map(
            tuple
        ),
    }
)
options = st.builds(
    RoutingOptions,
    sms_max_segments=st.integers(1, 3),
    require_verified=rarely,
    target_policy=st.sampled_from([STRICT, TargetPolicy(allow_http=True)]),
    ack_links=st.none() | st.just(AckLinks("https://ack.example.com", ("s3cret",))),
)
steps = st.none() | st.builds(
    Paging,
    step=st.integers(1, 3),
    round=st.integers(1, 2),
    reply_code=st.none() | st.just("K7Q"),
)


class Slot:
    """A cache entry's place for a compiled plan."""

    def __init__(self) -> None:
        self.compiled: Any = None


def directory_of(
    users: dict[str, dict[str, Any]], rows: dict[str, list[dict[str, Any]]], now: datetime
) -> Directory:
    methods: list[ContactMethod] = []
    opt_outs: set[tuple[str, str]] = set()
    for user_id, own in rows.items():
        for n, row in enumerate(own):
            row = dict(row)
            opted_out = row.pop("opted_out")
            until = row.pop("mute_until")
            transport, value = row.pop("transport"), row.pop("value")
            method = make_method(
                f"{user_id}-m{n}",
                user_id,
                transport,
                value if transport == "webhook" else None,
                mute_until=None if until is None else now + timedelta(seconds=until),
                created_at=T0 + timedelta(seconds=n),
                **row,
            )
            methods.append(method)
            if opted_out:
                opt_outs.add((method.transport, method.value))
    directory = Directory.of(
        [make_user(uid, **fields) for uid, fields in users.items()], methods, opt_outs=opt_outs
    )
    return Directory(
        users=directory.users,
        methods=directory.methods,
        opt_outs=directory.opt_outs,
        slots={uid: Slot() for uid in USERS},
    )


def assert_same(compiled: Planned, by_rules: Planned, rate: RateDecision | None) -> None:
    assert compiled.entries == by_rules.entries
    assert [encode(e) for e in compiled.entries] == [encode(e) for e in by_rules.entries]
    assert compiled.holds == by_rules.holds
    left, right = finish(compiled, rate), finish(by_rules, rate)
    assert left.jobs == right.jobs
    assert [(d.outcome, d.reason, d.job_id) for d in left.decisions] == [
        (d.outcome, d.reason, d.job_id) for d in right.decisions
    ]
    assert left.decisions == right.decisions
    assert left.holds == right.holds


@settings(max_examples=600, deadline=None)
@given(
    st.fixed_dictionaries({u: user_rows for u in USERS}),
    st.fixed_dictionaries(
        {u: st.lists(method_rows, min_size=1 if u != "carol" else 0, max_size=4) for u in USERS}
    ),
    st.lists(events, min_size=1, max_size=3),
    instants,
    options,
    steps,
    st.data(),
)
def test_the_compiled_plan_routes_as_the_rules_do(
    users: dict[str, dict[str, Any]],
    rows: dict[str, list[dict[str, Any]]],
    batch: list[AlertEvent],
    now: datetime,
    site: RoutingOptions,
    paging: Paging | None,
    data: st.DataObject,
) -> None:
    directory = directory_of(users, rows, now)
    # Several events through the same directory: the later ones reuse the kept plans.
    for event in batch:
        step = None if paging is None else (paging, event.recipients())
        compiled = plan(event, directory, now, site, step)
        by_rules = plan(event, directory, now, site, step, by_rules=True)
        wanted = sends(by_rules)
        allowed = data.draw(
            st.sets(st.sampled_from([s.job_id for s in wanted])) if wanted else st.just(set())
        )
        held_back = {s.contact_method_id for s in wanted if s.job_id not in allowed}
        rate = data.draw(
            st.none()
            | st.just(RateDecision(allowed, {m: now + timedelta(minutes=5) for m in held_back}))
        )
        assert_same(compiled, by_rules, rate)
    for user_id in {u for e in batch for u in e.recipients() if u in users}:
        kept = directory.slots[user_id].compiled
        assert isinstance(kept, UserPlan)
        assert user_plan(directory, user_id, site) is kept


@settings(max_examples=200, deadline=None)
@given(events, st.lists(method_rows, min_size=1, max_size=3), instants, options, steps)
def test_a_compiled_method_builds_the_job_build_job_builds(
    event: AlertEvent,
    rows: list[dict[str, Any]],
    now: datetime,
    site: RoutingOptions,
    paging: Paging | None,
) -> None:
    directory = directory_of({"alice": {}}, {"alice": rows}, now)
    rendered = Rendered(event)
    for method in directory.methods_of("alice"):
        prepared = MethodPlan(method, directory.opt_outs, site)
        job = event_job(
            rendered, prepared, prepared.id, prepared.user_id, prepared.to, now, site, paging
        )
        assert job == build_job(event, method, now, site, paging)
        assert encode(job) == encode(build_job(event, method, now, site, paging))


def test_a_plan_compiled_for_other_options_is_compiled_again() -> None:
    directory = directory_of({"alice": {}}, {"alice": [{**_plain_email(), "verified": False}]}, T0)
    lenient = user_plan(directory, "alice", RoutingOptions())
    strict = user_plan(directory, "alice", RoutingOptions(require_verified=True))
    assert lenient is not None
    assert strict is not None
    assert lenient.reasons == (None,)
    assert strict.reasons == ("unverified",)
    assert directory.slots["alice"].compiled is strict


def _plain_email() -> dict[str, Any]:
    return {
        "transport": "email",
        "value": None,
        "is_primary": False,
        "verified": True,
        "disabled": False,
        "muted": False,
        "mute_until": None,
        "suppress_up": False,
        "suppress_down": False,
        "suppress_first": False,
        "suppress_diagnostic": False,
        "suppress_all": False,
        "min_severity": None,
        "notify_after_seconds": 0,
        "webhook_method": None,
        "webhook_headers": {},
        "webhook_query": {},
        "webhook_body": None,
        "opted_out": False,
    }


@pytest.mark.parametrize(
    ("severity", "mode", "quiet", "method", "sent"),
    [
        ("critical", "preferred", False, {}, 2),  # critical: every method
        ("critical", "preferred", True, {}, 2),  # ... quiet hours bypassed
        ("warning", "all", False, {}, 2),  # every method wanted
        ("warning", "all", True, {}, 0),  # ... but not in quiet hours: held
        ("warning", "preferred", False, {}, 1),  # the preferred method only
        ("critical", "all", False, {"suppress_down": True}, 1),
        ("critical", "all", False, {"mute_until": 3600}, 1),
        ("critical", "all", False, {"notify_after_seconds": 300}, 1),
        ("warning", "all", False, {"min_severity": "error"}, 1),
        ("critical", "all", False, {"disabled": True}, 1),
    ],
)
def test_a_user_whose_every_method_may_take_the_event_gets_a_job_on_each(
    severity: str, mode: str, quiet: bool, method: dict[str, Any], sent: int
) -> None:
    # The compiled plan's short way (every method at once) against the rules, on its
    # edges: quiet hours, and each method field that can hold one method back.
    window = {"quiet_hours_start": time(0, 0), "quiet_hours_end": time(23, 59)} if quiet else {}
    users = {"alice": {"delivery_mode": mode, "quiet_bypass": "critical", **window}}
    rows = {"alice": [_plain_email(), {**_plain_email(), "transport": "sms", **method}]}
    event = AlertEvent(event_id="e1", kind="down", severity=severity, title="t", user_ids=["alice"])
    event = event.model_copy(update={"occurred_at": T0 + timedelta(hours=12)})
    directory = directory_of(users, rows, T0)
    compiled = plan(event, directory, T0, RoutingOptions())
    by_rules = plan(event, directory, T0, RoutingOptions(), by_rules=True)
    assert_same(compiled, by_rules, None)
    assert len(finish(compiled).jobs) == sent


def test_a_cached_user_is_compiled_once_and_then_routed_without_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Primary flags: not plain rows (those compile without models at all, see below).
    methods = (make_method("m1", is_primary=True), make_method("m2", transport="sms", muted=True))
    entry = Entry(make_user(), methods, frozenset(), read_at=0.0)
    made: list[str] = []
    real = rows._METHODS.unpack
    monkeypatch.setattr(rows._METHODS, "unpack", lambda row: made.append(row[0]) or real(row))
    event = AlertEvent(event_id="e1", kind="down", severity="error", title="t", user_ids=["alice"])
    event = event.model_copy(update={"occurred_at": T0})
    first = plan(event, merge({"alice": entry}, None, {}), T0, RoutingOptions())
    assert made == ["m1", "m2"]
    assert isinstance(entry.compiled, UserPlan)
    again = plan(event, merge({"alice": entry}, None, {}), T0, RoutingOptions())
    assert made == ["m1", "m2"], "the kept plan routes the next batch: no model made"
    assert again.entries == first.entries
    by_rules = plan(event, merge({"alice": entry}, None, {}), T0, RoutingOptions(), by_rules=True)
    assert by_rules.entries == first.entries


def test_a_cache_keeps_at_most_its_bound_of_compiled_plans_giving_up_the_oldest() -> None:
    """A directory read whole would otherwise gain a plan per user ever paged (60 MB per
    100,000 users): past the bound, the entry compiled longest ago gives its plan up,
    and a dropped entry's plan is no longer counted."""
    cache = DirectoryCache(10, None, max_plans=2)
    for user in ("a", "b", "c", "d"):
        cache.put(user, Entry(make_user(user), (make_method(f"m-{user}", user),), frozenset(), 0.0))
    event = AlertEvent(event_id="e1", kind="down", severity="error", title="t", user_ids=["a"])
    event = event.model_copy(update={"occurred_at": T0})
    options = RoutingOptions()

    def route(user: str) -> None:
        entry = cache.get(user)
        assert entry is not None
        plan(event.model_copy(update={"user_ids": [user]}), merge({user: entry}, None), T0, options)

    for user in ("a", "b", "c"):
        route(user)
    compiled = {u: cache.get(u).compiled is not None for u in "abcd"}  # type: ignore[union-attr]
    assert compiled == {"a": False, "b": True, "c": True, "d": False}
    assert len(cache.plans) == 2
    cache.invalidate(Change(users=frozenset({"b"})))
    assert len(cache.plans) == 1
    route("a")
    assert len(cache.plans) == 2
    assert cache.get("c").compiled is not None  # type: ignore[union-attr]
    cache.clear()
    assert len(cache.plans) == 0


plain_methods = st.fixed_dictionaries(
    {
        "transport": st.sampled_from(["email", "sms", "webhook"]),
        "value": st.sampled_from(
            [None, None, "http://10.0.0.1/x", "http://hooks.example.com/a", "https://localhost/"]
        ),
        "verified": st.booleans(),
        "opted_out": rarely,
        "mute_until": st.none(),
        # Fields routing never reads: the row stays plain.
        "label": st.none() | text,
        "tags": st.sampled_from([(), ("db",)]),
        "metadata": st.sampled_from([{}, {"team": "db"}]),
    }
)
plain_users = st.fixed_dictionaries(
    {
        "timezone": st.sampled_from(ZONES),
        "name": st.none() | text,
        "external_id": st.none() | st.just("ext-1"),
    }
)


def slots_of(plan: UserPlan | MethodPlan, but: tuple[str, ...] = ()) -> dict[str, Any]:
    names = {n for klass in type(plan).__mro__ for n in getattr(klass, "__slots__", ())}
    return {n: getattr(plan, n) for n in sorted(names) if n not in but}


def resolved(plan: UserPlan) -> list[dict[str, Any]]:
    """Each method as routing reads it: its plan's slots but the ones a plan may share
    (id, user, address, reason), and those from the plan's rows and reasons."""
    return [
        {
            **slots_of(m, ("id", "user_id", "to", "reason")),
            "id": row[ROW_ID],
            "to": row[ROW_TO],
            "user_id": plan.id,
            "reason": reason,
        }
        for m, row, reason in zip(plan.methods, plan.rows, plan.reasons, strict=True)
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries({u: plain_users for u in USERS}),
    st.fixed_dictionaries(
        {u: st.lists(plain_methods, min_size=0 if u == "carol" else 1, max_size=4) for u in USERS}
    ),
    st.lists(events, min_size=1, max_size=3),
    instants,
    options,
    steps,
)
def test_a_plain_cached_user_compiles_from_rows_to_the_plan_its_models_compile_to(
    users: dict[str, dict[str, Any]],
    methods: dict[str, list[dict[str, Any]]],
    batch: list[AlertEvent],
    now: datetime,
    site: RoutingOptions,
    paging: Paging | None,
) -> None:
    """A user and methods that set nothing routing reads beyond ids, transport, address
    and verified flag compile from the cached rows, without a model, to the plan the
    models compile to, method for method as routing reads them; and route as the rules
    do, compiled on first use or as the directory is read whole, escalation steps
    included."""
    directory = directory_of(users, methods, now)
    cached = merge(entries_from(directory, USERS, 0.0), None, {})
    with (
        mock.patch.object(rows._USERS, "unpack") as user_model,
        mock.patch.object(rows._METHODS, "unpack") as method_model,
    ):
        compiled_plans = {u: user_plan(cached, u, site) for u in USERS}
    assert not user_model.called and not method_model.called, "no model made"
    for user_id in USERS:
        by_rows = compiled_plans[user_id]
        by_models = UserPlan(
            directory.users[user_id], directory.methods_of(user_id), directory.opt_outs, site
        )
        assert by_rows is not None
        assert slots_of(by_rows, ("methods", "rows")) == slots_of(by_models, ("methods", "rows"))
        assert resolved(by_rows) == resolved(by_models)
        # The models' plan: each method's own slots are what its row and reason say.
        assert [(m.id, m.user_id, m.to, m.reason) for m in by_models.methods] == [
            (r["id"], r["user_id"], r["to"], r["reason"]) for r in resolved(by_models)
        ]
    read_whole = entries_from(directory, USERS, 0.0)
    for entry in read_whole.values():
        precompile(entry, site)
    preloaded = merge(read_whole, None, {})
    for event in batch:
        step = None if paging is None else (paging, event.recipients())
        by_rules = plan(event, cached, now, site, step, by_rules=True)
        assert_same(plan(event, cached, now, site, step), by_rules, None)
        assert_same(plan(event, preloaded, now, site, step), by_rules, None)


def test_a_cached_user_with_a_field_routing_reads_is_compiled_from_its_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only plain rows skip the models: a method muted, or a user with quiet hours, is
    compiled the one general way."""
    made: list[str] = []
    real = rows._METHODS.unpack
    monkeypatch.setattr(rows._METHODS, "unpack", lambda row: made.append(row[0]) or real(row))
    plain = Entry(make_user(), (make_method("m1"),), frozenset(), 0.0)
    muted = Entry(make_user("bob"), (make_method("m2", "bob", muted=True),), frozenset(), 0.0)
    quiet = Entry(
        make_user("carol", quiet_hours_start=time(22), quiet_hours_end=time(7)),
        (make_method("m3", "carol"),),
        frozenset(),
        0.0,
    )
    directory = merge({"alice": plain, "bob": muted, "carol": quiet}, None, {})
    for user_id in ("alice", "bob", "carol"):
        assert user_plan(directory, user_id, RoutingOptions()) is not None
    assert made == ["m2", "m3"]
    compiled = bob = user_plan(directory, "bob", RoutingOptions())
    assert bob is not None and compiled is not None
    assert [m.reason for m in bob.methods] == ["muted"]


def test_a_directory_read_whole_keeps_each_plain_users_plan_outside_the_bound() -> None:
    """As a directory read whole is read, every plain user's plan is made and kept, not
    counted against the plans a cache keeps (it is a small object over the rows); a
    user with a field routing reads is compiled from the models when first routed."""
    site = RoutingOptions()
    plans = rows.Plans(1)
    alice = Entry(
        make_user(), (make_method("m1"), make_method("m2", transport="sms")), frozenset(), 0.0
    )
    bob = Entry(make_user("bob"), (make_method("m3", "bob"),), frozenset(), 0.0)
    carol = Entry(make_user("carol"), (make_method("m4", "carol", muted=True),), frozenset(), 0.0)
    for entry in (alice, bob, carol):
        entry.kept_by(plans)
        precompile(entry, site)
    assert isinstance(alice.compiled, UserPlan) and isinstance(bob.compiled, UserPlan)
    assert alice.compiled.rows is alice.rows[1], "the plan reads the entry's own rows"
    dave = Entry(make_user("dave"), (make_method("m5", "dave"),), frozenset(), 0.0)
    precompile(dave, site)
    assert dave.compiled.methods is bob.compiled.methods, "the same kinds share their defaults"
    assert dave.compiled.reasons is bob.compiled.reasons
    assert carol.compiled is None
    assert len(plans) == 0
    directory = merge({"alice": alice, "bob": bob, "carol": carol}, None, {})
    assert user_plan(directory, "alice", site) is alice.compiled
    assert user_plan(directory, "bob", site) is bob.compiled
    assert user_plan(directory, "carol", site) is carol.compiled is not None
    assert len(plans) == 1  # carol's, compiled on first use, is counted
