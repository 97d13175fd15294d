"""A session-wide check: no captured log line of any test carries a full contact address.

Loaded for every run (``-p tests.privacy`` in pyproject). Every test logs
through the router's own structlog chain (configured before each test), and
after each phase of each test its captured stdout, stderr and log sections are
scanned; a full email address or phone number fails that test. Logs of
``router run`` child processes are scanned by the ``start_router`` fixture
with :func:`leaks_in`.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from router import logging as router_logging

# A masked address keeps at most a first character and the domain or the last
# two digits, with stars between, so neither pattern matches it.
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*")
_PHONE = re.compile(r"\+\d[\d ().-]{5,}\d")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def leaks_in(text: str) -> list[str]:
    """Full email addresses and phone numbers in ``text`` (JSON lines read as JSON too)."""
    found = []
    for line in text.splitlines():
        candidates = [line]
        if line.startswith("{"):
            # A JSON line is read as JSON only: its escapes (``\u0014@V``) are not text.
            with contextlib.suppress(ValueError):
                candidates = list(_strings(json.loads(line)))
        for candidate in candidates:
            found += _EMAIL.findall(candidate) + _PHONE.findall(candidate)
    return found


@pytest.fixture(autouse=True)
def _router_logging() -> None:
    """Log through the router's processor chain (masking included), as the worker does."""
    router_logging.configure("json", "INFO")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    leaks = [
        (name, leak)
        for name, content in report.sections
        if name.startswith("Captured") and name.endswith(f" {report.when}")
        for leak in leaks_in(content)
    ]
    if leaks and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = "full contact addresses in captured output (mask them): " + ", ".join(
            f"{leak!r} in {name}" for name, leak in leaks[:10]
        )
