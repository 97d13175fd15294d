"""Held pages: each ends exactly once (sent in a digest, refused, expired) or waits on;
digests fit their transport."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

from hypothesis import given
from hypothesis import strategies as st

from router.directory.models import Directory
from router.directory.targets import TargetPolicy
from router.held.digest import HeldPage, plan_delivery, settle
from router.routing import render
from router.routing.build import digest_job
from router.routing.digest_text import digest_sms
from router.routing.rules import RoutingOptions
from schemas import SmsJob, WebhookJob
from tests.conftest import make_event, make_method, make_user

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MAX_AGE = timedelta(hours=24)

titles = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=120
).filter(lambda t: t.strip())


def page(
    n: int, method: str, user: str, held_hours_ago: float, title: str, severity: str
) -> HeldPage:
    event = make_event(
        event_id=f"e{n}", title=title, severity=severity, user_ids=[user], occurred_at=NOW
    )
    return HeldPage(
        event=event,
        contact_method_id=method,
        user_id=user,
        transport="sms" if method.startswith("s") else "email",
        reason="quiet_hours",
        deliver_at=NOW,
        held_at=NOW - timedelta(hours=held_hours_ago),
    )


any_pages = st.lists(
    st.builds(
        page,
        st.integers(0, 10_000),
        st.sampled_from(["s1", "e1", "gone"]),
        st.just("alice"),
        st.floats(0, 30),
        titles,
        st.sampled_from(["info", "warning", "error"]),
    ),
    max_size=12,
    unique_by=lambda p: p.key,
)


@given(
    any_pages,
    st.booleans(),  # sms method disabled
    st.booleans(),  # email opted out
    st.booleans(),  # user in quiet hours now
    st.booleans(),  # force (router held flush)
    st.sets(st.sampled_from(["s1", "e1"])),  # methods the limits allow now
    st.integers(1, 4),
)
def test_every_held_page_ends_exactly_once_or_waits_and_sms_digests_fit(
    pages: list[HeldPage],
    sms_disabled: bool,
    email_opted_out: bool,
    quiet_now: bool,
    force: bool,
    allowed_methods: set[str],
    max_segments: int,
) -> None:
    quiet = (time(11), time(13)) if quiet_now else (None, None)
    user = make_user("alice", quiet_hours_start=quiet[0], quiet_hours_end=quiet[1])
    methods = [
        make_method("s1", "alice", "sms", "+14155550100", disabled=sms_disabled),
        make_method("e1", "alice", "email", "alice@example.com"),
    ]
    opt_outs = [("email", "alice@example.com")] if email_opted_out else []
    directory = Directory.of([user], methods, opt_outs=opt_outs)
    plan = plan_delivery(
        pages,
        directory,
        NOW,
        RoutingOptions(sms_max_segments=max_segments),
        max_age=MAX_AGE,
        force=force,
    )
    allowed = {
        d.job.job_id for d in plan.digests if force or d.job.contact_method_id in allowed_methods
    }
    later = NOW + timedelta(minutes=5)
    outcome = settle(plan, allowed, {m: later for m in ("s1", "e1")}, NOW)

    ended = [*outcome.sent, *outcome.refused, *outcome.postponed]
    assert sorted(ended) == sorted(p.key for p in pages)  # each page exactly once
    for p in pages:
        if NOW - p.held_at >= MAX_AGE:
            assert outcome.refused.get(p.key) == "expired"
        elif p.contact_method_id == "gone":
            assert outcome.refused.get(p.key) == "refused"
    reasons = {(d.event_id, d.contact_method_id): d.reason for d in outcome.decisions}
    for key in outcome.refused:
        assert reasons[key] is not None
    if force:
        assert not outcome.postponed
    for job in outcome.jobs:
        carried = [k for k, j in outcome.sent.items() if j == job.job_id]
        assert sorted(job.digest_of or []) == sorted(e for e, _ in carried)
        if isinstance(job, SmsJob):
            assert render.sms_segments(job.text) <= max_segments
            assert job.segments <= max_segments


@given(st.lists(titles, min_size=1, max_size=40), st.integers(1, 10))
def test_an_sms_digest_never_exceeds_the_segment_limit(
    titles_: list[str], max_segments: int
) -> None:
    events = [make_event(event_id=f"e{i}", title=t) for i, t in enumerate(titles_)]
    assert render.sms_segments(digest_sms(events, max_segments)) <= max_segments


def test_a_digest_says_how_many_the_highest_severity_and_every_title() -> None:
    events = [
        make_event(event_id="a", title="disk 91%", severity="warning"),
        make_event(event_id="b", title="queue lag", severity="error"),
    ]
    three = RoutingOptions(sms_max_segments=3)
    job = digest_job(events, make_method("s1", "alice", "sms", "+14155550100"), NOW, three)
    assert isinstance(job, SmsJob)
    assert job.text == "2 alerts, highest ERROR: disk 91%; queue lag"
    assert job.severity == "error"
    assert job.digest_of == ["a", "b"]
    again = digest_job(
        list(reversed(events)), make_method("s1", "alice", "sms", "+14155550100"), NOW, three
    )
    assert again.job_id == job.job_id  # the same events, the same job


# -- the delivery-time checks are the routing rules, at the moment of delivery -------

QUIET_USER = {"timezone": "UTC", "quiet_hours_start": time(22), "quiet_hours_end": time(7)}
AT_NIGHT = datetime(2026, 3, 1, 22, 0, 10, tzinfo=UTC)  # 22:00:10 UTC, in quiet hours


def held_for(
    method_id: str, event_id: str, severity: str, reason: str = "rate_limited", **fields: object
) -> HeldPage:
    event = make_event(
        event_id=event_id, severity=severity, occurred_at=AT_NIGHT - timedelta(minutes=1), **fields
    )
    return HeldPage(
        event=event,
        contact_method_id=method_id,
        user_id="alice",
        transport="email",
        reason=reason,  # type: ignore[arg-type]
        deliver_at=AT_NIGHT,
        held_at=AT_NIGHT - timedelta(minutes=1),
    )


def test_a_held_page_at_or_above_the_users_quiet_bypass_goes_out_in_quiet_hours() -> None:
    user = make_user("alice", quiet_bypass="error", **QUIET_USER)
    directory = Directory.of([user], [make_method("e1", "alice", "email")])
    pages = [held_for("e1", "err", "error"), held_for("e1", "warn", "warning")]
    plan = plan_delivery(pages, directory, AT_NIGHT, RoutingOptions(), max_age=MAX_AGE)
    [digest] = plan.digests
    assert [p.event.event_id for p in digest.pages] == ["err"]  # now, not at 07:00
    assert plan.postponed == {("warn", "e1"): datetime(2026, 3, 2, 7, 0, tzinfo=UTC)}
    assert plan.refused == []


def test_quiet_action_drop_refuses_a_held_page_in_quiet_hours_with_a_decision() -> None:
    user = make_user("alice", quiet_action="drop", **QUIET_USER)
    directory = Directory.of([user], [make_method("e1", "alice", "email")])
    pages = [held_for("e1", "warn", "warning")]
    plan = plan_delivery(pages, directory, AT_NIGHT, RoutingOptions(), max_age=MAX_AGE)
    assert plan.digests == [] and plan.postponed == {}
    outcome = settle(plan, set(), {}, AT_NIGHT)
    assert outcome.refused == {("warn", "e1"): "refused"}
    [decision] = outcome.decisions
    assert (decision.event_id, decision.outcome, decision.reason) == (
        "warn",
        "skipped",
        "quiet_hours",
    )
    # router held flush sends it whatever the window, as before.
    forced = plan_delivery(
        pages, directory, AT_NIGHT, RoutingOptions(), max_age=MAX_AGE, force=True
    )
    assert [len(d.pages) for d in forced.digests] == [1]


def test_a_held_webhook_page_the_site_allows_goes_out_as_a_digest() -> None:
    hook = make_method("h1", "alice", "webhook", "http://127.0.0.1:9000/hook")
    directory = Directory.of([make_user("alice")], [hook])
    page_ = held_for("h1", "e", "warning")
    page_ = HeldPage(**{**page_.__dict__, "transport": "webhook"})
    site = RoutingOptions(
        target_policy=TargetPolicy(allow_http=True, allowed_hosts=frozenset({"127.0.0.1"}))
    )
    for force in (False, True):  # falling due, and router held flush
        plan = plan_delivery([page_], directory, AT_NIGHT, site, max_age=MAX_AGE, force=force)
        assert plan.refused == []
        [digest] = plan.digests
        assert digest.job.transport == "webhook" and digest.job.to == hook.value
    strict = plan_delivery([page_], directory, AT_NIGHT, RoutingOptions(), max_age=MAX_AGE)
    assert [reason for _, reason in strict.refused] == ["unsafe_target"]  # the default policy


def test_a_digest_says_what_its_events_say_happened() -> None:
    method = make_method("e1", "alice", "email")
    three = RoutingOptions(sms_max_segments=3)
    ups = [make_event(event_id=f"u{n}", kind="up", severity="info") for n in range(2)]
    assert digest_job(ups, method, NOW, three).kind == "up"
    diagnostics = [make_event(event_id=f"d{n}", kind="diagnostic") for n in range(2)]
    assert digest_job(diagnostics, method, NOW, three).kind == "diagnostic"
    mixed = [ups[0], make_event(event_id="down", kind="down")]
    assert digest_job(mixed, method, NOW, three).kind == "down"
    assert digest_job(ups[:1], method, NOW, three).kind == "up"


def test_a_webhook_digest_is_a_post_with_every_event() -> None:
    hook = make_method("h1", "alice", "webhook")
    events = [make_event(event_id="a", kind="up"), make_event(event_id="b")]
    job = digest_job(events, hook, NOW, RoutingOptions())
    assert isinstance(job, WebhookJob) and job.method == "POST"
    body = json.loads(job.body or "")
    assert body["count"] == 2 and [e["event_id"] for e in body["events"]] == ["a", "b"]
    WebhookJob.model_validate_json(job.model_dump_json())  # a valid job on the wire
