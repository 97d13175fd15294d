"""What a routed batch owes PostgreSQL once the broker has its output: its page
trail, its events marked routed and its critical jobs counted, in one statement.

The worker writes it while it routes the next batch (see
:meth:`router.routing.handler.Worker.record`), and the batch's offsets are
committed only after it is written, so an event is never committed unmarked.
An outage is waited out; a statement PostgreSQL refuses is written again event
by event, so one bad row costs its own event's trail, not the batch's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from router import metrics
from router.db.store import Store
from router.delivery.trail import Trail
from router.routing.retry import is_outage

log = structlog.get_logger("router.handler")


@dataclass
class Ledger:
    """A routed batch's page trail, the events to mark routed and the events whose jobs
    are counted against rate limits without a reservation: every job of theirs in the
    trail, at its ``created_at`` (the clock it was planned at)."""

    trail: Trail = field(default_factory=Trail)
    routed: list[str] = field(default_factory=list)
    counted: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.trail or self.routed or self.counted)

    def extend(self, other: Ledger) -> None:
        """Add ``other``'s rows to this ledger."""
        self.trail.events += other.trail.events
        self.trail.jobs += other.trail.jobs
        self.trail.rows += other.trail.rows
        self.routed += other.routed
        self.counted += other.counted

    def by_event(self) -> list[tuple[str, Ledger]]:
        """This ledger cut into one ledger per event (the rows of no event last, as "")."""
        parts: dict[str, Ledger] = {}

        def part(event_id: str | None) -> Ledger:
            return parts.setdefault(event_id or "", Ledger())

        for row in self.trail.events:
            part(row[0]).trail.events.append(row)
        for job in self.trail.jobs:
            part(job.event_id).trail.jobs.append(job)
        for trail_row in self.trail.rows:
            part(trail_row.event_id).trail.rows.append(trail_row)
        for event_id in self.routed:
            part(event_id).routed.append(event_id)
        for event_id in self.counted:
            part(event_id).counted.append(event_id)
        return list(parts.items())


class Recorder:
    """The ledgers a worker owes: each written from the moment its batch is routed,
    and what must see them waits for them."""

    def __init__(
        self,
        store: Store,
        back_off: Callable[[BaseException, float], Awaitable[None]],
        backoff_max_seconds: float,
    ) -> None:
        self._store = store
        self._back_off = back_off
        self._backoff_max_seconds = backoff_max_seconds
        #: Events routed by batches whose ledger is not written yet: routed_within
        #: cannot see them, so a later record naming one is a duplicate by this set.
        self.unrecorded: set[str] = set()
        self._writing: set[asyncio.Task[None]] = set()

    def start(self, ledger: Ledger) -> asyncio.Task[None]:
        """``ledger``'s batch is routed: write the ledger from now on, in the background
        (:func:`write_ledger`). It counts as being written (:meth:`written`) at once."""
        self.unrecorded.update(ledger.routed)
        task = asyncio.create_task(self._write(ledger), name="router-ledger")
        self._writing.add(task)
        return task

    async def _write(self, ledger: Ledger) -> None:
        try:
            await write_ledger(self._store, ledger, self._back_off, self._backoff_max_seconds)
        finally:
            self.unrecorded.difference_update(ledger.routed)
            task = asyncio.current_task()
            if task is not None:
                self._writing.discard(task)

    async def write(self, ledger: Ledger) -> None:
        """Write ``ledger`` now and wait until it is written."""
        await self.start(ledger)

    async def written(self) -> None:
        """Wait until the ledgers being written now are written (or given up)."""
        if self._writing:
            await asyncio.wait(set(self._writing))


async def write_ledger(
    store: Store,
    ledger: Ledger,
    back_off: Callable[[BaseException, float], Awaitable[None]],
    backoff_max_seconds: float,
) -> None:
    """Write ``ledger`` in one statement, waiting out outages (``back_off``); refused for
    another reason, event by event."""
    try:
        await _written(store, ledger, back_off, backoff_max_seconds)
    except Exception as error:
        log.error(
            "ledger_refused",
            exc_info=error,
            error=str(error),
            error_class=type(error).__name__,
            events=len(ledger.routed),
            next_step="writing the batch's ledger event by event",
        )
        for event_id, part in ledger.by_event():
            try:
                await _written(store, part, back_off, backoff_max_seconds)
            except Exception as own:
                # The event's output is with the broker: its pages went out. What is
                # lost is its trail and its routed mark (a copy re-sent is routed again).
                log.error(
                    "event_ledger_refused",
                    event_id=event_id,
                    error=str(own),
                    error_class=type(own).__name__,
                )


async def _written(
    store: Store,
    ledger: Ledger,
    back_off: Callable[[BaseException, float], Awaitable[None]],
    backoff_max_seconds: float,
) -> None:
    """One statement, again after each outage until it is written; any other error raised."""
    failures = 0
    while ledger:
        try:
            with metrics.DB_SECONDS.labels("record_batch").time():
                await store.record_batch(ledger.trail, ledger.routed, ledger.counted)
            return
        except Exception as error:
            if not is_outage(error):
                raise
            failures += 1
            delay = min(backoff_max_seconds, 0.5 * 2 ** (failures - 1))
            log.error(
                "ledger_failed",
                error=str(error),
                error_class=type(error).__name__,
                events=len(ledger.routed),
                retry_in_seconds=delay,
                consecutive_failures=failures,
                hint="the batch's output is with the broker; its offsets are committed "
                "once its trail and routed marks are written",
            )
            await back_off(error, delay)
