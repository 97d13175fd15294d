"""The wiring: what the subscribers are built with."""

from __future__ import annotations

from router.app import create_app
from router.settings import Settings


def connection_args(settings: Settings) -> list[dict[str, object]]:
    broker = create_app(settings).broker
    assert broker is not None
    return [dict(s._connection_args) for s in broker.subscribers]  # type: ignore[attr-defined]


def test_every_subscriber_reads_committed_records_only_by_default() -> None:
    args = connection_args(Settings())
    assert len(args) == 5  # alerts, contacts.events, deliveries.status, pages.acks, replies
    assert all(a["isolation_level"] == "read_committed" for a in args)


def test_the_isolation_level_setting_reaches_the_consumers() -> None:
    args = connection_args(Settings(kafka_isolation_level="read_uncommitted"))
    assert all(a["isolation_level"] == "read_uncommitted" for a in args)
