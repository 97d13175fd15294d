"""Delivery jobs: one per chosen contact method, on the transport's topic.

The Kafka key of every job is its ``contact_method_id``, so all jobs for one
address stay in order on one partition.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.alert import Kind, Severity

Transport = Literal["email", "sms", "webhook"]
WebhookMethod = Literal["GET", "POST", "PUT", "HEAD", "DELETE"]

# A fixed namespace, so job ids are the same on every pod and every redelivery.
_JOB_NAMESPACE = uuid.UUID("6f1c2a7e-1d0b-4f5e-9a43-2b8f3c9d7e10")


#: The namespace's SHA-1, copied for every job id: the namespace is hashed once, and a
#: copy skips the digest's set-up, which a new hash object pays each time.
_NAMESPACE_SHA1 = hashlib.sha1(_JOB_NAMESPACE.bytes, usedforsecurity=False)
#: RFC 4122's variant in a UUID's 17th hex digit: its two high bits 10.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def job_id_for(event_id: str, contact_method_id: str) -> str:
    """The job id for an event and a contact method; the same inputs always give the same id.

    ``str(uuid.uuid5(namespace, f"{event_id}\x1f{contact_method_id}"))``, written from the
    SHA-1's hex digits without the ``UUID`` object (a job is made for every method of
    every event): the version digit is ``5``, the variant digit one of ``89ab``."""
    digest = _NAMESPACE_SHA1.copy()
    digest.update(f"{event_id}\x1f{contact_method_id}".encode())
    h = digest.hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def escalation_job_id(event_id: str, contact_method_id: str, step: int, round_: int) -> str:
    """The id of a job of an escalating page: step 1 of round 1 keeps :func:`job_id_for`'s id;
    every later step and round has its own, the same on every worker and every retry."""
    if (step, round_) == (1, 1):
        return job_id_for(event_id, contact_method_id)
    key = json.dumps(["escalation", event_id, contact_method_id, step, round_])
    return str(uuid.uuid5(_JOB_NAMESPACE, key))


def digest_job_id(event_ids: list[str], contact_method_id: str) -> str:
    """The id of a digest (or bundle) job: the same events for the same method always give
    the same id, so a digest re-sent after a crash is recognised as the same job.

    The uuid5 input is a JSON array, which no event id can forge: with a separator
    character (U+001F) instead, ``x<U+001F>y`` alone and ``x`` with ``y`` gave the same id.
    """
    key = json.dumps(["digest", contact_method_id, *sorted(event_ids)])
    return str(uuid.uuid5(_JOB_NAMESPACE, key))


class _JobBase(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    purpose: Literal["alert", "verification"] = Field(
        default="alert", description="verification: a code for the user to confirm the method."
    )
    job_id: str = Field(
        description="uuid5 of event_id and contact_method_id: stable across "
        "redeliveries, so workers can de-duplicate on it."
    )
    event_id: str
    user_id: str
    contact_method_id: str
    to: str = Field(description="Email address, E.164 phone number, or URL.")
    kind: Kind
    severity: Severity
    title: str
    body: str | None = None
    url: str | None = None
    verified: bool = Field(
        description="Whether the contact method is verified. Unverified "
        "methods still receive jobs unless the router requires verification."
    )
    occurred_at: AwareDatetime
    created_at: AwareDatetime
    digest_of: list[str] | None = Field(
        default=None,
        description="A digest or bundle of held pages: the event ids it carries, oldest first "
        "(event_id is the first of them, title and text summarise them all).",
    )
    alert_key: str | None = Field(
        default=None,
        description="The alert this job pages for: the event's dedup_key, else its event_id.",
    )
    escalation_step: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="For a page of an escalation policy: the step (1-based)."
    )
    escalation_round: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="For a page of an escalation policy: the round (1-based)."
    )
    ack_url: str | None = Field(
        default=None,
        description="A signed link that acknowledges the page (GET shows it, POST acknowledges); "
        "set when the router has ROUTER_ACK_BASE_URL and ROUTER_ACK_SECRET.",
    )


class EmailJob(_JobBase):
    """An email to send."""

    model_config = ConfigDict(title="EmailJob")

    transport: Literal["email"] = "email"
    subject: str
    text: str = Field(description="Plain-text message body, ready to send.")


class SmsJob(_JobBase):
    """A text message to send."""

    model_config = ConfigDict(title="SmsJob")

    transport: Literal["sms"] = "sms"
    text: str = Field(description="Ready to send; fits in `segments` SMS segments.")
    encoding: Literal["GSM-7", "UCS-2"]
    segments: Annotated[int, Field(ge=1)]
    reply_code: str | None = Field(
        default=None,
        description="For an open page: reply '<code>A' to acknowledge, '<code>R' to resolve "
        "(the text ends with that instruction).",
    )


class WebhookJob(_JobBase):
    """An HTTP request to make. ``body`` here is the HTTP request body to send."""

    model_config = ConfigDict(title="WebhookJob")

    transport: Literal["webhook"] = "webhook"
    method: WebhookMethod
    headers: dict[str, str]
    body: str | None = Field(
        default=None,
        description="HTTP request body (null for GET, HEAD and DELETE). By default the JSON "
        "rendering of the alert; a contact method may give its own template.",
    )


DeliveryJob = EmailJob | SmsJob | WebhookJob
