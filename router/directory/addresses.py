"""Contact values: normalize on write, mask in logs. Pure functions.

Every value is NFKC-folded first, so full-width letters, digits and signs
(U+FF01 to U+FF5E, as East Asian keyboards type them) are the ASCII ones they
look like.

- SMS numbers are parsed with ``phonenumbers`` and stored in E.164; a number
  with an extension is refused (a text cannot dial one).
- Email addresses must be mailbox addresses as ``email-validator`` reads them
  (no DNS): no domain literals, quoted or over-long local parts, empty labels.
  The stored form is the local part lower-cased and the domain in its ASCII
  (IDNA) form, so an internationalised domain and its punycode are one address
  for duplicates and opt-outs, which compare stored forms. Lower-casing keeps a
  letter whose lower case is not one letter (``İ``), since Python's would add a
  combining dot (``i̇``).
- Webhook URLs must be absolute http(s) URLs to a safe target (router.directory.targets);
  webhook headers follow router.directory.webhook_headers.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from urllib.parse import urlsplit

import email_validator
import phonenumbers

from router.directory.targets import TargetPolicy, UnsafeTarget, check_target
from router.directory.webhook_headers import UnsafeHeader, check_headers
from router.errors import InvalidValue
from schemas import Transport

_EXAMPLE_PHONE = "+14155551234"


def normalize_phone(value: str, region: str | None = None) -> str:
    """Return ``value`` as an E.164 number, or raise :class:`InvalidValue` saying how to fix it.

    ``region`` (ISO 3166 alpha-2, e.g. ``US``) lets national formats like
    ``(415) 555-1234`` parse; without it the number must start with ``+``.
    """
    raw = unicodedata.normalize("NFKC", value).strip()
    region_code = region.upper() if region else None
    if region_code is not None and region_code not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidValue(
            "region",
            region,
            "is not a known region code; give an ISO 3166 alpha-2 code such as US, GB or DE",
        )
    where = f"for region {region_code}" if region_code else "without a region"
    hint = f"give it in international form, e.g. {_EXAMPLE_PHONE}" + (
        "" if region_code else ", or pass --region"
    )
    try:
        number = phonenumbers.parse(raw, region_code)
    except phonenumbers.NumberParseException:
        raise InvalidValue("value", value, f"is not a valid phone number {where}; {hint}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidValue("value", value, f"is not a valid phone number {where}; {hint}")
    if number.extension:
        raise InvalidValue(
            "value",
            value,
            f"has an extension ({number.extension}), which a text message cannot dial; "
            "give the number without it",
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_NUMBER_TYPES = {
    value: name.lower()
    for name, value in vars(phonenumbers.PhoneNumberType).items()
    if name.isupper()
}


def check_sms_capable(e164: str) -> None:
    """Refuse a number that phonenumbers classes as fixed-line only (it cannot take SMS).

    "Fixed line or mobile" (as in the US and Canada) and unknown types pass.
    """
    number = phonenumbers.parse(e164)
    if phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.FIXED_LINE:
        raise InvalidValue(
            "value",
            e164,
            "is a fixed-line number, which cannot receive SMS; give a mobile number, or pass "
            "--allow-landline if this line does take text messages",
        )


def phone_details(e164: str) -> dict[str, str | None]:
    """The number in every common form, with its region and type, as the seed APIs show it."""
    number = phonenumbers.parse(e164)
    fmt = phonenumbers.PhoneNumberFormat
    return {
        "e164": phonenumbers.format_number(number, fmt.E164),
        "international": phonenumbers.format_number(number, fmt.INTERNATIONAL),
        "national": phonenumbers.format_number(number, fmt.NATIONAL),
        "rfc3966": phonenumbers.format_number(number, fmt.RFC3966),
        "country_code": str(number.country_code),
        "region": phonenumbers.region_code_for_number(number),
        "number_type": _NUMBER_TYPES.get(phonenumbers.number_type(number), "unknown"),
    }


def _lower(text: str) -> str:
    # str.lower() turns "İ" into "i" and a combining dot; keep such letters as given.
    return "".join(low if len(low := c.lower()) == 1 else c for c in text)


def normalize_email(value: str) -> str:
    """Return ``value`` as its stored form (see the module docstring), or raise
    :class:`InvalidValue` saying why it is not a mailbox address."""
    folded = unicodedata.normalize("NFKC", value).strip()
    try:
        address = email_validator.validate_email(
            folded, check_deliverability=False, strict=True, allow_smtputf8=True
        )
    except email_validator.EmailNotValidError as error:
        raise InvalidValue(
            "value",
            value,
            f"is not a valid email address ({str(error).rstrip('.')}); give it as name@example.com",
        ) from None
    local = unicodedata.normalize("NFC", _lower(address.local_part))
    return f"{local}@{address.ascii_domain}"


def normalize_url(value: str, policy: TargetPolicy | None = None) -> str:
    """``value`` trimmed if it is an absolute http(s) URL to a target ``policy`` allows;
    else :class:`InvalidValue` saying why."""
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidValue(
            "value", value, "is not an http(s) URL; give it as https://hooks.example.com/path"
        )
    if len(url) > 2000:
        raise InvalidValue("value", value[:40] + "...", "is longer than 2000 characters")
    try:
        check_target(url, policy or TargetPolicy())
    except UnsafeTarget as error:
        raise InvalidValue(
            "value", mask("webhook", url), f"is refused as a webhook target: {error}"
        ) from None
    return url


def normalize_headers(headers: Mapping[str, str], field: str) -> dict[str, str]:
    """``headers`` as given if every one may be sent to a webhook, else :class:`InvalidValue`
    naming ``field`` and the header (router.directory.webhook_headers)."""
    try:
        check_headers(headers)
    except UnsafeHeader as error:
        raise InvalidValue(field, error.name, error.reason) from None
    return dict(headers)


def normalize(
    transport: Transport,
    value: str,
    region: str | None = None,
    policy: TargetPolicy | None = None,
) -> str:
    """Normalize ``value`` for ``transport``; the stored form is what this returns.

    ``policy`` says which webhook targets are allowed (the strict default if None).
    """
    if transport == "sms":
        return normalize_phone(value, region)
    if transport == "email":
        return normalize_email(value)
    return normalize_url(value, policy)


def mask(transport: str | None, value: str) -> str:
    """A form of ``value`` safe for logs: enough to tell addresses apart, not to use them."""
    if transport == "sms" or (transport is None and value.startswith("+")):
        return value[:3] + "*" * max(len(value) - 5, 0) + value[-2:] if len(value) > 5 else "***"
    if transport == "email" or (transport is None and "@" in value):
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if transport == "webhook" or (transport is None and "://" in value):
        parts = urlsplit(value)
        return f"{parts.scheme}://{parts.hostname or '?'}/***"
    return "***"
