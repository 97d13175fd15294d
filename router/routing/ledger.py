"""The routing ledger in PostgreSQL: which events were routed (duplicates), the
page trail each batch writes, rate-limit reservations with the pages they hold
back, and the janitor's purge."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from functools import cache
from typing import Any

import asyncpg
import orjson
import structlog

from router.db.pool import PgBase
from router.db.sql import without_conflict_clauses
from router.delivery.trail import Trail
from router.held.digest import HeldPage
from router.routing.rules import Limits, RateDecision, Send, within_rate_limits

log = structlog.get_logger("router.ledger")
_new_rows_only = cache(without_conflict_clauses)


class LedgerStore(PgBase):
    """Dedup, the trail's batch rows, rate limits and the purge."""

    async def routed_within(self, event_ids: Collection[str], window_seconds: float) -> set[str]:
        """Which of ``event_ids`` were fully routed less than ``window_seconds`` ago."""
        if not event_ids:
            return set()
        async with self._conn() as conn:
            rows = await conn.fetch(
                self._q["routed_within"], _json(list(event_ids)), float(window_seconds)
            )
        return {r["event_id"] for r in rows}

    async def mark_routed(self, event_ids: Collection[str]) -> None:
        """Record events whose output the broker acknowledged."""
        if event_ids:
            async with self._conn() as conn:
                await conn.execute(self._q["mark_routed"], list(event_ids))

    async def write_trail(self, trail: Trail) -> None:
        """A batch's page trail (events, jobs, decisions) in one statement."""
        if not trail:
            return
        async with self._conn() as conn:
            await conn.execute(self._q["write_trail"], *_trail_arguments(trail))

    async def record_batch(
        self, trail: Trail, routed: Collection[str], counted: Collection[str]
    ) -> None:
        """A routed batch's ledger after its acks, in one statement: ``trail`` written,
        ``routed`` marked routed, and the jobs in ``trail`` of the events ``counted`` (jobs
        no limit holds back) counted against their methods' limits at their
        ``created_at``."""
        if not trail and not routed and not counted:
            return
        arguments = (*_trail_arguments(trail), _json(list(routed)), _json(list(counted)))
        statement = self._q["record_batch"]
        async with self._conn() as conn:
            try:
                # New rows, as nearly every batch's are: no conflict check per row.
                await conn.execute(_new_rows_only(statement), *arguments)
            except asyncpg.UniqueViolationError as error:
                # A row was there already, and the statement wrote nothing: an event
                # routed again after its dedup window, a batch written before its
                # answer was lost, two workers at a rebalance. Written as the statement
                # says, each row once (PostgreSQL logs the refusal as an error).
                log.info(
                    "ledger_rows_already_there",
                    events=len(routed),
                    constraint=error.constraint_name,
                )
                await conn.execute(statement, *arguments)

    async def reserve_sends(
        self,
        sends: Sequence[Send],
        limits: Limits,
        now: datetime,
        holds: Callable[[RateDecision], Sequence[HeldPage]] = lambda _: (),
    ) -> RateDecision:
        """Count ``sends`` against their methods' limits, shared by every router, and hold
        the pages ``holds`` names for the result, in one transaction.

        The methods' rows are locked for the transaction, so two routers
        counting for the same method take turns. A job counted before (a
        redelivered batch) is allowed again and not counted twice; a page held
        before stays as it was.
        """
        if not sends:
            pages = holds(RateDecision())
            if pages:
                async with self._conn() as conn, conn.transaction():
                    await self._hold(conn, pages)
            return RateDecision()
        async with self._conn() as conn, conn.transaction():
            decision = await self.reserve_in(conn, sends, limits, now)
            pages = holds(decision)
            if pages:
                await self._hold(conn, pages)
        return decision

    async def reserve_in(
        self, conn: asyncpg.Connection, sends: Sequence[Send], limits: Limits, now: datetime
    ) -> RateDecision:
        """The reservation, inside the caller's transaction."""
        if not sends:
            return RateDecision()
        method_ids = sorted({s.contact_method_id for s in sends})
        buckets = {s.contact_method_id: limits[s.transport] for s in sends}
        await conn.fetch(self._q["lock_methods_for_rate_limit"], method_ids)
        state = await conn.fetch(
            self._q["rate_limit_state"],
            method_ids,
            [float(max(b.window_seconds for b in buckets[m])) for m in method_ids],
            [max(b.count for b in buckets[m]) for m in method_ids],
            [s.job_id for s in sends],
            now,
        )
        counted = {r["id"] for r in state if r["kind"] == "counted"}
        history: dict[str, list[datetime]] = {}
        for r in state:
            if r["kind"] == "recent":
                history.setdefault(r["id"], []).append(r["sent_at"])
        decision = within_rate_limits(sends, history, counted, limits, now)
        new = [s for s in sends if s.job_id in decision.allowed and s.job_id not in counted]
        if new:
            await conn.execute(
                self._q["count_sends"],
                [s.job_id for s in new],
                [s.contact_method_id for s in new],
                now,
            )
        return decision

    async def _hold(
        self, conn: asyncpg.Connection, pages: Sequence[HeldPage], *, again: bool = False
    ) -> None:
        """Hold ``pages``; ``again``: an escalation step's, which re-holds a page whose
        earlier hold already went out (see ``hold_pages``)."""
        await conn.execute(
            self._q["hold_pages"],
            [p.event.event_id for p in pages],
            [p.contact_method_id for p in pages],
            [p.user_id for p in pages],
            [p.transport for p in pages],
            [p.reason for p in pages],
            [p.event.severity for p in pages],
            [p.deliver_at for p in pages],
            [p.held_at for p in pages],
            [p.event.model_dump_json() for p in pages],
            again,
        )

    async def purge(
        self,
        routed_older_than: float,
        sends_older_than: float,
        held_older_than: float = 0,
        trail_older_than: float = 0,
        audit_older_than: float = 0,
    ) -> None:
        """Forget routed events, counted sends, settled held pages, the page trail (its
        acknowledgements and closed pages too) and the audit log past their windows."""
        async with self._conn() as conn:
            await conn.execute(self._q["purge_routed_events"], float(routed_older_than))
            await conn.execute(self._q["purge_rate_limit_sends"], float(sends_older_than))
            if held_older_than:
                await conn.execute(self._q["purge_held_pages"], float(held_older_than))
            if trail_older_than:
                await conn.execute(self._q["purge_trail"], float(trail_older_than))
            if audit_older_than:
                await conn.execute(self._q["purge_audit"], float(audit_older_than))


def _json(values: list[Any]) -> str:
    """``values`` as a JSON array."""
    return orjson.dumps(values).decode()


def _joined(texts: list[bytes]) -> str:
    """JSON texts as one JSON array, each as it is."""
    return (b"[" + b",".join(texts) + b"]").decode()


def _trail_arguments(trail: Trail) -> list[Any]:
    """``write_trail``'s parameters $1-$12, which ``record_batch`` shares: the events as
    four JSON arrays (ids, the events as they came, their decisions, when), the jobs
    as one JSON array of their rows (orjson writes the dataclasses whole; the
    statement reads the columns it names), the other decisions as arrays."""
    rows = trail.rows
    events = trail.events
    return [
        _json([e[0] for e in events]),
        _joined([e[1] for e in events]),
        _joined([e[2] for e in events]),
        # Times with their offset; a naive one as the process's local time, as asyncpg
        # takes it (the router's clocks are all UTC-aware).
        _json([e[3] if e[3].tzinfo is not None else e[3].astimezone() for e in events]),
        orjson.dumps(trail.jobs).decode(),
        [r.dedup for r in rows],
        [r.kind for r in rows],
        [r.event_id for r in rows],
        [r.user_id for r in rows],
        [r.job_id for r in rows],
        [r.at for r in rows],
        [r.record for r in rows],
    ]
