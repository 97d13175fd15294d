"""An in-memory :class:`router.db.store.Store` for unit tests and the handler's property tests.

It keeps the same rules as the schema (unknown user, duplicate value, one
primary per transport, shared rate limits) so tests against it mean what they
say; integration tests still run against real PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from router.db.memschedules import InMemorySchedules
from router.delivery.trail import JobRow, PageState, Trail, TrailRow
from router.directory.models import ContactMethod, Directory, Shift, User
from router.directory.store import ScheduleLookup
from router.directory.writes import NewContactMethod
from router.errors import Conflict, NotFound, StoreUnavailable
from router.held.digest import HeldPage, Outcome, PageKey
from router.routing.rules import Limits, RateDecision, Send, within_rate_limits
from router.schedules.oncall import Override, Rotation, on_call_users
from schemas import AlertEvent


class InMemoryHeldClaim:
    """Same contract as :class:`router.db.store.HeldClaim`; a page settled twice is an error,
    so the property tests see it."""

    def __init__(self, store: InMemoryStore, pages: list[HeldPage]) -> None:
        self._store = store
        self.pages = pages

    async def reserve(self, sends: Sequence[Send], limits: Limits, now: datetime) -> RateDecision:
        """Count digests against their methods' limits."""
        return await self._store.reserve_sends(sends, limits, now)

    async def settle(self, outcome: Outcome, now: datetime) -> None:
        """Record how each page ended, and when postponed pages are due."""
        ended: dict[PageKey, tuple[str, str | None]] = {
            k: ("sent", j) for k, j in outcome.sent.items()
        }
        ended.update({k: (how, None) for k, how in outcome.refused.items()})
        for key, (how, job_id) in ended.items():
            if key in self._store.held_done:
                raise AssertionError(f"held page {key} ended twice")
            self._store.held_done[key] = (how, job_id, now)
        for key, at in outcome.postponed.items():
            page = self._store.held[key]
            self._store.held[key] = HeldPage(**{**page.__dict__, "deliver_at": at})


class InMemoryStore(InMemorySchedules):
    """Users, methods, schedules, opt-outs and ledgers in dicts.

    Set ``down = True`` to simulate an outage; ``clock`` is the database's "now".
    """

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.users: dict[str, User] = {}
        self.methods: dict[str, ContactMethod] = {}
        self.opt_outs: set[tuple[str, str]] = set()
        self.schedules: set[str] = set()
        self.shifts: list[Shift] = []
        self.timezones: dict[str, str] = {}  # schedule id -> zone, when not UTC
        self.rotations: dict[str, list[Rotation]] = {}
        self.overrides: dict[str, list[Override]] = {}
        self.routed: dict[str, datetime] = {}
        self.sends: dict[str, tuple[str, datetime]] = {}  # job id -> (method id, sent at)
        self.held: dict[PageKey, HeldPage] = {}
        self.trail: list[Trail] = []
        self.page_jobs: dict[str, JobRow] = {}
        self.events: dict[str, AlertEvent] = {}
        #: Held pages that ended: how (sent, refused, expired), the digest's job id, when.
        self.held_done: dict[PageKey, tuple[str, str | None, datetime]] = {}
        self.clock = clock
        self.down = False
        self.reads = 0

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("The in-memory store is marked down.")

    # -- the worker -------------------------------------------------------------

    async def ping(self) -> bool:
        """Whether the store is up (``down`` is False)."""
        return not self.down

    async def directory_for(
        self, user_ids: Collection[str], schedules: Collection[ScheduleLookup] = ()
    ) -> Directory:
        """Same contract as :meth:`router.db.store.PgStore.directory_for`."""
        self._check()
        self.reads += 1
        on_call = {
            (sid, at): on_call_users(self.schedule_of(sid), at)
            for sid, at in schedules
            if sid in self.schedules
        }
        wanted = set(user_ids) | {u for us in on_call.values() for u in us}
        methods = [m for m in self.methods.values() if m.user_id in wanted]
        return Directory.of(
            (u for uid, u in self.users.items() if uid in wanted),
            methods,
            on_call=on_call,
            opt_outs=(o for o in self.opt_outs if o[1] in {m.value for m in methods}),
        )

    async def user_ids(self, limit: int) -> list[str] | None:
        """Same contract as :meth:`router.db.store.PgStore.user_ids`."""
        self._check()
        return None if len(self.users) > limit else sorted(self.users)

    async def routed_within(self, event_ids: Collection[str], window_seconds: float) -> set[str]:
        """Same contract as :meth:`router.db.store.PgStore.routed_within`."""
        self._check()
        since = self.clock() - timedelta(seconds=window_seconds)
        return {e for e in event_ids if e in self.routed and self.routed[e] > since}

    async def mark_routed(self, event_ids: Collection[str]) -> None:
        """Same contract as :meth:`router.db.store.PgStore.mark_routed`."""
        self._check()
        for event_id in event_ids:
            self.routed[event_id] = self.clock()

    async def record_batch(
        self, trail: Trail, routed: Collection[str], counted: Collection[str]
    ) -> None:
        """Same contract as :meth:`router.db.store.PgStore.record_batch`."""
        self._check()
        await self.write_trail(trail)
        await self.mark_routed(routed)
        events = set(counted)
        for job in trail.jobs:
            if job.event_id in events:
                self.sends.setdefault(job.job_id, (job.contact_method_id, job.created_at))

    async def write_trail(self, trail: Trail) -> None:
        """Same contract as :meth:`router.db.store.PgStore.write_trail`."""
        self._check()
        if trail:
            self.trail.append(trail)
            for job in trail.jobs:
                self.page_jobs.setdefault(job.job_id, job)
            for event_id, raw, _, routed_at in trail.events:
                if event_id not in self.events:
                    event = AlertEvent.model_validate_json(raw)
                    if event.occurred_at is None:
                        event = event.model_copy(update={"occurred_at": routed_at})
                    self.events[event_id] = event

    async def jobs_by_id(self, job_ids: Collection[str]) -> dict[str, JobRow]:
        """Same contract as :meth:`router.db.store.PgStore.jobs_by_id`."""
        return {i: self.page_jobs[i] for i in job_ids if i in self.page_jobs}

    async def record_statuses(self, rows: Sequence[tuple[TrailRow, str, bool]]) -> set[str]:
        """Same contract as :meth:`router.db.store.PgStore.record_statuses`."""
        seen = {r.dedup for t in self.trail for r in t.rows}
        new = {row.dedup for row, _, _ in rows if row.dedup and row.dedup not in seen}
        self.trail.append(Trail(rows=[row for row, _, _ in rows if row.dedup in new]))
        for row, status, failed in rows:
            job = self.page_jobs.get(row.job_id or "")
            if row.dedup in new and job is not None:
                failed_at = job.failed_at or (self.clock() if failed else None)
                self.page_jobs[job.job_id] = replace(job, last_status=status, failed_at=failed_at)
        return new

    async def pages_state(
        self, pages: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], PageState]:
        """Same contract as :meth:`router.db.store.PgStore.pages_state`."""
        found: dict[tuple[str, str], PageState] = {}
        for event_id, user_id in pages:
            jobs = sorted(
                (
                    j
                    for j in self.page_jobs.values()
                    if j.user_id == user_id and event_id in j.pages
                ),
                key=lambda j: (j.created_at, j.job_id),
            )
            if event_id not in self.events or not jobs:
                continue
            held = frozenset(
                p.contact_method_id
                for key, p in self.held.items()
                if key[0] == event_id and p.user_id == user_id and key not in self.held_done
            )
            found[(event_id, user_id)] = PageState(self.events[event_id], jobs, held)
        return found

    @asynccontextmanager
    async def failover_step(self, job: JobRow | None, decision: TrailRow) -> AsyncIterator[bool]:
        """Same contract as :meth:`router.db.store.PgStore.failover_step`."""
        if job is not None:
            if job.job_id in self.page_jobs:
                yield False
                return
            self.page_jobs[job.job_id] = job
        elif any(r.dedup == decision.dedup for t in self.trail for r in t.rows):
            yield False
            return
        self.trail.append(Trail(rows=[decision]))
        yield True

    # -- held pages -------------------------------------------------------------

    @asynccontextmanager
    async def claim_held(
        self, now: datetime, user_id: str | None = None, everything: bool = False, limit: int = 1000
    ) -> AsyncIterator[InMemoryHeldClaim]:
        """Same contract as :meth:`router.db.store.PgStore.claim_held` (one claimer at a time)."""
        self._check()
        due = [
            p
            for key, p in self.held.items()
            if key not in self.held_done
            and (user_id is None or p.user_id == user_id)
            and (everything or p.deliver_at <= now)
        ]
        due.sort(key=lambda p: (p.contact_method_id, p.held_at))
        yield InMemoryHeldClaim(self, due[:limit])

    async def list_held(self, user_id: str | None = None) -> list[HeldPage]:
        """Pages waiting, by user and due time."""
        waiting = [
            p
            for key, p in self.held.items()
            if key not in self.held_done and (user_id is None or p.user_id == user_id)
        ]
        return sorted(waiting, key=lambda p: (p.user_id, p.deliver_at, p.held_at, p.event.event_id))

    async def held_counts(self) -> dict[str, int]:
        """Pages waiting, per transport."""
        counts: dict[str, int] = {}
        for page in await self.list_held():
            counts[page.transport] = counts.get(page.transport, 0) + 1
        return counts

    async def reserve_sends(
        self,
        sends: Sequence[Send],
        limits: Limits,
        now: datetime,
        holds: Callable[[RateDecision], Sequence[HeldPage]] = lambda _: (),
    ) -> RateDecision:
        """Same contract as :meth:`router.db.store.PgStore.reserve_sends`."""
        self._check()
        longest = {
            s.contact_method_id: max(b.window_seconds for b in limits[s.transport]) for s in sends
        }
        history: dict[str, list[datetime]] = {}
        for method_id, sent_at in self.sends.values():
            if method_id in longest and sent_at > now - timedelta(seconds=longest[method_id]):
                history.setdefault(method_id, []).append(sent_at)
        counted = {s.job_id for s in sends if s.job_id in self.sends}
        decision = within_rate_limits(sends, history, counted, limits, now)
        for s in sends:
            if s.job_id in decision.allowed and s.job_id not in counted:
                self.sends[s.job_id] = (s.contact_method_id, now)
        for page in holds(decision):
            self.held.setdefault(page.key, page)
        return decision

    # -- directory --------------------------------------------------------------

    async def add_user(self, user_id: str, name: str | None = None, timezone: str = "UTC") -> User:
        """Same contract as :meth:`router.db.store.PgStore.add_user`."""
        self._check()
        if user_id in self.users:
            raise Conflict(f"User {user_id!r} already exists.")
        now = self.clock()
        user = User(id=user_id, name=name, timezone=timezone, created_at=now, updated_at=now)
        self.users[user_id] = user
        return user

    async def update_user(
        self, user_id: str, changes: Mapping[str, Any], *, actor: str | None = None
    ) -> User:
        """Same contract as :meth:`router.db.store.PgStore.update_user`."""
        self._check()
        if user_id not in self.users:
            raise NotFound(f"User {user_id!r} does not exist.")
        user = User.model_validate({**self.users[user_id].model_dump(), **changes})
        self.users[user_id] = user
        return user

    async def add_contact_method(
        self, new: NewContactMethod, *, actor: str | None = None
    ) -> ContactMethod:
        """Same contract as :meth:`router.db.store.PgStore.add_contact_method`."""
        self._check()
        if new.user_id not in self.users:
            raise NotFound(f"User {new.user_id!r} does not exist.")
        for m in self.methods.values():
            if (m.user_id, m.transport, m.value) == (new.user_id, new.transport, new.value):
                raise Conflict(
                    f"User {new.user_id!r} already has {new.transport} "
                    f"{new.value!r} as contact method {m.id}."
                )
        if new.is_primary:
            self._clear_primary(new.user_id, new.transport, None)
        # Strictly increasing creation times keep "oldest first" well defined.
        now = max(
            [
                self.clock(),
                *(m.created_at + timedelta(microseconds=1) for m in self.methods.values()),
            ]
        )
        method = ContactMethod(
            id=str(uuid.uuid4()),
            user_id=new.user_id,
            transport=new.transport,
            value=new.value,
            label=new.label,
            is_primary=new.is_primary,
            verified=new.verified,
            webhook_method=new.webhook_method,
            webhook_headers=dict(new.webhook_headers),
            webhook_query=dict(new.webhook_query),
            webhook_body=new.webhook_body,
            metadata=dict(new.metadata),
            tags=tuple(new.tags),
            created_at=now,
            updated_at=now,
        )
        self.methods[method.id] = method
        return method

    def _clear_primary(self, user_id: str, transport: str, keep: str | None) -> None:
        for mid, m in list(self.methods.items()):
            if m.user_id == user_id and m.transport == transport and m.is_primary and mid != keep:
                self.methods[mid] = m.model_copy(update={"is_primary": False})

    async def update_contact_method(
        self, method_id: str, changes: Mapping[str, Any], *, actor: str | None = None
    ) -> ContactMethod:
        """Same contract as :meth:`router.db.store.PgStore.update_contact_method`."""
        self._check()
        if method_id not in self.methods:
            raise NotFound(f"Contact method {method_id!r} does not exist.")
        method = ContactMethod.model_validate({**self.methods[method_id].model_dump(), **changes})
        if method.is_primary:
            self._clear_primary(method.user_id, method.transport, method.id)
        self.methods[method_id] = method
        return method

    async def set_disabled(self, method_id: str, disabled: bool) -> None:
        """Same contract as :meth:`router.db.store.PgStore.set_disabled`."""
        await self.update_contact_method(method_id, {"disabled": disabled})

    async def add_opt_out(
        self, transport: str, address: str, source: str = "cli", actor: str | None = None
    ) -> None:
        """Same contract as :meth:`router.db.store.PgStore.add_opt_out`."""
        self._check()
        self.opt_outs.add((transport, address))

    async def remove_opt_out(self, transport: str, address: str, actor: str | None = None) -> bool:
        """Same contract as :meth:`router.db.store.PgStore.remove_opt_out`."""
        self._check()
        was = (transport, address) in self.opt_outs
        self.opt_outs.discard((transport, address))
        return was

    async def add_shift(
        self, schedule_id: str, user_id: str, starts_at: datetime, ends_at: datetime
    ) -> Shift:
        """Same contract as :meth:`router.db.store.PgStore.add_shift`."""
        self._check()
        if user_id not in self.users:
            raise NotFound(f"User {user_id!r} does not exist.")
        self.schedules.add(schedule_id)
        shift = Shift(
            id=len(self.shifts) + 1,
            schedule_id=schedule_id,
            user_id=user_id,
            starts_at=starts_at,
            ends_at=ends_at,
        )
        self.shifts.append(shift)
        return shift
