"""The Kafka edge: a batch of records in, jobs, decisions and dead letters out.

The handler holds no business logic. It decodes every record, reads the
directory once for the whole batch, runs the pure pipeline per event, and
publishes everything at once. It returns only when the broker has acknowledged
every message of the batch; the caller commits offsets after that, so an event
is never acknowledged before its output is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from router.decode import Rejection, decode
from router.dlq import DeadLetter, SourceRecord, dead_letter
from router.errors import StoreUnavailable
from router.pipeline import Routed, RoutingOptions, route
from router.settings import Settings
from router.store import Store
from schemas import AlertEvent

log = structlog.get_logger("router.handler")


class Publisher(Protocol):
    """Sends one message; returns something to await for the broker's acknowledgement."""

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, headers: dict[str, str]
    ) -> Awaitable[Any] | None: ...


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass
class BatchResult:
    """What one batch produced, for logs and tests."""

    events: int = 0
    rejected: int = 0
    jobs: int = 0
    decisions: int = 0
    routed: list[Routed] = field(default_factory=list)


class Worker:
    """Routes batches of alert records. One per process; shared by nothing else."""

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        settings: Settings,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._settings = settings
        self._clock = clock
        self._options = RoutingOptions(sms_max_segments=settings.sms_max_segments)
        self._failures = 0

    async def handle(self, records: Sequence[SourceRecord]) -> BatchResult:
        """Route ``records``; on a retryable failure, wait (backing off) and re-raise.

        Re-raising makes the consumer rewind to the batch's first offsets, so the
        same records are tried again; job ids are deterministic, so a retry that
        re-publishes produces the same jobs.
        """
        try:
            result = await self._handle(records)
        except Exception as error:
            self._failures += 1
            delay = min(self._settings.retry_backoff_max_seconds, 0.5 * 2 ** (self._failures - 1))
            log.error(
                "batch_failed",
                error=str(error),
                error_class=type(error).__name__,
                retryable=isinstance(error, StoreUnavailable),
                records=len(records),
                retry_in_seconds=delay,
                consecutive_failures=self._failures,
            )
            await asyncio.sleep(delay)
            raise
        self._failures = 0
        return result

    async def _handle(self, records: Sequence[SourceRecord]) -> BatchResult:
        started = time.perf_counter()
        received_at = self._clock()
        decoded: list[tuple[SourceRecord, AlertEvent | Rejection]] = [
            (r, decode(r.value, max_bytes=self._settings.max_event_bytes, received_at=received_at))
            for r in records
        ]
        events = [item for _, item in decoded if isinstance(item, AlertEvent)]
        user_ids = {uid for event in events for uid in event.recipients()}
        directory = await self._store.directory_for(user_ids)
        now = self._clock()

        result = BatchResult()
        pending: list[Awaitable[Any]] = []
        for record, item in decoded:
            if isinstance(item, Rejection):
                result.rejected += 1
                log.warning(
                    "event_rejected",
                    reason=item.reason,
                    detail=item.message,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                )
                pending += await self._send_dead_letter(dead_letter(record, item))
                continue
            with structlog.contextvars.bound_contextvars(event_id=item.event_id):
                try:
                    routed = route(item, directory, now, self._options)
                except Exception as error:  # a bug must not block the partition: keep the event
                    log.exception("routing_failed")
                    failure = Rejection("routing_failed", type(error).__name__, str(error))
                    pending += await self._send_dead_letter(dead_letter(record, failure))
                    result.rejected += 1
                    continue
            result.events += 1
            result.routed.append(routed)
            pending += await self._send_routed(routed)

        # The batch is done only when the broker has every message.
        for ack in asyncio.as_completed(pending):
            await ack
        for routed in result.routed:
            result.jobs += len(routed.jobs)
            result.decisions += len(routed.decisions)
            structlog.contextvars.bind_contextvars(event_id=routed.event.event_id)
            log.info(
                "event_routed",
                kind=routed.event.kind,
                severity=routed.event.severity,
                jobs=len(routed.jobs),
                skipped=sum(d.outcome == "skipped" for d in routed.decisions),
                reasons=sorted({d.reason for d in routed.decisions if d.reason}),
            )
        structlog.contextvars.unbind_contextvars("event_id")
        log.debug(
            "batch_done",
            records=len(records),
            events=result.events,
            rejected=result.rejected,
            jobs=result.jobs,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return result

    async def _send(
        self, topic: str, value: bytes, key: bytes | None, headers: dict[str, str]
    ) -> list[Awaitable[Any]]:
        ack = await self._publisher.send(topic, value, key=key, headers=headers)
        return [] if ack is None else [ack]

    async def _send_dead_letter(self, letter: DeadLetter) -> list[Awaitable[Any]]:
        return await self._send(self._settings.topic_dlq, letter.value, letter.key, letter.headers)

    async def _send_routed(self, routed: Routed) -> list[Awaitable[Any]]:
        acks: list[Awaitable[Any]] = []
        event_id = routed.event.event_id
        for job in routed.jobs:
            acks += await self._send(
                self._settings.delivery_topic(job.transport),
                job.model_dump_json().encode(),
                job.contact_method_id.encode(),
                {"router.event_id": event_id, "router.job_id": job.job_id},
            )
        for decision in routed.decisions:
            acks += await self._send(
                self._settings.topic_decisions,
                decision.model_dump_json().encode(),
                event_id.encode(),
                {"router.event_id": event_id},
            )
        return acks
