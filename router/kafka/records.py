"""Jobs and decisions as the records the router publishes: one builder for every
path (routing, held digests, failover), so topic, key and headers cannot drift.

- A job goes to its transport's topic, keyed by ``contact_method_id``, with
  headers ``router.event_id`` and ``router.job_id``.
- A decision goes to the decisions topic, keyed by ``event_id``, with header
  ``router.event_id``.
"""

from __future__ import annotations

from collections.abc import Sequence

from router.errors import PublishFailed
from router.kafka.publish import Headers, Identity, Outgoing, Publisher, deliver
from router.routing.encode import encode
from router.settings import Settings
from schemas import Decision, EmailJob, SmsJob, WebhookJob

Job = EmailJob | SmsJob | WebhookJob

#: Builds an :class:`Outgoing` from a tuple of its fields in order, without the named
#: tuple's ``__new__`` (a Python function): a third of a microsecond each, six an event.
_outgoing = tuple.__new__


def job_record(
    settings: Settings, job: Job, origin: int, identity: Identity, event_key: bytes | None = None
) -> Outgoing:
    """``job`` as the record delivery workers read; ``event_key``: its event id as bytes,
    when the caller has it (an event's records share it)."""
    return _outgoing(
        Outgoing,
        (
            settings.delivery_topic(job.transport),
            encode(job),
            job.contact_method_id.encode(),
            [
                ("router.event_id", event_key or job.event_id.encode()),
                ("router.job_id", job.job_id.encode()),
            ],
            origin,
            identity,
        ),
    )


def event_headers(event_key: bytes) -> Headers:
    """A decision record's headers, for its event id as bytes: one list for every
    decision about the event (records are read, never changed)."""
    return [("router.event_id", event_key)]


def decision_record(
    settings: Settings, decision: Decision, origin: int, identity: Identity
) -> Outgoing:
    """``decision`` as its record on the decisions topic."""
    value = encode(decision)
    return written_decision(
        settings, value, origin, identity, event_headers(decision.event_id.encode())
    )


def written_decision(
    settings: Settings, value: bytes, origin: int, identity: Identity, headers: Headers
) -> Outgoing:
    """A decision already written as ``value`` (the routing path keeps the JSON for the
    trail too, and writes a sent decision without its model) as its record, ``headers``
    its event's (:func:`event_headers`), which carry its key."""
    return _outgoing(
        Outgoing, (settings.topic_decisions, value, headers[0][1], headers, origin, identity)
    )


async def publish_round(
    publisher: Publisher,
    settings: Settings,
    origin: str,
    jobs: Sequence[EmailJob | SmsJob | WebhookJob],
    decisions: Sequence[Decision],
    refused: str,
) -> None:
    """Publish a round's jobs, then its decisions (held digests, escalation steps:
    ``origin`` names the round), and wait for every acknowledgement; else raise
    :class:`PublishFailed` with ``refused`` (``{failure}`` in it says what stopped it)."""
    messages = [
        *(job_record(settings, j, 0, (origin, 0, 0, n)) for n, j in enumerate(jobs)),
        *(
            decision_record(settings, d, 0, (origin, 0, 0, len(jobs) + n))
            for n, d in enumerate(decisions)
        ),
    ]
    if not messages:
        return
    delivery = await deliver(publisher, messages, set())
    failure = delivery.outage or next(iter(delivery.refused.values()), None)
    if failure is not None:
        raise PublishFailed(refused.format(failure=failure)) from failure
