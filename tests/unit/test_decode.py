"""Stage one: every message becomes an event or a rejection with a reason code."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.directory.addresses import normalize
from router.routing.decode import NotJson, Rejection, decode, decode_contact_event, load_json
from schemas import AlertEvent, ContactEvent
from tests.conftest import T0

GOOD = json.dumps(
    {"event_id": "e1", "kind": "down", "severity": "error", "user_ids": ["a"], "title": "t"}
).encode()


def test_valid_event_without_occurred_at_gets_the_receipt_time() -> None:
    event = decode(GOOD, max_bytes=10_000, received_at=T0)
    assert isinstance(event, AlertEvent)
    assert event.occurred_at == T0


def test_sender_occurred_at_is_kept() -> None:
    raw = json.dumps({**json.loads(GOOD), "occurred_at": "2025-12-31T23:00:00Z"}).encode()
    event = decode(raw, max_bytes=10_000, received_at=T0)
    assert isinstance(event, AlertEvent)
    assert event.occurred_at is not None and event.occurred_at.year == 2025


def test_not_json_is_rejected_as_not_json() -> None:
    result = decode(b"hello", max_bytes=10_000, received_at=T0)
    assert isinstance(result, Rejection) and result.reason == "not_json"


def test_invalid_utf8_is_rejected_as_not_json() -> None:
    result = decode(b'{"event_id": "\xff"}', max_bytes=10_000, received_at=T0)
    assert isinstance(result, Rejection) and result.reason == "not_json"


def test_a_tombstone_or_empty_value_is_rejected_as_empty_value() -> None:
    for value in (None, b""):
        result = decode(value, max_bytes=10_000, received_at=T0)
        assert isinstance(result, Rejection) and result.reason == "empty_value"


def test_a_blank_value_is_rejected_as_not_json() -> None:
    result = decode(b"  \n ", max_bytes=10_000, received_at=T0)
    assert isinstance(result, Rejection) and result.reason == "not_json"


def test_json_that_is_not_an_object_is_schema_invalid() -> None:
    result = decode(b"[1, 2]", max_bytes=10_000, received_at=T0)
    assert isinstance(result, Rejection) and result.reason == "schema_invalid"


def test_schema_errors_name_the_fields() -> None:
    result = decode(b'{"event_id": "e", "kind": "down"}', max_bytes=10_000, received_at=T0)
    assert isinstance(result, Rejection) and result.reason == "schema_invalid"
    assert "severity" in result.message and "title" in result.message


def test_oversized_message_is_rejected_before_parsing() -> None:
    result = decode(GOOD, max_bytes=len(GOOD) - 1, received_at=T0)
    assert isinstance(result, Rejection) and result.reason == "too_large"
    assert str(len(GOOD)) in result.message


@given(st.binary(max_size=300))
def test_any_bytes_end_as_an_event_or_a_rejection(value: bytes) -> None:
    result = decode(value, max_bytes=200, received_at=T0)
    assert isinstance(result, AlertEvent | Rejection)


@pytest.mark.parametrize(
    "token", [b"NaN", b"Infinity", b"-Infinity", b"[1, NaN]", b'{"deep": {"x": Infinity}}']
)
def test_non_finite_numbers_anywhere_are_not_json(token: bytes) -> None:
    # The model ignores unknown fields, but the trail keeps the raw event and
    # PostgreSQL's json refuses these tokens: refused here, once, as not_json.
    raw = GOOD[:-1] + b', "extra": ' + token + b"}"
    result = decode(raw, max_bytes=10_000, received_at=T0)
    assert isinstance(result, Rejection) and result.reason == "not_json"
    assert "line 1" in result.message


def test_the_words_nan_and_infinity_inside_strings_are_text() -> None:
    raw = json.dumps({**json.loads(GOOD), "title": "NaN Infinity", "note": "-Infinity"}).encode()
    event = decode(raw, max_bytes=10_000, received_at=T0)
    assert isinstance(event, AlertEvent) and event.title == "NaN Infinity"


def test_the_json_reader_refuses_deep_nesting_and_non_finite_numbers_without_raising() -> None:
    with pytest.raises(NotJson, match="recursion limit"):
        load_json(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(NotJson):
        load_json(b'{"a": NaN}')
    assert load_json(b'{"a": [1.5, "NaN"]}') == {"a": [1.5, "NaN"]}


@pytest.mark.parametrize(
    "occurred_at",
    ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00", "1899-12-31T23:59:59Z"],
)
def test_occurred_at_the_router_cannot_compute_with_is_schema_invalid(occurred_at: str) -> None:
    raw = json.dumps({**json.loads(GOOD), "occurred_at": occurred_at}).encode()
    result = decode(raw, max_bytes=10_000, received_at=T0)
    assert isinstance(result, Rejection) and result.reason == "schema_invalid"
    assert "occurred_at" in result.message and "1900-01-01" in result.message


@pytest.mark.parametrize("occurred_at", ["1900-01-01T00:00:00Z", "8999-12-31T23:59:59Z"])
def test_occurred_at_at_the_ends_of_the_range_is_accepted(occurred_at: str) -> None:
    raw = json.dumps({**json.loads(GOOD), "occurred_at": occurred_at}).encode()
    assert isinstance(decode(raw, max_bytes=10_000, received_at=T0), AlertEvent)


def test_an_opt_out_is_stored_in_the_form_its_contact_method_has() -> None:
    """Opt-out matching compares stored forms: a punycode domain, full-width letters or
    capitals in the message still match the method written with ``contacts add``."""
    stored = normalize("email", "alice@bücher.de")
    for address in ("ALICE@xn--bcher-kva.de", "ａｌｉｃｅ@BÜCHER.de"):
        value = json.dumps({"type": "opt_out", "transport": "email", "address": address})
        event = decode_contact_event(value.encode(), max_bytes=1000)
        assert isinstance(event, ContactEvent) and event.address == stored, address


def test_an_opt_out_for_a_number_with_an_extension_is_refused() -> None:
    value = b'{"type": "opt_out", "transport": "sms", "address": "+1 415 555 1234 ext. 77"}'
    rejection = decode_contact_event(value, max_bytes=1000)
    assert isinstance(rejection, Rejection) and rejection.reason == "invalid_address"
    assert "extension" in rejection.message
