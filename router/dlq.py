"""Dead-letter records: the original message, unchanged, plus headers saying why. Pure.

Headers follow both common conventions so existing tooling can read them:
Kafka Connect's ``__connect.errors.*`` and Spring Kafka's ``kafka_dlt-*``,
plus the router's own ``router.dlq.reason`` code.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.decode import Rejection


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
