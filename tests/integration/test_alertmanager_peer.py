"""A real Alertmanager (Debian's prometheus-alertmanager 0.25) sends its own webhook,
with a bearer token, to `router ingest`, and the worker turns it into jobs."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pytest

from router.dev.embedded import free_port
from tests.integration.conftest import RouterProcess, add_contact, cli_ok, collect
from tests.integration.test_ingest import TOKEN, IngestProcess, request

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
pytestmark = pytest.mark.skipif(
    not Path(ALERTMANAGER).exists(),
    reason="prometheus-alertmanager is not installed (make test installs it)",
)


@pytest.fixture
def alertmanager(
    tmp_path: Path,
) -> Iterator[Callable[[str], tuple[str, subprocess.Popen[bytes]]]]:
    started: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def start(webhook_url: str) -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        config = tmp_path / "alertmanager.yml"
        config.write_text(
            (Path(__file__).parents[2] / "deploy" / "alertmanager.yml")
            .read_text()
            .replace("http://router-ingest:8081/v1/alertmanager?schedule=db-oncall", webhook_url)
            .replace("/etc/alertmanager/router-ingest-token", str(tmp_path / "token"))
            # Send at once: the test has no minutes to wait for a group.
            .replace("group_wait: 30s", "group_wait: 0s")
        )
        (tmp_path / "token").write_text(TOKEN)
        log = open(tmp_path / "alertmanager.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append((process, log))
        return f"http://127.0.0.1:{port}", process

    yield start
    for process, log in started:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.mark.long
async def test_a_real_alertmanager_pages_through_router_ingest(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
    alertmanager: Callable[[str], tuple[str, subprocess.Popen[bytes]]],
    tmp_path: Path,
) -> None:
    cli_ok(router_env, "users", "add", "alice")
    add_contact(router_env, "alice", "email", "alice@example.com", "--verified")
    ingest = IngestProcess({**router_env, "ROUTER_INGEST_TOKENS": TOKEN}, tmp_path / "ingest.log")
    try:
        await ingest.until_ready()
        start_router(router_env)
        am_url, _ = alertmanager(f"{ingest.url}/v1/alertmanager?users=alice")
        for _ in range(100):
            try:
                if (await request(f"{am_url}/-/ready", method="GET", token=None))[0] == 200:
                    break
            except (OSError, ValueError):
                pass
            await asyncio.sleep(0.1)
        alert = [
            {
                "labels": {"alertname": "DiskFull", "severity": "page", "instance": "db-1"},
                "annotations": {"summary": "Disk almost full on db-1"},
                "startsAt": datetime.now(UTC).isoformat(),
                "generatorURL": "http://prometheus.example.com/graph",
            }
        ]
        status, _ = await request(f"{am_url}/api/v2/alerts", json.dumps(alert).encode(), token=None)
        assert status == 200
        email, alerts = router_env["ROUTER_TOPIC_EMAIL"], router_env["ROUTER_TOPIC_ALERTS"]
        seen = await collect(
            router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"],
            [alerts, email],
            until=lambda s: len(s[email]) >= 1,
        )
        [event] = [json.loads(r.value) for r in seen[alerts]]
        assert event["source"] == "alertmanager"
        assert (event["kind"], event["severity"]) == ("down", "critical")
        assert event["event_id"].startswith("alertmanager:")
        [job] = [json.loads(r.value) for r in seen[email]]
        assert job["title"] == "Disk almost full on db-1"
        assert job["url"] == "http://prometheus.example.com/graph"
        assert '"ingest_published"' in ingest.log()
    finally:
        ingest.stop()
