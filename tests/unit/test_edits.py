"""The write rules the CLI and router api share (router.directory.edits)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from router.directory import edits
from router.directory.models import ContactMethod
from router.directory.targets import TargetPolicy
from router.errors import InvalidValue

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def method(**fields: object) -> ContactMethod:
    base = {
        "id": "m1",
        "user_id": "u",
        "transport": "sms",
        "value": "+447911123456",
        "verified": True,
        "created_at": NOW,
        "updated_at": NOW,
    }
    return ContactMethod.model_validate({**base, **fields})


def test_a_new_value_is_normalized_and_resets_verified() -> None:
    changes = edits.value_change(method(), "07911 123457", "GB", TargetPolicy())
    assert changes == {"value": "+447911123457", "verified": False}


def test_the_same_value_in_another_spelling_changes_nothing() -> None:
    assert edits.value_change(method(), "+44 7911 123456", None, TargetPolicy()) == {}


def test_a_landline_is_refused_for_sms_naming_the_field_unless_allowed() -> None:
    with pytest.raises(InvalidValue) as refused:
        edits.value_change(method(), "+4930123456", None, TargetPolicy(), field="--value")
    assert refused.value.field == "--value" and "fixed-line" in refused.value.expected
    allowed = edits.value_change(method(), "+4930123456", None, TargetPolicy(), allow_landline=True)
    assert allowed["value"] == "+4930123456"


def test_an_unsafe_webhook_target_is_refused() -> None:
    hook = method(transport="webhook", value="https://hooks.example.com/a")
    with pytest.raises(InvalidValue, match="webhook target"):
        edits.value_change(hook, "https://169.254.169.254/latest", None, TargetPolicy())


def test_webhook_settings_apply_only_to_webhooks_and_headers_are_checked() -> None:
    with pytest.raises(InvalidValue, match="only to webhook"):
        edits.checked_webhook("email", method="PUT")
    with pytest.raises(InvalidValue):
        edits.checked_webhook("webhook", headers={"Host": "evil.example"})
    assert edits.checked_webhook("webhook", query={"a": "b"}) == {"webhook_query": {"a": "b"}}
    assert edits.checked_webhook("email") == {}


def test_a_cursor_round_trips_and_a_foreign_one_is_refused() -> None:
    m = method()
    assert edits.decode_cursor(edits.encode_cursor(m)) == ("u", "sms", "+447911123456")
    with pytest.raises(InvalidValue):
        edits.decode_cursor("@@not-a-cursor", "cursor")
