"""What one routed event is published and written as: its jobs' and decisions' records,
and its page trail's rows. Pure: the handler publishes the records and writes the trail
with the batch's ledger."""

from __future__ import annotations

from datetime import datetime

from router.delivery.trail import Trail, job_row, sent_trail_value, trail_value
from router.kafka.publish import Outgoing
from router.kafka.records import event_headers, job_record, written_decision
from router.routing.build import sent_value
from router.routing.dlq import SourceRecord
from router.routing.encode import encode
from router.routing.pipeline import Routed
from router.settings import Settings
from schemas import Decision


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
    decided_at, paging = routed.decided_at, routed.paging
    for entry in routed.outcomes:
        if isinstance(entry, Decision):
            value = encode(entry)
            # The trail keeps a decision as published, a plain sent one as its job id.
            decided.append(trail_value(entry, value))
        else:  # a job routed: its sent decision, written without the model
            assert decided_at is not None, "finish() sets it with the jobs"
            value = sent_value(entry, decided_at, paging)
            # A step of a page says its step (and maybe why): kept whole in the trail.
            decided.append(sent_trail_value(entry.job_id, value, paging is not None))
        messages.append(written_decision(settings, value, index, (*origin, len(messages)), headers))
    trail.jobs.extend(job_row(job) for job in routed.jobs)
    # The event as it came (it decoded, so it is JSON text) and its decisions as
    # already serialized for Kafka: one row, nothing serialized twice.
    raw = record.value or routed.event.model_dump_json().encode()
    trail.events.append((event_id, raw, b"[" + b",".join(decided) + b"]", now))
    return messages
