"""How Alertmanager, Grafana and CloudEvents bodies become AlertEvents (pure mapping)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from router.ingest.edge import RateLimiter, authenticate
from router.ingest.mapping import (
    Audience,
    IngestMapping,
    Refusal,
    from_alertmanager_style,
    from_events_endpoint,
    parse_severity_map,
)
from schemas import AlertEvent

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ingest"
ALICE = Audience(user_ids=("alice",))
MAPPING = IngestMapping()


def fixture(name: str) -> dict:  # type: ignore[type-arg]
    data: dict = json.loads((FIXTURES / name).read_text())  # type: ignore[type-arg]
    return data


def events(result: list[AlertEvent] | Refusal) -> list[AlertEvent]:
    assert not isinstance(result, Refusal), result
    return result


def refusal(result: list[AlertEvent] | Refusal) -> Refusal:
    assert isinstance(result, Refusal), result
    return result


def test_an_alertmanager_group_becomes_one_event_per_alert() -> None:
    body = (FIXTURES / "alertmanager.json").read_bytes()
    first, second = events(from_alertmanager_style("alertmanager", body, ALICE, MAPPING))
    assert first.event_id == "alertmanager:2f2b6f1a9e1c4d3b:2026-11-25T03:00:00.000Z:firing"
    assert first.kind == "down"
    assert first.severity == "critical"  # severity="page"
    assert first.user_ids == ["alice"]
    assert first.title == "Disk almost full on db-1"
    assert first.body == "/var/lib/postgresql is 97% full."
    assert first.url == "http://prometheus.example.com:9090/graph?g0.expr=disk_used_ratio+%3E+0.95"
    assert first.source == "alertmanager"
    assert first.dedup_key == "2f2b6f1a9e1c4d3b"
    assert first.labels["instance"] == "db-1:9100"
    assert first.occurred_at == datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    assert second.body is None
    assert second.event_id != first.event_id


def test_a_resolved_alert_is_up_with_its_own_id_at_its_end_time() -> None:
    data = fixture("alertmanager.json")
    data["status"] = "resolved"
    data["alerts"][0]["status"] = "resolved"
    data["alerts"][0]["endsAt"] = "2026-11-25T03:20:00Z"
    firing = events(
        from_alertmanager_style(
            "alertmanager", (FIXTURES / "alertmanager.json").read_bytes(), ALICE, MAPPING
        )
    )[0]
    resolved = events(
        from_alertmanager_style("alertmanager", json.dumps(data).encode(), ALICE, MAPPING)
    )[0]
    assert resolved.kind == "up"
    assert resolved.event_id.endswith(":resolved")
    assert resolved.event_id.removesuffix(":resolved") == firing.event_id.removesuffix(":firing")
    assert resolved.occurred_at == datetime(2026, 11, 25, 3, 20, tzinfo=UTC)


def test_the_same_notification_sent_again_has_the_same_event_id() -> None:
    body = (FIXTURES / "alertmanager.json").read_bytes()
    once = events(from_alertmanager_style("alertmanager", body, ALICE, MAPPING))
    again = events(from_alertmanager_style("alertmanager", body, ALICE, MAPPING))
    assert [e.event_id for e in once] == [e.event_id for e in again]


def test_a_grafana_alert_maps_with_the_default_severity_when_it_has_none() -> None:
    body = (FIXTURES / "grafana.json").read_bytes()
    [event] = events(from_alertmanager_style("grafana", body, ALICE, MAPPING))
    assert event.event_id.startswith("grafana:c6eadffa33fcdf37:")
    assert event.severity == "warning"
    assert event.title == "This alert was triggered for zone us-1"
    assert event.url == "https://grafana.example.com/alerting/1afz29v7z/edit"
    assert event.labels == {"alertname": "High memory usage", "team": "blue", "zone": "us-1"}


def test_who_is_paged_comes_from_the_url_else_from_labels() -> None:
    data = fixture("grafana.json")
    data["alerts"][0]["labels"]["schedule"] = "web-oncall"
    body = json.dumps(data).encode()
    [from_label] = events(from_alertmanager_style("grafana", body, Audience(), MAPPING))
    assert from_label.schedule_id == "web-oncall"
    [from_url] = events(
        from_alertmanager_style("grafana", body, Audience(user_ids=("bob", "carol")), MAPPING)
    )
    assert from_url.user_ids == ["bob", "carol"]
    data["alerts"][0]["labels"] = {"alertname": "x", "users": "dan, erin"}
    [users] = events(
        from_alertmanager_style("grafana", json.dumps(data).encode(), Audience(), MAPPING)
    )
    assert users.user_ids == ["dan", "erin"]


def test_an_alert_that_names_no_one_is_refused_with_the_fix() -> None:
    body = (FIXTURES / "grafana.json").read_bytes()
    refused = refusal(from_alertmanager_style("grafana", body, Audience(), MAPPING))
    assert (refused.status, refused.reason) == (422, "no_audience")
    assert "?users=" in refused.message


def test_query_strings_give_users_or_one_schedule() -> None:
    assert Audience.from_query({"users": ["a,b", "c"]}) == Audience(("a", "b", "c"))
    assert Audience.from_query({"schedule": ["s"]}) == Audience((), "s")
    assert isinstance(Audience.from_query({"users": ["a"], "schedule": ["s"]}), Refusal)


def test_the_severity_table_is_a_setting() -> None:
    table = parse_severity_map("P1:critical, p2:error,sev3:warning")
    mapping = IngestMapping(severities=table, default_severity="info")
    assert [mapping.severity(v) for v in ("p1", "P2", "sev3", "other", None)] == [
        "critical",
        "error",
        "warning",
        "info",
        "info",
    ]
    with pytest.raises(ValueError, match="LABEL_VALUE:SEVERITY"):
        parse_severity_map("p1:urgent")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not_json"),
        (b"[]", "schema_invalid"),
        (b'{"alerts": []}', "schema_invalid"),
        (b'{"alerts": [{"status": "pending", "labels": {}}]}', "schema_invalid"),
    ],
)
def test_bad_alertmanager_bodies_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    assert refusal(from_alertmanager_style("alertmanager", body, ALICE, MAPPING)).reason == reason


ALERT = {"kind": "down", "severity": "error", "title": "queue stuck", "user_ids": ["alice"]}


def test_a_structured_cloudevent_carries_an_alert_event() -> None:
    cloudevent = {
        "specversion": "1.0",
        "id": "42",
        "source": "/jobs/billing",
        "type": "com.example.alert",
        "datacontenttype": "application/json",
        "data": ALERT,
    }
    [event] = events(
        from_events_endpoint(
            json.dumps(cloudevent).encode(), {"content-type": "application/cloudevents+json"}
        )
    )
    assert event.event_id == "/jobs/billing:42"  # source and id identify a CloudEvent
    assert event.title == "queue stuck"


def test_a_binary_cloudevent_has_its_attributes_in_headers() -> None:
    headers = {
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "7",
        "ce-source": "billing",
        "ce-type": "com.example.alert",
    }
    [event] = events(
        from_events_endpoint(json.dumps({**ALERT, "event_id": "mine"}).encode(), headers)
    )
    assert event.event_id == "mine"  # the data's own id wins
    missing = refusal(from_events_endpoint(b"{}", {"ce-specversion": "1.0"}))
    assert (missing.status, missing.reason) == (422, "not_cloudevent")


def test_a_batch_of_cloudevents_and_a_plain_alert_event() -> None:
    batch = [
        {"specversion": "1.0", "id": str(i), "source": "s", "type": "t", "data": ALERT}
        for i in range(3)
    ]
    assert [
        e.event_id
        for e in events(
            from_events_endpoint(
                json.dumps(batch).encode(), {"content-type": "application/cloudevents-batch+json"}
            )
        )
    ] == ["s:0", "s:1", "s:2"]
    [plain] = events(
        from_events_endpoint(
            json.dumps({**ALERT, "event_id": "p-1"}).encode(), {"content-type": "application/json"}
        )
    )
    assert plain.event_id == "p-1"
    assert refusal(from_events_endpoint(json.dumps(ALERT).encode(), {})).reason == "schema_invalid"


def test_bearer_tokens_any_of_several_for_rotation() -> None:
    tokens = ("old-token", "new-token")
    assert authenticate("Bearer new-token", tokens) == 1
    assert authenticate("Bearer old-token", tokens) == 0
    assert authenticate("Bearer wrong", tokens) is None
    assert authenticate("Basic b2xkLXRva2Vu", tokens) is None
    assert authenticate(None, tokens) is None


def test_each_source_has_its_own_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=2, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter.allow("a") == pytest.approx(1.0)
    assert limiter.allow("b") == 0.0
    now[0] = 1.0
    assert limiter.allow("a") == 0.0


def _one_alert(fingerprint: str, status: str, starts: str) -> bytes:
    alert = {
        "status": status,
        "labels": {"alertname": "DiskFull"},
        "annotations": {},
        "startsAt": starts,
        "endsAt": "2026-11-25T04:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    }
    return json.dumps({"status": status, "alerts": [alert]}).encode()


def test_long_fingerprints_give_distinct_ids_for_firing_resolved_and_refiring() -> None:
    fingerprint = "f" * 300
    notifications = [
        ("firing", "2026-11-25T03:00:00Z"),
        ("resolved", "2026-11-25T03:00:00Z"),
        ("firing", "2026-11-25T05:00:00Z"),
    ]
    ids = []
    for status, starts in notifications:
        [event] = events(
            from_alertmanager_style(
                "alertmanager", _one_alert(fingerprint, status, starts), ALICE, MAPPING
            )
        )
        assert len(event.event_id) <= 256
        ids.append(event.event_id)
    assert len(set(ids)) == 3, ids
    [again] = events(
        from_alertmanager_style(
            "alertmanager", _one_alert(fingerprint, *notifications[0]), ALICE, MAPPING
        )
    )
    assert again.event_id == ids[0], "a re-sent notification keeps its id"


def test_two_long_fingerprints_sharing_a_prefix_get_different_ids_and_dedup_keys() -> None:
    a, b = "p" * 300 + "a", "p" * 300 + "b"
    starts = "2026-11-25T03:00:00Z"
    [first] = events(
        from_alertmanager_style("alertmanager", _one_alert(a, "firing", starts), ALICE, MAPPING)
    )
    [second] = events(
        from_alertmanager_style("alertmanager", _one_alert(b, "firing", starts), ALICE, MAPPING)
    )
    assert first.event_id != second.event_id
    assert first.dedup_key != second.dedup_key and len(first.dedup_key or "") <= 256


def test_a_short_fingerprint_keeps_todays_id() -> None:
    [event] = events(
        from_alertmanager_style(
            "alertmanager", _one_alert("abc", "firing", "2026-11-25T03:00:00Z"), ALICE, MAPPING
        )
    )
    assert event.event_id == "alertmanager:abc:2026-11-25T03:00:00Z:firing"
    assert event.dedup_key == "abc"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"alerts": [{"labels": {"a": NaN}}]}',
        b'{"alerts": [], "x": Infinity}',
    ],
)
def test_bodies_no_strict_json_reader_takes_are_not_json(body: bytes) -> None:
    assert refusal(from_alertmanager_style("alertmanager", body, ALICE, MAPPING)).reason == (
        "not_json"
    )
    assert refusal(from_events_endpoint(body, {})).reason == "not_json"


def test_an_alert_starting_in_year_9999_is_schema_invalid() -> None:
    body = _one_alert("abc", "firing", "9999-12-31T23:59:59Z")
    refused = refusal(from_alertmanager_style("alertmanager", body, ALICE, MAPPING))
    assert (refused.status, refused.reason) == (422, "schema_invalid")
    assert "occurred_at" in refused.message
