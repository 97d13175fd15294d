"""The pure routing pipeline: recipients -> rules -> fan-out."""

from __future__ import annotations

from collections import Counter
from datetime import time, timedelta

from hypothesis import given
from hypothesis import strategies as st

from router.directory.models import Directory
from router.routing.build import Paging
from router.routing.pipeline import RoutingOptions, duplicate, finish, plan, route, sends
from router.routing.report import Tally
from router.routing.rules import RateDecision, RateLimit, within_rate_limits
from schemas import AlertEvent, EmailJob, SmsJob, WebhookJob, job_id_for
from tests.conftest import T0, make_event, make_method, make_user

OPTIONS = RoutingOptions()


def event(**fields: object) -> AlertEvent:
    return make_event(**fields)


def alice_with_three_methods() -> Directory:
    return Directory.of(
        [make_user("alice")],
        [
            make_method("m-email", transport="email", value="alice@example.com"),
            make_method(
                "m-sms",
                transport="sms",
                value="+14155551234",
                verified=True,
                created_at=T0 + timedelta(seconds=1),
            ),
            make_method(
                "m-hook",
                transport="webhook",
                value="https://h.example/a",
                created_at=T0 + timedelta(seconds=2),
            ),
        ],
    )


def test_one_job_and_one_sent_decision_per_enabled_method() -> None:
    routed = route(event(), alice_with_three_methods(), T0, OPTIONS)
    assert [type(j) for j in routed.jobs] == [EmailJob, SmsJob, WebhookJob]
    assert [j.to for j in routed.jobs] == [
        "alice@example.com",
        "+14155551234",
        "https://h.example/a",
    ]
    assert [d.outcome for d in routed.decisions] == ["sent"] * 3
    assert [d.job_id for d in routed.decisions] == [j.job_id for j in routed.jobs]


def test_jobs_carry_the_alert_and_the_method_flags() -> None:
    routed = route(event(body="b", url="https://x"), alice_with_three_methods(), T0, OPTIONS)
    sms = next(j for j in routed.jobs if isinstance(j, SmsJob))
    assert sms.job_id == job_id_for("e1", "m-sms")
    assert (sms.user_id, sms.contact_method_id, sms.verified) == ("alice", "m-sms", True)
    assert (sms.kind, sms.severity, sms.title, sms.body, sms.url) == (
        "down",
        "critical",
        "db-1 down",
        "b",
        "https://x",
    )
    assert sms.occurred_at == T0 and sms.created_at == T0


def test_unknown_user_yields_one_skip_and_no_job() -> None:
    routed = route(event(user_ids=["ghost"]), alice_with_three_methods(), T0, OPTIONS)
    assert routed.jobs == []
    [decision] = routed.decisions
    assert (decision.user_id, decision.outcome, decision.reason) == (
        "ghost",
        "skipped",
        "unknown_user",
    )
    assert decision.contact_method_id is None and decision.transport is None


def test_user_without_methods_yields_no_contact_methods() -> None:
    routed = route(event(), Directory.of([make_user("alice")], []), T0, OPTIONS)
    assert [d.reason for d in routed.decisions] == ["no_contact_methods"]


def test_disabled_method_is_skipped_with_its_reason() -> None:
    directory = Directory.of(
        [make_user("alice")], [make_method("m1", disabled=True), make_method("m2")]
    )
    routed = route(event(), directory, T0, OPTIONS)
    assert [j.contact_method_id for j in routed.jobs] == ["m2"]
    assert [(d.contact_method_id, d.reason) for d in routed.decisions] == [
        ("m1", "disabled"),
        ("m2", None),
    ]


def test_unknown_schedule_yields_an_event_level_skip() -> None:
    routed = route(event(user_ids=None, schedule_id="primary"), Directory(), T0, OPTIONS)
    [decision] = routed.decisions
    assert (decision.user_id, decision.reason) == (None, "unknown_schedule")


def test_several_users_are_each_considered_once() -> None:
    directory = Directory.of(
        [make_user("a"), make_user("b")],
        [make_method("ma", user_id="a"), make_method("mb", user_id="b")],
    )
    routed = route(event(user_ids=["a", "b", "a", "c"]), directory, T0, OPTIONS)
    assert [j.user_id for j in routed.jobs] == ["a", "b"]
    assert [d.reason for d in routed.decisions] == [None, None, "unknown_user"]


def test_same_event_routed_twice_gives_the_same_job_ids() -> None:
    first = route(event(), alice_with_three_methods(), T0, OPTIONS)
    second = route(event(), alice_with_three_methods(), T0, OPTIONS)
    assert [j.job_id for j in first.jobs] == [j.job_id for j in second.jobs]


methods = st.lists(
    st.builds(
        lambda i, t, d: make_method(f"m{i}", transport=t, disabled=d),
        st.integers(0, 50),
        st.sampled_from(["email", "sms", "webhook"]),
        st.booleans(),
    ),
    max_size=6,
    unique_by=lambda m: m.id,
)


@given(methods, st.lists(st.sampled_from(["alice", "ghost"]), min_size=1, max_size=3))
def test_every_event_ends_with_a_decision_and_jobs_only_for_enabled_methods(ms, users) -> None:
    directory = Directory.of([make_user("alice")], ms)
    routed = route(event(user_ids=users), directory, T0, OPTIONS)
    assert routed.decisions
    disabled = {m.id for m in ms if m.disabled}
    assert not any(j.contact_method_id in disabled for j in routed.jobs)
    assert len([d for d in routed.decisions if d.outcome == "sent"]) == len(routed.jobs)


# -- on call, preference, rate limits (issue: routing rules) --------------------------


def test_schedule_events_go_to_whoever_is_on_call_then() -> None:
    directory = Directory.of(
        [make_user("a"), make_user("b")],
        [make_method("ma", user_id="a"), make_method("mb", user_id="b")],
        on_call={("primary", T0): ("a", "b")},
    )
    routed = route(event(user_ids=None, schedule_id="primary"), directory, T0, OPTIONS)
    assert [j.user_id for j in routed.jobs] == ["a", "b"]


def test_a_known_schedule_with_nobody_on_call_is_reported() -> None:
    directory = Directory.of([], [], on_call={("primary", T0): ()})
    routed = route(event(user_ids=None, schedule_id="primary"), directory, T0, OPTIONS)
    assert [(d.user_id, d.reason) for d in routed.decisions] == [(None, "no_one_on_call")]


def test_preferred_mode_falls_back_when_the_preferred_transport_is_muted() -> None:
    user = make_user("alice", delivery_mode="preferred", channel_order=("sms", "email", "webhook"))
    directory = Directory.of(
        [user],
        [
            make_method("sms", transport="sms", muted=True),
            make_method("mail", transport="email", created_at=T0 + timedelta(seconds=1)),
            make_method("hook", transport="webhook", created_at=T0 + timedelta(seconds=2)),
        ],
    )
    routed = route(event(severity="warning"), directory, T0, OPTIONS)
    assert [j.contact_method_id for j in routed.jobs] == ["mail"]
    assert [(d.contact_method_id, d.reason) for d in routed.decisions] == [
        ("sms", "muted"),
        ("mail", None),
        ("hook", "not_preferred"),
    ]


def test_planned_jobs_the_limiter_refuses_become_rate_limited() -> None:
    planned = plan(event(severity="warning"), alice_with_three_methods(), T0, OPTIONS)
    assert [s.contact_method_id for s in sends(planned)] == ["m-email", "m-sms", "m-hook"]
    allowed = {s.job_id for s in sends(planned) if s.contact_method_id != "m-sms"}
    later = T0 + timedelta(seconds=40)
    routed = finish(planned, RateDecision(allowed, {"m-sms": later}))
    assert [(d.contact_method_id, d.outcome, d.reason) for d in routed.decisions] == [
        ("m-email", "sent", None),
        ("m-sms", "deferred", "rate_limited"),
        ("m-hook", "sent", None),
    ]
    assert routed.decisions[1].deliver_at == later
    assert [j.contact_method_id for j in routed.jobs] == ["m-email", "m-hook"]
    [held] = routed.holds
    assert (held.contact_method_id, held.reason, held.deliver_at) == (
        "m-sms",
        "rate_limited",
        later,
    )


def test_a_duplicate_event_is_one_decision_without_jobs() -> None:
    routed = duplicate(event(), T0)
    assert routed.jobs == []
    assert [(d.user_id, d.reason) for d in routed.decisions] == [(None, "duplicate_event")]


# -- properties ------------------------------------------------------------------------

LIMITS = {
    "sms": (RateLimit(1, 900),),
    "email": (RateLimit(1, 900),),
    "webhook": (RateLimit(1, 60),),
}

any_method = st.builds(
    lambda i, transport, disabled, muted, until, opted, suppress, floor, primary: (
        make_method(
            f"m{i}",
            transport=transport,
            value=f"+1415555{i:04d}" if transport == "sms" else None,
            disabled=disabled,
            muted=muted,
            is_primary=primary,
            mute_until=T0 + timedelta(minutes=until) if until is not None else None,
            suppress_all=suppress,
            min_severity=floor,
            created_at=T0 + timedelta(seconds=i),
        ),
        opted,
    ),
    st.integers(0, 40),
    st.sampled_from(["email", "sms", "webhook"]),
    st.booleans(),
    st.booleans(),
    st.none() | st.integers(-10, 10),
    st.booleans(),
    st.booleans(),
    st.none() | st.sampled_from(["info", "warning", "error", "critical"]),
    st.booleans(),
)
any_user = st.builds(
    lambda mode, order, quiet, tz, action: make_user(
        "alice",
        quiet_action=action,
        delivery_mode=mode,
        channel_order=order,
        timezone=tz,
        quiet_hours_start=time(quiet[0]) if quiet else None,
        quiet_hours_end=time(quiet[1]) if quiet else None,
    ),
    st.sampled_from(["all", "preferred"]),
    st.permutations(["sms", "email", "webhook"]).map(tuple),
    st.none() | st.tuples(st.integers(0, 23), st.integers(0, 23)).filter(lambda q: q[0] != q[1]),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
    st.sampled_from(["defer", "drop"]),
)
any_event = st.builds(
    lambda severity, kind, minutes: event(
        severity=severity, kind=kind, occurred_at=T0 + timedelta(minutes=minutes)
    ),
    st.sampled_from(["info", "warning", "error", "critical"]),
    st.sampled_from(["down", "up", "first", "diagnostic"]),
    st.integers(0, 24 * 60),
)


def scenario(methods_opted, user, ev, recent):
    methods = [m for m, _ in methods_opted]
    unique = {m.id: m for m in methods}
    seen_primary: set[str] = set()
    cleaned = []
    for m in unique.values():  # one primary per transport, as the schema enforces
        if m.is_primary and m.transport in seen_primary:
            m = m.model_copy(update={"is_primary": False})
        seen_primary |= {m.transport} if m.is_primary else set()
        cleaned.append(m)
    opt_outs = [(m.transport, m.value) for m, opted in methods_opted if opted and m.id in unique]
    directory = Directory.of([user], cleaned, opt_outs=opt_outs)
    planned = plan(ev, directory, T0, OPTIONS)
    history = {m: [T0 - timedelta(seconds=10)] * n for m, n in recent.items()}
    rate = within_rate_limits(sends(planned), history, set(), LIMITS, T0)
    return cleaned, directory, finish(planned, rate)


@given(
    st.lists(any_method, max_size=6),
    any_user,
    any_event,
    st.dictionaries(st.sampled_from([f"m{i}" for i in range(41)]), st.integers(0, 3)),
)
def test_muted_disabled_or_opted_out_methods_never_get_a_job(ms, user, ev, recent) -> None:
    methods, directory, routed = scenario(ms, user, ev, recent)
    blocked = {
        m.id
        for m in methods
        if m.disabled
        or m.muted
        or (m.mute_until is not None and m.mute_until > T0)
        or (m.transport, m.value) in directory.opt_outs
    }
    assert not blocked & {j.contact_method_id for j in routed.jobs}


@given(
    st.lists(any_method, max_size=6),
    any_user,
    any_event,
    st.dictionaries(st.sampled_from([f"m{i}" for i in range(41)]), st.integers(0, 3)),
)
def test_a_critical_event_is_never_skipped_for_quiet_hours_preference_or_rate_limits(
    ms,
    user,
    ev,
    recent,
) -> None:
    critical = ev.model_copy(update={"severity": "critical"})
    _, _, routed = scenario(ms, user, critical, recent)
    reasons = {d.reason for d in routed.decisions}
    assert not reasons & {"quiet_hours", "not_preferred", "rate_limited"}
    assert not routed.holds


@given(
    st.lists(any_method, max_size=6),
    any_user,
    any_event,
    st.dictionaries(st.sampled_from([f"m{i}" for i in range(41)]), st.integers(0, 3)),
)
def test_every_event_ends_with_at_least_one_decision_and_one_per_method(
    ms, user, ev, recent
) -> None:
    methods, _, routed = scenario(ms, user, ev, recent)
    assert routed.decisions
    if methods:
        assert len(routed.decisions) == len(methods)
        assert {d.contact_method_id for d in routed.decisions} == {m.id for m in methods}


@given(
    st.lists(any_method, max_size=6),
    any_user,
    any_event,
    st.dictionaries(st.sampled_from([f"m{i}" for i in range(41)]), st.integers(0, 3)),
)
def test_every_deferred_decision_has_exactly_one_held_page_due_no_earlier_than_now(
    ms, user, ev, recent
) -> None:
    _, _, routed = scenario(ms, user, ev, recent)
    deferred = {
        (d.contact_method_id, d.reason, d.deliver_at)
        for d in routed.decisions
        if d.outcome == "deferred"
    }
    held = {(h.contact_method_id, h.reason, h.deliver_at) for h in routed.holds}
    assert deferred == held and len(held) == len(routed.holds)
    for page in routed.holds:
        if page.reason == "rate_limited":
            assert page.deliver_at > T0
        else:
            assert user.quiet_action == "defer"
    if user.quiet_action == "drop":
        assert all(h.reason != "quiet_hours" for h in routed.holds)


@given(
    st.sampled_from(["critical", "warning"]),
    st.none() | st.builds(Paging, st.integers(1, 2), st.integers(1, 2)),
    st.lists(st.booleans(), min_size=1, max_size=3),
)
def test_the_batch_tally_counts_every_decision_as_the_decisions_say(
    severity: str, paging: Paging | None, disabled: list[bool]
) -> None:
    """A routed event's sent decisions are made from its jobs only when asked for; the
    tally behind the metrics counts them as the decisions themselves read."""
    directory = Directory.of(
        [make_user("alice")],
        [
            make_method(f"m{n}", disabled=off, created_at=T0 + timedelta(seconds=n))
            for n, off in enumerate(disabled)
        ],
    )
    step = (paging, ["alice"]) if paging is not None else None
    one = finish(plan(event(severity=severity), directory, T0, OPTIONS, step))
    tally = Tally([one, duplicate(event(event_id="e2"), T0)])
    decisions = [*one.decisions, *duplicate(event(event_id="e2"), T0).decisions]
    assert tally.outcomes == dict(Counter((d.outcome, d.reason or "") for d in decisions))
    assert tally.transports == dict(Counter(j.transport for j in one.jobs))
    assert (tally.jobs, tally.decisions) == (len(one.jobs), len(decisions))
    assert [d.job_id for d in one.decisions if d.outcome == "sent"] == [j.job_id for j in one.jobs]
