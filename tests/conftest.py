"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from router.directory.models import ContactMethod, User
from schemas import AlertEvent
from tests.privacy import leaks_in


@pytest.fixture(autouse=True)
def _clean_router_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees ROUTER_* variables from the shell that started pytest."""
    for name in list(os.environ):
        if name.startswith("ROUTER_"):
            monkeypatch.delenv(name)


#: The router's log lines a test wrote so far, as dicts (see :func:`router_log`).
RouterLog = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def router_log(capsys: pytest.CaptureFixture[str]) -> RouterLog:
    """The router's log lines written so far in this test, each as its JSON object.

    Read from the captured stderr (the plugin ``tests.privacy`` configures JSON lines for
    every test); each call returns every line since the test began, not only the new
    ones. What is read here leaves the captured output the plugin checks for contact
    addresses, so it is checked here."""
    seen: list[dict[str, Any]] = []

    def lines() -> list[dict[str, Any]]:
        err = capsys.readouterr().err
        assert not leaks_in(err), f"full contact addresses in the log (mask them): {err}"
        for line in err.splitlines():
            if line.startswith("{"):
                seen.append(json.loads(line))
        return list(seen)

    return lines


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``long`` run first, the rest in their usual order.

    ``make test`` hands tests to four xdist workers two at a time (``--maxschedchunk 2``)
    in this order, so the 20-90 s tests start at once on different workers and the
    short ones fill in around them; in file order, one could start in the last minute
    and the whole run would wait for it alone.
    """
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_user(user_id: str = "alice", **fields: object) -> User:
    """A user as the store would return it."""
    return User(id=user_id, created_at=T0, updated_at=T0, **fields)  # type: ignore[arg-type]


def make_method(
    method_id: str,
    user_id: str = "alice",
    transport: str = "email",
    value: str | None = None,
    **fields: object,
) -> ContactMethod:
    """A contact method as the store would return it."""
    default = {
        "email": f"{method_id}@example.com",
        "sms": "+14155551234",
        "webhook": f"https://hooks.example.com/{method_id}",
    }[transport]
    return ContactMethod(
        id=method_id,
        user_id=user_id,
        transport=transport,  # type: ignore[arg-type]
        value=value or default,
        created_at=fields.pop("created_at", T0),  # type: ignore[arg-type]
        updated_at=T0,
        **fields,  # type: ignore[arg-type]
    )


def make_event(**fields: object) -> AlertEvent:
    """A decoded alert for alice at T0 (critical, down) with ``fields`` changed."""
    base: dict[str, object] = {
        "event_id": "e1",
        "kind": "down",
        "severity": "critical",
        "user_ids": ["alice"],
        "title": "db-1 down",
        "occurred_at": T0,
    }
    return AlertEvent.model_validate({**base, **fields}, strict=False)
