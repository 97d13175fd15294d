"""The cluster chaos of tests/cluster_chaos.py, short form: two workers, one group, and
each fault once (SIGKILL, SIGTERM, a pause past the session timeout, a PostgreSQL
restart, a broker restart on the persistent broker); nothing lost, no duplicate under
another job id, every held page and failover exactly once, no dead letter.

The long forms (100,000 events and 20 faults; 4 broker restarts) run on request:
``python -m tests.cluster_chaos``; their figures are in docs/guarantees.md.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from router.dev.embedded import EmbeddedKafka, EmbeddedPostgres, embedded_env
from tests.cluster_chaos import run_cluster_chaos
from tests.privacy import leaks_in


@pytest.mark.long
async def test_two_workers_through_every_kind_of_fault_lose_and_double_nothing(
    persistent_kafka: EmbeddedKafka, tmp_path: Path
) -> None:
    # Not under tmp_path: PostgreSQL runs as its own system user, which cannot enter
    # pytest's private temporary directory.
    with (
        tempfile.TemporaryDirectory(prefix="router-cluster-chaos-") as data,
        EmbeddedPostgres(Path(data) / "pg") as postgres,
    ):
        env = {**embedded_env(persistent_kafka, postgres), "ROUTER_LOG_FORMAT": "json"}
        result = await run_cluster_chaos(
            env,
            tmp_path,
            postgres.restart,
            persistent_kafka.restart,
            events=400,
            faults=5,
            broker_restarts=1,
            users=30,
            fault_every=2,
            timeout=300,
        )
    print("\n" + result.summary())
    assert sum(result.faults.values()) == 5
    assert set(result.faults) == {"sigkill", "sigterm", "pause", "postgres", "broker"}
    assert result.lost == 0
    assert result.mismatched_job_ids == 0
    assert result.held_pages > 0 and result.held_not_once == 0
    assert result.held_also_sent_directly == 0
    assert result.failovers > 0 and result.failovers_not_once == 0
    assert result.dead_letters == 0
    assert leaks_in((tmp_path / "cluster-router.log").read_text()) == []
