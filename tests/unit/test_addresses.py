"""Contact values are normalized on write, refused with a fix-it message, and masked in logs."""

from __future__ import annotations

import pytest

from router.directory.addresses import mask, normalize
from router.errors import InvalidValue


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("+1 415-555-1234", None, "+14155551234"),
        ("(415) 555-1234", "US", "+14155551234"),
        ("020 7183 8750", "gb", "+442071838750"),
        ("+49 30 901820", None, "+4930901820"),
    ],
)
def test_phone_numbers_are_stored_in_e164(value: str, region: str | None, expected: str) -> None:
    assert normalize("sms", value, region) == expected


def test_national_number_without_region_asks_for_international_form() -> None:
    with pytest.raises(
        InvalidValue, match=r"international form, e\.g\. \+14155551234, or pass --region"
    ):
        normalize("sms", "415-555-1234")


def test_invalid_number_for_region_names_the_region() -> None:
    with pytest.raises(InvalidValue) as info:
        normalize("sms", "555-1234", "US")
    assert str(info.value) == (
        "value: '555-1234' is not a valid phone number for region US; give it in "
        "international form, e.g. +14155551234"
    )


def test_unknown_region_is_refused() -> None:
    with pytest.raises(InvalidValue, match="region"):
        normalize("sms", "5551234", "XX")


def test_emails_are_lower_cased_and_trimmed() -> None:
    assert normalize("email", "  Alice.Smith@Example.COM ") == "alice.smith@example.com"


@pytest.mark.parametrize(
    "value",
    ["alice", "alice@", "@example.com", "a b@example.com", "alice@example", "a@@example.com"],
)
def test_malformed_emails_are_refused(value: str) -> None:
    with pytest.raises(InvalidValue, match="not a valid email address"):
        normalize("email", value)


def test_webhook_urls_must_be_http_or_https() -> None:
    assert (
        normalize("webhook", "https://hooks.example.com/x?a=1") == "https://hooks.example.com/x?a=1"
    )
    for bad in ("ftp://example.com", "hooks.example.com/x", "https://", "javascript:alert(1)"):
        with pytest.raises(InvalidValue, match="http"):
            normalize("webhook", bad)


def test_masks_hide_addresses_but_keep_them_distinguishable() -> None:
    assert mask("email", "alice@example.com") == "a***@example.com"
    assert mask("sms", "+14155551234") == "+14*******34"
    assert (
        mask("webhook", "https://hooks.example.com/secret?token=abc")
        == "https://hooks.example.com/***"
    )
