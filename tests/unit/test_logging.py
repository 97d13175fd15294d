"""Logs never carry a usable email address or phone number."""

from __future__ import annotations

import json

import pytest
import structlog

from router import logging as router_logging


def test_addresses_are_masked_in_any_string_value() -> None:
    out = router_logging.mask_contact_values(
        None, "info", {"event": "x", "detail": "send to Alice@Example.com and +14155551234"}
    )
    assert out["detail"] == "send to A***@Example.com and +14*******34"


def test_json_logs_carry_bound_event_id(capsys: pytest.CaptureFixture[str]) -> None:
    router_logging.configure("json", "INFO")
    try:
        with structlog.contextvars.bound_contextvars(event_id="e-42"):
            structlog.get_logger("t").info("job_published", to="bob@example.com")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        record = json.loads(line)
        assert record["event"] == "job_published" and record["event_id"] == "e-42"
        assert record["to"] == "b***@example.com"
    finally:
        structlog.contextvars.clear_contextvars()
