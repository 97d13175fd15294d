"""What comes back to the router besides alerts: opt-outs and opt-ins on
``contacts.events`` and delivery statuses on ``deliveries.status`` (recorded on
the page trail; a failure for good fails the page over). Each batch is retried
and isolated like the alerts' (:class:`router.routing.retry.RetryingHandler`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import structlog

from router.delivery.edge import FailOver
from router.delivery.statuses import UNKNOWN_JOB_WAIT_SECONDS, record_statuses
from router.delivery.trail import JobRow
from router.kafka.publish import Outgoing
from router.routing.decode import Rejection, decode_contact_event, decode_status
from router.routing.dlq import SourceRecord, dead_letter
from router.routing.retry import RetryingHandler, log_rejection
from schemas import DeliveryStatus

log = structlog.get_logger("router.handler")


class Feedback(RetryingHandler):
    """Contact events and delivery statuses; :class:`router.routing.handler.Worker`
    sets the clock, the failover step, the audit actor and ``recorded`` (the wait for
    the ledgers being written)."""

    _clock: Callable[[], datetime]
    _fail_over: FailOver
    _contact_events_actor: str
    recorded: Callable[[], Awaitable[None]]
    #: How long statuses naming jobs not on the trail wait for them, once.
    unknown_job_wait: float = UNKNOWN_JOB_WAIT_SECONDS

    async def handle_contact_events(self, records: Sequence[SourceRecord]) -> int:
        """Apply opt-out/opt-in messages (bad ones go to the DLQ); returns how many applied."""
        return await self._retrying(self._handle_contact_events, records, sum)

    async def _handle_contact_events(self, records: Sequence[SourceRecord]) -> int:
        applied = 0
        outgoing: list[Outgoing] = []
        for index, record in enumerate(records):
            item = decode_contact_event(record.value, max_bytes=self._settings.max_event_bytes)
            if isinstance(item, Rejection):
                log_rejection("contact_event_rejected", record, item)
                outgoing += self._letter_messages(index, record, dead_letter(record, item))
                continue
            if item.type == "opt_out":
                await self._store.add_opt_out(
                    item.transport, item.address, "topic", self._contact_events_actor
                )
            else:
                await self._store.remove_opt_out(
                    item.transport, item.address, self._contact_events_actor
                )
            applied += 1
            log.info(f"{item.type}_applied", transport=item.transport, address=item.address)
        await self._publish(records, outgoing)
        return applied

    async def handle_statuses(self, records: Sequence[SourceRecord]) -> int:
        """Record delivery statuses; act on failures (failover, opt-out). Returns how many
        were new (a redelivered status changes nothing twice)."""
        return await self._retrying(self._handle_statuses, records, sum)

    async def _handle_statuses(self, records: Sequence[SourceRecord]) -> int:
        now = self._clock()
        outgoing: list[Outgoing] = []
        statuses: list[DeliveryStatus] = []
        for index, record in enumerate(records):
            item = decode_status(record.value, max_bytes=self._settings.max_event_bytes)
            if isinstance(item, Rejection):
                log_rejection("status_rejected", record, item)
                outgoing += self._letter_messages(index, record, dead_letter(record, item))
            else:
                statuses.append(item)
        actor = f"kafka:{self._settings.topic_status}"
        # A status can come back before this worker has written its job to the trail
        # (the ledger is written while the next batch is routed): wait for it.
        await self.recorded()
        new = await record_statuses(
            self._store, statuses, now, self.fail_over, actor, self.unknown_job_wait
        )
        await self._publish(records, outgoing)
        return new

    async def fail_over(self, failed: Sequence[JobRow], now: datetime) -> None:
        """Each failed job's pages take their next step (see :class:`FailOver`)."""
        await self._fail_over(failed, now)
