"""Webhook targets inside the network are refused on write, on import and at routing time."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from tests.integration.conftest import RouterProcess, add_contact, cli_ok, cli_refused, collect
from tests.integration.test_end_to_end import alert, publish_when_ready, topics
from tests.unit.test_targets import REPORTED

EVERY_FORM = REPORTED + [u.replace("http://", "https://") for u in REPORTED]


@pytest.mark.parametrize("allow_http", ["false", "true"])
def test_every_reported_target_is_refused_by_contacts_add_in_one_line(
    router_env: dict[str, str], allow_http: str
) -> None:
    env = {**router_env, "ROUTER_WEBHOOK_ALLOW_HTTP": allow_http}
    cli_ok(env, "users", "add", "alice")
    for url in EVERY_FORM:
        stderr = cli_refused(
            env, "contacts", "add", "--user", "alice", "--transport", "webhook", "--value", url
        )
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and "refused as a webhook target" in lines[0], (url, stderr)
        assert "user:pass" not in stderr, "credentials in a refused URL are not echoed"
    hook = add_contact(env, "alice", "webhook", "https://hooks.example.com/alice")
    assert hook.value == "https://hooks.example.com/alice"


def test_every_reported_target_is_refused_by_import_with_its_line(
    router_env: dict[str, str], tmp_path: Path
) -> None:
    cli_ok(router_env, "users", "add", "alice")
    rows = ["user_id,transport,value"] + [f"alice,webhook,{url}" for url in EVERY_FORM]
    rows.append("alice,webhook,https://hooks.example.com/ok")
    path = tmp_path / "hooks.csv"
    path.write_text("\n".join(rows) + "\n")
    stderr = cli_refused(router_env, "contacts", "import", str(path))
    for line in range(2, 2 + len(EVERY_FORM)):
        assert f"{path}:{line}: value:" in stderr, (line, stderr)
    assert "Traceback" not in stderr
    out = cli_ok(router_env, "contacts", "import", str(path), "--skip-invalid")
    assert "1 added" in out


async def test_a_target_written_by_sql_gets_an_unsafe_target_decision_and_no_job(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    cli_ok(router_env, "users", "add", "alice")
    email = add_contact(router_env, "alice", "email", "alice@example.com")
    conn = await asyncpg.connect(router_env["ROUTER_DATABASE_URL"])
    try:
        hook_id = await conn.fetchval(
            "INSERT INTO contact_methods (user_id, transport, value) "
            "VALUES ('alice', 'webhook', 'http://169.254.169.254/latest/meta-data') "
            "RETURNING id::text"
        )
    finally:
        await conn.close()
    start_router(router_env)
    t = topics(router_env)
    await publish_when_ready(
        router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"], t, alert("e-ssrf", ["alice"])
    )
    seen = await collect(
        router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"],
        [t["decisions"], t["webhook"], t["email"]],
        until=lambda s: len(s[t["decisions"]]) >= 2,
    )
    by_method = {
        d["contact_method_id"]: d for d in map(json.loads, (r.value for r in seen[t["decisions"]]))
    }
    assert by_method[hook_id]["outcome"] == "skipped"
    assert by_method[hook_id]["reason"] == "unsafe_target"
    assert by_method[email.id]["outcome"] == "sent"
    assert seen[t["webhook"]] == []
