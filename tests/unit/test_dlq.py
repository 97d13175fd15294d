"""Dead letters keep the original message and say why, in both header conventions."""

from __future__ import annotations

from router.decode import Rejection
from router.dlq import SourceRecord, dead_letter


def test_dead_letter_keeps_key_value_and_headers_and_adds_the_reason() -> None:
    record = SourceRecord(
        topic="alerts",
        partition=2,
        offset=41,
        timestamp_ms=1700000000000,
        key=b"k",
        value=b"\x00not json",
        headers=(("trace", b"abc"), ("bin", b"\xff")),
    )
    letter = dead_letter(record, Rejection("not_json", "JSONDecodeError", "bad"))
    assert letter.key == b"k" and letter.value == b"\x00not json"
    assert letter.headers["trace"] == "abc"
    assert letter.headers["bin"] == "\\xff"
    assert letter.headers["router.dlq.reason"] == "not_json"
    assert letter.headers["__connect.errors.topic"] == "alerts"
    assert letter.headers["__connect.errors.partition"] == "2"
    assert letter.headers["__connect.errors.offset"] == "41"
    assert letter.headers["__connect.errors.exception.class.name"] == "JSONDecodeError"
    assert letter.headers["kafka_dlt-original-topic"] == "alerts"
    assert letter.headers["kafka_dlt-original-offset"] == "41"
    assert letter.headers["kafka_dlt-exception-message"] == "bad"
    assert letter.headers["kafka_dlt-original-timestamp"] == "1700000000000"
