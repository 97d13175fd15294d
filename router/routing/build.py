"""One job builder: the delivery job for a contact method. Pure.

Routing and failover send one event (:func:`build_job`); held delivery sends the pages
held for a method as one digest (:func:`digest_job`); a verification code goes out as a
text of its own (:func:`text_job`). All read the same :class:`RoutingOptions` and fill
the same common fields, so a setting cannot reach one path and miss the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from router.directory.models import ContactMethod
from router.pages.replies import reply_hint
from router.routing import render
from router.routing.digest_text import (
    digest_email,
    digest_kind,
    digest_sms,
    digest_title,
    digest_webhook_body,
    highest,
)
from router.routing.encode import encode_fields, make, shell, template
from router.routing.rules import RoutingOptions
from schemas import (
    AlertEvent,
    Decision,
    DeliveryJob,
    EmailJob,
    Outcome,
    Reason,
    SmsJob,
    Transport,
    WebhookJob,
    WebhookMethod,
    digest_job_id,
    escalation_job_id,
    job_id_for,
)

_MODELS: dict[str, type[EmailJob] | type[SmsJob] | type[WebhookJob]] = {
    "email": EmailJob,
    "sms": SmsJob,
    "webhook": WebhookJob,
}


class Target:
    """What every job to one contact method carries, whatever the event: its id, user,
    transport, verified flag, address (a webhook's with its query) and a webhook's HTTP
    method, headers as sent and body template; worked out once per method."""

    __slots__ = (
        "headers",
        "http_method",
        "id",
        "template",
        "to",
        "transport",
        "user_id",
        "verified",
    )

    def __init__(self, method: ContactMethod) -> None:
        self.id = method.id
        self.user_id = method.user_id
        self.transport: Transport = method.transport
        self.verified = method.verified
        webhook = method.transport == "webhook"
        self.to = render.webhook_url(method) if webhook else method.value
        self.http_method: WebhookMethod | None = render.webhook_method(method) if webhook else None
        self.headers = _headers(tuple(render.webhook_headers(method).items())) if webhook else None
        self.template = method.webhook_body if webhook else None


@lru_cache(maxsize=4096)
def _headers(items: tuple[tuple[str, str], ...]) -> dict[str, str]:
    # Most webhooks send the same headers: one dict for all of them (jobs are frozen).
    return dict(items)


def _fill(
    fields: dict[str, Any],
    job_id: str,
    method_id: str,
    user_id: str,
    verified: bool,
    to: str,
    now: datetime,
) -> None:
    """The fields every job has, into ``fields``."""
    fields["job_id"] = job_id
    fields["user_id"] = user_id
    fields["contact_method_id"] = method_id
    fields["verified"] = verified
    fields["created_at"] = now
    fields["to"] = to


def _job(job_id: str, target: Target, now: datetime, fields: dict[str, Any]) -> DeliveryJob:
    """The job of ``target``'s transport: ``fields`` (what the event or the digest says,
    and what the transport's renderer made), then the fields every job has. Built
    without validating (:func:`router.routing.encode.shell`): the values come from
    validated models or the renderers; ``tests/unit/test_encode.py`` validates the
    output against the models."""
    model = _MODELS[target.transport]
    out = template(model).copy()
    out.update(fields)
    _fill(out, job_id, target.id, target.user_id, target.verified, target.to, now)
    return shell(model, out)


def _sms(text: str) -> dict[str, Any]:
    return _sms_fields(text, *render.sms_measure(text))


def _sms_fields(text: str, encoding: str, segments: int) -> dict[str, Any]:
    return {"text": text, "encoding": encoding, "segments": segments}


@dataclass(frozen=True)
class Paging:
    """What a job of an escalating page carries besides the event: its step and round
    (1-based) and the page's SMS reply code."""

    step: int = 1
    round: int = 1
    reply_code: str | None = None

    @property
    def escalated(self) -> bool:
        """A later step or round: its sends say ``escalated``."""
        return (self.step, self.round) != (1, 1)


class Rendered:
    """What one event renders to whichever method gets it (its alert key, email subject
    and text, SMS text for a reply ending), each worked out on first need, once per
    event however many methods it goes to."""

    __slots__ = ("_email", "_sms", "alert_key", "event", "fields")

    def __init__(self, event: AlertEvent) -> None:
        self.event = event
        self.alert_key = event.alert_key()
        #: What every job of the event carries from it.
        self.fields: dict[str, Any] = {
            "event_id": event.event_id,
            "kind": event.kind,
            "severity": event.severity,
            "title": event.title,
            "body": event.body,
            "url": event.url,
            "occurred_at": event.occurred_at,
            "alert_key": self.alert_key,
        }
        self._email: tuple[str, str] | None = None
        self._sms: dict[tuple[int, str], dict[str, Any]] = {}

    def email(self) -> tuple[str, str]:
        if self._email is None:
            self._email = (render.email_subject(self.event), render.email_text(self.event))
        return self._email

    def sms(self, max_segments: int, ending: str) -> dict[str, Any]:
        key = (max_segments, ending)
        fields = self._sms.get(key)
        if fields is None:
            measured = render.measured_sms_text(self.event, max_segments, ending)
            fields = self._sms[key] = _sms_fields(*measured)
        return fields


def build_job(
    event: AlertEvent,
    method: ContactMethod,
    now: datetime,
    options: RoutingOptions,
    paging: Paging | None = None,
) -> DeliveryJob:
    """The delivery job for ``method``; its id depends only on the event and the method
    (and, for an escalating page, the step and round: step 1 of round 1 keeps the plain id)."""
    target = Target(method)
    return event_job(
        Rendered(event), target, target.id, target.user_id, target.to, now, options, paging
    )


def event_job(
    rendered: Rendered,
    target: Target,
    method_id: str,
    user_id: str,
    to: str,
    now: datetime,
    options: RoutingOptions,
    paging: Paging | None = None,
) -> DeliveryJob:
    """:func:`build_job` from prepared values, the one builder of an event's job: the
    method's own id, user and address, and ``target`` for the rest (transport, verified,
    a webhook's method, headers, body), which a plain plan shares between methods."""
    event = rendered.event
    job_id = (
        escalation_job_id(event.event_id, method_id, paging.step, paging.round)
        if paging is not None
        else job_id_for(event.event_id, method_id)
    )
    assert event.occurred_at is not None, "decode fills occurred_at"
    links = options.ack_links
    ack_url = links.url(rendered.alert_key, user_id, event.title, now) if links else None
    transport = target.transport
    model = _MODELS[transport]
    fields = template(model).copy()
    fields.update(rendered.fields)
    _fill(fields, job_id, method_id, user_id, target.verified, to, now)
    if paging is not None:
        fields["escalation_step"] = paging.step
        fields["escalation_round"] = paging.round
    if ack_url is not None:
        fields["ack_url"] = ack_url
    if transport == "email":
        subject, text = rendered.email()
        if ack_url is not None:
            text += f"\nAcknowledge: {ack_url}\n"
        fields["subject"] = subject
        fields["text"] = text
    elif transport == "sms":
        code = paging.reply_code if paging is not None else None
        ending = reply_hint(code) if code else ""
        fields.update(rendered.sms(options.sms_max_segments, ending))
        if code:
            fields["reply_code"] = code
    else:
        assert target.http_method is not None
        assert target.headers is not None
        fields["method"] = target.http_method
        fields["headers"] = target.headers
        fields["body"] = render.body_of(
            event,
            user_id,
            target.http_method,
            target.headers,
            target.template,
            job_id=job_id,
            ack_url=ack_url,
        )
    return shell(model, fields)


def text_job(
    event: AlertEvent, method: ContactMethod, now: datetime, text: str, webhook_body: str
) -> DeliveryJob:
    """A job that carries ``text`` as it is instead of a rendered alert (a verification
    code): the email's subject is the event's title, a webhook gets ``webhook_body``
    by POST with the method's headers."""
    job_id = job_id_for(event.event_id, method.id)
    fields: dict[str, Any] = {
        "purpose": "verification",
        "event_id": event.event_id,
        "kind": event.kind,
        "severity": event.severity,
        "title": event.title,
        "body": text,
        "occurred_at": event.occurred_at,
    }
    if method.transport == "email":
        fields.update(subject=event.title, text=text + "\n")
    elif method.transport == "sms":
        fields.update(_sms(text))
    else:
        fields.update(body=webhook_body, method="POST", headers=render.webhook_headers(method))
    return _job(job_id, Target(method), now, fields)


def new_decision(
    *,
    event_id: str,
    user_id: str | None,
    outcome: Outcome,
    decided_at: datetime,
    contact_method_id: str | None = None,
    transport: Transport | None = None,
    reason: Reason | None = None,
    job_id: str | None = None,
    deliver_at: datetime | None = None,
    digest_of: list[str] | None = None,
    failover_of: str | None = None,
    alert_key: str | None = None,
    paging: Paging | None = None,
) -> Decision:
    """A decision as every path publishes it (routing, held delivery, failover).

    Built without validating (:func:`router.routing.encode.shell`), like the jobs: its
    values come from validated models; the tests check the output against the schema."""
    # Key by key into the template's copy: no dict of the values made only to be merged.
    fields = template(Decision).copy()
    fields["event_id"] = event_id
    fields["user_id"] = user_id
    fields["contact_method_id"] = contact_method_id
    fields["transport"] = transport
    fields["outcome"] = outcome
    fields["reason"] = reason
    fields["job_id"] = job_id
    fields["decided_at"] = decided_at
    fields["deliver_at"] = deliver_at
    fields["digest_of"] = digest_of
    fields["failover_of"] = failover_of
    fields["alert_key"] = alert_key
    if paging is not None:
        fields["escalation_step"] = paging.step
        fields["escalation_round"] = paging.round
    return shell(Decision, fields)


def sent_reason(paging: Paging | None) -> Reason | None:
    """The reason a sent decision gives: ``escalated`` on a later step or round of a
    page, else none."""
    return "escalated" if paging is not None and paging.escalated else None


def sent_fields(job: DeliveryJob, decided_at: datetime, paging: Paging | None) -> dict[str, Any]:
    """The fields of the decision that routing sends ``job``, in the model's order:
    :func:`new_decision`'s ``sent`` with the job's event, user, method, transport, id
    and alert key, and the page's step and round. One for every job an event is routed
    to, so written out in one dict (``tests/unit/test_encode.py`` holds it to the model,
    field for field), not the template's copy filled key by key."""
    fields = job.__dict__
    step, round_ = (paging.step, paging.round) if paging is not None else (None, None)
    return {
        "event_id": fields["event_id"],
        "user_id": fields["user_id"],
        "contact_method_id": fields["contact_method_id"],
        "transport": fields["transport"],
        "outcome": "sent",
        "reason": sent_reason(paging),
        "job_id": fields["job_id"],
        "decided_at": decided_at,
        "deliver_at": None,
        "digest_of": None,
        "failover_of": None,
        "alert_key": fields["alert_key"],
        "escalation_step": step,
        "escalation_round": round_,
    }


def sent_decision(job: DeliveryJob, decided_at: datetime, paging: Paging | None) -> Decision:
    """The decision that routing sends ``job`` (:func:`sent_fields`), as a model: for
    the paths that read decisions; the hot path writes it at once (:func:`sent_value`)."""
    return make(Decision, sent_fields(job, decided_at, paging))


def sent_value(job: DeliveryJob, decided_at: datetime, paging: Paging | None) -> bytes:
    """:func:`sent_decision` as JSON bytes, without the model: what the decisions topic
    gets for every job routed."""
    return encode_fields(Decision, sent_fields(job, decided_at, paging))


# -- digests -----------------------------------------------------------------------


def digest_job(
    events: Sequence[AlertEvent], method: ContactMethod, now: datetime, options: RoutingOptions
) -> DeliveryJob:
    """One job carrying ``events`` (oldest first) to ``method``; its id depends only on
    the events and the method, so a re-sent digest is the same job."""
    ids = [e.event_id for e in events]
    job_id = digest_job_id(ids, method.id)
    first = events[0]
    assert first.occurred_at is not None, "decode fills occurred_at"
    fields: dict[str, Any] = {
        "event_id": first.event_id,
        "kind": digest_kind(events),
        "severity": highest(events),
        "title": digest_title(events),
        "body": first.body if len(events) == 1 else None,
        "url": first.url if len(events) == 1 else None,
        "occurred_at": first.occurred_at,
        "digest_of": ids,
        "alert_key": first.alert_key() if len(events) == 1 else None,
    }
    if method.transport == "email":
        subject, text = digest_email(events)
        fields.update(subject=subject, text=text)
    elif method.transport == "sms":
        fields.update(_sms(digest_sms(events, options.sms_max_segments)))
    else:
        fields.update(
            method="POST",
            headers={**render.webhook_headers(method), "Content-Type": "application/json"},
            body=digest_webhook_body(events, method, job_id),
        )
    return _job(job_id, Target(method), now, fields)
