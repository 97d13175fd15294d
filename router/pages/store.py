"""Policies and pages in PostgreSQL (SQL in ``router/db/sql/pages.sql``).

Pages are opened by routing (step 1 at once), their due steps claimed by any worker
(``FOR UPDATE SKIP LOCKED``) and moved in the claim's transaction, and answered
once: every acknowledgement is recorded, only the first that changes a page counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from functools import cache, partial
from importlib import resources
from typing import Any

import asyncpg

from router.db import sql
from router.db.pool import PgBase
from router.errors import Conflict, NotFound
from router.held.digest import HeldPage
from router.pages.escalation import Answered, Move, Page, answer, first_step, moved
from router.pages.policy import Policy, PolicyStep
from router.routing.rules import Limits, RateDecision, Send
from schemas import AlertEvent, PageAck, Reason

Reserve = Callable[[asyncpg.Connection, Sequence[Send], Limits, datetime], Awaitable[RateDecision]]
Hold = Callable[[asyncpg.Connection, Sequence[HeldPage]], Awaitable[None]]


_CODE_ATTEMPTS = 20


@cache
def page_queries() -> dict[str, str]:
    """The named queries of ``sql/pages.sql``."""
    return sql.parse_queries(resources.files(sql.__name__).joinpath("pages.sql").read_text())


def page_from(row: Mapping[str, Any]) -> Page:
    policy = row["policy"]
    return Page(
        alert_key=row["alert_key"],
        event=AlertEvent.model_validate_json(row["event"]),
        policy=Policy.model_validate_json(policy) if policy else None,
        reply_code=str(row["reply_code"]),
        step=row["step"],
        round=row["round"],
        opened_at=row["opened_at"],
        next_step_at=row["next_step_at"],
        status=row["status"],
        answered_by=row["answered_by"],
        answered_via=row["answered_via"],
        answered_at=row["answered_at"],
    )


def _policies_from(rows: Sequence[Mapping[str, Any]]) -> list[Policy]:
    found: dict[str, tuple[Mapping[str, Any], list[PolicyStep]]] = {}
    for row in rows:
        _, steps = found.setdefault(row["id"], (row, []))
        if row["position"] is not None:
            steps.append(
                PolicyStep(
                    delay_seconds=row["delay_seconds"],
                    user_ids=tuple(row["user_ids"]),
                    schedule_ids=tuple(row["schedule_ids"]),
                )
            )
    return [
        Policy(id=row["id"], name=row["name"], repeat=row["repeat"], steps=tuple(steps))
        for row, steps in found.values()
    ]


class PageClaim:
    """Due pages locked by one transaction, and what may be done with them in it."""

    def __init__(
        self, reserve: Reserve, hold: Hold, conn: asyncpg.Connection, pages: list[Page]
    ) -> None:
        self._reserve = reserve
        self._hold = hold
        self._conn = conn
        self.pages = pages

    async def reserve(self, sends: Sequence[Send], limits: Limits, now: datetime) -> RateDecision:
        """Count the step's jobs against their methods' limits, in this transaction."""
        return await self._reserve(self._conn, sends, limits, now)

    async def hold(self, pages: Sequence[HeldPage]) -> None:
        """Hold what quiet hours, limits or notify_after defer, in this transaction."""
        if pages:
            await self._hold(self._conn, pages)

    async def move(self, page: Page, move: Move) -> None:
        """Record the step just paged (or the end), in this transaction."""
        after = moved(page, move)
        await self._conn.execute(
            page_queries()["move_page"],
            page.alert_key,
            after.step,
            after.round,
            after.next_step_at,
            after.status,
        )


class PagesStore(PgBase):
    """Policies, pages, their claims and their answers."""

    # Provided by router.routing.ledger.LedgerStore in the composed PgStore.
    reserve_in: Reserve
    _hold: Callable[..., Awaitable[None]]  # (conn, pages, *, again=False)

    # -- policies ------------------------------------------------------------------

    async def add_policy(self, policy_id: str, name: str, repeat: int) -> Policy:
        """A new policy without steps; :class:`Conflict` if the id is taken."""
        async with self._conn() as conn:
            try:
                await conn.execute(page_queries()["add_policy"], policy_id, name, repeat)
            except asyncpg.UniqueViolationError:
                raise Conflict(
                    f"Escalation policy {policy_id!r} exists already; "
                    "see it with `router policies show`."
                ) from None
        return Policy(id=policy_id, name=name, repeat=repeat)

    async def add_policy_step(self, policy_id: str, step: PolicyStep) -> int:
        """Append ``step``; its position. :class:`NotFound` for an unknown policy."""
        async with self._conn() as conn:
            position = await conn.fetchval(
                page_queries()["add_policy_step"],
                policy_id,
                step.delay_seconds,
                list(step.user_ids),
                list(step.schedule_ids),
            )
        if position is None:
            raise NotFound(
                f"There is no escalation policy {policy_id!r}; add it with `router policies add`."
            )
        return int(position)

    async def policies(self, policy_ids: Collection[str] | None = None) -> list[Policy]:
        """Policies with their steps (all of them when ``policy_ids`` is None), by id."""
        ids = None if policy_ids is None else list(policy_ids)
        async with self._conn() as conn:
            return _policies_from(await conn.fetch(page_queries()["policies"], ids))

    async def delete_policy(self, policy_id: str) -> bool:
        """Delete a policy and its steps; whether it existed. Open pages finish as planned."""
        async with self._conn() as conn:
            return await conn.fetchval(page_queries()["delete_policy"], policy_id) is not None

    # -- pages ---------------------------------------------------------------------

    async def open_pages(
        self, events: Sequence[AlertEvent], now: datetime
    ) -> dict[str, Page | None]:
        """Per event naming a policy: its page (opened now with step 1 paged, or as it
        already is), or None when the policy is unknown or has no steps."""
        wanted = {e.escalation_policy_id or "" for e in events}
        policies = {p.id: p for p in await self.policies(wanted) if p.steps}
        known = {e.event_id for e in events if e.escalation_policy_id in policies}
        keyed = {e.alert_key(): e for e in events if e.event_id in known}
        pages: dict[str, Page] = {}
        if keyed:
            chosen = [policies[e.escalation_policy_id or ""] for e in keyed.values()]
            args = (
                list(keyed),
                [e.event_id for e in keyed.values()],
                [p.id for p in chosen],
                [p.model_dump_json() for p in chosen],
                [e.model_dump_json() for e in keyed.values()],
                now,
                [first_step(p, now).next_at for p in chosen],
            )
            async with self._conn() as conn:
                for attempt in range(_CODE_ATTEMPTS):
                    try:
                        await conn.execute(page_queries()["open_pages"], *args)
                        break
                    except asyncpg.UniqueViolationError:
                        # A reply code still held by an open page: the sequence moved on.
                        if attempt == _CODE_ATTEMPTS - 1:
                            raise
                rows = await conn.fetch(page_queries()["pages_by_keys"], list(keyed))
            pages = {row["alert_key"]: page_from(row) for row in rows}
        return {e.event_id: pages.get(e.alert_key()) for e in events}

    async def answer_pages(self, acks: Sequence[PageAck]) -> list[Answered]:
        """Apply acknowledgements and resolves in order, each recorded; the ones that
        changed a page (a second ack, or one after the page closed, changes nothing)."""
        if not acks:
            return []
        q = page_queries()
        changed: list[Answered] = []
        flags: list[bool] = []
        async with self._conn() as conn, conn.transaction():
            rows = await conn.fetch(q["lock_pages"], sorted({a.alert_key for a in acks}))
            pages = {row["alert_key"]: page_from(row) for row in rows}
            for ack in acks:
                page = pages.get(ack.alert_key)
                after = answer(page, ack.action, ack.user_id, ack.source, ack.at) if page else None
                flags.append(after is not None)
                if page is None or after is None:
                    continue
                pages[ack.alert_key] = after
                changed.append(Answered(ack, page, after))
                await conn.execute(
                    q["answer_page"],
                    after.alert_key,
                    after.status,
                    after.answered_by,
                    after.answered_via,
                    after.answered_at,
                )
            await conn.execute(
                q["record_acks"],
                [a.alert_key for a in acks],
                [a.user_id for a in acks],
                [a.action for a in acks],
                [a.source for a in acks],
                [a.at for a in acks],
                flags,
            )
        return changed

    @asynccontextmanager
    async def claim_due_pages(self, now: datetime, limit: int = 200) -> AsyncIterator[PageClaim]:
        """Lock pages whose next step is due for one transaction; pages other workers
        hold are skipped. Leaving the block commits; an exception rolls it all back."""
        async with self._conn() as conn, conn.transaction():
            rows = await conn.fetch(page_queries()["claim_due_pages"], now, limit)
            hold = partial(self._hold, again=True)  # a later step may page a method again
            yield PageClaim(self.reserve_in, hold, conn, [page_from(r) for r in rows])

    async def answered_since(self, held: Mapping[str, datetime]) -> dict[str, Reason]:
        """Alert key -> ``acknowledged`` or ``resolved``, for keys answered since ``held``
        says each was held (notify_after pages)."""
        if not held:
            return {}
        async with self._conn() as conn:
            rows = await conn.fetch(
                page_queries()["answered_since"], list(held), list(held.values())
            )
        return {
            r["alert_key"]: "resolved" if r["action"] == "resolve" else "acknowledged" for r in rows
        }

    async def list_pages(self, only_open: bool = False, limit: int = 1000) -> list[Page]:
        """Pages, newest first."""
        async with self._conn() as conn:
            rows = await conn.fetch(page_queries()["list_pages"], only_open, limit)
        return [page_from(r) for r in rows]

    async def page(self, alert_key: str) -> tuple[Page, list[dict[str, Any]]] | None:
        """One page and every answer it got, oldest first."""
        async with self._conn() as conn:
            rows = await conn.fetch(page_queries()["pages_by_keys"], [alert_key])
            acks = await conn.fetch(page_queries()["page_acks_of"], alert_key)
        if not rows:
            return None
        return page_from(rows[0]), [dict(a) for a in acks]

    async def reply_target(self, code: str, number: str) -> tuple[Page, str] | None:
        """The open page with reply ``code`` and the user it paged whose SMS number is
        ``number``; None when there is no such page or the number is not theirs."""
        if not code.isdigit():
            return None
        async with self._conn() as conn:
            row = await conn.fetchrow(page_queries()["open_page_by_code"], int(code))
            if row is None:
                return None
            user = await conn.fetchval(page_queries()["reply_sender"], number, row["event_id"])
        return (page_from(row), user) if user is not None else None
