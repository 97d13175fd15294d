"""`router api` as its clients see it: a child process on the embedded servers,
driven over HTTP with httpx."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from router.dev.embedded import free_port
from tests.integration.conftest import (
    RouterProcess,
    cli_ok,
    cli_refused,
    collect,
    produce,
    wait_for_topics,
)
from tests.privacy import leaks_in

WRITE = "write-secret-0123456789"
READ = "read-secret-0123456789"


@pytest.fixture(autouse=True)
def _quiet_httpx() -> Iterator[None]:
    # httpx logs every URL; DELETE /v1/opt-outs/{address} carries an address in it.
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


class ApiProcess(RouterProcess):
    """``router api`` in a child process, on a free port."""

    command = "api"

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        super().__init__({**env, "ROUTER_API_PORT": str(self.port)}, log_path)
        self.start()
        self.url = f"http://127.0.0.1:{self.port}"
        self.until_ready()

    def until_ready(self, timeout: float = 30) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"router api exited:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"/readyz never answered 200:\n{self.log()}")

    def client(self, token: str | None = WRITE) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


@pytest.fixture
def start_api(tmp_path: Path) -> Iterator[Callable[..., ApiProcess]]:
    started: list[ApiProcess] = []

    def start(env: dict[str, str], **extra: str) -> ApiProcess:
        api_env = {
            "ROUTER_API_WRITE_TOKENS": f"ci-writer:{WRITE}",
            "ROUTER_API_READ_TOKENS": f"ci-reader:{READ}",
            **env,
            **extra,
        }
        started.append(ApiProcess(api_env, tmp_path / f"api-{len(started)}.log"))
        return started[-1]

    yield start
    for api in started:
        api.stop()
        log = api.log()
        assert WRITE not in log and READ not in log, "a token reached the log"
        assert "Traceback" not in log
        assert not leaks_in(log)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The RFC 9457 body of a refusal with ``status``."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["type"]
    assert "Traceback" not in response.text
    return body


def test_router_api_refuses_to_start_without_a_token(router_env: dict[str, str]) -> None:
    out = cli_refused(router_env, "api", code=2)
    assert "ROUTER_API_WRITE_TOKENS" in out


def test_users_and_methods_crud_with_etags_and_problems(
    router_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(router_env)
    with api.client() as w, api.client(READ) as r, api.client(None) as anon:
        assert problem(anon.get("/v1/users"), 401)
        with api.client("wrong") as wrong:
            assert problem(wrong.get("/v1/users"), 401)
        assert problem(r.post("/v1/users", json={"id": "alice"}), 403)

        created = w.post(
            "/v1/users", json={"id": "alice", "name": "Alice", "timezone": "Europe/Berlin"}
        )
        assert created.status_code == 201, created.text
        assert created.json()["timezone"] == "Europe/Berlin"
        assert problem(w.post("/v1/users", json={"id": "alice"}), 409)
        bad = problem(w.post("/v1/users", json={"id": "bob", "timezone": "Mars/Base"}), 422)
        assert bad["errors"][0]["pointer"] == "/timezone"

        user = r.get("/v1/users/alice")
        tag = user.headers["etag"]
        changed = w.patch("/v1/users/alice", json={"name": "Alice B"}, headers={"if-match": tag})
        assert changed.status_code == 200 and changed.json()["name"] == "Alice B"
        stale = w.patch("/v1/users/alice", json={"name": "Eve"}, headers={"if-match": tag})
        problem(stale, 412)
        assert r.get("/v1/users/alice").json()["name"] == "Alice B"
        # PostgreSQL's text cannot hold a NUL byte: refused, saying so, nothing changed.
        nul = problem(w.patch("/v1/users/alice", json={"name": "Al\x00ice"}), 400)
        assert "NUL byte" in nul["detail"]
        assert "NUL byte" in problem(r.get("/v1/users/al%00ice"), 400)["detail"]
        assert r.get("/v1/users/alice").json()["name"] == "Alice B"

        sms = w.post(
            "/v1/contact-methods",
            json={
                "user_id": "alice",
                "transport": "sms",
                "value": "030 1234567",
                "region": "DE",
                "allow_landline": True,
                "verified": True,
            },
        )
        assert sms.status_code == 201, sms.text
        method = sms.json()
        assert method["value"] == "+49301234567" and method["id"]
        landline = w.post(
            "/v1/contact-methods",
            json={"user_id": "alice", "transport": "sms", "value": "+49 30 1234568"},
        )
        refused = problem(landline, 422)
        assert refused["errors"][0]["pointer"] == "/value"
        assert "+49301234568" not in landline.text  # never a whole address
        unsafe = w.post(
            "/v1/contact-methods",
            json={"user_id": "alice", "transport": "webhook", "value": "http://10.0.0.1/hook"},
        )
        assert problem(unsafe, 422)["errors"][0]["pointer"] == "/value"

        got = r.get(f"/v1/contact-methods/{method['id']}")
        assert got.json() == method and got.headers["etag"]
        patched = w.patch(
            f"/v1/contact-methods/{method['id']}",
            json={"value": "+44 7911 123456", "label": "mobile"},
            headers={"if-match": got.headers["etag"]},
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["value"] == "+447911123456"
        assert patched.json()["verified"] is False and patched.json()["label"] == "mobile"
        problem(
            w.patch(
                f"/v1/contact-methods/{method['id']}",
                json={"label": "x"},
                headers={"if-match": got.headers["etag"]},
            ),
            412,
        )
        problem(w.delete(f"/v1/contact-methods/{method['id']}", headers={"if-match": '"0"'}), 412)
        problem(w.get("/v1/contact-methods/not-a-uuid"), 404)

        problem(w.delete("/v1/users/alice"), 409)
        assert w.delete("/v1/users/alice", params={"cascade": "true"}).status_code == 204
        problem(r.get("/v1/users/alice"), 404)
        problem(w.post("/v1/users", content=b"x" * 2_000_000), 413)


def test_filters_cursor_pages_and_count(
    router_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(router_env)
    with api.client() as w:
        for user in ("u1", "u2"):
            assert w.post("/v1/users", json={"id": user}).status_code == 201
        for n in range(5):
            body = {
                "user_id": "u1" if n % 2 else "u2",
                "transport": "email",
                "value": f"person{n}@example.com",
                "tags": ["ops"] if n < 3 else [],
                "metadata": {"team": "red" if n == 1 else "blue"},
            }
            assert w.post("/v1/contact-methods", json=body).status_code == 201
        assert w.get("/v1/contact-methods/count").json() == {"count": 5}
        assert w.get("/v1/contact-methods/count", params={"tag": "ops"}).json()["count"] == 3
        assert w.get("/v1/contact-methods/count", params={"user_id": "u1"}).json()["count"] == 2
        red = w.get("/v1/contact-methods", params={"metadata.team": "red"}).json()["items"]
        assert [m["value"] for m in red] == ["person1@example.com"]
        found = w.get("/v1/contact-methods", params={"search": "person3"}).json()["items"]
        assert [m["value"] for m in found] == ["person3@example.com"]

        seen: list[str] = []
        page = w.get("/v1/contact-methods", params={"limit": 2}).json()
        added = 0
        while True:
            seen += [m["id"] for m in page["items"]]
            if page["next_cursor"] is None:
                break
            if added < 2:  # methods added between pages never make an item show twice
                body = {"user_id": "u1", "transport": "email", "value": f"late{added}@example.com"}
                assert w.post("/v1/contact-methods", json=body).status_code == 201
                added += 1
            page = w.get(
                "/v1/contact-methods", params={"limit": 2, "cursor": page["next_cursor"]}
            ).json()
        assert len(seen) == len(set(seen)) >= 5
        problem(w.get("/v1/contact-methods", params={"cursor": "@@"}), 422)


def test_idempotency_key_replays_the_first_answer_and_refuses_another_body(
    router_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(router_env)
    with api.client() as w:
        w.post("/v1/users", json={"id": "carol"})
        body = {"user_id": "carol", "transport": "email", "value": "Carol@Example.com"}
        key = {"idempotency-key": "k-1"}
        first = w.post("/v1/contact-methods", json=body, headers=key)
        again = w.post("/v1/contact-methods", json=body, headers=key)
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json()
        assert w.get("/v1/contact-methods/count").json()["count"] == 1
        other = w.post("/v1/contact-methods", json={**body, "label": "x"}, headers=key)
        problem(other, 422)
        assert w.get("/v1/contact-methods/count").json()["count"] == 1

        refused = w.post(
            "/v1/contact-methods",
            json={**body, "user_id": "nobody"},
            headers={"idempotency-key": "k-2"},
        )
        problem(refused, 404)  # a refusal is not kept: the key can be used again
        retried = w.post(
            "/v1/contact-methods",
            json={**body, "value": "c2@example.com"},
            headers={"idempotency-key": "k-2"},
        )
        assert retried.status_code == 201

    def post_once(_: int) -> int:
        with api.client() as c:
            one = {**body, "value": "race@example.com"}
            return c.post(
                "/v1/contact-methods", json=one, headers={"idempotency-key": "k-3"}
            ).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(post_once, range(6)))
    assert set(statuses) <= {201, 409} and 201 in statuses
    with api.client() as w:
        found = w.get("/v1/contact-methods", params={"search": "race@"}).json()["items"]
        assert len(found) == 1  # concurrent requests with one key created one method


def test_rate_limit_answers_429_with_retry_after(
    router_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(router_env, ROUTER_API_BURST="3", ROUTER_API_RATE_PER_SECOND="0.2")
    with api.client(READ) as r:
        statuses = [r.get("/v1/users").status_code for _ in range(4)]
        assert statuses[:3] == [200, 200, 200]
        last = r.get("/v1/users")
        problem(last, 429)
        assert int(last.headers["retry-after"]) >= 1
    with api.client() as w:  # each token its own bucket
        assert w.get("/v1/users").status_code == 200


def test_mute_until_unmute_opt_outs_and_the_audit_log(
    router_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(router_env)
    with api.client() as w:
        w.post("/v1/users", json={"id": "dave"})
        method = w.post(
            "/v1/contact-methods",
            json={"user_id": "dave", "transport": "email", "value": "dave@example.com"},
        ).json()
        muted = w.post(
            f"/v1/contact-methods/{method['id']}/mute", json={"until": "2999-01-01T00:00:00Z"}
        ).json()
        assert muted["mute_until"].startswith("2999-01-01") and muted["muted"] is False
        problem(
            w.post(
                f"/v1/contact-methods/{method['id']}/mute", json={"until": "2000-01-01T00:00:00Z"}
            ),
            422,
        )
        unmuted = w.post(f"/v1/contact-methods/{method['id']}/unmute").json()
        assert unmuted["mute_until"] is None and unmuted["muted"] is False

        assert (
            w.post(
                "/v1/opt-outs", json={"transport": "email", "address": "Gone@Example.com"}
            ).status_code
            == 201
        )
        assert {"transport": "email", "address": "gone@example.com"} in w.get("/v1/opt-outs").json()
        assert w.delete("/v1/opt-outs/gone@example.com").status_code == 204
        problem(w.delete("/v1/opt-outs/gone@example.com"), 404)

        audit = w.get("/v1/audit", params={"entity": "contact_method", "id": method["id"]}).json()
        assert [a["action"] for a in audit] == ["update", "update", "create"]
        assert all(a["actor"] == "ci-writer" for a in audit)
        assert audit[0]["before"]["mute_until"].startswith("2999")
        assert "dave@example.com" not in json.dumps(audit)
    out = cli_ok(router_env, "audit", "--json", "--entity", "contact_method")
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[-1]["action"] == "create" and rows[-1]["after"]["value"] == "d***@example.com"


# Schemathesis runs every operation of the committed schemas/openapi.json against the
# running service: no 5xx, and every answer (status, content type, body) conforms.
DOCUMENT = Path(__file__).parents[2] / "schemas" / "openapi.json"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.long
def test_every_operation_conforms_and_never_answers_5xx(
    router_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    cli_ok(router_env, "users", "add", "alice")
    api = start_api(router_env, ROUTER_API_BURST="1000000")
    schema = schemathesis.openapi.from_path(DOCUMENT)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @settings(
            max_examples=15,
            derandomize=True,  # the same examples every run: make test stays reproducible
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=api.url,
                headers={"Authorization": f"Bearer {WRITE}"},
                checks=CHECKS,
                timeout=10,
            )

        run()


def test_contacts_update_value_normalizes_resets_verified_and_refuses_in_one_line(
    router_env: dict[str, str],
) -> None:
    cli_ok(router_env, "users", "add", "erin")
    out = cli_ok(
        router_env,
        "contacts",
        "add",
        "--user",
        "erin",
        "--transport",
        "sms",
        "--value",
        "+447911123456",
        "--verified",
        "--json",
    )
    method = json.loads(out)
    updated = json.loads(
        cli_ok(
            router_env,
            "contacts",
            "update",
            method["id"],
            "--value",
            "07911 123457",
            "--region",
            "GB",
            "--json",
        )
    )
    assert updated["value"] == "+447911123457" and updated["verified"] is False
    landline = cli_refused(router_env, "contacts", "update", method["id"], "--value", "+4930123456")
    assert len(landline.strip().splitlines()) == 1 and "fixed-line" in landline
    hook = json.loads(
        cli_ok(
            router_env,
            "contacts",
            "add",
            "--user",
            "erin",
            "--transport",
            "webhook",
            "--value",
            "https://hooks.example.com/a",
            "--json",
        )
    )
    unsafe = cli_refused(
        router_env, "contacts", "update", hook["id"], "--value", "https://169.254.169.254/x"
    )
    assert len(unsafe.strip().splitlines()) == 1 and "webhook target" in unsafe
    changed = json.loads(
        cli_ok(
            router_env,
            "contacts",
            "update",
            hook["id"],
            "--webhook-method",
            "PUT",
            "--header",
            "X-Team:ops",
            "--query",
            "a=b",
            "--body",
            "{{title}}",
            "--json",
        )
    )
    assert changed["webhook_method"] == "PUT" and changed["webhook_headers"] == {"X-Team": "ops"}
    assert changed["webhook_query"] == {"a": "b"} and changed["webhook_body"] == "{{title}}"
    not_webhook = cli_refused(
        router_env, "contacts", "update", method["id"], "--header", "X-Team:ops"
    )
    assert "only to webhook" in not_webhook

    rows = [
        json.loads(line)
        for line in cli_ok(router_env, "audit", "--json", "--id", method["id"]).splitlines()
    ]
    assert [r["action"] for r in rows] == ["update", "create"]
    assert rows[0]["actor"].startswith("cli:")
    assert rows[0]["before"] == {"value": "+44********56", "verified": True}
    assert rows[0]["after"] == {"value": "+44********57", "verified": False}


def test_batches_all_or_nothing_and_partial_and_batch_delete(
    router_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(router_env)
    with api.client() as w:
        w.post("/v1/users", json={"id": "fay"})
        good = {"user_id": "fay", "transport": "email", "value": "fay@example.com"}
        bad = {"user_id": "fay", "transport": "sms", "value": "not a phone"}
        nobody = {"user_id": "nobody", "transport": "email", "value": "x@example.com"}
        refused = problem(w.post("/v1/contact-methods/batch", json={"items": [good, bad]}), 422)
        assert refused["errors"][0]["pointer"] == "/items/1/value"
        problem(w.post("/v1/contact-methods/batch", json={"items": [good, nobody]}), 404)
        assert w.get("/v1/contact-methods/count").json()["count"] == 0

        partial = w.post(
            "/v1/contact-methods/batch",
            params={"partial": "true"},
            json={"items": [good, bad, nobody, {**good, "value": "fay2@example.com"}]},
        )
        assert partial.status_code == 200, partial.text
        results = partial.json()["results"]
        assert [r["status"] for r in results] == [201, 422, 404, 201]
        assert results[1]["problem"]["errors"][0]["pointer"] == "/items/1/value"
        assert w.get("/v1/contact-methods/count").json()["count"] == 2

        ids = [results[0]["item"]["id"], results[3]["item"]["id"]]
        missing = "00000000-0000-0000-0000-000000000000"
        problem(w.post("/v1/contact-methods/batch-delete", json={"ids": [ids[0], missing]}), 404)
        assert w.get("/v1/contact-methods/count").json()["count"] == 2
        done = w.post("/v1/contact-methods/batch-delete", json={"ids": ids})
        assert done.json() == {"deleted": ids}
        assert w.get("/v1/contact-methods/count").json()["count"] == 0


def test_put_replaces_a_users_set_and_is_idempotent(
    router_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(router_env)
    with api.client() as w:
        w.post("/v1/users", json={"id": "gus", "external_id": "hr-17"})
        assert [
            u["id"] for u in w.get("/v1/users", params={"external_id": "hr-17"}).json()["items"]
        ] == ["gus"]

        def add(body: dict[str, Any]) -> dict[str, Any]:
            made = w.post("/v1/contact-methods", json={"user_id": "gus", **body})
            assert made.status_code == 201, made.text
            return made.json()

        kept = add({"transport": "email", "value": "gus@example.com", "verified": True})
        changed = add(
            {"transport": "sms", "value": "+447911123456", "external_id": "ph-1", "verified": True}
        )
        removed = add({"transport": "email", "value": "old@example.com"})
        w.post(f"/v1/contact-methods/{kept['id']}/mute", json={})
        wanted = [
            {"transport": "email", "value": "gus@example.com"},
            {"transport": "sms", "value": "+447911123457", "external_id": "ph-1", "label": "new"},
            {"transport": "webhook", "value": "https://hooks.example.com/gus"},
        ]
        first = w.put("/v1/users/gus/contact-methods", json=wanted)
        assert first.status_code == 200, first.text
        answer = first.json()
        assert answer["unchanged"] == [kept["id"]]
        assert answer["updated"] == [changed["id"]]
        assert answer["deleted"] == [removed["id"]]
        assert len(answer["created"]) == 1
        again = w.put("/v1/users/gus/contact-methods", json=wanted).json()
        assert again["created"] == again["updated"] == again["deleted"] == []
        assert sorted(again["unchanged"]) == sorted([kept["id"], changed["id"], *answer["created"]])

        still = w.get(f"/v1/contact-methods/{kept['id']}").json()
        assert still["verified"] is True and still["muted"] is True
        phone = w.get("/v1/contact-methods", params={"external_id": "ph-1"}).json()["items"]
        assert phone[0]["id"] == changed["id"] and phone[0]["value"] == "+447911123457"
        assert phone[0]["verified"] is False  # a new number has proved nothing
        problem(w.put("/v1/users/nobody/contact-methods", json=wanted), 404)


async def test_audit_shows_actor_and_masked_changes_from_api_cli_import_and_kafka(
    router_env: dict[str, str],
    start_api: Callable[..., ApiProcess],
    start_router: Callable[[dict[str, str]], RouterProcess],
    tmp_path: Path,
) -> None:
    cli_ok(router_env, "users", "add", "hal")
    api = start_api(router_env)
    with api.client() as w:
        made = w.post(
            "/v1/contact-methods",
            json={"user_id": "hal", "transport": "email", "value": "hal@example.com"},
        ).json()
        w.patch(f"/v1/contact-methods/{made['id']}", json={"value": "hal2@example.com"})
    cli_ok(router_env, "contacts", "update", made["id"], "--label", "work")
    rows = tmp_path / "import.csv"
    rows.write_text("user_id,transport,value,label\nhal,sms,+447911123450,mobile\n")
    cli_ok(router_env, "contacts", "import", str(rows))
    router = start_router(router_env)
    event = {"type": "opt_out", "transport": "sms", "address": "+447911123499"}
    await produce(
        router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"],
        router_env["ROUTER_TOPIC_CONTACT_EVENTS"],
        json.dumps(event).encode(),
    )
    kafka_actor = "kafka:" + router_env["ROUTER_TOPIC_CONTACT_EVENTS"]
    deadline = time.monotonic() + 30
    while True:
        out = cli_ok(router_env, "audit", "--json")
        audit = [json.loads(line) for line in out.splitlines()]
        if any(a["actor"] == kafka_actor for a in audit) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert router.process is not None and router.process.poll() is None
    by_actor = {(a["actor"].split(":")[0], a["action"]): a for a in audit}
    api_change = by_actor[("ci-writer", "update")]
    assert api_change["before"] == api_change["after"] == {"value": "h***@example.com"}
    assert by_actor[("cli", "update")]["after"] == {"label": "work"}
    imported = by_actor[("cli", "import")]
    assert imported["before"] is None and imported["after"]["value"] == "+44********50"
    opt_out = by_actor[("kafka", "create")]
    assert opt_out["actor"] == kafka_actor and opt_out["entity"] == "opt_out"
    assert opt_out["after"] == {"transport": "sms", "address": "+44********99"}
    assert "+447911123499" not in out and "hal2@example.com" not in out


def test_notify_after_is_set_over_http_and_by_the_cli_each_with_its_audit_row(
    router_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    cli_ok(router_env, "users", "add", "ivy")
    api = start_api(router_env)
    with api.client() as w:
        made = w.post(
            "/v1/contact-methods",
            json={"user_id": "ivy", "transport": "email", "value": "ivy@example.com"},
        ).json()
        assert made["notify_after_seconds"] == 0
        path = f"/v1/contact-methods/{made['id']}"
        changed = w.patch(path, json={"notify_after_seconds": 300})
        assert changed.status_code == 200 and changed.json()["notify_after_seconds"] == 300
        for wrong in (-1, 7 * 24 * 3600 + 1, "5m"):
            problem(w.patch(path, json={"notify_after_seconds": wrong}), 422)
    updated = cli_ok(
        router_env, "contacts", "update", made["id"], "--notify-after", "10m", "--json"
    )
    assert json.loads(updated)["notify_after_seconds"] == 600
    refusal = cli_refused(router_env, "contacts", "update", made["id"], "--notify-after", "8d")
    assert "at most 7d" in refusal and len(refusal.strip().splitlines()) == 1
    with api.client() as w:
        cleared = w.patch(path, json={"notify_after_seconds": None})
        assert cleared.status_code == 200 and cleared.json()["notify_after_seconds"] == 0
        assert w.get(path).json()["notify_after_seconds"] == 0
    audit = [json.loads(line) for line in cli_ok(router_env, "audit", "--json").splitlines()]
    updates = sorted(
        (a["at"], a["actor"].split(":")[0], a["before"], a["after"])
        for a in audit
        if a["action"] == "update"
    )
    assert [u[1:] for u in updates] == [
        ("ci-writer", {"notify_after_seconds": 0}, {"notify_after_seconds": 300}),
        ("cli", {"notify_after_seconds": 300}, {"notify_after_seconds": 600}),
        ("ci-writer", {"notify_after_seconds": 600}, {"notify_after_seconds": 0}),
    ]


def _alert(event_id: str, users: list[str]) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "kind": "down",
            "severity": "critical",
            "user_ids": users,
            "title": f"{event_id} is down",
        }
    ).encode()


async def test_a_patched_value_is_used_for_the_next_page_and_verify_confirm_works(
    router_env: dict[str, str],
    start_api: Callable[..., ApiProcess],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    email = router_env["ROUTER_TOPIC_EMAIL"]
    cli_ok(router_env, "users", "add", "ivy")
    router = start_router(router_env)
    await wait_for_topics(bootstrap, [router_env["ROUTER_TOPIC_ALERTS"], email])
    api = start_api(router_env)
    with api.client() as w:
        made = w.post(
            "/v1/contact-methods",
            json={
                "user_id": "ivy",
                "transport": "email",
                "value": "ivy@example.com",
                "verified": True,
            },
        ).json()
        await produce(bootstrap, router_env["ROUTER_TOPIC_ALERTS"], _alert("first", ["ivy"]))
        seen = await collect(bootstrap, [email], until=lambda s: len(s[email]) >= 1, settle=0.2)
        assert json.loads(seen[email][0].value)["to"] == "ivy@example.com"

        patched = w.patch(f"/v1/contact-methods/{made['id']}", json={"value": "ivy2@example.com"})
        assert patched.status_code == 200 and patched.json()["verified"] is False
        await asyncio.sleep(1.0)  # "within a second": the cache hears of the change by NOTIFY
        await produce(bootstrap, router_env["ROUTER_TOPIC_ALERTS"], _alert("second", ["ivy"]))
        seen = await collect(bootstrap, [email], until=lambda s: len(s[email]) >= 2, settle=0.2)
        assert json.loads(seen[email][1].value)["to"] == "ivy2@example.com"

        problem(w.post(f"/v1/contact-methods/{made['id']}/confirm", json={"code": "123456"}), 422)
        sent = w.post(f"/v1/contact-methods/{made['id']}/verify")
        assert sent.status_code == 202, sent.text
        seen = await collect(bootstrap, [email], until=lambda s: len(s[email]) >= 3, settle=0.2)
        job = json.loads(seen[email][2].value)
        assert job["purpose"] == "verification" and job["to"] == "ivy2@example.com"
        match = re.search(r"code is (\d{6})", job["text"])
        assert match is not None
        wrong = "000000" if match.group(1) != "000000" else "111111"
        problem(w.post(f"/v1/contact-methods/{made['id']}/confirm", json={"code": wrong}), 422)
        confirmed = w.post(
            f"/v1/contact-methods/{made['id']}/confirm", json={"code": match.group(1)}
        )
        assert confirmed.status_code == 200 and confirmed.json()["verified"] is True
    assert router.process is not None and router.process.poll() is None


async def test_the_janitor_purge_forgets_audit_rows_and_idempotent_answers_past_retention(
    database_url: str,
) -> None:
    from router.db.api_bulk import BulkApiStore

    store = await BulkApiStore.connect(database_url, min_size=1, max_size=1)
    try:
        await store.audit("t", "create", "user", "old", {"name": "x"})
        await store.audit("t", "create", "user", "new", {"name": "y"})
        for key in ("k-old", "k-new"):
            assert await store.claim_key("t", key, "h") is None
            await store.keep_answer("t", key, 201, {})
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "UPDATE audit_log SET at = now() - interval '2 h' WHERE entity_id = 'old'"
            )
            await conn.execute(
                "UPDATE api_idempotency SET created_at = now() - interval '25 h' "
                "WHERE key = 'k-old'"
            )
            await store.purge(routed_older_than=3600, sends_older_than=3600, audit_older_than=3600)
            assert [r["entity_id"] for r in await store.list_audit()] == ["new"]
            keys = await conn.fetch("SELECT key FROM api_idempotency")
            assert [r["key"] for r in keys] == ["k-new"]
        finally:
            await conn.close()
    finally:
        await store.close()


def test_schedules_and_who_is_on_call_read_over_http(
    router_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    for user in ("alice", "bob"):
        cli_ok(router_env, "users", "add", user)
    cli_ok(router_env, "schedules", "add", "ops", "--name", "Ops", "--timezone", "Europe/Berlin")
    cli_ok(
        router_env,
        "schedules",
        "add-rotation",
        "ops",
        "weekly",
        "--users",
        "alice,bob",
        "--every",
        "1w",
        "--start",
        "2026-03-23T09:00:00+01:00",
    )
    api = start_api(router_env)
    with api.client(READ) as r:
        assert r.get("/v1/schedules").json() == [
            {"id": "ops", "name": "Ops", "timezone": "Europe/Berlin"}
        ]
        # The week after the spring change: bob, from Monday 09:00 local (+02:00).
        answer = r.get("/v1/schedules/ops/on-call", params={"at": "2026-03-30T09:00:00+02:00"})
        assert answer.status_code == 200
        assert [o["user_id"] for o in answer.json()["on_call"]] == ["bob"]
        assert answer.json()["on_call"][0]["reasons"][0]["kind"] == "rotation"
        before = r.get("/v1/schedules/ops/on-call", params={"at": "2026-03-30T08:59:00+02:00"})
        assert [o["user_id"] for o in before.json()["on_call"]] == ["alice"]
        problem(r.get("/v1/schedules/nope/on-call"), 404)
