"""The page trail in PostgreSQL after publishing: jobs by id, delivery statuses,
each page's state for failover, failover steps taken once, silent jobs, and
the trail read back for ``router trail``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from router.db.pool import PgBase, is_uuid
from router.delivery.trail import JobRow, PageState, TrailRow
from schemas import AlertEvent


def job_row_from(row: Mapping[str, Any]) -> JobRow:
    return JobRow(
        job_id=row["job_id"],
        event_id=row["event_id"],
        user_id=row["user_id"],
        contact_method_id=row["contact_method_id"],
        transport=row["transport"],
        severity=row["severity"],
        address=row["address"],
        created_at=row["created_at"],
        failover_of=row["failover_of"],
        last_status=row["last_status"],
        failed_at=row["failed_at"],
        digest_of=tuple(row["digest_of"]) if row["digest_of"] else None,
    )


class DeliveryStore(PgBase):
    """Statuses, failover steps and the trail, read and written."""

    async def jobs_by_id(self, job_ids: Collection[str]) -> dict[str, JobRow]:
        """The trail's jobs among ``job_ids`` (ids that are not uuids are simply unknown)."""
        ids = [i for i in job_ids if is_uuid(i)]
        if not ids:
            return {}
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["jobs_by_id"], ids)
        return {r["job_id"]: job_row_from(r) for r in rows}

    async def record_statuses(self, rows: Sequence[tuple[TrailRow, str, bool]]) -> set[str]:
        """Statuses (trail row, status, failed for good) into the trail; the dedup keys of
        those not recorded before (a redelivered status adds nothing)."""
        if not rows:
            return set()
        async with self._conn() as conn:
            added = await conn.fetch(
                self._q["record_statuses"],
                [r.dedup for r, _, _ in rows],
                [r.event_id for r, _, _ in rows],
                [r.user_id for r, _, _ in rows],
                [r.job_id for r, _, _ in rows],
                [r.at for r, _, _ in rows],
                [r.record for r, _, _ in rows],
                [status for _, status, _ in rows],
                [failed for _, _, failed in rows],
            )
        return {r["dedup"] for r in added}

    async def pages_state(
        self, pages: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], PageState]:
        """For each (event, user): the event, every job it got so far (digests that
        carried it included), and the methods it is still held for."""
        if not pages:
            return {}
        async with self._conn() as conn:
            rows = await conn.fetch(
                self._q["pages_state"], [e for e, _ in pages], [u for _, u in pages]
            )
        found: dict[tuple[str, str], PageState] = {}
        for r in rows:
            key = (r["page_event_id"], r["user_id"])
            if key not in found:
                event = AlertEvent.model_validate_json(r["event"])
                if event.occurred_at is None:  # kept as it came; the router filled it then
                    event = event.model_copy(update={"occurred_at": r["routed_at"]})
                found[key] = PageState(event, [], frozenset(r["held"]))
            found[key].jobs.append(job_row_from(r))
        return found

    @asynccontextmanager
    async def failover_step(self, job: JobRow | None, decision: TrailRow) -> AsyncIterator[bool]:
        """Record a failover job (or an ``unreachable`` decision) in a transaction that
        commits after the block; yields False when another worker already took this step
        (the same job id, or the same decision), so nothing is to be published."""
        async with self._conn() as conn, conn.transaction():
            if job is not None:
                taken = await conn.fetchval(
                    self._q["add_failover_job"],
                    job.job_id,
                    job.event_id,
                    job.user_id,
                    job.contact_method_id,
                    job.transport,
                    job.severity,
                    job.address,
                    job.created_at,
                    job.failover_of,
                )
                if taken is None:
                    yield False
                    return
            added = await conn.fetchval(
                self._q["add_trail_decision"],
                decision.dedup,
                decision.event_id,
                decision.user_id,
                decision.job_id,
                decision.at,
                decision.record,
            )
            yield added is not None or job is not None

    async def claim_silent_jobs(self, timeouts: Mapping[str, float], now: datetime) -> list[JobRow]:
        """Jobs of error/critical pages with no status within their transport's timeout,
        marked failed (each by one worker, once)."""
        if not timeouts:
            return []
        async with self._conn() as conn:
            rows = await conn.fetch(
                self._q["claim_silent_jobs"],
                list(timeouts),
                [float(t) for t in timeouts.values()],
                now,
            )
        return [job_row_from(r) for r in rows]

    async def orphaned_failures(
        self, horizon_seconds: float = 3600, grace_seconds: float = 30
    ) -> list[JobRow]:
        """One failed job per page left without a next step (see the query)."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                self._q["orphaned_failures"], float(horizon_seconds), float(grace_seconds)
            )
        return [job_row_from(r) for r in rows]

    async def trail(
        self, event_id: str
    ) -> tuple[tuple[str, str, datetime] | None, list[JobRow], list[tuple[str, datetime, str]]]:
        """One page's event, jobs and trail rows, the answers to its page last."""
        async with self._conn() as conn:
            event = await conn.fetchrow(self._q["trail_event"], event_id)
            jobs = [job_row_from(r) for r in await conn.fetch(self._q["trail_jobs"], event_id)]
            rows = await conn.fetch(self._q["trail_rows"], event_id)
            if event is not None:  # and the answers to its page since it was routed
                key = json.loads(event["event"]).get("dedup_key") or event_id
                rows += await conn.fetch(self._q["trail_answers"], key, event["routed_at"])
        return (
            (event["event"], event["decisions"], event["routed_at"]) if event else None,
            jobs,
            [(r["kind"], r["at"], r["record"]) for r in rows],
        )

    async def pages_of_user(self, user_id: str, since: datetime) -> list[dict[str, Any]]:
        """A user's pages since ``since``, with their jobs' outcome counts."""
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["trail_pages_of_user"], user_id, since)
        found = []
        for r in rows:
            event = json.loads(r["event"]) if r["event"] else {}
            found.append(
                {
                    "event_id": r["event_id"],
                    "first_at": r["first_at"].isoformat(),
                    "title": event.get("title"),
                    "severity": event.get("severity"),
                    "jobs": int(r["jobs"]),
                    "delivered": int(r["delivered"]),
                    "failed": int(r["failed"]),
                }
            )
        return found
