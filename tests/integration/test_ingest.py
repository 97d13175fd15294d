"""`router ingest` as its senders see it: real HTTP in, real broker, real worker.

The payload fixtures are written from Alertmanager's (webhook version 4) and
Grafana Alerting's documented formats; test_alertmanager_peer.py has a real
Alertmanager send its own.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from router.dev.embedded import EmbeddedKafka, free_port
from tests.integration.conftest import (
    RouterProcess,
    add_contact,
    cli_ok,
    collect,
    wait_for_topics,
)
from tests.privacy import leaks_in

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ingest"
TOKEN = "new-token"


class IngestProcess(RouterProcess):
    """``router ingest`` in a child process, on a free port."""

    command = "ingest"

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        super().__init__({**env, "ROUTER_INGEST_PORT": str(self.port)}, log_path)
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def until_ready(self, path: str = "/readyz", timeout: float = 30) -> None:
        assert self.process is not None
        for _ in range(int(timeout * 10)):
            if self.process.poll() is not None:
                raise AssertionError(f"router ingest exited:\n{self.log()}")
            try:
                status, _ = await request(self.url + path, method="GET")
            except OSError:
                status = 0
            if status == 200:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{path} never answered 200:\n{self.log()}")


@pytest.fixture
def start_ingest(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], IngestProcess]]:
    started: list[IngestProcess] = []

    def start(env: dict[str, str]) -> IngestProcess:
        ingest_env = {"ROUTER_INGEST_TOKENS": f"old-token,{TOKEN}", **env}
        started.append(IngestProcess(ingest_env, tmp_path / f"ingest-{len(started)}.log"))
        return started[-1]

    yield start
    for ingest in started:
        ingest.stop()
        log = ingest.log()
        assert "old-token" not in log and TOKEN not in log, "a token reached the log"
        assert not leaks_in(log)


async def request(
    url: str,
    body: bytes = b"",
    *,
    method: str = "POST",
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """One HTTP request; (status, JSON body)."""

    def call() -> tuple[int, dict[str, Any]]:
        sent = {"content-type": "application/json", **(headers or {})}
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        req = urllib.request.Request(
            url, data=body if method == "POST" else None, headers=sent, method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    return await asyncio.to_thread(call)


def values(records: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records]


async def test_alertmanager_and_grafana_alerts_become_events_and_jobs_once(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
    start_ingest: Callable[[dict[str, str]], IngestProcess],
) -> None:
    cli_ok(router_env, "users", "add", "alice")
    add_contact(router_env, "alice", "email", "alice@example.com", "--verified")
    ingest = start_ingest(router_env)
    await ingest.until_ready()
    am = (FIXTURES / "alertmanager.json").read_bytes()

    status, answer = await request(ingest.url + "/v1/alertmanager?users=alice", am)
    assert status == 200, answer
    assert answer["published"] == 2
    # Alertmanager repeats a notification (repeat_interval, or a retry): same ids.
    assert await request(ingest.url + "/v1/alertmanager?users=alice", am) == (status, answer)
    resolved = json.loads(am)
    resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
    resolved["alerts"] = resolved["alerts"][:1]
    resolved["alerts"][0]["endsAt"] = "2026-11-25T03:20:00Z"
    status, _ = await request(
        ingest.url + "/v1/alertmanager?users=alice", json.dumps(resolved).encode()
    )
    assert status == 200
    status, _ = await request(
        ingest.url + "/v1/grafana?users=alice", (FIXTURES / "grafana.json").read_bytes()
    )
    assert status == 200

    start_router(router_env)
    alerts, email, decisions = (
        router_env["ROUTER_TOPIC_ALERTS"],
        router_env["ROUTER_TOPIC_EMAIL"],
        router_env["ROUTER_TOPIC_DECISIONS"],
    )
    seen = await collect(
        router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"],
        [alerts, email, decisions],
        until=lambda s: len(s[decisions]) >= 6,
    )
    events = values(seen[alerts])
    assert len(events) == 6
    kinds = {(e["source"], e["kind"], e["severity"]) for e in events}
    assert kinds == {
        ("alertmanager", "down", "critical"),
        ("alertmanager", "up", "critical"),
        ("grafana", "down", "warning"),
    }
    jobs = values(seen[email])
    assert len(jobs) == 4  # two firing, one resolved, one from Grafana; no repeat
    assert {j["title"] for j in jobs} == {
        "Disk almost full on db-1",
        "Disk almost full on db-2",
        "This alert was triggered for zone us-1",
    }
    reasons = sorted(d["reason"] or "sent" for d in values(seen[decisions]))
    assert reasons == ["duplicate_event", "duplicate_event", "sent", "sent", "sent", "sent"]


async def test_bad_requests_are_refused_with_a_reason_and_publish_nothing(
    router_env: dict[str, str],
    start_ingest: Callable[[dict[str, str]], IngestProcess],
) -> None:
    ingest = start_ingest({**router_env, "ROUTER_INGEST_MAX_BYTES": "4096"})
    await ingest.until_ready()
    am = (FIXTURES / "alertmanager.json").read_bytes()
    url = ingest.url + "/v1/alertmanager?users=alice"

    assert (await request(url, am, token=None))[0] == 401
    status, answer = await request(url, am, token="old-token-but-wrong")
    assert (status, answer["error"]) == (401, "unauthorized")
    assert (await request(url, am, token="old-token"))[0] == 200  # rotation: both work
    status, answer = await request(url, b"{nope")
    assert (status, answer["error"]) == (400, "not_json")
    status, answer = await request(ingest.url + "/v1/alertmanager", am)
    assert (status, answer["error"]) == (422, "no_audience")
    status, answer = await request(url, b'{"alerts": [' + b" " * 5000 + b"]}")
    assert (status, answer["error"]) == (413, "too_large")
    assert (await request(url, method="GET"))[0] == 405
    cloudevent = {
        "specversion": "1.0",
        "id": "1",
        "source": "billing",
        "type": "com.example.alert",
        "data": {"kind": "down", "severity": "error", "title": "stuck", "user_ids": ["alice"]},
    }
    status, answer = await request(
        ingest.url + "/v1/events",
        json.dumps(cloudevent).encode(),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert (status, answer["event_ids"]) == (200, ["billing:1"])

    alerts = router_env["ROUTER_TOPIC_ALERTS"]
    seen = await collect(
        router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"], [alerts], until=lambda s: len(s[alerts]) >= 3
    )
    assert sorted(e.get("source", "-") for e in values(seen[alerts])) == [
        "-",
        "alertmanager",
        "alertmanager",
    ]


async def test_a_broker_outage_answers_503_so_the_sender_retries(
    router_env: dict[str, str],
    start_ingest: Callable[[dict[str, str]], IngestProcess],
    tmp_path: Path,
) -> None:
    kafka = EmbeddedKafka(log_path=tmp_path / "tansu.log").start()
    try:
        env = {
            **router_env,
            "ROUTER_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "ROUTER_KAFKA_ENABLE_IDEMPOTENCE": "false",
            "ROUTER_INGEST_PUBLISH_TIMEOUT_SECONDS": "3",
        }
        ingest = start_ingest(env)
        await ingest.until_ready()
        await wait_for_topics(kafka.bootstrap_servers, [env["ROUTER_TOPIC_ALERTS"]])
        am = (FIXTURES / "alertmanager.json").read_bytes()
        url = ingest.url + "/v1/alertmanager?users=alice"
        assert (await request(url, am))[0] == 200
    finally:
        kafka.stop()
    status, answer = await request(url, am)
    assert (status, answer["error"]) == (503, "broker_unavailable")
    status, _ = await request(ingest.url + "/readyz", method="GET")
    assert status == 503
    status, _ = await request(ingest.url + "/healthz", method="GET")
    assert status == 200


def _alertmanager(fingerprint: str, status: str, starts: str) -> bytes:
    alert = {
        "status": status,
        "labels": {"alertname": "DiskFull", "severity": "page"},
        "annotations": {"summary": "Disk almost full"},
        "startsAt": starts,
        "endsAt": "2026-11-25T04:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    }
    return json.dumps({"version": "4", "status": status, "alerts": [alert]}).encode()


async def test_hostile_bodies_are_refused_with_a_reason_and_no_traceback(
    router_env: dict[str, str],
    start_ingest: Callable[[dict[str, str]], IngestProcess],
) -> None:
    ingest = start_ingest(router_env)
    await ingest.until_ready()
    url = ingest.url + "/v1/alertmanager?users=alice"
    nested = b"[" * 100_000 + b"]" * 100_000
    status, answer = await request(url, nested)
    assert (status, answer["error"]) == (400, "not_json")
    assert "recursion limit" in answer["message"]
    status, answer = await request(ingest.url + "/v1/events", nested)
    assert (status, answer["error"]) == (400, "not_json")
    am = json.loads((FIXTURES / "alertmanager.json").read_bytes())
    am["alerts"][0]["labels"]["load"] = "placeholder"
    with_nan = json.dumps(am).encode().replace(b'"placeholder"', b"NaN")
    status, answer = await request(url, with_nan)
    assert (status, answer["error"]) == (400, "not_json")
    status, answer = await request(url, _alertmanager("abc", "firing", "9999-12-31T23:59:59Z"))
    assert (status, answer["error"]) == (422, "schema_invalid")
    assert "occurred_at" in answer["message"]
    assert (await request(ingest.url + "/healthz", method="GET"))[0] == 200
    assert "Traceback" not in ingest.log() and "RecursionError" not in ingest.log()


async def test_a_long_fingerprint_fires_resolves_and_fires_again_with_three_ids(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
    start_ingest: Callable[[dict[str, str]], IngestProcess],
) -> None:
    cli_ok(router_env, "users", "add", "alice")
    add_contact(router_env, "alice", "email", "alice@example.com", "--verified")
    ingest = start_ingest(router_env)
    await ingest.until_ready()
    start_router(router_env)
    url = ingest.url + "/v1/alertmanager?users=alice"
    fingerprint = "f" * 300
    ids = []
    for status, starts in [
        ("firing", "2026-11-25T03:00:00Z"),
        ("resolved", "2026-11-25T03:00:00Z"),
        ("firing", "2026-11-25T05:00:00Z"),
    ]:
        code, answer = await request(url, _alertmanager(fingerprint, status, starts))
        assert code == 200, answer
        ids.extend(answer["event_ids"])
    assert len(set(ids)) == 3 and all(len(i) <= 256 for i in ids)

    decisions = router_env["ROUTER_TOPIC_DECISIONS"]
    seen = await collect(
        router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"],
        [decisions],
        until=lambda s: len(s[decisions]) >= 3,
        settle=2,
    )
    outcomes = {d["event_id"]: d["reason"] or d["outcome"] for d in values(seen[decisions])}
    assert outcomes == dict.fromkeys(ids, "sent"), "the resolve and the re-fire page too"


async def _raw_http(port: int, head: bytes, body: bytes, *, close: bool) -> bytes:
    """Send ``head`` and ``body`` on one connection (closing our side after them when
    ``close``), then read whatever the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + body)
    await writer.drain()
    if close:
        writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), timeout=15)
    finally:
        writer.close()


async def test_a_body_cut_short_or_sent_too_slowly_is_never_published(
    router_env: dict[str, str],
    start_ingest: Callable[[dict[str, str]], IngestProcess],
) -> None:
    ingest = start_ingest(
        {
            **router_env,
            "ROUTER_INGEST_HEADER_TIMEOUT_SECONDS": "1",
            "ROUTER_INGEST_BODY_TIMEOUT_SECONDS": "1",
        }
    )
    await ingest.until_ready()
    cut = _alertmanager("cut-short", "firing", "2026-11-25T03:00:00Z")

    def head(length: int) -> bytes:
        return (
            b"POST /v1/alertmanager?users=alice HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n".encode()
            + f"Content-Length: {length}\r\n\r\n".encode()
        )

    # A complete JSON document, but the Content-Length promised 50 bytes more.
    await _raw_http(ingest.port, head(len(cut) + 50), cut, close=True)
    # The same, with the client still there: the body times out.
    slow = await _raw_http(ingest.port, head(len(cut) + 50), cut, close=False)
    assert slow.startswith(b"HTTP/1.1 408"), slow[:80]
    assert b"body_timeout" in slow
    # Headers that never end: the connection is closed, nothing answered.
    loop = asyncio.get_running_loop()
    started = loop.time()
    stalled = await _raw_http(
        ingest.port, b"POST /v1/alertmanager HTTP/1.1\r\nHost:", b"", close=False
    )
    assert stalled == b"" and loop.time() - started < 10

    good = _alertmanager("complete", "firing", "2026-11-25T03:00:00Z")
    status, answer = await request(ingest.url + "/v1/alertmanager?users=alice", good)
    assert status == 200, answer
    alerts = router_env["ROUTER_TOPIC_ALERTS"]
    seen = await collect(
        router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"],
        [alerts],
        until=lambda s: len(s[alerts]) >= 1,
        settle=2,
    )
    assert [e["dedup_key"] for e in values(seen[alerts])] == ["complete"]
    assert "incomplete_body" in ingest.log() and "http_header_timeout" in ingest.log()


async def test_ingest_answers_503_while_the_broker_is_down_and_200_soon_after_it_returns(
    router_env: dict[str, str],
    persistent_kafka: EmbeddedKafka,
    start_ingest: Callable[[dict[str, str]], IngestProcess],
) -> None:
    env = {
        **router_env,
        "ROUTER_KAFKA_BOOTSTRAP_SERVERS": persistent_kafka.bootstrap_servers,
        "ROUTER_KAFKA_ENABLE_IDEMPOTENCE": "false",
        "ROUTER_INGEST_PUBLISH_TIMEOUT_SECONDS": "2",
    }
    ingest = start_ingest(env)
    await ingest.until_ready()
    alerts = env["ROUTER_TOPIC_ALERTS"]
    await wait_for_topics(persistent_kafka.bootstrap_servers, [alerts])
    am = json.loads((FIXTURES / "alertmanager.json").read_text())
    before = json.dumps({**am, "alerts": am["alerts"][:1]}).encode()
    during = json.dumps({**am, "alerts": am["alerts"][1:2]}).encode()
    url = ingest.url + "/v1/alertmanager?users=alice"
    assert (await request(url, before))[0] == 200

    persistent_kafka.stop()
    status, answer = await request(url, during)
    assert (status, answer["error"]) == (503, "broker_unavailable")
    assert (await request(ingest.url + "/readyz", method="GET"))[0] == 503

    persistent_kafka.start()
    loop = asyncio.get_running_loop()
    back = loop.time()
    while (status := (await request(url, during))[0]) != 200:
        assert status == 503, status
        assert loop.time() - back < 30, "ingest did not recover within 30 s of the broker"
        await asyncio.sleep(0.5)
    recovered = loop.time() - back
    print(f"\nrouter ingest answered 200 again {recovered:.1f} s after the broker was back")

    seen = await collect(
        persistent_kafka.bootstrap_servers, [alerts], until=lambda s: len(s[alerts]) >= 2, settle=2
    )
    ids = [e["event_id"] for e in values(seen[alerts])]
    first, second = (json.loads(b)["alerts"][0]["fingerprint"] for b in (before, during))
    assert sum(first in i for i in ids) == 1, "the alert sent before the restart survived it once"
    # A 503 may leave the event on the topic too (documented): the same id, so the
    # worker records the copy as duplicate_event and pages once.
    assert {i for i in ids if second in i} == {next(i for i in ids if second in i)}
