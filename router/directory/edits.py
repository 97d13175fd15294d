"""The rules a contact method's value and webhook settings pass on write. Pure.

``router contacts add``, ``router contacts update`` and ``router api`` (POST and
PATCH) all call these, so the command line and the API can never disagree on
what is accepted; ``audit_fields`` is what an audit row keeps of a change.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from router.directory import addresses
from router.directory.models import ContactMethod
from router.directory.targets import TargetPolicy
from router.errors import InvalidValue
from schemas import Transport, WebhookMethod


def checked_value(
    transport: Transport,
    value: str,
    region: str | None,
    policy: TargetPolicy,
    *,
    allow_landline: bool = False,
    field: str = "value",
) -> str:
    """``value`` normalized for ``transport`` (E.164, lower-cased mailbox, a safe URL);
    a phone that cannot take SMS is refused unless ``allow_landline``."""
    try:
        normalized = addresses.normalize(transport, value, region, policy)
        if transport == "sms" and not allow_landline:
            addresses.check_sms_capable(normalized)
    except InvalidValue as error:
        if error.field == "value" and field != "value":
            raise InvalidValue(field, error.value, error.expected) from None
        raise
    return normalized


def checked_webhook(
    transport: Transport,
    *,
    method: WebhookMethod | None = None,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    body: str | None = None,
    header_field: str = "webhook_headers",
) -> dict[str, Any]:
    """The webhook settings given (None: not given) as method fields; refused for a
    method that is not a webhook, or for a header the header rules forbid."""
    given = {
        "webhook_method": method,
        "webhook_headers": headers,
        "webhook_query": query,
        "webhook_body": body,
    }
    changes = {k: v for k, v in given.items() if v is not None}
    if transport != "webhook" and changes:
        raise InvalidValue(
            ", ".join(changes), transport, "options apply only to webhook contact methods"
        )
    if headers is not None:
        changes["webhook_headers"] = addresses.normalize_headers(headers, header_field)
    if query is not None:
        changes["webhook_query"] = dict(query)
    return changes


def value_change(
    method: ContactMethod,
    value: str,
    region: str | None,
    policy: TargetPolicy,
    *,
    allow_landline: bool = False,
    field: str = "value",
) -> dict[str, Any]:
    """The changes that give ``method`` a new ``value``: checked like a new method's,
    and ``verified`` reset (a new address has proved nothing). Empty if unchanged."""
    normalized = checked_value(
        method.transport, value, region, policy, allow_landline=allow_landline, field=field
    )
    if normalized == method.value:
        return {}
    return {"value": normalized, "verified": False}


def encode_cursor(method: ContactMethod) -> str:
    """An opaque cursor for the rows after ``method`` (in list order)."""
    key = json.dumps([method.user_id, method.transport, method.value]).encode()
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def decode_cursor(cursor: str, field: str = "--cursor") -> tuple[str, str, str]:
    """The key a cursor stands for; :class:`InvalidValue` for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        user, transport, value = json.loads(base64.urlsafe_b64decode(padded))
        return str(user), str(transport), str(value)
    except (ValueError, TypeError):
        raise InvalidValue(
            field, cursor[:20], "is not a cursor this service printed; start again without it"
        ) from None


def audit_fields(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, transport: str | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The fields that differ between ``before`` and ``after``, addresses masked."""
    keys = sorted(set(before or {}) | set(after or {}))
    changed = [k for k in keys if (before or {}).get(k) != (after or {}).get(k)]
    changed = [k for k in changed if k not in ("updated_at", "created_at")]

    def pick(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if record is None:
            return None
        out = {}
        for key in changed:
            value = record.get(key)
            if key == "value" and isinstance(value, str):
                value = addresses.mask(transport, value)
            elif key == "address" and isinstance(value, str):
                value = addresses.mask(None, value)
            out[key] = value
        return out

    return pick(before), pick(after)
