"""Webhook targets inside the network are refused on write, on import and at routing time."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from tests.integration.conftest import (
    RouterProcess,
    add_contact,
    cli_ok,
    cli_refused,
    cli_refused_each,
    collect,
)
from tests.integration.test_end_to_end import alert, publish_when_ready, topics
from tests.unit.test_targets import HOSTILE_SPELLINGS, REPORTED

EVERY_FORM = REPORTED + [u.replace("http://", "https://") for u in REPORTED]
#: Accepted on add, on import and at routing time before the URL parser (issue 17, item 3).
SECOND_ROUND = [
    *HOSTILE_SPELLINGS,
    "https://example.com:99999/x",
    "https://exa\tmple.com/x",
    "https://exa\nmple.com/x",
    "https://hooks.example.com/a b",
]
#: Headers stored and copied into WebhookJob.headers verbatim before (issue 17, item 4).
BAD_HEADERS = [
    ("X-A", "foo\r\nX-Injected: 1"),
    ("Bad Name", "s3cret"),
    ("X-\x01", "s3cret"),
    ("Host", "metadata.internal"),
    ("Content-Length", "0"),
    ("Transfer-Encoding", "chunked"),
    ("Connection", "close"),
    ("Proxy-Authorization", "Basic eA=="),
]


@pytest.mark.long
@pytest.mark.parametrize("allow_http", ["false", "true"])
def test_every_reported_target_is_refused_by_contacts_add_in_one_line(
    router_env: dict[str, str], allow_http: str
) -> None:
    env = {**router_env, "ROUTER_WEBHOOK_ALLOW_HTTP": allow_http}
    cli_ok(env, "users", "add", "alice")
    add = ("contacts", "add", "--user", "alice", "--transport", "webhook", "--value")
    refusals = cli_refused_each(env, [(*add, url) for url in EVERY_FORM])
    for url, stderr in zip(EVERY_FORM, refusals, strict=True):
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


@pytest.mark.long
def test_second_round_spellings_are_refused_by_contacts_add_and_import(
    router_env: dict[str, str], tmp_path: Path
) -> None:
    cli_ok(router_env, "users", "add", "alice")
    add = ("contacts", "add", "--user", "alice", "--transport", "webhook", "--value")
    refusals = cli_refused_each(router_env, [(*add, url) for url in SECOND_ROUND])
    for url, stderr in zip(SECOND_ROUND, refusals, strict=True):
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and "refused as a webhook target" in lines[0], (url, stderr)
    rows = [{"user_id": "alice", "transport": "webhook", "value": url} for url in SECOND_ROUND]
    rows.append(
        {"user_id": "alice", "transport": "webhook", "value": "https://hooks.example.com/ok"}
    )
    path = tmp_path / "hooks.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    stderr = cli_refused(router_env, "contacts", "import", str(path))
    for line in range(1, 1 + len(SECOND_ROUND)):
        assert f"{path}:{line}: value:" in stderr, (line, stderr)
    out = cli_ok(router_env, "contacts", "import", str(path), "--skip-invalid")
    assert "1 added" in out


def test_unsafe_headers_are_refused_by_contacts_add_and_import_naming_the_header(
    router_env: dict[str, str], tmp_path: Path
) -> None:
    cli_ok(router_env, "users", "add", "alice")
    add = ("contacts", "add", "--user", "alice", "--transport", "webhook")
    refusals = cli_refused_each(
        router_env,
        [
            (*add, "--value", "https://h.example/a", "--header", f"{name}:{value}")
            for name, value in BAD_HEADERS
        ],
    )
    for (name, value), stderr in zip(BAD_HEADERS, refusals, strict=True):
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"router: error: --header: {name!r} "), (
            name,
            stderr,
        )
        assert value not in stderr, "a header value (often a secret) is not echoed"
    rows = [
        {
            "user_id": "alice",
            "transport": "webhook",
            "value": f"https://h.example/{number}",
            "webhook_headers": {name: value},
        }
        for number, (name, value) in enumerate(BAD_HEADERS)
    ]
    rows.append(
        {
            "user_id": "alice",
            "transport": "webhook",
            "value": "https://h.example/ok",
            "webhook_headers": {"Authorization": "Bearer t", "X-Team": "db"},
        }
    )
    path = tmp_path / "hooks.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    stderr = cli_refused(router_env, "contacts", "import", str(path))
    for line, (name, _) in enumerate(BAD_HEADERS, start=1):
        assert f"{path}:{line}: webhook_headers: {name!r} " in stderr, (line, stderr)
    assert "1 added" in cli_ok(router_env, "contacts", "import", str(path), "--skip-invalid")
    hook = add_contact(
        router_env, "alice", "webhook", "https://h.example/b", "--header", "Authorization:Bearer t"
    )
    assert hook.webhook_headers == {"Authorization": "Bearer t"}


async def test_second_round_targets_and_headers_written_by_sql_get_unsafe_target_at_routing(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    """What SQL (or an older router) stored is refused at routing time; what the site
    allows (an in-cluster name in ROUTER_WEBHOOK_ALLOWED_HOSTS) still gets its job."""
    env = {**router_env, "ROUTER_WEBHOOK_ALLOWED_HOSTS": "hooks.default.svc"}
    cli_ok(env, "users", "add", "alice")
    allowed = add_contact(env, "alice", "webhook", "https://hooks.default.svc/alice")
    assert "refused as a webhook target" in cli_refused(
        router_env,
        *("contacts", "add", "--user", "alice", "--transport", "webhook"),
        *("--value", "https://hooks.default.svc/again"),
    )
    stored = [(url, {}) for url in SECOND_ROUND] + [
        (f"https://hooks.example.com/h{number}", {name: value})
        for number, (name, value) in enumerate(BAD_HEADERS)
    ]
    conn = await asyncpg.connect(env["ROUTER_DATABASE_URL"])
    try:
        unsafe = {
            await conn.fetchval(
                "INSERT INTO contact_methods (user_id, transport, value, webhook_headers) "
                "VALUES ('alice', 'webhook', $1, $2::jsonb) RETURNING id::text",
                url,
                json.dumps(headers),
            )
            for url, headers in stored
        }
    finally:
        await conn.close()
    start_router(env)
    t = topics(env)
    await publish_when_ready(env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"], t, alert("e-ssrf-2", ["alice"]))
    seen = await collect(
        env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"],
        [t["decisions"], t["webhook"]],
        until=lambda s: len(s[t["decisions"]]) >= len(stored) + 1,
    )
    by_method = {
        d["contact_method_id"]: d for d in map(json.loads, (r.value for r in seen[t["decisions"]]))
    }
    assert {m: (by_method[m]["outcome"], by_method[m]["reason"]) for m in unsafe} == {
        m: ("skipped", "unsafe_target") for m in unsafe
    }
    assert by_method[allowed.id]["outcome"] == "sent"
    jobs = [json.loads(r.value) for r in seen[t["webhook"]]]
    assert [(j["contact_method_id"], j["to"]) for j in jobs] == [
        (allowed.id, "https://hooks.default.svc/alice")
    ]


async def test_contacts_verify_sends_no_code_to_a_stored_unsafe_webhook(
    router_env: dict[str, str],
) -> None:
    cli_ok(router_env, "users", "add", "alice")
    conn = await asyncpg.connect(router_env["ROUTER_DATABASE_URL"])
    try:
        ids = [
            await conn.fetchval(
                "INSERT INTO contact_methods (user_id, transport, value, webhook_headers) "
                "VALUES ('alice', 'webhook', $1, $2::jsonb) RETURNING id::text",
                url,
                json.dumps(headers),
            )
            for url, headers in (
                ("https://127.0.0.1。/x", {}),
                ("https://hooks.example.com/x", {"X-A": "1\r\nX-Injected: 1"}),
            )
        ]
    finally:
        await conn.close()
    for method_id in ids:
        stderr = cli_refused(router_env, "contacts", "verify", method_id)
        [line] = stderr.strip().splitlines()
        assert f"{method_id!r} is a webhook the router will not call (" in line, line
        assert "X-Injected" not in line
