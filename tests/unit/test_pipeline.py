"""The pure routing pipeline: recipients -> rules -> fan-out."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from router.directory import Directory
from router.pipeline import RoutingOptions, route
from schemas import AlertEvent, EmailJob, SmsJob, WebhookJob, job_id_for
from tests.conftest import T0, make_method, make_user

OPTIONS = RoutingOptions()


def event(**fields: object) -> AlertEvent:
    base: dict[str, object] = {
        "event_id": "e1",
        "kind": "down",
        "severity": "critical",
        "user_ids": ["alice"],
        "title": "db-1 down",
        "occurred_at": T0,
    }
    return AlertEvent.model_validate({**base, **fields}, strict=False)


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
