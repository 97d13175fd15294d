"""Stage one: raw Kafka value -> :class:`AlertEvent`, or a :class:`Rejection` saying why not.

Pure: the caller supplies the receipt time. Nothing here raises for bad input;
every message ends as an event or a rejection, and rejections go to the DLQ.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import ValidationError

from schemas import AlertEvent

RejectReason = Literal["too_large", "not_json", "schema_invalid", "routing_failed"]

#: DLQ reason codes and what each means; the README's table is checked against this.
REJECT_REASONS: dict[str, str] = {
    "too_large": "The message is larger than ROUTER_MAX_EVENT_BYTES.",
    "not_json": "The message is empty, not UTF-8, or not valid JSON.",
    "schema_invalid": "The JSON does not match the AlertEvent schema.",
    "routing_failed": "The event was valid but routing it raised an error (a router bug); "
    "the error class and message are in the headers. Re-publish it once fixed.",
}


@dataclass(frozen=True)
class Rejection:
    """Why a message could not become an event."""

    reason: RejectReason
    error_class: str
    message: str


def _summarize(error: ValidationError, limit: int = 5) -> str:
    parts = []
    for item in error.errors()[:limit]:
        where = ".".join(str(p) for p in item["loc"]) or "(message)"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def decode(value: bytes | None, *, max_bytes: int, received_at: datetime) -> AlertEvent | Rejection:
    """Parse and validate one message; a missing ``occurred_at`` becomes ``received_at``."""
    if value is None or not value.strip():
        return Rejection("not_json", "EmptyMessage", "the message has no value")
    if len(value) > max_bytes:
        return Rejection(
            "too_large",
            "MessageTooLarge",
            f"the message is {len(value)} bytes; the limit is {max_bytes} (ROUTER_MAX_EVENT_BYTES)",
        )
    try:
        event = AlertEvent.model_validate_json(value)
    except ValidationError as error:
        if any(e["type"] == "json_invalid" for e in error.errors()):
            return Rejection("not_json", "JSONDecodeError", _summarize(error))
        return Rejection("schema_invalid", "ValidationError", _summarize(error))
    if event.occurred_at is None:
        event = event.model_copy(update={"occurred_at": received_at})
    return event
