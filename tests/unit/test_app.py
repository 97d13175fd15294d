"""The wiring: what the subscribers are built with."""

from __future__ import annotations

import argparse
import gc
from pathlib import Path

import pytest

from router.app import create_app
from router.cli import commands
from router.dev.embedded import EmbeddedKafka, EmbeddedPostgres, EmbeddedS3, embedded_env
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


def test_every_consumer_waits_at_most_the_fetch_wait_setting_for_records() -> None:
    """A broker that looks for new records now and then answers an empty fetch late: the
    first alert after a quiet moment waits at most this long for it."""
    assert all(a["fetch_max_wait_ms"] == 500 for a in connection_args(Settings()))
    args = connection_args(Settings(kafka_fetch_max_wait_ms=20))
    assert all(a["fetch_max_wait_ms"] == 20 for a in args)


def test_only_the_embedded_memory_broker_is_asked_for_records_every_50_ms(
    tmp_path: Path,
) -> None:
    """In memory, Tansu's looks for new records are cheap; on S3 each is requests."""
    postgres = EmbeddedPostgres(tmp_path)
    in_memory = embedded_env(EmbeddedKafka(), postgres)
    on_s3 = embedded_env(EmbeddedKafka(storage=EmbeddedS3()), postgres)
    assert in_memory["ROUTER_KAFKA_FETCH_MAX_WAIT_MS"] == "50"
    assert "ROUTER_KAFKA_FETCH_MAX_WAIT_MS" not in on_s3


def test_router_run_sets_the_collector_threshold_from_its_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[int, int, int]] = []

    async def run(settings: Settings) -> None:
        seen.append(gc.get_threshold())

    before = gc.get_threshold()
    monkeypatch.setattr("router.app.run", run)
    monkeypatch.setenv("ROUTER_GC_YOUNG_THRESHOLD", "12345")
    try:
        commands.run(argparse.Namespace())
    finally:
        gc.set_threshold(*before)
    assert seen == [(12345, 10, 10)]
