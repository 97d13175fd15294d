"""Dead-letter records: the original message, unchanged, plus headers saying why. Pure.

A dead letter must always be publishable, or its partition would stall behind
it: one that would not fit a produce request is cut (:func:`fit`) and says so
in its headers, with the original size and SHA-256.

Headers follow both common conventions so existing tooling can read them:
Kafka Connect's ``__connect.errors.*`` and Spring Kafka's ``kafka_dlt-*``,
plus the router's own ``router.dlq.reason`` code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from router.routing.decode import Rejection

#: Room left in a produce request for the record's framing and the request's own.
_FRAMING_BYTES = 1024


@dataclass(frozen=True)
class SourceRecord:
    """Where a message came from and what it carried, as consumed."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class DeadLetter:
    """A message to publish on the DLQ topic."""

    key: bytes | None
    value: bytes
    headers: dict[str, str]


def dead_letter(record: SourceRecord, rejection: Rejection) -> DeadLetter:
    """The DLQ record for ``record``: same key and value bytes, original headers kept."""
    # Kafka headers are bytes; the producer API takes text, so bytes that are not
    # UTF-8 are kept backslash-escaped rather than dropped.
    headers = {name: raw.decode("utf-8", "backslashreplace") for name, raw in record.headers}
    headers.update(
        {
            "router.dlq.reason": rejection.reason,
            "router.dlq.detail": rejection.message,
            "__connect.errors.topic": record.topic,
            "__connect.errors.partition": str(record.partition),
            "__connect.errors.offset": str(record.offset),
            "__connect.errors.exception.class.name": rejection.error_class,
            "__connect.errors.exception.message": rejection.message,
            "kafka_dlt-original-topic": record.topic,
            "kafka_dlt-original-partition": str(record.partition),
            "kafka_dlt-original-offset": str(record.offset),
            "kafka_dlt-exception-fqcn": rejection.error_class,
            "kafka_dlt-exception-message": rejection.message,
        }
    )
    if record.timestamp_ms is not None:
        headers["kafka_dlt-original-timestamp"] = str(record.timestamp_ms)
    return DeadLetter(key=record.key, value=record.value or b"", headers=headers)


def size_of(letter: DeadLetter) -> int:
    """Bytes the letter takes in a produce request, near enough to budget with."""
    headers = sum(len(k.encode()) + len(v.encode()) for k, v in letter.headers.items())
    return len(letter.value) + len(letter.key or b"") + headers + _FRAMING_BYTES


def cut(letter: DeadLetter, keep: int, reason: str) -> DeadLetter:
    """``letter`` with only the first ``keep`` bytes of its value, and headers saying so."""
    if len(letter.value) <= keep and "router.dlq.truncated" not in letter.headers:
        return letter
    original = letter.headers.get("router.dlq.original_size", str(len(letter.value)))
    digest = letter.headers.get(
        "router.dlq.original_sha256", hashlib.sha256(letter.value).hexdigest()
    )
    headers = {
        **letter.headers,
        "router.dlq.truncated": "true",
        "router.dlq.truncated_reason": reason,
        "router.dlq.original_size": original,
        "router.dlq.original_sha256": digest,
    }
    return replace(letter, value=letter.value[: max(keep, 0)], headers=headers)


def fit(letter: DeadLetter, max_request_bytes: int) -> DeadLetter:
    """``letter`` unchanged if it fits a produce request of ``max_request_bytes``, else cut."""
    overflow = size_of(letter) - max_request_bytes
    if overflow <= 0:
        return letter
    # The cut adds four headers; leave room for them too.
    keep = len(letter.value) - overflow - 512
    return cut(letter, keep, f"larger than the {max_request_bytes}-byte produce request limit")
