"""Retry and isolation for a batch handler: a batch that fails for an outage is
retried whole (backing off, probing the dependency that failed); one that fails
for anything else is handled record by record, and a record that still fails is
dead-lettered alone as ``routing_failed``. Publishing observes every
acknowledgement, so a retry never re-sends what the broker took, and output the
broker refuses for good sends only its own record to the DLQ."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import structlog
from aiokafka.errors import KafkaError

from router import metrics
from router.db.store import Store
from router.errors import StoreUnavailable
from router.kafka.publish import Headers, Identity, Outgoing, Publisher, deliver
from router.routing.decode import Rejection
from router.routing.dlq import DeadLetter, SourceRecord, cut, dead_letter, fit
from router.settings import Settings

log = structlog.get_logger("router.handler")

T = TypeVar("T")

RecordKey = tuple[str, int, int]  # (topic, partition, offset)


def log_rejection(event: str, record: SourceRecord, rejection: Rejection) -> None:
    """One warning line for a record refused as ``rejection``."""
    log.warning(
        event,
        reason=rejection.reason,
        detail=rejection.message,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
    )


def _log_refusal(record: SourceRecord, error: BaseException) -> None:
    log.error(
        "output_refused",
        error=str(error),
        error_class=type(error).__name__,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        hint="the broker will never take this output as it is; the record goes to the DLQ "
        "and the rest of its batch carries on",
    )


def _text(headers: Headers) -> dict[str, str]:
    """A letter's headers as the text they were made from."""
    return {name: value.decode() for name, value in headers}


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` says a dependency is unreachable now (retry the batch), rather
    than that something about the records cannot work (decide per record)."""
    return isinstance(error, StoreUnavailable | KafkaError | ConnectionError | TimeoutError)


class RetryingHandler:
    """What every batch handler of the worker shares: retry, isolation, publishing."""

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        settings: Settings,
        broker_probe: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._settings = settings
        self._broker_probe = broker_probe
        self._failures = 0
        # Messages the broker acknowledged in a failed attempt at a batch: a retry
        # does not send them again. Forgotten when the batch succeeds.
        self._acked: set[Identity] = set()
        # What each record of a failed batch became: a retry publishes the same
        # (see routing.handler). Forgotten when the batch succeeds.
        self._settled: dict[RecordKey, Any] = {}
        # Failed batches being handled record by record (_isolate), by any stream:
        # while there is one, what each attempt publishes and settles is remembered
        # even when it succeeds, for a later record's outage makes its batch start
        # again from its first record. (Another stream's attempt remembered meanwhile
        # is forgotten when its own batch is done.)
        self._isolating = 0

    async def _retrying(
        self,
        handler: Callable[[Sequence[SourceRecord]], Awaitable[T]],
        records: Sequence[SourceRecord],
        merge: Callable[[list[T]], T],
        one_by_one: Callable[[Sequence[SourceRecord]], Awaitable[T]] | None = None,
    ) -> T:
        """``handler(records)``, retried through outages; on any other failure the records
        one at a time through ``one_by_one`` (default: ``handler``)."""
        metrics.BATCH_SIZE.observe(len(records))
        try:
            with metrics.BATCH_SECONDS.time():
                result = await handler(records)
        except Exception as error:
            outage = is_outage(error)
            metrics.FAILED_BATCHES.labels(str(outage).lower()).inc()
            if not outage:
                # Not the world but the data (or a bug meeting it): retrying the
                # batch would fail the same way forever. Decide per record.
                return await self._isolate(one_by_one or handler, records, merge, error)
            self._failures += 1
            delay = min(self._settings.retry_backoff_max_seconds, 0.5 * 2 ** (self._failures - 1))
            log.error(
                "batch_failed",
                exc_info=not outage,  # a stack trace helps with bugs, not with outages
                error=str(error),
                error_class=type(error).__name__,
                retryable=outage,
                records=len(records),
                retry_in_seconds=delay,
                consecutive_failures=self._failures,
            )
            await self._back_off(error if outage else None, delay)
            raise
        self._failures = 0
        self._forget(records)
        return result

    async def _isolate(
        self,
        handler: Callable[[Sequence[SourceRecord]], Awaitable[T]],
        records: Sequence[SourceRecord],
        merge: Callable[[list[T]], T],
        error: Exception,
    ) -> T:
        """Handle ``records`` one at a time; one that still fails (not by an outage) is
        dead-lettered as ``routing_failed`` and the others go on."""
        log.error(
            "batch_failed",
            exc_info=error,
            error=str(error),
            error_class=type(error).__name__,
            retryable=False,
            records=len(records),
            next_step="handling the batch's records one by one",
        )
        results: list[T] = []
        self._isolating += 1
        try:
            for record in records:
                try:
                    results.append(await handler([record]))
                except Exception as own:
                    if is_outage(own):
                        raise  # the batch is retried as a whole, from its first offset
                    failure = Rejection("routing_failed", type(own).__name__, str(own))
                    log_rejection("record_failed", record, failure)
                    letter = dead_letter(record, failure)
                    await self._publish([record], self._letter_messages(0, record, letter))
        finally:
            self._isolating -= 1
        self._failures = 0
        self._forget(records)
        return merge(results)

    def _forget(self, records: Sequence[SourceRecord]) -> None:
        """Drop what failed attempts remembered about ``records``, now done, and about
        anything before them on their partitions (committed with them, or moved to
        another worker and back). Other streams' batches keep theirs."""
        if not self._acked and not self._settled:
            return  # the common case: no attempt failed
        last: dict[tuple[str, int], int] = {}
        for record in records:
            where = (record.topic, record.partition)
            last[where] = max(last.get(where, record.offset), record.offset)

        # Thousands of identities a batch: one comprehension, no call for each; in place,
        # as another stream's delivery in flight may be adding to the same set.
        self._acked -= {i for i in self._acked if i[2] <= last.get((i[0], i[1]), -1)}
        for key in [k for k in self._settled if k[2] <= last.get((k[0], k[1]), -1)]:
            del self._settled[key]

    async def _back_off(self, outage: BaseException | None, delay: float) -> None:
        """Wait ``delay`` seconds, or less: during an outage, probe the dependency that
        failed on a short period and return as soon as it answers.

        The backoff protects a struggling dependency from whole batches; a probe
        is one cheap round trip, so a pager is not kept waiting once it is back.
        """
        probe: Callable[[], Awaitable[bool]] | None = None
        name = ""
        if isinstance(outage, StoreUnavailable):
            probe, name = self._store.ping, "database"
        elif outage is not None and self._broker_probe is not None:
            probe, name = self._broker_probe, "broker"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(min(remaining, self._settings.recovery_probe_seconds))
            if probe is not None and loop.time() < deadline and await probe():
                log.info("dependency_answers", dependency=name, retrying_now=True)
                return

    async def _publish(self, records: Sequence[SourceRecord], outgoing: list[Outgoing]) -> set[int]:
        """Publish ``outgoing``; the indexes of records whose output the broker refused.

        A refused record ends in the DLQ on its own (its dead letter cut further
        if even that is refused); an outage raises, after every acknowledgement
        was observed, so the batch is retried without what was acknowledged.
        """
        delivery = await deliver(self._publisher, outgoing, self._acked, keep=self._isolating > 0)
        refused = set(delivery.refused)
        letters = {m.origin: m for m in outgoing if m.topic == self._settings.topic_dlq}
        pending = delivery.refused
        # Each round keeps less of the original value: what fits a request,
        # a 1 KiB sample, nothing. A DLQ that refuses even that is an outage.
        for keep in (1024, 0):
            if not pending or delivery.outage is not None:
                break
            retry: list[Outgoing] = []
            for index, error in pending.items():
                record = records[index]
                _log_refusal(record, error)
                previous = letters.get(index)
                letter = (
                    DeadLetter(previous.key, previous.value, _text(previous.headers))
                    if previous is not None
                    else fit(
                        dead_letter(
                            record,
                            Rejection("publish_refused", type(error).__name__, str(error)),
                        ),
                        self._settings.kafka_max_request_bytes,
                    )
                )
                if previous is not None:
                    letter = cut(letter, keep, f"refused by the broker: {type(error).__name__}")
                retry += self._letter_messages(index, record, letter, attempt=keep + 1)
            letters.update({m.origin: m for m in retry})
            # A batch with refusals kept what its first round delivered (deliver): its
            # letters are kept too, so nothing of it is sent twice should it go on to
            # fail after all (a later round's outage, a bug after the acks).
            round_result = await deliver(self._publisher, retry, self._acked, keep=True)
            pending, delivery.outage = round_result.refused, round_result.outage
        if delivery.outage is not None:
            raise delivery.outage
        if pending:
            raise next(iter(pending.values()))
        for message in letters.values():  # this attempt succeeded: count its letters once
            metrics.DEAD_LETTERS.labels(_text(message.headers).get("router.dlq.reason", "")).inc()
        return refused

    def _letter_messages(
        self, index: int, record: SourceRecord, letter: DeadLetter, attempt: int = 0
    ) -> list[Outgoing]:
        letter = fit(letter, self._settings.kafka_max_request_bytes)
        identity = (record.topic, record.partition, record.offset, -1 - attempt)
        return [
            Outgoing(
                self._settings.topic_dlq,
                letter.value,
                letter.key,
                [(name, value.encode()) for name, value in letter.headers.items()],
                index,
                identity,
            )
        ]
