"""`router demo` (what `make demo` runs) works end to end, as a newcomer runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.privacy import leaks_in


@pytest.mark.long
def test_the_demo_runs_end_to_end_on_its_own_embedded_servers(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTER_", "TEST_"))}
    done = subprocess.run(
        [sys.executable, "-m", "router", "demo"],
        cwd=tmp_path,  # the demo keeps its logs in ./.demo
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "All 21 decisions and 2 dead letters seen." in out
    assert "sent     job" in out and "failover" in out
    assert "$ router trail demo-10" in out
    assert "$ router schedules who primary\n  bob  rotation weekly\n" in out
    assert "deferred quiet_hours until" in out
    assert "digest of demo-8, demo-9" in out
    assert "/v1/alertmanager?users=bob (an Alertmanager webhook, 1 alert) -> 200" in out
    assert "decision  bob    email    sent     escalated  step 2 round 1" in out
    assert "POST -> 200, 'Acknowledged: Primary database unreachable'" in out
    assert "acknowledged by bob via link at step 2 round 1" in out
    assert "router ingest stopped (exit status 0)" in out
    assert "worker stopped (exit status 0)" in out
    assert out.rstrip().endswith("embedded Kafka and PostgreSQL stopped")
    assert "Traceback" not in done.stderr
    worker_log = (tmp_path / ".demo" / "worker.log").read_text()
    assert leaks_in(out) == [] and leaks_in(worker_log) == []
