"""Every rule, its edges, and the order in which skip reasons are reported."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from router.directory.models import ContactMethod, Directory, User
from router.directory.targets import TargetPolicy
from router.routing import rules
from router.routing.rules import (
    Candidate,
    RateLimit,
    Send,
    next_allowed,
    parse_buckets,
    skip_reason,
    within_rate_limits,
)
from schemas import AlertEvent
from tests.conftest import T0, make_event, make_method, make_user


def event(**fields: object) -> AlertEvent:
    return make_event(**{"severity": "warning", "title": "t", **fields})


def candidate(
    method: ContactMethod | None = None,
    user: User | None = None,
    *,
    now: datetime = T0,
    opt_outs: frozenset[tuple[str, str]] = frozenset(),
    require_verified: bool = False,
    **event_fields: object,
) -> Candidate:
    return Candidate(
        event=event(**event_fields),
        user=user or make_user(),
        method=method or make_method("m1"),
        now=now,
        opt_outs=opt_outs,
        require_verified=require_verified,
    )


# -- disabled, opted_out, unverified ------------------------------------------------


def test_disabled_method_is_skipped() -> None:
    assert rules.disabled(candidate(make_method("m", disabled=True))) == "disabled"
    assert rules.disabled(candidate(make_method("m"))) is None


def test_opt_out_matches_transport_and_normalized_address() -> None:
    sms = make_method("m", transport="sms", value="+14155551234")
    assert (
        rules.opted_out(candidate(sms, opt_outs=frozenset({("sms", "+14155551234")})))
        == "opted_out"
    )
    assert rules.opted_out(candidate(sms, opt_outs=frozenset({("email", "+14155551234")}))) is None
    mail = make_method("m", value="alice@example.com")
    assert (
        rules.opted_out(candidate(mail, opt_outs=frozenset({("email", "alice@example.com")})))
        == "opted_out"
    )


def test_unverified_is_skipped_only_when_verification_is_required() -> None:
    method = make_method("m", verified=False)
    assert rules.unverified(candidate(method)) is None
    assert rules.unverified(candidate(method, require_verified=True)) == "unverified"
    assert (
        rules.unverified(candidate(make_method("m", verified=True), require_verified=True)) is None
    )


# -- muted -------------------------------------------------------------------------


def test_mute_flag_mutes_until_cleared() -> None:
    assert rules.muted(candidate(make_method("m", muted=True))) == "muted"


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (timedelta(seconds=1), "muted"),
        (timedelta(0), None),  # mute-until exactly now: already over
        (timedelta(seconds=-1), None),  # in the past: unmuted with no write needed
    ],
)
def test_mute_until_mutes_only_while_in_the_future(offset: timedelta, expected: str | None) -> None:
    method = make_method("m", mute_until=T0 + offset)
    assert rules.muted(candidate(method, now=T0)) == expected


# -- suppressed --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["up", "down", "first", "diagnostic"])
def test_each_suppress_flag_suppresses_only_its_kind(kind: str) -> None:
    method = make_method("m", **{f"suppress_{kind}": True})
    for other in ("up", "down", "first", "diagnostic"):
        expected = "suppressed" if other == kind else None
        assert rules.suppressed(candidate(method, kind=other)) == expected, other


def test_suppress_all_suppresses_every_kind() -> None:
    method = make_method("m", suppress_all=True)
    assert all(
        rules.suppressed(candidate(method, kind=k)) == "suppressed"
        for k in ("up", "down", "first", "diagnostic")
    )


# -- below_min_severity -------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("info", "below_min_severity"),
        ("warning", "below_min_severity"),
        ("error", None),
        ("critical", None),
    ],
)
def test_min_severity_lets_through_events_at_or_above_it(
    severity: str, expected: str | None
) -> None:
    method = make_method("m", min_severity="error")
    assert rules.below_min_severity(candidate(method, severity=severity)) == expected


def test_no_min_severity_lets_everything_through() -> None:
    assert rules.below_min_severity(candidate(make_method("m"), severity="info")) is None


# -- quiet hours ---------------------------------------------------------------------

NIGHT_BERLIN = make_user(
    "alice", timezone="Europe/Berlin", quiet_hours_start=time(22, 0), quiet_hours_end=time(7, 0)
)


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        ("2026-01-15T20:59:00", None),  # 21:59 CET: before the window
        ("2026-01-15T21:00:00", "quiet_hours"),  # 22:00 CET: start is inclusive
        ("2026-01-15T23:30:00", "quiet_hours"),  # 00:30 CET: across midnight
        ("2026-01-16T05:59:00", "quiet_hours"),  # 06:59 CET
        ("2026-01-16T06:00:00", None),  # 07:00 CET: end is exclusive
        ("2026-01-15T12:00:00", None),  # midday
    ],
)
def test_quiet_window_crossing_midnight_in_the_users_zone(utc: str, expected: str | None) -> None:
    at = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    assert rules.quiet_hours(candidate(user=NIGHT_BERLIN, occurred_at=at)) == expected


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        # 2026-03-29: Berlin goes from CET (+1) to CEST (+2) at 02:00 local.
        ("2026-03-29T00:30:00", "quiet_hours"),  # 01:30 CET
        ("2026-03-29T04:30:00", "quiet_hours"),  # 06:30 CEST
        ("2026-03-29T05:30:00", None),  # 07:30 CEST (it would be 06:30 in winter time)
        ("2026-03-28T20:30:00", None),  # 21:30 CET the evening before
        ("2026-03-29T20:00:00", "quiet_hours"),  # 22:00 CEST the evening after
    ],
)
def test_quiet_window_on_a_daylight_saving_change_day(utc: str, expected: str | None) -> None:
    at = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    assert rules.quiet_hours(candidate(user=NIGHT_BERLIN, occurred_at=at)) == expected


def test_quiet_window_within_one_day() -> None:
    lunch = make_user(
        "u", timezone="America/New_York", quiet_hours_start=time(12, 0), quiet_hours_end=time(13, 0)
    )
    inside = datetime(2026, 7, 1, 16, 30, tzinfo=UTC)  # 12:30 EDT
    outside = datetime(2026, 7, 1, 17, 0, tzinfo=UTC)  # 13:00 EDT
    assert rules.quiet_hours(candidate(user=lunch, occurred_at=inside)) == "quiet_hours"
    assert rules.quiet_hours(candidate(user=lunch, occurred_at=outside)) is None


def test_severity_at_or_above_the_bypass_ignores_quiet_hours() -> None:
    at = datetime(2026, 1, 15, 23, 30, tzinfo=UTC)
    assert (
        rules.quiet_hours(candidate(user=NIGHT_BERLIN, occurred_at=at, severity="critical")) is None
    )
    assert (
        rules.quiet_hours(candidate(user=NIGHT_BERLIN, occurred_at=at, severity="error"))
        == "quiet_hours"
    )
    lenient = NIGHT_BERLIN.model_copy(update={"quiet_bypass": "error"})
    assert rules.quiet_hours(candidate(user=lenient, occurred_at=at, severity="error")) is None
    assert (
        rules.quiet_hours(candidate(user=lenient, occurred_at=at, severity="warning"))
        == "quiet_hours"
    )


def test_no_quiet_hours_never_skips() -> None:
    assert rules.quiet_hours(candidate(user=make_user("u"))) is None


# -- order ---------------------------------------------------------------------------


def test_the_first_applicable_reason_in_order_is_reported() -> None:
    flags: dict[str, object] = {
        "disabled": True,
        "verified": False,
        "muted": True,
        "suppress_down": True,
        "min_severity": "critical",
    }
    user = make_user(
        "u", timezone="UTC", quiet_hours_start=time(0, 0), quiet_hours_end=time(23, 59)
    )
    opt_outs = frozenset({("email", "m@example.com")})
    expected = [
        "disabled",
        "opted_out",
        "unverified",
        "muted",
        "suppressed",
        "below_min_severity",
        "quiet_hours",
        None,
    ]
    for reason in expected:
        method = make_method("m", value="m@example.com", **flags)
        c = Candidate(
            event=event(),
            user=user,
            method=method,
            now=T0,
            opt_outs=opt_outs,
            require_verified=True,
        )
        assert skip_reason(c) == reason
        # clear the condition that was just reported and go on to the next
        if reason == "disabled":
            flags["disabled"] = False
        elif reason == "opted_out":
            opt_outs = frozenset()
        elif reason == "unverified":
            flags["verified"] = True
        elif reason == "muted":
            flags["muted"] = False
        elif reason == "suppressed":
            flags["suppress_down"] = False
        elif reason == "below_min_severity":
            flags["min_severity"] = None
        elif reason == "quiet_hours":
            user = make_user("u")


# -- preference ------------------------------------------------------------------------


def methods_of_every_kind() -> list[ContactMethod]:
    return [
        make_method("email-1", transport="email", created_at=T0),
        make_method("sms-old", transport="sms", value="+14155551234", created_at=T0),
        make_method(
            "sms-primary",
            transport="sms",
            value="+14155551235",
            is_primary=True,
            created_at=T0 + timedelta(1),
        ),
        make_method("hook-1", transport="webhook", created_at=T0),
    ]


def test_mode_all_sends_to_every_eligible_method() -> None:
    ms = methods_of_every_kind()
    assert rules.preferred(make_user("u"), event(), ms) == {m.id for m in ms}


def test_preferred_mode_picks_the_primary_of_the_first_transport_in_order() -> None:
    user = make_user("u", delivery_mode="preferred", channel_order=("sms", "email", "webhook"))
    assert rules.preferred(user, event(), methods_of_every_kind()) == {"sms-primary"}


def test_preferred_mode_falls_back_to_the_oldest_without_a_primary() -> None:
    user = make_user("u", delivery_mode="preferred", channel_order=("sms",))
    ms = [m for m in methods_of_every_kind() if m.id != "sms-primary"]
    assert rules.preferred(user, event(), ms) == {"sms-old"}


def test_preferred_mode_falls_back_to_the_next_transport_with_an_eligible_method() -> None:
    user = make_user("u", delivery_mode="preferred", channel_order=("webhook", "email"))
    ms = [m for m in methods_of_every_kind() if m.transport != "webhook"]
    assert rules.preferred(user, event(), ms) == {"email-1"}


def test_transports_missing_from_the_channel_order_come_after_it() -> None:
    user = make_user("u", delivery_mode="preferred", channel_order=("webhook",))
    ms = [m for m in methods_of_every_kind() if m.transport != "webhook"]
    assert rules.preferred(user, event(), ms) == {"sms-primary"}  # default order: sms first


def test_critical_events_go_to_every_eligible_method_whatever_the_mode() -> None:
    user = make_user("u", delivery_mode="preferred")
    ms = methods_of_every_kind()
    assert rules.preferred(user, event(severity="critical"), ms) == {m.id for m in ms}


# -- rate limits ---------------------------------------------------------------------

LIMITS = {
    "sms": (RateLimit(2, 900),),
    "email": (RateLimit(20, 900),),
    "webhook": (RateLimit(60, 60),),
}
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def ago(*seconds: int) -> list[datetime]:
    return [NOW - timedelta(seconds=s) for s in seconds]


def allowed(
    sends: list[Send], history: dict[str, list[datetime]], counted: set[str] | None = None
) -> set[str]:
    return within_rate_limits(sends, history, counted or set(), LIMITS, NOW).allowed


def test_a_method_gets_at_most_its_limit_counting_recent_sends() -> None:
    sends = [Send(f"j{i}", "m1", "sms", critical=False) for i in range(3)]
    assert allowed(sends, {}) == {"j0", "j1"}
    assert allowed(sends, {"m1": ago(10)}) == {"j0"}
    assert allowed(sends, {"m1": ago(10, 20)}) == set()
    assert allowed(sends, {"m1": ago(10, 900)}) == {"j0"}  # one has left the window


def test_critical_sends_are_never_limited_but_count() -> None:
    sends = [Send("c", "m1", "sms", critical=True), Send("w", "m1", "sms", critical=False)]
    assert allowed(sends, {"m1": ago(10)}) == {"c"}


def test_jobs_counted_before_are_allowed_again_without_counting_twice() -> None:
    sends = [Send("old", "m1", "sms", False), Send("new", "m1", "sms", False)]
    assert allowed(sends, {"m1": ago(1, 2)}, {"old"}) == {"old"}
    assert allowed(sends, {"m1": ago(1)}, {"old"}) == {"old", "new"}


def test_limits_are_per_method() -> None:
    sends = [Send("a", "m1", "sms", False), Send("b", "m2", "sms", False)]
    assert allowed(sends, {"m1": ago(1, 2)}) == {"b"}


def test_every_bucket_must_allow_and_a_held_method_learns_when_it_may_send() -> None:
    buckets = parse_buckets("1/60s,5/15m,12/1h")
    assert buckets == (RateLimit(1, 60), RateLimit(5, 900), RateLimit(12, 3600))
    limits = {"sms": buckets}
    send = [Send("j", "m1", "sms", False)]
    # One a minute: the last went 20 s ago, so the next may go in 40 s.
    decision = within_rate_limits(send, {"m1": ago(20)}, set(), limits, NOW)
    assert decision.allowed == set()
    assert decision.retry_at["m1"] == NOW + timedelta(seconds=40)
    # Five in 15 minutes: the fifth newest (800 s ago) leaves in 100 s.
    decision = within_rate_limits(send, {"m1": ago(100, 200, 300, 400, 800)}, set(), limits, NOW)
    assert decision.retry_at["m1"] == NOW + timedelta(seconds=100)
    assert next_allowed([], buckets, NOW) == NOW


def test_bucket_settings_refuse_what_they_cannot_read() -> None:
    assert parse_buckets("") == ()
    for bad in ("5", "5/", "x/60s", "0/60s", "5/0s", "5/60d"):
        with pytest.raises(ValueError, match=r"COUNT/WINDOW|at least 1"):
            parse_buckets(bad)


@given(
    st.lists(st.tuples(st.sampled_from(["m1", "m2"]), st.booleans()), max_size=30),
    st.lists(st.integers(0, 1200), max_size=5),
)
def test_non_critical_sends_never_exceed_any_bucket(
    items: list[tuple[str, bool]], history: list[int]
) -> None:
    limits = {"sms": (RateLimit(2, 60), RateLimit(3, 900))}
    sends = [Send(f"j{i}", m, "sms", c) for i, (m, c) in enumerate(items)]
    earlier = {"m1": ago(*history)}
    decision = within_rate_limits(sends, earlier, set(), limits, NOW)
    for method in ("m1", "m2"):
        times = list(earlier.get(method, []))
        for s in sends:
            if s.contact_method_id == method and s.job_id in decision.allowed:
                if not s.critical:
                    for bucket in limits["sms"]:
                        recent = [
                            t for t in times if t > NOW - timedelta(seconds=bucket.window_seconds)
                        ]
                        assert len(recent) < bucket.count
                times.append(NOW)
            elif s.contact_method_id == method:
                assert decision.retry_at[method] > NOW
    assert {s.job_id for s in sends if s.critical} <= decision.allowed


def test_a_webhook_to_an_internal_address_is_an_unsafe_target() -> None:
    hook = make_method("h1", transport="webhook", value="http://10.0.0.1/hook")
    assert skip_reason(candidate(hook)) == "unsafe_target"
    public = make_method("h2", transport="webhook", value="https://hooks.example.com/h2")
    assert skip_reason(candidate(public)) is None


def test_unsafe_target_comes_right_after_disabled() -> None:
    hook = make_method("h1", transport="webhook", value="https://127.0.0.1/", muted=True)
    assert skip_reason(candidate(hook)) == "unsafe_target"
    assert skip_reason(candidate(hook.model_copy(update={"disabled": True}))) == "disabled"


# -- the quiet window's end across daylight-saving changes (wall clock through zoneinfo) --

SHORT_NIGHT_BERLIN = make_user(
    "alice", timezone="Europe/Berlin", quiet_hours_start=time(22, 0), quiet_hours_end=time(2, 30)
)


def test_quiet_window_end_in_the_spring_forward_gap_is_the_first_instant_after_the_gap() -> None:
    # 2026-03-29 in Berlin: 02:00 CET is followed by 03:00 CEST; 02:30 never shows.
    at = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # 00:00 CET, in the window
    end = rules.quiet_window_end(SHORT_NIGHT_BERLIN, at)
    assert end == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST, not 03:30
    assert end.astimezone(ZoneInfo("Europe/Berlin")).time() == time(3, 0)
    assert not rules.in_quiet_window(SHORT_NIGHT_BERLIN, end)
    just_before = end - timedelta(seconds=1)  # 01:59:59 CET: still quiet
    assert rules.in_quiet_window(SHORT_NIGHT_BERLIN, just_before)


def test_quiet_window_end_in_the_repeated_autumn_hour_on_its_first_pass() -> None:
    # 2026-10-25 in Berlin: 03:00 CEST is followed by 02:00 CET; 02:00-03:00 shows twice.
    at = datetime(2026, 10, 25, 0, 10, tzinfo=UTC)  # 02:10 CEST (fold 0), first pass
    assert rules.quiet_window_end(SHORT_NIGHT_BERLIN, at) == datetime(
        2026, 10, 25, 0, 30, tzinfo=UTC
    )  # 02:30 CEST


def test_quiet_window_end_in_the_repeated_autumn_hour_on_its_second_pass_is_not_in_the_past() -> (
    None
):
    at = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 02:10 CET (fold 1), second pass
    assert rules.in_quiet_window(SHORT_NIGHT_BERLIN, at)
    end = rules.quiet_window_end(SHORT_NIGHT_BERLIN, at)
    assert end > at
    assert end == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET, the second reading
    assert not rules.in_quiet_window(SHORT_NIGHT_BERLIN, end)


@given(
    st.datetimes(
        min_value=datetime(2026, 1, 1),
        max_value=datetime(2027, 12, 31),
        timezones=st.just(UTC),
    ),
    st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]),
    st.times(),
    st.times(),
)
@settings(max_examples=100, deadline=None)
def test_quiet_window_end_is_after_the_instant_and_outside_the_window(
    at: datetime, zone: str, start: time, end: time
) -> None:
    assume(start != end)  # a window from a time to itself never ends: not this property
    user = make_user("u", timezone=zone, quiet_hours_start=start, quiet_hours_end=end)
    until = rules.quiet_window_end(user, at)
    if rules.in_quiet_window(user, at):
        assert until > at
        assert not rules.in_quiet_window(user, until)
    else:
        assert until == at


def test_one_candidate_builder_carries_the_sites_options_and_the_moment() -> None:
    hook = make_method("h", transport="webhook", value="http://127.0.0.1:9000/hook")
    options = rules.RoutingOptions(
        require_verified=True,
        target_policy=TargetPolicy(allow_http=True, allowed_hosts=frozenset({"127.0.0.1"})),
    )
    directory = Directory.of([make_user()], [hook], opt_outs=[("email", "x@example.com")])
    routed = rules.candidate(event(), make_user(), hook, directory, options, T0)
    assert rules.unsafe_target(routed) is None
    assert routed.require_verified and routed.opt_outs == directory.opt_outs
    assert routed.quiet_at is None  # routing: quiet hours at occurred_at
    later = T0 + timedelta(hours=9)
    assert (
        rules.candidate(event(), make_user(), hook, directory, options, later, later=True).quiet_at
        == later
    )


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("https://127.0.0.1。/x", {}),
        ("https://kubernetes.default.svc/x", {}),
        ("https://127.0.0.1\\evil.example.com/x", {}),
        ("https://hooks.example.com/x", {"X-A": "foo\r\nX-Injected: 1"}),
        ("https://hooks.example.com/x", {"Host": "internal.example"}),
        ("https://hooks.example.com/x", {"Bad Name": "1"}),
    ],
)
def test_a_stored_webhook_breaking_the_url_or_header_rules_is_an_unsafe_target(
    url: str, headers: dict[str, str]
) -> None:
    hook = make_method("h1", transport="webhook", value=url, webhook_headers=headers)
    assert skip_reason(candidate(hook)) == "unsafe_target"
    fine = hook.model_copy(
        update={"value": "https://hooks.example.com/x", "webhook_headers": {"X-A": "1"}}
    )
    assert skip_reason(candidate(fine)) is None
