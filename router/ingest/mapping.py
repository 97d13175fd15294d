"""HTTP bodies from the alerting systems people run, turned into ``AlertEvent``s.

Pure: bytes, headers and the URL's query in; events or a :class:`Refusal` (the
HTTP status and a reason the sender can act on) out. The HTTP edge
(:mod:`router.ingest.edge`) authenticates, limits and publishes.

- Alertmanager's webhook (version 4) and Grafana Alerting's webhook (same
  ``alerts[]`` shape plus Grafana's own fields): one event per alert.
- CloudEvents 1.0, structured (``application/cloudevents+json``), batched
  (``application/cloudevents-batch+json``) or binary (``ce-*`` headers), whose
  data is an ``AlertEvent``; and a plain ``AlertEvent`` JSON body.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from router.routing.decode import NotJson, load_json
from schemas import AlertEvent

_SEVERITIES = ("critical", "error", "warning", "info")


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: an HTTP status and a reason code with a message."""

    status: int
    reason: str
    message: str

    def body(self) -> dict[str, str]:
        return {"error": self.reason, "message": self.message}


@dataclass(frozen=True)
class IngestMapping:
    """How alerts become events; every part is a setting (see ``Settings.ingest_mapping``)."""

    schedule_label: str = "schedule"
    users_label: str = "users"
    severity_label: str = "severity"
    severities: Mapping[str, str] | None = None
    default_severity: str = "warning"

    def severity(self, value: str | None) -> str:
        table = self.severities if self.severities is not None else DEFAULT_SEVERITIES
        if value is None:
            return self.default_severity
        return table.get(value.strip().lower(), self.default_severity)


#: Severity label values -> router severities, unless ROUTER_INGEST_SEVERITY_MAP says else.
DEFAULT_SEVERITIES: dict[str, str] = {
    "page": "critical",
    "critical": "critical",
    "error": "error",
    "warning": "warning",
    "info": "info",
}


def parse_severity_map(text: str) -> dict[str, str]:
    """``page:critical,critical:critical,warning:warning`` -> a table; ValueError if bad."""
    table: dict[str, str] = {}
    for pair in text.split(","):
        if not pair.strip():
            continue
        source, sep, target = pair.partition(":")
        source, target = source.strip().lower(), target.strip().lower()
        if not sep or not source or target not in _SEVERITIES:
            raise ValueError(
                f"{pair.strip()!r} is not LABEL_VALUE:SEVERITY with SEVERITY one of "
                f"{', '.join(_SEVERITIES)}"
            )
        table[source] = target
    return table


@dataclass(frozen=True)
class Audience:
    """Who the URL says to page (one receiver per team): ``?users=a,b`` or ``?schedule=s``."""

    user_ids: tuple[str, ...] = ()
    schedule_id: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, Sequence[str]]) -> Audience | Refusal:
        users = [u.strip() for v in query.get("users", ()) for u in v.split(",") if u.strip()]
        schedules = [s.strip() for s in query.get("schedule", ()) if s.strip()]
        if users and schedules:
            return Refusal(400, "bad_query", "give ?users= or ?schedule=, not both")
        if len(schedules) > 1:
            return Refusal(400, "bad_query", "give one ?schedule=")
        return cls(tuple(dict.fromkeys(users)), schedules[0] if schedules else None)

    def fields(self, labels: Mapping[str, str], mapping: IngestMapping) -> dict[str, Any] | None:
        """``user_ids`` or ``schedule_id`` for an alert: the URL's, else its labels'."""
        if self.user_ids:
            return {"user_ids": list(self.user_ids)}
        if self.schedule_id:
            return {"schedule_id": self.schedule_id}
        users = [u.strip() for u in labels.get(mapping.users_label, "").split(",") if u.strip()]
        schedule = labels.get(mapping.schedule_label, "").strip()
        if users:
            return {"user_ids": list(dict.fromkeys(users))}
        if schedule:
            return {"schedule_id": schedule}
        return None


def _load_object(body: bytes) -> dict[str, Any] | Refusal:
    try:
        data = load_json(body)
    except NotJson as error:
        return Refusal(400, "not_json", f"the body is not JSON: {error}")
    if not isinstance(data, dict):
        return Refusal(422, "schema_invalid", "the body must be a JSON object")
    return data


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text: str = value.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _id_part(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else a stable hash of it."""
    if len(text) <= limit:
        return text
    return "sha256-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _joined_id(*parts: str) -> str:
    """The parts joined by ``:`` as an event id. An id that would pass the schema's
    256 characters is never cut (cut ids of long fingerprints collide): each part
    over 64 characters is replaced by its hash instead. Shorter ids are unchanged."""
    whole = ":".join(parts)
    if len(whole) <= 256:
        return whole
    return ":".join(_id_part(part, 64) for part in parts)


def _event_id(source: str, alert: Mapping[str, Any], labels: Mapping[str, str], status: str) -> str:
    """The source's identity of this notification: the alert (its fingerprint, or its
    labels), when it started, and whether it fires or resolved. Retries and repeat
    notifications of the same alert give the same id, so they are ``duplicate_event``."""
    fingerprint = alert.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        canonical = json.dumps(sorted(labels.items()), separators=(",", ":"))
        fingerprint = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    starts = alert.get("startsAt")
    return _joined_id(source, fingerprint, starts if isinstance(starts, str) else "", status)


def from_alertmanager_style(
    source: str, body: bytes, audience: Audience, mapping: IngestMapping
) -> list[AlertEvent] | Refusal:
    """Alertmanager's (``source="alertmanager"``) or Grafana's (``"grafana"``) webhook."""
    data = _load_object(body)
    if isinstance(data, Refusal):
        return data
    alerts = data.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        return Refusal(422, "schema_invalid", "the payload has no alerts[] list")
    group_status = data.get("status") if isinstance(data.get("status"), str) else "firing"
    events: list[AlertEvent] = []
    for index, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            return Refusal(422, "schema_invalid", f"alerts[{index}] is not an object")
        labels = _labels(alert.get("labels"))
        annotations = _labels(alert.get("annotations"))
        status = alert.get("status") if isinstance(alert.get("status"), str) else group_status
        if status not in ("firing", "resolved"):
            return Refusal(
                422, "schema_invalid", f"alerts[{index}].status is {status!r}, not firing/resolved"
            )
        who = audience.fields(labels, mapping)
        if who is None:
            return Refusal(
                422,
                "no_audience",
                f"alerts[{index}] names no one to page: add ?users=a,b or ?schedule=s to the "
                f"receiver's URL, or a {mapping.users_label!r} or {mapping.schedule_label!r} "
                "label to the alert",
            )
        resolved = status == "resolved"
        occurred = (_time(alert.get("endsAt")) if resolved else None) or _time(
            alert.get("startsAt")
        )
        title = (
            _text(annotations.get("summary"), 500)
            or _text(labels.get("alertname"), 500)
            or _text(data.get("title"), 500)
            or f"{source} alert"
        )
        body_text = _text(annotations.get("description"), 20_000) or _text(
            annotations.get("message"), 20_000
        )
        url = alert.get("generatorURL")
        fields: dict[str, Any] = {
            "event_id": _event_id(source, alert, labels, status),
            "kind": "up" if resolved else "down",
            "severity": mapping.severity(labels.get(mapping.severity_label)),
            **who,
            "title": title,
            "body": body_text,
            "url": url if isinstance(url, str) and url and len(url) <= 2000 else None,
            "source": source,
            "dedup_key": _dedup_key(alert.get("fingerprint")),
            "labels": labels,
            "occurred_at": occurred,
        }
        try:
            events.append(AlertEvent.model_validate(fields))
        except ValidationError as error:
            return Refusal(422, "schema_invalid", f"alerts[{index}]: {_first_error(error)}")
    return events


def _dedup_key(fingerprint: Any) -> str | None:
    """The alert's fingerprint as its dedup key; hashed when too long to keep whole."""
    if not isinstance(fingerprint, str) or not fingerprint.strip():
        return None
    return _id_part(fingerprint.strip(), 256)


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


def _alert_event(data: Any, default_id: str | None) -> AlertEvent | Refusal:
    if not isinstance(data, dict):
        return Refusal(422, "schema_invalid", "the event's data must be a JSON object")
    if default_id is not None and not data.get("event_id"):
        data = {**data, "event_id": default_id}
    try:
        return AlertEvent.model_validate_json(json.dumps(data))
    except ValidationError as error:
        return Refusal(422, "schema_invalid", _first_error(error))


_REQUIRED = ("specversion", "id", "source", "type")


def _structured(event: Any) -> AlertEvent | Refusal:
    if not isinstance(event, dict):
        return Refusal(422, "schema_invalid", "a CloudEvent must be a JSON object")
    missing = [a for a in _REQUIRED if not isinstance(event.get(a), str) or not event.get(a)]
    if missing:
        return Refusal(422, "not_cloudevent", f"missing CloudEvents attributes: {missing}")
    if event["specversion"] != "1.0":
        return Refusal(422, "not_cloudevent", f"specversion {event['specversion']!r}, not 1.0")
    data = event.get("data")
    if data is None and "data_base64" in event:
        return Refusal(415, "unsupported_data", "data_base64 is not an AlertEvent; send JSON data")
    return _alert_event(data, _joined_id(event["source"], event["id"]))


def from_events_endpoint(body: bytes, headers: Mapping[str, str]) -> list[AlertEvent] | Refusal:
    """``POST /v1/events``: CloudEvents in any mode, or a plain ``AlertEvent``."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if "ce-specversion" in headers:  # binary mode: attributes in headers, data in the body
        missing = [a for a in _REQUIRED if not headers.get(f"ce-{a}")]
        if missing:
            return Refusal(
                422, "not_cloudevent", f"missing headers: {['ce-' + a for a in missing]}"
            )
        if headers["ce-specversion"] != "1.0":
            return Refusal(422, "not_cloudevent", "ce-specversion must be 1.0")
        data = _load_object(body)
        if isinstance(data, Refusal):
            return data
        event = _alert_event(data, _joined_id(headers["ce-source"], headers["ce-id"]))
        return event if isinstance(event, Refusal) else [event]
    if content_type == "application/cloudevents-batch+json":
        try:
            batch = load_json(body)
        except NotJson as error:
            return Refusal(400, "not_json", f"the body is not JSON: {error}")
        if not isinstance(batch, list) or not batch:
            return Refusal(422, "schema_invalid", "a CloudEvents batch is a non-empty JSON array")
        events: list[AlertEvent] = []
        for index, item in enumerate(batch):
            one = _structured(item)
            if isinstance(one, Refusal):
                return Refusal(one.status, one.reason, f"event [{index}]: {one.message}")
            events.append(one)
        return events
    data = _load_object(body)
    if isinstance(data, Refusal):
        return data
    if content_type == "application/cloudevents+json" or "specversion" in data:
        structured = _structured(data)
        return structured if isinstance(structured, Refusal) else [structured]
    plain = _alert_event(data, None)
    return plain if isinstance(plain, Refusal) else [plain]
