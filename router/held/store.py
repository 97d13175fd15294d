"""Held pages in PostgreSQL: claimed by one worker at a time (``FOR UPDATE SKIP
LOCKED``), counted against rate limits and settled in the claim's transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from router.db.pool import PgBase
from router.held.digest import HeldPage, Outcome
from router.routing.rules import Limits, RateDecision, Send
from schemas import AlertEvent

Reserve = Callable[[asyncpg.Connection, Sequence[Send], Limits, datetime], Awaitable[RateDecision]]


def held_page_from(row: Mapping[str, Any]) -> HeldPage:
    return HeldPage(
        event=AlertEvent.model_validate_json(row["event"]),
        contact_method_id=row["contact_method_id"],
        user_id=row["user_id"],
        transport=row["transport"],
        reason=row["reason"],
        deliver_at=row["deliver_at"],
        held_at=row["held_at"],
    )


class HeldClaim:
    """Held pages locked by one transaction, and what may be done with them in it."""

    def __init__(
        self,
        reserve: Reserve,
        queries: dict[str, str],
        conn: asyncpg.Connection,
        pages: list[HeldPage],
    ) -> None:
        self._reserve = reserve
        self._q = queries
        self._conn = conn
        self.pages = pages

    async def reserve(self, sends: Sequence[Send], limits: Limits, now: datetime) -> RateDecision:
        """Count digests against their methods' limits, in this transaction."""
        return await self._reserve(self._conn, sends, limits, now)

    async def settle(self, outcome: Outcome, now: datetime) -> None:
        """Record how each page ended, and when postponed pages are due."""
        q = self._q
        ended = [(key, "sent", job) for key, job in outcome.sent.items()] + [
            (key, how, None) for key, how in outcome.refused.items()
        ]
        if ended:
            await self._conn.execute(
                q["settle_held_pages"],
                [k[0] for k, _, _ in ended],
                [k[1] for k, _, _ in ended],
                now,
                [how for _, how, _ in ended],
                [job for _, _, job in ended],
            )
        if outcome.postponed:
            keys = list(outcome.postponed)
            await self._conn.execute(
                q["postpone_held_pages"],
                [k[0] for k in keys],
                [k[1] for k in keys],
                [outcome.postponed[k] for k in keys],
            )


class HeldStore(PgBase):
    """Claims of due held pages, and what is waiting."""

    # Provided by router.routing.ledger.LedgerStore in the composed PgStore.
    reserve_in: Reserve

    @asynccontextmanager
    async def claim_held(
        self, now: datetime, user_id: str | None = None, everything: bool = False, limit: int = 1000
    ) -> AsyncIterator[HeldClaim]:
        """Lock due held pages (every page of ``user_id`` when ``everything``) for one
        transaction; pages other workers hold are skipped. Leaving the block commits
        what the claim settled; an exception rolls it all back."""
        async with self._conn() as conn, conn.transaction():
            rows = await conn.fetch(self._q["claim_held_pages"], now, user_id, everything, limit)
            yield HeldClaim(self.reserve_in, self._q, conn, [held_page_from(r) for r in rows])

    async def list_held(self, user_id: str | None = None) -> list[HeldPage]:
        """Pages waiting, by user and due time."""
        async with self._conn() as conn:
            return [
                held_page_from(r) for r in await conn.fetch(self._q["list_held_pages"], user_id)
            ]

    async def held_counts(self) -> dict[str, int]:
        """Pages waiting, per transport."""
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["held_page_counts"])
        return {r["transport"]: int(r["held"]) for r in rows}
