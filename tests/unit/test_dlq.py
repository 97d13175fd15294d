"""Dead letters keep the original message and say why, in both header conventions."""

from __future__ import annotations

import hashlib

from router.routing.decode import Rejection
from router.routing.dlq import SourceRecord, cut, dead_letter, fit, size_of


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


def test_a_dead_letter_that_fits_is_left_whole() -> None:
    letter = dead_letter(record_of(b"x" * 1000), Rejection("too_large", "E", "big"))
    assert fit(letter, 64 * 1024) == letter


def test_a_dead_letter_too_large_for_a_request_is_cut_to_fit_and_says_so() -> None:
    value = b"y" * 5_000_000
    letter = fit(dead_letter(record_of(value), Rejection("too_large", "E", "big")), 2_097_152)
    assert size_of(letter) <= 2_097_152
    assert value.startswith(letter.value) and len(letter.value) > 2_000_000
    assert letter.headers["router.dlq.truncated"] == "true"
    assert letter.headers["router.dlq.original_size"] == "5000000"
    assert letter.headers["router.dlq.original_sha256"] == hashlib.sha256(value).hexdigest()
    assert letter.headers["router.dlq.reason"] == "too_large"


def test_cutting_again_keeps_the_original_size_and_hash() -> None:
    value = b"z" * 10_000
    once = cut(dead_letter(record_of(value), Rejection("too_large", "E", "big")), 4000, "r")
    twice = cut(once, 0, "refused")
    assert twice.value == b""
    assert twice.headers["router.dlq.original_size"] == "10000"
    assert twice.headers["router.dlq.original_sha256"] == hashlib.sha256(value).hexdigest()


def record_of(value: bytes) -> SourceRecord:
    return SourceRecord("alerts", 0, 7, None, None, value, ())
