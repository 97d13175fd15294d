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
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import structlog
from aiokafka.errors import KafkaError

from router import metrics
from router.db.store import Store
from router.delivery.failover import next_step
from router.delivery.trail import JobRow, Trail, job_row, status_row
from router.directory.models import Directory
from router.errors import StoreUnavailable
from router.held.digest import HeldPage
from router.kafka.publish import Identity, Outgoing, Publisher, deliver
from router.routing.decode import Rejection, decode, decode_contact_event, decode_status
from router.routing.dlq import DeadLetter, SourceRecord, cut, dead_letter, fit
from router.routing.pipeline import Planned, Routed, RoutingOptions, duplicate, finish, plan, sends
from router.routing.rules import RateDecision
from router.settings import Settings
from schemas import FAILURES, AlertEvent, DeliveryStatus

log = structlog.get_logger("router.handler")

T = TypeVar("T")


def _log_rejection(event: str, record: SourceRecord, rejection: Rejection) -> None:
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


def _is_outage(error: BaseException) -> bool:
    """Whether ``error`` says a dependency is unreachable now (retry the batch), rather
    than that something about the records cannot work (decide per record)."""
    return isinstance(error, StoreUnavailable | KafkaError | ConnectionError | TimeoutError)


def _merge_results(results: list[BatchResult]) -> BatchResult:
    merged = BatchResult()
    for result in results:
        merged.events += result.events
        merged.rejected += result.rejected
        merged.jobs += result.jobs
        merged.decisions += result.decisions
        merged.routed += result.routed
    return merged


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


RecordKey = tuple[str, int, int]  # (topic, partition, offset)


def _key(record: SourceRecord) -> RecordKey:
    return (record.topic, record.partition, record.offset)


@dataclass(frozen=True)
class Settled:
    """What one consumed alert record becomes, fixed by the first attempt at it: its
    plan (the rate limits still to apply), or its final outcome; and that attempt's clock."""

    outcome: Planned | Routed | DeadLetter
    now: datetime


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
        broker_probe: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._store = store
        self._broker_probe = broker_probe
        self._publisher = publisher
        self._settings = settings
        # The audit log's actors for opt-outs that arrive on a topic.
        self._contact_events_actor = f"kafka:{settings.topic_contact_events}"
        self._status_actor = f"kafka:{settings.topic_status}"
        self._clock = clock
        self._options = RoutingOptions(
            sms_max_segments=settings.sms_max_segments,
            require_verified=settings.require_verified,
            target_policy=settings.target_policy(),
        )
        self._limits = settings.rate_limits()
        self._failures = 0
        # Messages the broker acknowledged in a failed attempt at a batch: a retry
        # does not send them again. Forgotten when the batch succeeds.
        self._acked: set[Identity] = set()
        # What each record of a failed batch became: a retry publishes the same
        # (see _settle). Forgotten when the batch succeeds.
        self._settled: dict[RecordKey, Settled] = {}

    async def handle(self, records: Sequence[SourceRecord]) -> BatchResult:
        """Route a batch of alert records; on failure, wait (backing off) and re-raise.

        Re-raising makes the consumer rewind to the batch's first offsets, so the
        same records are tried again. This worker's retry publishes what its first
        attempt decided (see ``_settle``) less what the broker acknowledged; job ids
        are deterministic, so a batch re-routed elsewhere (after a crash) produces
        the same jobs.
        """
        return await self._retrying(self._handle, records, _merge_results)

    async def handle_contact_events(self, records: Sequence[SourceRecord]) -> int:
        """Apply opt-out/opt-in messages (bad ones go to the DLQ); returns how many applied."""
        return await self._retrying(self._handle_contact_events, records, sum)

    async def _retrying(
        self,
        handler: Callable[[Sequence[SourceRecord]], Awaitable[T]],
        records: Sequence[SourceRecord],
        merge: Callable[[list[T]], T],
    ) -> T:
        metrics.BATCH_SIZE.observe(len(records))
        try:
            with metrics.BATCH_SECONDS.time():
                result = await handler(records)
        except Exception as error:
            outage = _is_outage(error)
            metrics.FAILED_BATCHES.labels(str(outage).lower()).inc()
            if not outage:
                # Not the world but the data (or a bug meeting it): retrying the
                # batch would fail the same way forever. Decide per record.
                return await self._isolate(handler, records, merge, error)
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
        for record in records:
            try:
                results.append(await handler([record]))
            except Exception as own:
                if _is_outage(own):
                    raise  # the batch is retried as a whole, from its first offset
                failure = Rejection("routing_failed", type(own).__name__, str(own))
                _log_rejection("record_failed", record, failure)
                letter = dead_letter(record, failure)
                await self._publish([record], self._letter_messages(0, record, letter))
        self._failures = 0
        self._forget(records)
        return merge(results)

    def _forget(self, records: Sequence[SourceRecord]) -> None:
        """Drop what failed attempts remembered about ``records``, now done, and about
        anything before them on their partitions (committed with them, or moved to
        another worker and back). Other streams' batches keep theirs."""
        last: dict[tuple[str, int], int] = {}
        for record in records:
            where = (record.topic, record.partition)
            last[where] = max(last.get(where, record.offset), record.offset)

        def done(topic: str, partition: int, offset: int) -> bool:
            return offset <= last.get((topic, partition), -1)

        self._acked -= {i for i in self._acked if done(i[0], i[1], i[2])}
        for key in [k for k in self._settled if done(*k)]:
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

    async def _handle(self, records: Sequence[SourceRecord]) -> BatchResult:
        started = time.perf_counter()
        settled = await self._settle(records)
        finished = await self._reserve(settled)
        result = BatchResult()
        outgoing: list[Outgoing] = []
        trail = Trail()
        for index, (record, done) in enumerate(zip(records, settled, strict=True)):
            outcome = finished.get(index, done.outcome)
            if isinstance(outcome, DeadLetter):
                result.rejected += 1
                outgoing += self._letter_messages(index, record, outcome)
                continue
            assert isinstance(outcome, Routed), "every plan is finished by _reserve"
            result.events += 1
            result.routed.append(outcome)
            outgoing += self._routed_messages(index, record, outcome, trail, done.now)

        # The page trail is written while the broker acknowledges (two waits at once,
        # not one after the other). A batch retried after a failure writes it again,
        # which changes nothing: events and jobs are written once.
        writing = asyncio.ensure_future(self._store.write_trail(trail))
        # The batch is done only when the broker has every message; only then
        # are its events recorded as routed, so a crash before this point
        # re-routes them (with the same job ids) instead of dropping them.
        try:
            refused = await self._publish(records, outgoing)
        finally:
            with metrics.DB_SECONDS.labels("write_trail").time():
                await asyncio.gather(writing, return_exceptions=True)
        writing.result()  # a failed trail write fails the batch like any store outage
        refused_events = {
            done.outcome.event.event_id
            for index, done in enumerate(settled)
            if index in refused and not isinstance(done.outcome, DeadLetter)
        }
        result.routed = [r for r in result.routed if r.event.event_id not in refused_events]
        result.rejected += len(refused_events)
        result.events -= len(refused_events)
        with metrics.DB_SECONDS.labels("mark_routed").time():
            await self._store.mark_routed(
                [
                    done.outcome.event.event_id
                    for done in settled
                    if isinstance(done.outcome, Planned)
                    and done.outcome.event.event_id not in refused_events
                ]
            )
        # Tallied per batch, then one increment per label: not a labelled lookup per job.
        transports: Counter[str] = Counter()
        outcomes_seen: Counter[tuple[str, str]] = Counter()
        for routed in result.routed:
            transports.update(job.transport for job in routed.jobs)
            outcomes_seen.update((d.outcome, d.reason or "") for d in routed.decisions)
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
        metrics.EVENTS.inc(len(result.routed))
        for transport, count in transports.items():
            metrics.JOBS.labels(transport).inc(count)
        for (decided, reason), count in outcomes_seen.items():
            metrics.DECISIONS.labels(decided, reason).inc(count)
        log.debug(
            "batch_done",
            records=len(records),
            events=result.events,
            rejected=result.rejected,
            jobs=result.jobs,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return result

    async def _settle(self, records: Sequence[SourceRecord]) -> list[Settled]:
        """What each record becomes: what an earlier attempt at it settled, else planned now.

        A retried batch goes on with its first attempt's plans and clock rather than
        routing anew: by the retry a mute may have ended, a shift or a quiet window
        begun or ended, a rate window slid, so a new plan could differ from what the
        broker already acknowledged (a job skipped as if sent, a page held and sent
        too). Forgotten when the batch is committed.
        """
        known = {
            i: self._settled[_key(r)] for i, r in enumerate(records) if _key(r) in self._settled
        }
        fresh = [i for i in range(len(records)) if i not in known]
        if fresh:
            # An event that a remembered record routes is routed by that record only.
            claimed = {
                done.outcome.event.event_id
                for done in known.values()
                if isinstance(done.outcome, Planned)
            }
            planned = await self._route([records[i] for i in fresh], claimed)
            for i, done in zip(fresh, planned, strict=True):
                known[i] = self._settled[_key(records[i])] = done
        return [known[i] for i in range(len(records))]

    async def _route(self, records: Sequence[SourceRecord], claimed: set[str]) -> list[Settled]:
        """Decode, read the directory once, and plan: each record's outcome at this clock,
        but for the rate limits. ``claimed``: events that other records route."""
        # One clock for the whole attempt, kept for retries (see _settle): an event
        # without occurred_at happened when it was received, on every attempt.
        received_at = self._clock()
        decoded = [
            decode(r.value, max_bytes=self._settings.max_event_bytes, received_at=received_at)
            for r in records
        ]
        events = [item for item in decoded if isinstance(item, AlertEvent)]
        with metrics.DB_SECONDS.labels("routed_within").time():
            done_before = await self._store.routed_within(
                {e.event_id for e in events}, self._settings.dedup_window_seconds
            )
        with metrics.DB_SECONDS.labels("directory_for").time():
            directory = await self._store.directory_for(
                {uid for e in events for uid in e.recipients()},
                {(e.schedule_id, e.occurred_at) for e in events if e.schedule_id and e.occurred_at},
            )
        now = self._clock()
        settled: list[Settled] = []
        claimed = set(claimed)
        for record, item in zip(records, decoded, strict=True):
            if isinstance(item, Rejection):
                _log_rejection("event_rejected", record, item)
                settled.append(Settled(dead_letter(record, item), now))
            elif item.event_id in done_before or item.event_id in claimed:
                settled.append(Settled(duplicate(item, now), now))
            else:
                claimed.add(item.event_id)
                settled.append(Settled(self._plan(record, item, directory, now), now))
        return settled

    async def _reserve(self, settled: Sequence[Settled]) -> dict[int, Routed]:
        """The plans among ``settled`` (by index) after the rate limits, which are shared
        by every router: one reservation per clock, in the transaction that also holds
        the pages deferred (quiet hours, limits).

        A plan reserved before (a retry) gets the same answer: at the same clock, a
        job counted before is allowed again and one held back is still held back (the
        history only grew), and a page held before stays as it was. So a retry whose
        first reservation committed without the worker hearing it is right too.
        """
        finished: dict[int, Routed] = {}
        by_clock: dict[datetime, dict[int, Planned]] = {}
        for index, done in enumerate(settled):
            if isinstance(done.outcome, Planned):
                by_clock.setdefault(done.now, {})[index] = done.outcome
        for now, planned in by_clock.items():

            def holds(rate: RateDecision, planned: dict[int, Planned] = planned) -> list[HeldPage]:
                for index, outcome in planned.items():
                    finished[index] = finish(outcome, rate)
                return [page for index in planned for page in finished[index].holds]

            with metrics.DB_SECONDS.labels("reserve_sends").time():
                await self._store.reserve_sends(
                    [s for p in planned.values() for s in sends(p)], self._limits, now, holds
                )
        return finished

    def _plan(
        self, record: SourceRecord, event: AlertEvent, directory: Directory, now: datetime
    ) -> Planned | DeadLetter:
        with structlog.contextvars.bound_contextvars(event_id=event.event_id):
            try:
                return plan(event, directory, now, self._options)
            except Exception as error:  # a bug must not block the partition: keep the event
                log.exception("routing_failed")
                failure = Rejection("routing_failed", type(error).__name__, str(error))
                return dead_letter(record, failure)

    async def _handle_contact_events(self, records: Sequence[SourceRecord]) -> int:
        applied = 0
        outgoing: list[Outgoing] = []
        for index, record in enumerate(records):
            item = decode_contact_event(record.value, max_bytes=self._settings.max_event_bytes)
            if isinstance(item, Rejection):
                _log_rejection("contact_event_rejected", record, item)
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
                _log_rejection("status_rejected", record, item)
                outgoing += self._letter_messages(index, record, dead_letter(record, item))
            else:
                statuses.append(item)
        jobs = await self._store.jobs_by_id({s.job_id for s in statuses})
        rows = []
        for status in statuses:
            job = jobs.get(status.job_id)
            failed = job is not None and status.permanent and status.status in FAILURES
            rows.append((status_row(status, job), status.status, failed))
        new = await self._store.record_statuses(rows)
        failed_jobs: dict[str, JobRow] = {}
        for status, (row, _, failed) in zip(statuses, rows, strict=True):
            job = jobs.get(status.job_id)
            if row.dedup in new:
                metrics.STATUSES.labels(status.status, str(job is not None).lower()).inc()
                if job is None:
                    log.warning(
                        "status_for_unknown_job", job_id=status.job_id, status=status.status
                    )
                else:
                    log.info(
                        "delivery_status",
                        job_id=job.job_id,
                        event_id=job.event_id,
                        transport=job.transport,
                        status=status.status,
                        permanent=status.permanent,
                    )
            if job is None:
                continue
            # Idempotent, so done again for a redelivered status (a crash may have come
            # between recording it and acting on it).
            if job.transport == "email" and status.status == "bounced" and status.permanent:
                await self._store.add_opt_out("email", job.address, "bounce", self._status_actor)
            if job.transport == "sms" and status.detail == "opt_out":
                await self._store.add_opt_out("sms", job.address, "status", self._status_actor)
            if failed:
                failed_jobs[job.job_id] = job
        await self.fail_over(list(failed_jobs.values()), now)
        await self._publish(records, outgoing)
        return len(new)

    async def fail_over(self, failed: Sequence[JobRow], now: datetime) -> None:
        """For each job failed for good: the page's next step (a job to the user's next
        method, or ``unreachable``), published once whoever else handles it."""
        if not failed:
            return
        pages = await self._store.pages_state({(j.event_id, j.user_id) for j in failed})
        directory = await self._store.directory_for({j.user_id for j in failed})
        for job in failed:
            state = pages.get((job.event_id, job.user_id))
            if state is None:
                continue
            event, page_jobs = state
            step = next_step(job, event, page_jobs, directory, now, self._options)
            new_job, row = step.rows(job.job_id)
            if step.decision is None or row is None:
                continue
            async with self._store.failover_step(new_job, row) as fresh:
                if not fresh:
                    continue
                messages: list[Outgoing] = []
                if step.job is not None:
                    messages.append(
                        Outgoing(
                            self._settings.delivery_topic(step.job.transport),
                            step.job.model_dump_json().encode(),
                            step.job.contact_method_id.encode(),
                            {"router.event_id": event.event_id, "router.job_id": step.job.job_id},
                            0,
                            ("failover", 0, 0, 0),
                        )
                    )
                messages.append(
                    Outgoing(
                        self._settings.topic_decisions,
                        step.decision.model_dump_json().encode(),
                        event.event_id.encode(),
                        {"router.event_id": event.event_id},
                        0,
                        ("failover", 0, 0, 1),
                    )
                )
                delivery = await deliver(self._publisher, messages, set())
                failure = delivery.outage or next(iter(delivery.refused.values()), None)
                if failure is not None:
                    raise failure
            metrics.DECISIONS.labels(step.decision.outcome, step.decision.reason or "").inc()
            if step.job is not None:
                metrics.JOBS.labels(step.job.transport).inc()
                log.info(
                    "failover",
                    event_id=event.event_id,
                    user_id=job.user_id,
                    failed_job_id=job.job_id,
                    job_id=step.job.job_id,
                    transport=step.job.transport,
                )
            else:
                metrics.UNREACHABLE.inc()
                log.error(
                    "page_unreachable",
                    event_id=event.event_id,
                    user_id=job.user_id,
                    failed_job_id=job.job_id,
                    hint="every method of the user was tried for this page; none worked",
                )

    async def _publish(self, records: Sequence[SourceRecord], outgoing: list[Outgoing]) -> set[int]:
        """Publish ``outgoing``; the indexes of records whose output the broker refused.

        A refused record ends in the DLQ on its own (its dead letter cut further
        if even that is refused); an outage raises, after every acknowledgement
        was observed, so the batch is retried without what was acknowledged.
        """
        delivery = await deliver(self._publisher, outgoing, self._acked)
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
                    DeadLetter(previous.key, previous.value, previous.headers)
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
            round_result = await deliver(self._publisher, retry, self._acked)
            pending, delivery.outage = round_result.refused, round_result.outage
        if delivery.outage is not None:
            raise delivery.outage
        if pending:
            raise next(iter(pending.values()))
        for message in letters.values():  # this attempt succeeded: count its letters once
            metrics.DEAD_LETTERS.labels(message.headers.get("router.dlq.reason", "")).inc()
        return refused

    def _letter_messages(
        self, index: int, record: SourceRecord, letter: DeadLetter, attempt: int = 0
    ) -> list[Outgoing]:
        letter = fit(letter, self._settings.kafka_max_request_bytes)
        identity = (record.topic, record.partition, record.offset, -1 - attempt)
        return [
            Outgoing(
                self._settings.topic_dlq, letter.value, letter.key, letter.headers, index, identity
            )
        ]

    def _routed_messages(
        self, index: int, record: SourceRecord, routed: Routed, trail: Trail, now: datetime
    ) -> list[Outgoing]:
        """The messages to publish for one routed event; its page trail into ``trail``."""
        messages: list[Outgoing] = []
        event_id = routed.event.event_id

        def add(topic: str, value: bytes, key: bytes, headers: dict[str, str]) -> None:
            identity = (record.topic, record.partition, record.offset, len(messages))
            messages.append(Outgoing(topic, value, key, headers, index, identity))

        for job in routed.jobs:
            add(
                self._settings.delivery_topic(job.transport),
                job.model_dump_json().encode(),
                job.contact_method_id.encode(),
                {"router.event_id": event_id, "router.job_id": job.job_id},
            )
        decided: list[str] = []
        for decision in routed.decisions:
            value = decision.model_dump_json()
            decided.append(value)
            add(
                self._settings.topic_decisions,
                value.encode(),
                event_id.encode(),
                {"router.event_id": event_id},
            )
        trail.jobs.extend(job_row(job) for job in routed.jobs)
        # The event as it came (it decoded, so it is JSON text) and its decisions as
        # already serialized for Kafka: one row, nothing serialized twice.
        raw = record.value.decode() if record.value else routed.event.model_dump_json()
        trail.events.append((event_id, raw, "[" + ",".join(decided) + "]", now))
        return messages
