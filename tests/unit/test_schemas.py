"""The wire contract: what AlertEvent accepts and refuses; the JSON Schema files are current."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from schemas import AlertEvent, Decision, digest_job_id, job_id_for
from schemas.export import JSON_DIR, MODELS, render

VALID = {
    "event_id": "e1",
    "kind": "down",
    "severity": "critical",
    "user_ids": ["alice"],
    "title": "db down",
}


def parse(**changes: object) -> AlertEvent:
    data = {**VALID, **changes}
    data = {k: v for k, v in data.items() if v is not ...}
    return AlertEvent.model_validate_json(json.dumps(data))


def test_minimal_event_is_accepted_with_optional_fields_empty() -> None:
    event = parse()
    assert event.event_id == "e1"
    assert event.body is None and event.occurred_at is None and event.labels == {}


def test_unknown_fields_are_tolerated_so_producers_can_evolve() -> None:
    assert parse(new_field={"x": 1}).event_id == "e1"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event_id": ...}, "event_id"),
        ({"event_id": "  "}, "event_id"),
        ({"title": ...}, "title"),
        ({"kind": "sideways"}, "kind"),
        ({"severity": "urgent"}, "severity"),
        ({"user_ids": []}, "user_ids"),
        ({"user_ids": "alice"}, "user_ids"),
        ({"user_ids": [1]}, "user_ids"),
        ({"event_id": 42}, "event_id"),
        ({"labels": {"a": 1}}, "labels"),
        ({"occurred_at": 1767225600}, "occurred_at"),
        ({"occurred_at": "2026-01-01T00:00:00"}, "occurred_at"),
    ],
)
def test_wrong_or_missing_fields_are_refused(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse(**changes)
    assert field in str(info.value)


def test_exactly_one_of_user_ids_or_schedule_id() -> None:
    assert parse(user_ids=..., schedule_id="primary").schedule_id == "primary"
    with pytest.raises(ValidationError, match="exactly one"):
        parse(schedule_id="primary")
    with pytest.raises(ValidationError, match="exactly one"):
        parse(user_ids=...)


def test_recipients_are_deduplicated_in_sender_order() -> None:
    assert parse(user_ids=["b", "a", "b"]).recipients() == ["b", "a"]


def test_occurred_at_accepts_rfc3339_with_offset() -> None:
    event = parse(occurred_at="2026-03-01T12:00:00+01:00")
    assert event.occurred_at is not None and event.occurred_at.utcoffset() is not None


def test_job_ids_are_deterministic_and_distinct() -> None:
    assert job_id_for("e1", "m1") == job_id_for("e1", "m1")
    assert job_id_for("e1", "m1") != job_id_for("e1", "m2")
    assert job_id_for("e1", "m1") != job_id_for("e2", "m1")


def test_decision_reason_must_match_outcome() -> None:
    base = {
        "event_id": "e",
        "user_id": "u",
        "contact_method_id": "m",
        "transport": "sms",
        "decided_at": "2026-01-01T00:00:00Z",
    }
    with pytest.raises(ValidationError):
        Decision.model_validate({**base, "outcome": "sent", "reason": "disabled", "job_id": "j"})
    with pytest.raises(ValidationError):
        Decision.model_validate({**base, "outcome": "skipped", "reason": None, "job_id": None})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_committed_json_schema_matches_the_model(name: str) -> None:
    committed = (JSON_DIR / f"{name}.schema.json").read_text()
    assert committed == render(MODELS[name]), "run `make schemas` and commit the result"


def test_ordinary_job_ids_are_unchanged_by_the_digest_id_fix() -> None:
    # A contract with delivery workers: the ids of ordinary jobs never change.
    assert job_id_for("e1", "m1") == "5b2423a9-7091-51b0-8a95-8354933ab2c5"


def test_digest_job_ids_cannot_collide_through_a_separator_in_an_event_id() -> None:
    assert digest_job_id(["x\x1fy"], "m") != digest_job_id(["x", "y"], "m")
    assert digest_job_id(["x", "y"], "m\x1fx") != digest_job_id(["x\x1fm", "y"], "m")
    assert digest_job_id(["b", "a"], "m") == digest_job_id(["a", "b"], "m")  # order-free
    assert digest_job_id(["e1"], "m1") != job_id_for("e1", "m1")
