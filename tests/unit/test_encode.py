"""The hot path's shortcuts give what the slow ways gave: every byte string the encoder
emits is what the pydantic model says, job ids are uuid5's, partitions aiokafka's.

Jobs and decisions are built with ``encode.make`` and written with orjson, not
through ``model_construct`` and ``model_dump_json``; the models stay the published
contract. For arbitrary events, users and methods, each emitted byte string must
validate against its model, and equal ``model_dump_json`` of the validated model.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from router.delivery.trail import Trail
from router.directory.models import Directory
from router.kafka.publish import partition_for
from router.routing.build import (
    Paging,
    build_job,
    digest_job,
    new_decision,
    sent_decision,
    sent_value,
)
from router.routing.dlq import SourceRecord
from router.routing.encode import encode, make, replaced, shell, template
from router.routing.messages import routed_messages
from router.routing.pipeline import finish, plan
from router.routing.rules import RoutingOptions
from router.settings import Settings
from schemas import AlertEvent, Decision, EmailJob, SmsJob, WebhookJob, job_id_for
from schemas.jobs import _JOB_NAMESPACE
from tests.conftest import T0, make_method, make_user

MODELS: dict[str, type[BaseModel]] = {"email": EmailJob, "sms": SmsJob, "webhook": WebhookJob}

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
offsets = st.sampled_from([0, 1, -5, 5.5, 14, -12]).map(lambda h: timezone(timedelta(hours=h)))
instants = st.builds(
    lambda t, tz, us: t.replace(microsecond=us).astimezone(tz),
    st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
    offsets,
    st.sampled_from([0, 1, 500_000, 999_999]),
)
events = st.builds(
    lambda **f: AlertEvent.model_validate(f, strict=False),
    event_id=st.text(st.characters(exclude_categories=("Cs", "Cc", "Z")), min_size=1, max_size=20),
    kind=st.sampled_from(["down", "up", "first", "diagnostic"]),
    severity=st.sampled_from(["critical", "error", "warning", "info"]),
    user_ids=st.just(["alice"]),
    title=text.filter(lambda t: t.strip()),
    body=st.none() | text,
    url=st.none() | text,
    source=st.none() | text,
    labels=st.dictionaries(text, text, max_size=3),
    occurred_at=instants,
)
methods = st.lists(
    st.fixed_dictionaries(
        {
            "transport": st.sampled_from(["email", "sms", "webhook"]),
            "verified": st.booleans(),
            "disabled": st.booleans(),
            "muted": st.booleans(),
            "suppress_down": st.booleans(),
            "is_primary": st.booleans(),
            "min_severity": st.none() | st.sampled_from(["error", "warning"]),
            "webhook_method": st.none() | st.sampled_from(["GET", "POST", "PUT"]),
            "webhook_headers": st.dictionaries(
                st.sampled_from(["X-Team", "Content-Type"]), st.sampled_from(["a", "json"])
            ),
            "webhook_query": st.dictionaries(st.sampled_from(["team", "x"]), text, max_size=2),
            "webhook_body": st.none() | st.sampled_from(['{"t": "{{title}}"}', "{{ body }}"]),
        }
    ),
    max_size=4,
)
users = st.fixed_dictionaries(
    {
        "delivery_mode": st.sampled_from(["all", "preferred"]),
        "quiet_hours_start": st.none() | st.just(time(0)),
        "quiet_hours_end": st.just(time(23, 59)),
        "quiet_action": st.sampled_from(["defer", "drop"]),
        "quiet_bypass": st.sampled_from(["critical", "error"]),
    }
)


def assert_as_the_model_writes_it(value: bytes, model: type[BaseModel]) -> None:
    validated = model.model_validate_json(value)
    assert validated.model_dump_json().encode() == value
    # Field for field, in the model's order, nothing more and nothing less.
    assert list(json.loads(value)) == list(model.model_fields)


pagings = st.none() | st.builds(
    Paging, st.integers(1, 3), st.integers(1, 3), st.none() | st.sampled_from(["K7", "Q2"])
)


@settings(max_examples=300, deadline=None)
@given(events, users, methods, instants, st.integers(1, 4), pagings)
def test_every_job_and_decision_the_hot_path_emits_is_what_the_model_writes(
    event: AlertEvent,
    user: dict[str, Any],
    rows: list[dict[str, Any]],
    now: datetime,
    sms_segments: int,
    paging: Paging | None,
) -> None:
    directory = Directory.of(
        [make_user("alice", **user)],
        [
            make_method(
                f"m{n}", transport=row.pop("transport"), created_at=T0 + timedelta(n), **row
            )
            for n, row in enumerate(rows)
        ],
    )
    options = RoutingOptions(sms_max_segments=sms_segments)
    step = (paging, ["alice"]) if paging is not None else None
    routed = finish(plan(event, directory, now, options, step))
    for job in routed.jobs:
        assert_as_the_model_writes_it(encode(job), MODELS[job.transport])
    for decision in routed.decisions:
        assert_as_the_model_writes_it(encode(decision), Decision)
    # What is published: each job, then each decision (a sent one written without its
    # model), the bytes of the models above.
    record = SourceRecord("alerts", 0, 7, None, None, None, ())
    published = [m.value for m in routed_messages(Settings(), 0, record, routed, Trail(), now)]
    assert published == [encode(m) for m in [*routed.jobs, *routed.decisions]]
    for method in directory.methods_of("alice"):
        digest = digest_job([event, event], method, now, options)
        assert_as_the_model_writes_it(encode(digest), MODELS[method.transport])


@given(instants, st.none() | instants, st.none() | st.lists(text, max_size=3))
def test_decisions_with_every_optional_field_are_written_as_the_model_writes_them(
    at: datetime, deliver_at: datetime | None, digest_of: list[str] | None
) -> None:
    decision = new_decision(
        event_id="e1",
        user_id="alice",
        contact_method_id="m1",
        transport="sms",
        outcome="deferred",
        reason="quiet_hours",
        decided_at=at,
        deliver_at=deliver_at or at,
        digest_of=digest_of,
    )
    assert_as_the_model_writes_it(encode(decision), Decision)


def test_a_value_orjson_refuses_is_written_by_pydantic() -> None:
    # orjson writes integers of at most 64 bits; pydantic writes any.
    job = make(
        SmsJob,
        {
            "job_id": "j1",
            "event_id": "e1",
            "user_id": "alice",
            "contact_method_id": "m1",
            "to": "+14155551234",
            "kind": "down",
            "severity": "critical",
            "title": "t",
            "verified": True,
            "occurred_at": T0,
            "created_at": T0,
            "text": "t",
            "encoding": "GSM-7",
            "segments": 2**70,
        },
    )
    assert encode(job) == job.model_dump_json().encode()


def test_make_fills_the_models_defaults_in_field_order() -> None:
    decision = make(
        Decision,
        {
            "event_id": "e1",
            "user_id": "alice",
            "contact_method_id": "m1",
            "transport": "email",
            "outcome": "sent",
            "reason": None,
            "job_id": "j1",
            "decided_at": T0,
        },
    )
    assert list(decision.__dict__) == list(Decision.model_fields)
    assert decision.deliver_at is None
    assert decision.digest_of is None
    assert decision == Decision.model_validate_json(encode(decision))


@given(events, instants)
def test_replaced_is_make_of_the_instances_fields_and_the_new_values(
    event: AlertEvent, at: datetime
) -> None:
    copy = replaced(event, {"occurred_at": at})
    assert copy.__dict__ == make(AlertEvent, {**event.__dict__, "occurred_at": at}).__dict__
    assert list(copy.__dict__) == list(AlertEvent.model_fields)
    assert copy == event.model_copy(update={"occurred_at": at})
    assert encode(copy) == copy.model_dump_json().encode()


@pytest.mark.parametrize(
    "paging", [None, Paging(), Paging(step=2), Paging(round=2, reply_code="K7")]
)
def test_a_sent_decision_is_the_decision_new_decision_makes_for_its_job(
    paging: Paging | None,
) -> None:
    event = AlertEvent(
        event_id="e1",
        kind="down",
        severity="critical",
        title="t",
        user_ids=["alice"],
        occurred_at=T0,
    )
    job = build_job(event, make_method("m1", transport="sms"), T0, RoutingOptions(), paging)
    decision = sent_decision(job, T0 + timedelta(seconds=1), paging)
    assert decision == new_decision(
        event_id="e1",
        user_id=job.user_id,
        contact_method_id="m1",
        transport="sms",
        outcome="sent",
        reason="escalated" if paging is not None and paging.escalated else None,
        job_id=job.job_id,
        decided_at=T0 + timedelta(seconds=1),
        alert_key="e1",
        paging=paging,
    )
    assert_as_the_model_writes_it(encode(decision), Decision)
    assert sent_value(job, T0 + timedelta(seconds=1), paging) == encode(decision)


class Tagged(BaseModel):
    """A model with a default factory: every instance needs its own list."""

    name: str
    tags: list[str] = Field(default_factory=list)


def test_a_model_with_a_default_factory_gets_a_fresh_default_from_make_and_no_shell() -> None:
    one, two = make(Tagged, {"name": "a"}), make(Tagged, {"name": "b"})
    assert one.tags == [] and one.tags is not two.tags
    with pytest.raises(TypeError, match="make"):
        shell(Tagged, {**template(Tagged), "name": "c"})
    assert shell(Decision, template(Decision).copy()).outcome is None  # no factories: fine


@given(st.text(), st.text())
def test_job_ids_are_the_uuid5_of_the_event_and_the_method(event_id: str, method_id: str) -> None:
    expected = uuid.uuid5(_JOB_NAMESPACE, f"{event_id}\x1f{method_id}")
    assert job_id_for(event_id, method_id) == str(expected)


@given(st.none() | st.binary(max_size=40), st.integers(1, 12))
def test_the_producers_partitioner_puts_a_key_where_aiokafkas_does(
    key: bytes | None, partitions: int
) -> None:
    every = list(range(partitions))
    if key is None:
        assert partition_for(key, every, every) in every
    else:
        assert partition_for(key, every, every) == DefaultPartitioner()(key, every, every)
