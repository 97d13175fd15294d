"""Wire schemas: what upstream publishes, what delivery workers and auditors read.

These models are the contract between the router and everything around it.
They tolerate unknown fields (so producers can evolve ahead of the router) and
refuse wrong types. ``python -m schemas.export`` writes their JSON Schema to
``schemas/json/``; a test fails when those files fall behind the models.
"""

from schemas.alert import SEVERITY_RANK, AlertEvent, Kind, Severity
from schemas.contact_event import ContactEvent
from schemas.decision import REASONS, Decision, Outcome, Reason
from schemas.jobs import (
    DeliveryJob,
    EmailJob,
    SmsJob,
    Transport,
    WebhookJob,
    WebhookMethod,
    digest_job_id,
    escalation_job_id,
    job_id_for,
)
from schemas.pages import AckAction, InboundSms, PageAck
from schemas.status import FAILURES, DeliveryStatus, Status

__all__ = [
    "FAILURES",
    "REASONS",
    "SEVERITY_RANK",
    "AckAction",
    "AlertEvent",
    "ContactEvent",
    "Decision",
    "DeliveryJob",
    "DeliveryStatus",
    "EmailJob",
    "InboundSms",
    "Kind",
    "Outcome",
    "PageAck",
    "Reason",
    "Severity",
    "SmsJob",
    "Status",
    "Transport",
    "WebhookJob",
    "WebhookMethod",
    "digest_job_id",
    "escalation_job_id",
    "job_id_for",
]
