"""Stage one: raw Kafka value -> a wire model, or a :class:`Rejection` saying why not.

Pure: the caller supplies the receipt time. Nothing here raises for bad input;
every message ends as a model or a rejection, and rejections go to the DLQ.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json

from router.directory.addresses import mask, normalize
from router.errors import InvalidValue
from router.routing.encode import replaced
from schemas import AlertEvent, ContactEvent, DeliveryStatus

RejectReason = Literal[
    "empty_value",
    "too_large",
    "not_json",
    "schema_invalid",
    "invalid_address",
    "routing_failed",
    "publish_refused",
]

#: DLQ reason codes and what each means; docs/topics-and-schemas.md's table is checked against it.
REJECT_REASONS: dict[str, str] = {
    "empty_value": "The record has no value (a tombstone) or an empty one.",
    "too_large": "The message is larger than ROUTER_MAX_EVENT_BYTES.",
    "not_json": "The message is blank, not UTF-8, or not valid JSON (RFC 8259: `NaN` and "
    "`Infinity` are refused; nesting deeper than 200 levels is refused).",
    "schema_invalid": "The JSON does not match the topic's schema (AlertEvent or ContactEvent).",
    "invalid_address": "A contacts.events address does not normalize (bad phone or email).",
    "routing_failed": "The event was valid but routing it raised an error (a router bug); "
    "the error class and message are in the headers. Re-publish it once fixed.",
    "publish_refused": "The broker refused the router's output for this event for a reason "
    "that will not change (for example a job too large for the topic); the rest of the batch "
    "was routed.",
}

Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class Rejection:
    """Why a message could not be used."""

    reason: RejectReason
    error_class: str
    message: str


class NotJson(ValueError):
    """The bytes are not JSON the router accepts; the message says where and why."""


# Python's json module and pydantic's parser accept these tokens, PostgreSQL's
# json type and every strict JSON reader refuse them (-Infinity holds Infinity).
_NAN, _INFINITY = b"NaN", b"Infinity"


def load_json(raw: bytes) -> Any:
    """``raw`` parsed as JSON, or :class:`NotJson`.

    The one JSON reader of every input (Kafka topics and HTTP bodies): RFC 8259
    only, so ``NaN`` and ``Infinity`` are refused, and nesting deeper than the
    parser's recursion limit (200) is refused, never a ``RecursionError``.
    """
    try:
        return from_json(raw, allow_inf_nan=False)
    except ValueError as error:
        raise NotJson(str(error)) from None


def _summarize(error: ValidationError, limit: int = 5) -> str:
    parts = []
    for item in error.errors()[:limit]:
        where = ".".join(str(p) for p in item["loc"]) or "(message)"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def parse(value: bytes | None, model: type[Model], *, max_bytes: int) -> Model | Rejection:
    """Parse and validate one JSON message as ``model``."""
    if value is None:
        return Rejection("empty_value", "NullValue", "the record has no value (a tombstone)")
    if not value:
        return Rejection("empty_value", "EmptyValue", "the record's value is empty")
    if value.isspace():
        return Rejection("not_json", "BlankMessage", "the message is only whitespace")
    if len(value) > max_bytes:
        return Rejection(
            "too_large",
            "MessageTooLarge",
            f"the message is {len(value)} bytes; the limit is {max_bytes} (ROUTER_MAX_EVENT_BYTES)",
        )
    if _NAN in value or _INFINITY in value:
        # Rare, so checked only when the bytes could hold such a token: the
        # model ignores unknown fields, but the trail keeps the raw event.
        try:
            load_json(value)
        except NotJson as error:
            return Rejection("not_json", "JSONDecodeError", f"Invalid JSON: {error}")
    try:
        return model.model_validate_json(value)
    except ValidationError as error:
        if any(e["type"] == "json_invalid" for e in error.errors()):
            return Rejection("not_json", "JSONDecodeError", _summarize(error))
        return Rejection("schema_invalid", "ValidationError", _summarize(error))


def decode(value: bytes | None, *, max_bytes: int, received_at: datetime) -> AlertEvent | Rejection:
    """An alert event; a missing ``occurred_at`` becomes ``received_at``."""
    event = parse(value, AlertEvent, max_bytes=max_bytes)
    if isinstance(event, AlertEvent) and event.occurred_at is None:
        # The validated event with one more field set: no need to validate it again.
        event = replaced(event, {"occurred_at": received_at})
    return event


def decode_contact_event(value: bytes | None, *, max_bytes: int) -> ContactEvent | Rejection:
    """An opt-out/opt-in message with its address normalized as on write."""
    event = parse(value, ContactEvent, max_bytes=max_bytes)
    if isinstance(event, Rejection):
        return event
    try:
        address = normalize(event.transport, event.address, event.region)
    except InvalidValue as error:
        # The message names the address masked: rejections are logged.
        shown = mask(event.transport, event.address)
        return Rejection("invalid_address", "InvalidValue", f"address {shown} {error.expected}")
    return event.model_copy(update={"address": address})


def decode_status(value: bytes | None, *, max_bytes: int) -> DeliveryStatus | Rejection:
    """A delivery worker's report about one job."""
    return parse(value, DeliveryStatus, max_bytes=max_bytes)
