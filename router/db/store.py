"""The router's PostgreSQL store: ``Store``, the narrow interface the worker
uses, and ``PgStore``, every room's statements on one asyncpg pool.

``router.db.memstore.InMemoryStore`` implements ``Store`` in memory for unit
tests. The statements live with their rooms (see ``router.db.pool``); the SQL
in ``router/db/sql/``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from router.delivery.store import DeliveryStore
from router.delivery.trail import JobRow, PageState, Trail, TrailRow
from router.directory.manage import DirectoryManagement
from router.directory.models import Directory
from router.directory.store import DirectoryStore, ScheduleLookup
from router.held.digest import HeldPage
from router.held.store import HeldStore
from router.pages.store import PagesStore
from router.routing.ledger import LedgerStore
from router.routing.rules import Limits, RateDecision, Send


class Store(Protocol):
    """What the worker needs from its directory, a few round trips per batch."""

    async def directory_for(
        self, user_ids: Collection[str], schedules: Collection[ScheduleLookup] = ()
    ) -> Directory:
        """Named users, whoever is on call for ``schedules``, their methods and opt-outs."""
        ...

    async def routed_within(self, event_ids: Collection[str], window_seconds: float) -> set[str]:
        """Which of ``event_ids`` were fully routed less than ``window_seconds`` ago."""
        ...

    async def mark_routed(self, event_ids: Collection[str]) -> None:
        """Record that every job and decision of these events was acknowledged."""
        ...

    async def write_trail(self, trail: Trail) -> None:
        """A batch's page trail: its events, jobs and decisions."""
        ...

    async def record_batch(
        self, trail: Trail, routed: Collection[str], counted: Collection[str]
    ) -> None:
        """A routed batch's ledger after its acks, at once: ``trail`` written, ``routed``
        marked routed, and the jobs in ``trail`` of the events ``counted`` (jobs no limit
        holds back) counted against their methods' limits at their ``created_at`` (the
        clock they were decided at), each job once."""
        ...

    async def jobs_by_id(self, job_ids: Collection[str]) -> dict[str, JobRow]:
        """The trail's jobs among ``job_ids``."""
        ...

    async def record_statuses(self, rows: Sequence[tuple[TrailRow, str, bool]]) -> set[str]:
        """Statuses into the trail; the dedup keys of those not recorded before."""
        ...

    async def pages_state(
        self, pages: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], PageState]:
        """For each (event, user): the event, its jobs (digests that carried it included)
        and the methods it is still held for."""
        ...

    def failover_step(
        self, job: JobRow | None, decision: TrailRow
    ) -> AbstractAsyncContextManager[bool]:
        """Record a failover step; the block publishes it (False: already taken)."""
        ...

    async def reserve_sends(
        self,
        sends: Sequence[Send],
        limits: Limits,
        now: datetime,
        holds: Callable[[RateDecision], Sequence[HeldPage]] = ...,
    ) -> RateDecision:
        """Count ``sends`` against their methods' shared limits (the jobs allowed, and when
        each held-back method may send again), and in the same transaction hold the pages
        ``holds`` lists for that decision."""
        ...

    async def add_opt_out(
        self, transport: str, address: str, source: str = "cli", actor: str | None = None
    ) -> None:
        """Put a normalized address on the opt-out list (no-op if already there)."""
        ...

    async def ping(self) -> bool:
        """Whether the store answers now (a cheap probe, used while backing off)."""
        ...

    async def remove_opt_out(self, transport: str, address: str, actor: str | None = None) -> bool:
        """Take an address off the list; whether it was there."""
        ...


class PgStore(
    DirectoryStore, DirectoryManagement, LedgerStore, DeliveryStore, HeldStore, PagesStore
):
    """The directory, schedules, the ledger, the trail, held pages and pages on one pool."""
