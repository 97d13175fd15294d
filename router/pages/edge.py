"""The Kafka batches of ``pages.acks`` and ``deliveries.replies``.

Each batch is decoded (a record that does not read goes, unchanged, to the DLQ
like any other), applied in one transaction, then committed: a redelivered
acknowledgement changes nothing twice (:func:`router.pages.escalation.answer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from router.db.store import PgStore
from router.kafka.publish import Outgoing, Publisher
from router.pages.desk import apply_acks, read_replies
from router.routing.decode import Rejection, parse
from router.routing.dlq import SourceRecord, dead_letter
from router.routing.retry import RetryingHandler, log_rejection
from router.settings import Settings
from schemas import InboundSms, PageAck

M = TypeVar("M", PageAck, InboundSms)


class PagesDesk(RetryingHandler):
    """Applies acknowledgements and SMS replies; one per process."""

    def __init__(self, store: PgStore, publisher: Publisher, settings: Settings) -> None:
        super().__init__(store, publisher, settings)
        self._pages = store
        self._reply_actor = f"kafka:{settings.topic_replies}"

    async def handle_acks(self, records: Sequence[SourceRecord]) -> int:
        """Apply a batch of :class:`PageAck`; how many changed a page."""
        return await self._retrying(self._handle_acks, records, sum)

    async def handle_replies(self, records: Sequence[SourceRecord]) -> int:
        """Apply a batch of :class:`InboundSms`; how many answered a page."""
        return await self._retrying(self._handle_replies, records, sum)

    async def _handle_acks(self, records: Sequence[SourceRecord]) -> int:
        acks, outgoing = self._decode(records, PageAck, "ack_rejected")
        answered = await apply_acks(self._pages, acks) if acks else []
        await self._publish(records, outgoing)
        return len(answered)

    async def _handle_replies(self, records: Sequence[SourceRecord]) -> int:
        replies, outgoing = self._decode(records, InboundSms, "reply_rejected")
        acks = await read_replies(self._pages, replies, self._reply_actor)
        answered = await apply_acks(self._pages, acks) if acks else []
        await self._publish(records, outgoing)
        return len(answered)

    def _decode(
        self, records: Sequence[SourceRecord], model: type[M], event: str
    ) -> tuple[list[M], list[Outgoing]]:
        items: list[M] = []
        outgoing: list[Outgoing] = []
        for index, record in enumerate(records):
            item = parse(record.value, model, max_bytes=self._settings.max_event_bytes)
            if isinstance(item, Rejection):
                log_rejection(event, record, item)
                outgoing += self._letter_messages(index, record, dead_letter(record, item))
            else:
                items.append(item)
        return items, outgoing
