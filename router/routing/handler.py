"""The Kafka edge: a batch of records in, jobs, decisions and dead letters out.

The handler holds no business logic. It decodes every record, reads the
directory once for the whole batch, runs the pure pipeline per event, and
publishes everything at once. :meth:`Worker.route` returns only when the broker
has acknowledged every message of the batch; :meth:`Worker.record` then writes
the batch's ledger (trail, routed marks, counted sends) while the next batch is
routed, and the caller commits the batch's offsets after that, so an event is
never committed before its output is acknowledged and it is marked routed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import structlog

from router import metrics
from router.db.store import Store
from router.delivery.edge import FailOver
from router.delivery.trail import Trail
from router.directory.models import Directory
from router.held.digest import HeldPage
from router.kafka.publish import Outgoing, Publisher
from router.pages.desk import FirstStep, first_steps, resolve_by_events
from router.pages.escalation import PageBook
from router.routing.batch import BatchResult, Settled, merge_results
from router.routing.decode import Rejection, decode
from router.routing.dlq import DeadLetter, SourceRecord, dead_letter
from router.routing.feedback import Feedback
from router.routing.messages import routed_messages
from router.routing.pipeline import (
    Planned,
    Routed,
    duplicate,
    finish,
    plan,
    sends,
    unlimited,
)
from router.routing.recording import Ledger, Recorder
from router.routing.report import Tally, report
from router.routing.retry import RecordKey, log_rejection
from router.routing.rules import RateDecision, RoutingOptions
from router.settings import Settings
from schemas import AlertEvent

log = structlog.get_logger("router.handler")
#: Records planned, or made into messages, between two turns of the event loop: the
#: ledger of the batch before (router.kafka.overlap) is answered meanwhile, not after.
_TURN_EVERY = 100


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


def _key(record: SourceRecord) -> RecordKey:
    return (record.topic, record.partition, record.offset)


class Worker(Feedback):
    """Routes batches of alert records, applies contact events and delivery statuses
    (:class:`Feedback`). One per process; shared by nothing else."""

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        settings: Settings,
        clock: Callable[[], datetime] = utc_now,
        broker_probe: Callable[[], Awaitable[bool]] | None = None,
        options: RoutingOptions | None = None,
        pages: PageBook | None = None,
    ) -> None:
        super().__init__(store, publisher, settings, broker_probe)
        self._clock = clock
        # Escalating pages (None: events naming a policy get unknown_policy).
        self._pages = pages
        # The wiring builds the options once for every path; tests may leave it to us.
        self._options = options if options is not None else settings.routing_options()
        self._limits = settings.rate_limits()
        self._fail_over = FailOver(store, publisher, settings, self._options)
        # The audit log's actor for opt-outs that arrive on contacts.events.
        self._contact_events_actor = f"kafka:{settings.topic_contact_events}"
        # What each record of a failed batch became: a retry publishes the same
        # (see _settle). Forgotten when the batch succeeds.
        self._settled: dict[RecordKey, Settled] = {}
        # The ledgers written after the acks, and what waits for them.
        self._recorder = Recorder(
            store,
            lambda error, delay: self._back_off(error, delay),
            settings.retry_backoff_max_seconds,
        )

    async def handle(self, records: Sequence[SourceRecord]) -> BatchResult:
        """Route a batch of alert records and write its ledger (:meth:`route`, then
        :meth:`record`); on failure, wait (backing off) and re-raise."""
        result = await self.route(records)
        await self.record(result)
        return result

    async def route(self, records: Sequence[SourceRecord]) -> BatchResult:
        """Route a batch of alert records; returns when the broker has acknowledged all
        of its output, with the ledger still to write (:meth:`record`). On failure,
        wait (backing off) and re-raise.

        Re-raising makes the consumer rewind to the batch's first offsets, so the
        same records are tried again. This worker's retry publishes what its first
        attempt decided (see ``_settle``) less what the broker acknowledged; job ids
        are deterministic, so a batch re-routed elsewhere (after a crash) produces
        the same jobs.
        """
        result = await self._retrying(
            self._handle, records, merge_results, one_by_one=self._handle_recorded
        )
        result.recording = self._recorder.start(result.ledger)
        return result

    async def record(self, result: BatchResult) -> None:
        """Wait until a routed batch's ledger is written, in one statement: its page
        trail, its events marked routed, its critical jobs counted. An outage is
        waited out (the batch's offsets are committed only after this returns)."""
        await self.written(result)()

    def written(self, result: BatchResult) -> Callable[[], Awaitable[None]]:
        """What waits for ``result``'s ledger (see :meth:`record`), holding nothing else
        of the batch: its events, jobs and decisions are freed meanwhile."""
        if result.recording is None:
            result.recording = self._recorder.start(result.ledger)
        recording = result.recording
        return lambda: asyncio.shield(recording)  # a stop giving up leaves it running

    async def _handle_recorded(self, records: Sequence[SourceRecord]) -> BatchResult:
        """A record of a batch handled record by record: its ledger written before the
        next record is routed, so that one sees its events and counted sends."""
        result = await self._handle(records)
        await self._recorder.write(result.ledger)
        result.ledger = Ledger()
        return result

    async def recorded(self) -> None:
        """Wait until the ledgers being written now are written (or given up)."""
        await self._recorder.written()

    async def _handle(self, records: Sequence[SourceRecord]) -> BatchResult:
        started = time.perf_counter()
        settled = await self._settle(records)
        try:
            result, outgoing, trail, counted, tally = await self._messages(records, settled)
            # The batch is routed only when the broker has every message; only then is
            # its ledger written (record), so a crash before that re-routes its events
            # (with the same job ids) instead of dropping them.
            refused = await self._publish(records, outgoing)
        except BaseException:
            # What each record became, for the retry to publish the same (see _settle);
            # remembered only when an attempt fails (most never do), or when a later
            # record of the batch may still fail (see _isolating). What the broker
            # acknowledged of a failed attempt, _publish remembers.
            self._remember(records, settled)
            raise
        try:
            self._acknowledged(records, settled, result, refused, trail, counted, tally)
        except BaseException:
            # A bug after the acks: the batch is handled record by record next, which
            # must not send again what the broker has.
            self._acked.update(m.identity for m in outgoing if m.origin not in refused)
            self._remember(records, settled)
            raise
        if self._isolating > 0:
            self._remember(records, settled)
        log.debug(
            "batch_done",
            records=len(records),
            events=result.events,
            rejected=result.rejected,
            jobs=result.jobs,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return result

    def _remember(self, records: Sequence[SourceRecord], settled: list[Settled]) -> None:
        self._settled.update((_key(r), done) for r, done in zip(records, settled, strict=True))

    async def _messages(
        self, records: Sequence[SourceRecord], settled: list[Settled]
    ) -> tuple[BatchResult, list[Outgoing], Trail, list[str], Tally]:
        """Every record's messages, after the rate limits; the batch's result so far, its
        page trail, the events whose jobs no limit holds back (counted with the ledger),
        and its jobs and decisions tallied while each event's are at hand."""
        finished = await self._reserve(settled)
        result = BatchResult()
        outgoing: list[Outgoing] = []
        trail = Trail()
        counted: list[str] = []
        tally = Tally()
        for index, (record, done) in enumerate(zip(records, settled, strict=True)):
            if index % _TURN_EVERY == _TURN_EVERY - 1:
                await asyncio.sleep(0)
            outcome = finished.get(index, done.outcome)
            if isinstance(outcome, DeadLetter):
                result.rejected += 1
                outgoing += self._letter_messages(index, record, outcome)
                continue
            if isinstance(outcome, Planned):
                # No limit can hold its jobs back (_reserve finished every plan a limit
                # could touch): finished here, while its entries are at hand, and its jobs
                # (in the trail, made at done.now) counted with the batch's ledger.
                outcome = finish(outcome, None)
                if outcome.jobs:
                    counted.append(outcome.event.event_id)
            result.events += 1
            result.routed.append(outcome)
            tally.add(outcome)
            outgoing += routed_messages(self._settings, index, record, outcome, trail, done.now)
        return result, outgoing, trail, counted, tally

    def _acknowledged(
        self,
        records: Sequence[SourceRecord],
        settled: list[Settled],
        result: BatchResult,
        refused: set[int],
        trail: Trail,
        counted: list[str],
        tally: Tally,
    ) -> None:
        """``result`` once the broker has the batch's messages but ``refused``'s: its
        ledger (the trail, the routed marks, the counts of jobs no limit holds back)
        and its metrics."""
        refused_events = {
            done.outcome.event.event_id
            for index, done in enumerate(settled)
            if index in refused and not isinstance(done.outcome, DeadLetter)
        }
        if refused_events:
            result.routed = [r for r in result.routed if r.event.event_id not in refused_events]
            result.rejected += len(refused_events)
            result.events -= len(refused_events)
            tally = Tally(result.routed)
        result.ledger = Ledger(
            trail,
            [
                done.outcome.event.event_id
                for done in settled
                if isinstance(done.outcome, Planned)
                and done.outcome.event.event_id not in refused_events
            ],
            counted,
        )
        result.jobs, result.decisions = report(result.routed, tally)

    async def _settle(self, records: Sequence[SourceRecord]) -> list[Settled]:
        """What each record becomes: what a failed attempt at it settled, else planned now.

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
            claimed = self._recorder.unrecorded | {
                done.outcome.event.event_id
                for done in known.values()
                if isinstance(done.outcome, Planned)
            }
            planned = await self._route([records[i] for i in fresh], claimed)
            known.update(zip(fresh, planned, strict=True))
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
        fresh = [e for e in events if e.event_id not in done_before]
        # Pages: an event naming a policy opens its page and pages step 1; an up resolves.
        firsts = await first_steps(self._pages, fresh, received_at)
        await resolve_by_events(self._pages, fresh, received_at)
        with metrics.DB_SECONDS.labels("directory_for").time():
            directory = await self._store.directory_for(
                {uid for e in events for uid in e.recipients()}
                | {u for f in firsts.values() for u in f.step.user_ids},
                {(e.schedule_id, e.occurred_at) for e in events if e.schedule_id and e.occurred_at}
                | {
                    lookup
                    for e in events
                    if e.event_id in firsts and e.occurred_at
                    for lookup in firsts[e.event_id].step.lookups(e.occurred_at)
                },
            )
        now = self._clock()
        settled: list[Settled] = []
        claimed = set(claimed)
        for index, (record, item) in enumerate(zip(records, decoded, strict=True)):
            if index % _TURN_EVERY == _TURN_EVERY - 1:
                await asyncio.sleep(0)
            if isinstance(item, Rejection):
                log_rejection("event_rejected", record, item)
                settled.append(Settled(dead_letter(record, item), now))
            elif item.event_id in done_before or item.event_id in claimed:
                settled.append(Settled(duplicate(item, now), now))
            else:
                claimed.add(item.event_id)
                first = firsts.get(item.event_id)
                settled.append(Settled(self._plan(record, item, directory, now, first), now))
        return settled

    async def _reserve(self, settled: Sequence[Settled]) -> dict[int, Routed]:
        """The plans among ``settled`` (by index) finished after the rate limits, which
        are shared by every router: one reservation per clock, in the transaction that
        also holds the pages deferred (quiet hours, limits).

        A clock with no job a limit could hold back (critical jobs only) needs no
        reservation: its plans are left for :meth:`_handle` to finish as if every job
        were allowed, and their jobs are counted (each once, by job id) in the
        statement that records the batch after its acks. Any other job makes it a
        reservation, in which critical jobs count as before.

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
            if all(unlimited(p) for p in planned.values()):
                # Quiet hours may have deferred some pages: held in their own transaction.
                pages = [page for p in planned.values() for page in p.holds]
                if pages:
                    with metrics.DB_SECONDS.labels("reserve_sends").time():
                        await self._store.reserve_sends([], self._limits, now, lambda _: pages)  # noqa: B023
                continue

            def holds(rate: RateDecision, planned: dict[int, Planned] = planned) -> list[HeldPage]:
                for index, outcome in planned.items():
                    finished[index] = finish(outcome, rate)
                return [page for index in planned for page in finished[index].holds]

            wanted = [s for p in planned.values() for s in sends(p)]
            # The ledger being written may count jobs these methods' limits must see.
            await self.recorded()
            with metrics.DB_SECONDS.labels("reserve_sends").time():
                await self._store.reserve_sends(wanted, self._limits, now, holds)
        return finished

    def _plan(
        self,
        record: SourceRecord,
        event: AlertEvent,
        directory: Directory,
        now: datetime,
        first: FirstStep | None = None,
    ) -> Planned | DeadLetter:
        # Planning logs nothing (it is pure): the event id is bound for a failure only.
        try:
            if first is None:
                return plan(event, directory, now, self._options)
            assert event.occurred_at is not None, "decode fills occurred_at"
            audience = first.step.audience(directory.on_call, event.occurred_at)
            return plan(event, directory, now, self._options, (first.paging, audience))
        except Exception as error:  # a bug must not block the partition: keep the event
            log.exception("routing_failed", event_id=event.event_id)
            failure = Rejection("routing_failed", type(error).__name__, str(error))
            return dead_letter(record, failure)
