"""What one routed event is published and written as: its jobs' and decisions' records,
and its page trail's rows. Pure: the handler publishes the records and writes the trail
with the batch's ledger."""

from __future__ import annotations

from datetime import datetime

from router.delivery.trail import Trail, job_row, trail_value
from router.kafka.publish import Outgoing
from router.kafka.records import decision_record, event_headers, job_record
from router.routing.dlq import SourceRecord
from router.routing.encode import encode
from router.routing.pipeline import Routed
from router.settings import Settings


def routed_messages(
    settings: Settings,
    index: int,
    record: SourceRecord,
    routed: Routed,
    trail: Trail,
    now: datetime,
) -> list[Outgoing]:
    """The messages to publish for ``routed``, the event of the batch's record ``index``;
    its page trail into ``trail``, routed at ``now``."""
    event_id = routed.event.event_id
    event_key = event_id.encode()
    headers = event_headers(event_key)
    origin = (record.topic, record.partition, record.offset)
    messages = [
        job_record(settings, job, index, (*origin, n), event_key)
        for n, job in enumerate(routed.jobs)
    ]
    decided: list[bytes] = []
    for decision in routed.decisions:
        value = encode(decision)
        # A plain sent decision is its job's row read again: the trail keeps its job
        # id (router.delivery.trail.story makes it whole), the rest as published.
        decided.append(trail_value(decision, value))
        messages.append(
            decision_record(settings, decision, index, (*origin, len(messages)), value, headers)
        )
    trail.jobs.extend(job_row(job) for job in routed.jobs)
    # The event as it came (it decoded, so it is JSON text) and its decisions as
    # already serialized for Kafka: one row, nothing serialized twice.
    raw = record.value or routed.event.model_dump_json().encode()
    trail.events.append((event_id, raw, b"[" + b",".join(decided) + b"]", now))
    return messages
