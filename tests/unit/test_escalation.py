"""The escalation state machine, the ack tokens, SMS replies and policies (pure).

The property test walks random policies through random polls, acks and resolves,
as the escalator does (one move per due page per round): a page never gets a step
after its ack or resolve, and an open page never skips a due step.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from router.pages.escalation import Page, PageStep, Stop, answer, first_step, moved, next_move
from router.pages.policy import Policy, PolicyStep, describe_policy, parse_delay
from router.pages.replies import Answer, NotUnderstood, OptOut, read_reply, reply_hint
from router.pages.tokens import AckLinks, Claims, Refused, sign, verify
from router.routing.render import fit_sms, sms_segments
from schemas import AlertEvent, escalation_job_id, job_id_for

T0 = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)
EVENT = AlertEvent(
    event_id="e1",
    kind="down",
    severity="critical",
    title="db down",
    escalation_policy_id="p",
    dedup_key="db",
    occurred_at=T0,
)


def open_page(policy: Policy, at: datetime = T0) -> Page:
    first = first_step(policy, at)
    return Page("db", EVENT, policy, "7", 1, 1, at, first.next_at)


def order(policy: Policy) -> list[tuple[int, int]]:
    return [(s, r) for r in range(1, policy.rounds + 1) for s in range(1, len(policy.steps) + 1)]


policies = st.builds(
    lambda delays, repeat: Policy(
        id="p",
        name="p",
        repeat=repeat,
        steps=tuple(PolicyStep(delay_seconds=d, user_ids=(f"u{i}",)) for i, d in enumerate(delays)),
    ),
    st.lists(st.integers(0, 900), min_size=1, max_size=4),
    st.integers(0, 3),
)


@hsettings(max_examples=300, deadline=None)
@given(
    policy=policies,
    gaps=st.lists(st.floats(0.05, 400), min_size=1, max_size=60),
    answer_at=st.none() | st.floats(0, 6000),
    action=st.sampled_from(["ack", "resolve"]),
)
def test_no_step_after_an_answer_and_no_due_step_skipped(
    policy: Policy, gaps: list[float], answer_at: float | None, action: str
) -> None:
    page = open_page(policy)
    paged: list[tuple[int, int, datetime]] = [(1, 1, T0)]
    answered: datetime | None = None
    clock = T0
    polls = [*gaps, *([60.0] * 400)]  # then a poll a minute, long enough to finish
    for gap in polls:
        clock += timedelta(seconds=gap)
        if (
            answer_at is not None
            and answered is None
            and clock >= T0 + timedelta(seconds=answer_at)
        ):
            answered = T0 + timedelta(seconds=answer_at)
            after = answer(page, action, "u0", "test", answered)  # type: ignore[arg-type]
            assert after is not None and not after.open
            page = after
            assert answer(page, "ack", "u0", "test", clock) is None  # twice: nothing
        if page.due(clock):
            move = next_move(page, clock)
            if isinstance(move, PageStep):
                paged.append((move.step, move.round, clock))
            page = moved(page, move)
        if not page.open and answered is None:
            break  # unacknowledged: the policy ran out
    # Never a step after the answer.
    if answered is not None:
        assert all(at < answered for _, _, at in paged[1:])
    # No step skipped: the steps paged are the policy's order, from its start, without a gap...
    assert [(s, r) for s, r, _ in paged] == order(policy)[: len(paged)]
    # ...each after its predecessor's delay...
    for (s, _, before), (_, _, at) in pairwise(paged):
        assert at - before >= timedelta(seconds=policy.step(s).delay_seconds)
    # ...and an unanswered page goes through every step, then ends unacknowledged.
    if answered is None:
        assert len(paged) == len(order(policy))
        assert page.status == "unacknowledged"


def test_the_last_round_ends_unacknowledged_with_the_last_step() -> None:
    policy = Policy(
        id="p", name="p", repeat=0, steps=(PolicyStep(delay_seconds=5, user_ids=("a",)),)
    )
    page = open_page(policy)
    assert next_move(page, T0 + timedelta(seconds=5)) == Stop(1)
    assert moved(page, Stop(1)).status == "unacknowledged"


def test_a_resolve_after_an_ack_closes_the_page_and_an_ack_after_that_changes_nothing() -> None:
    policy = Policy(id="p", name="p", steps=(PolicyStep(delay_seconds=5, user_ids=("a",)),))
    acked = answer(open_page(policy), "ack", "a", "cli", T0)
    assert acked is not None and acked.status == "acknowledged" and acked.next_step_at is None
    resolved = answer(acked, "resolve", None, "event", T0)
    assert resolved is not None and resolved.status == "resolved"
    assert answer(resolved, "ack", "a", "cli", T0) is None
    assert answer(resolved, "resolve", "a", "cli", T0) is None


def test_step_one_of_round_one_keeps_todays_job_id_and_the_rest_are_their_own() -> None:
    assert escalation_job_id("e", "m", 1, 1) == job_id_for("e", "m")
    ids = {escalation_job_id("e", "m", s, r) for s in (1, 2, 3) for r in (1, 2)}
    assert len(ids) == 6
    assert escalation_job_id("e", "m", 2, 1) == escalation_job_id("e", "m", 2, 1)


def test_tokens_verify_with_any_listed_secret_and_refuse_tampering_and_expiry() -> None:
    claims = Claims("db", "alice", "db down", T0 + timedelta(hours=1))
    token = sign("new", claims)
    assert verify(("new",), token, T0) == claims
    assert verify(("old", "new"), token, T0) == claims  # rotation
    assert verify(("old",), token, T0) == Refused("forged")
    payload, mac = token.split(".")
    assert verify(("new",), payload[:-2] + "AA." + mac, T0) == Refused("forged")
    assert verify(("new",), token + "x", T0) == Refused("forged")
    assert verify(("new",), "garbage", T0) == Refused("forged")
    assert verify(("new",), token, T0 + timedelta(hours=2)) == Refused("expired")
    assert Refused("expired").status == 410 and Refused("forged").status == 403


def test_an_ack_link_points_at_router_ingest_with_a_token_for_the_user() -> None:
    links = AckLinks("https://router.example.com/", ("s",), 3600)
    url = links.url("db", "alice", "db down", T0)
    assert url.startswith("https://router.example.com/v1/ack/")
    claims = verify(("s",), url.rsplit("/", 1)[1], T0)
    assert isinstance(claims, Claims) and (claims.alert_key, claims.user_id) == ("db", "alice")


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("12A", Answer("12", "ack")),
        (" 12 a ", Answer("12", "ack")),
        ("007r", Answer("7", "resolve")),
        ("STOP", OptOut()),
        ("stop ", OptOut()),
        ("yes", NotUnderstood()),
        ("12", NotUnderstood()),
        ("A12", NotUnderstood()),
        ("", NotUnderstood()),
    ],
)
def test_replies_are_read_as_codes_stop_or_nothing(text: str, reply: object) -> None:
    assert read_reply(text) == reply


def test_an_sms_of_an_open_page_ends_with_the_reply_hint_however_long_the_alert() -> None:
    hint = reply_hint("42")
    for length in (10, 150, 600):
        text = fit_sms("x" * length, 2, hint)
        assert text.endswith("Reply 42A to ack, 42R to resolve")
        assert sms_segments(text) <= 2


def test_durations_and_policies_read_and_print() -> None:
    assert [parse_delay(t) for t in ("0s", "30s", "5m", "1h")] == [0, 30, 300, 3600]
    with pytest.raises(ValueError, match="duration"):
        parse_delay("soon")
    policy = Policy(
        id="p",
        name="P",
        repeat=1,
        steps=(PolicyStep(delay_seconds=300, user_ids=("a",), schedule_ids=("s",)),),
    )
    assert describe_policy(policy) == [
        "p  P  repeat 1  steps 1",
        "  step 1: user a, schedule s; then wait 5m",
    ]
