"""/healthz, /readyz and /metrics of a running `router run`, probed as Kubernetes would."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable

from router.dev.embedded import free_port
from tests.integration.conftest import RouterProcess, collect, database_refused, run_cli
from tests.integration.test_end_to_end import add_alice, alert, publish_when_ready, topics


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


async def until_status(port: int, path: str, status: int, timeout: float = 30) -> str:
    for _ in range(int(timeout / 0.2)):
        code, body = await asyncio.to_thread(get, port, path)
        if code == status:
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} never answered {status}; last: {code} {body}")


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in metrics.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(2))
    return 0.0


async def test_probes_and_metrics_follow_the_worker_and_its_database(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
    postgres_url: str,
) -> None:
    add_alice(router_env)
    port = free_port()
    router = start_router({**router_env, "ROUTER_HTTP_PORT": str(port)})
    assert json.loads(await until_status(port, "/healthz", 200)) == {"status": "alive"}
    assert json.loads(await until_status(port, "/readyz", 200)) == {"status": "ready"}

    t = topics(router_env)
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    await publish_when_ready(bootstrap, t, alert("m1", ["alice"]), b"not json")
    await collect(bootstrap, [t["decisions"]], until=lambda s: len(s[t["decisions"]]) >= 3)
    _, metrics = await asyncio.to_thread(get, port, "/metrics")
    assert sample(metrics, "router_events_total") == 1
    for transport in ("email", "sms", "webhook"):
        assert sample(metrics, "router_jobs_total", transport=transport) == 1
    assert sample(metrics, "router_decisions_total", outcome="sent", reason="") == 3
    assert sample(metrics, "router_dead_letters_total", reason="not_json") == 1
    assert sample(metrics, "router_batch_size_count") >= 1
    assert sample(metrics, "router_batch_duration_seconds_count") >= 1
    assert sample(metrics, "router_ledger_wait_seconds_count") >= 1
    assert sample(metrics, "router_db_query_duration_seconds_count", operation="directory_for") >= 1
    assert sample(metrics, "router_assigned_partitions", topic=t["alerts"]) == 3
    assert "router_consumer_lag{" in metrics
    assert "router_faststream_" in metrics
    # Every log line of the run reached stderr: the counter is served, at 0.
    assert re.search(r"^router_log_lines_lost_total 0\.0$", metrics, re.M)

    async with database_refused(postgres_url, router_env["ROUTER_DATABASE_URL"]):
        body = json.loads(await until_status(port, "/readyz", 503))
        assert body["status"] == "not ready" and "database" in body["failed"]
        assert (await asyncio.to_thread(get, port, "/healthz"))[0] == 200, "alive all the same"
    await until_status(port, "/readyz", 200)
    assert router.stop() == 0


async def test_router_status_reports_the_parts_and_exits_1_when_the_database_is_down(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
    postgres_url: str,
) -> None:
    add_alice(router_env)
    start_router(router_env)
    t = topics(router_env)
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    await publish_when_ready(bootstrap, t, alert("s1", ["alice"]))
    await collect(bootstrap, [t["decisions"]], until=lambda s: len(s[t["decisions"]]) >= 3)

    done = await asyncio.to_thread(run_cli, router_env, "status", "--json")
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    report = json.loads(line)
    assert report["ok"] is True
    assert report["broker"]["ok"] and report["database"]["schema_current"]
    alerts_group = report["groups"][0]
    group = router_env["ROUTER_GROUP_ID"]
    assert [g["group_id"] for g in report["groups"]] == [
        group,
        f"{group}.contact-events",
        f"{group}.status",
    ]
    assert len(alerts_group["members"]) == 1 and alerts_group["total_lag"] == 0
    table = (await asyncio.to_thread(run_cli, router_env, "status")).stdout
    assert "postgresql" in table and "all well" in table

    async with database_refused(postgres_url, router_env["ROUTER_DATABASE_URL"]):
        done = await asyncio.to_thread(run_cli, router_env, "status", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["broker"]["ok"] is True
    assert report["database"]["ok"] is False and "PostgreSQL" in report["database"]["error"]
