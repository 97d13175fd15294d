"""The Postgres directory: the only module that runs SQL.

``Store`` is the narrow interface the worker uses; ``PgStore`` implements it on
an asyncpg pool (plus the directory commands), and
``router.db.memstore.InMemoryStore`` in memory for unit tests. Driver errors are
translated once, here, into :mod:`router.errors`, so callers never see asyncpg
exceptions.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from router import metrics
from router.db import sql
from router.delivery.trail import JobRow, Trail, TrailRow
from router.directory.addresses import mask
from router.directory.models import IMPORT_COLUMNS, ContactMethod, Directory, Shift, User
from router.errors import (
    Conflict,
    NotFound,
    NotMigrated,
    StoreError,
    StoreUnavailable,
    VerificationRefused,
)
from router.held.digest import HeldPage, Outcome
from router.redact import redact_dsn
from router.routing.rules import Limits, RateDecision, Send, within_rate_limits
from schemas import AlertEvent, Transport, WebhookMethod

ScheduleLookup = tuple[str, datetime]


@dataclass(frozen=True)
class NewContactMethod:
    """A contact method to create; ``value`` is already normalized."""

    user_id: str
    transport: Transport
    value: str
    label: str | None = None
    is_primary: bool = False
    verified: bool = False
    webhook_method: WebhookMethod | None = None
    webhook_headers: Mapping[str, str] = field(default_factory=dict)
    webhook_query: Mapping[str, str] = field(default_factory=dict)
    webhook_body: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    tags: Sequence[str] = ()


def like_literal(text: str | None) -> str | None:
    """``text`` escaped for LIKE/ILIKE, so ``%`` and ``_`` in a search match themselves."""
    if text is None:
        return None
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class MethodFilter:
    """Which contact methods ``list`` and ``count`` return; None means any."""

    user_id: str | None = None
    transport: Transport | None = None
    verified: bool | None = None
    search: str | None = None
    metadata: Mapping[str, str] | None = None
    tag: str | None = None

    def params(self) -> list[Any]:
        """The filter's query parameters, in the order the SQL takes them."""
        return [
            self.user_id,
            self.transport,
            self.verified,
            like_literal(self.search),
            dict(self.metadata) if self.metadata else None,
            self.tag,
        ]


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

    async def jobs_by_id(self, job_ids: Collection[str]) -> dict[str, JobRow]:
        """The trail's jobs among ``job_ids``."""
        ...

    async def record_statuses(self, rows: Sequence[tuple[TrailRow, str, bool]]) -> set[str]:
        """Statuses into the trail; the dedup keys of those not recorded before."""
        ...

    async def pages_state(
        self, pages: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[AlertEvent, list[JobRow]]]:
        """For each (event, user): the event and every job it got so far."""
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


# Conditions that say "the database is not usable right now", not "this
# operation is wrong": retried by the worker, exit status 3 for commands.
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.OperatorInterventionError,  # class 57: shutdown, cannot connect now, timeout
    asyncpg.ObjectNotInPrerequisiteStateError,  # 55000: "not currently accepting connections"
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    # The driver's own state broken by a connection the server ended mid-query
    # ("cannot switch to state ...; another operation is in progress"): the
    # connection is gone, not the data wrong, so retry rather than dead-letter.
    asyncpg.InternalClientError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.TransactionRollbackError,  # class 40: serialization failure, deadlock; retry
)


@asynccontextmanager
async def translate_errors(url: str) -> AsyncIterator[None]:
    """Turn asyncpg's exceptions into the router's own, with a next step in each message."""
    try:
        yield
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError) as error:
        raise NotMigrated(
            f"The database at {redact_dsn(url)} lacks part of the router schema ({error}); "
            "run `router db migrate` first."
        ) from error
    except asyncpg.UniqueViolationError as error:
        raise Conflict(f"That would break a uniqueness rule: {error.detail or error}.") from error
    except asyncpg.ForeignKeyViolationError as error:
        raise NotFound(f"A referenced record does not exist: {error.detail or error}.") from error
    except _UNAVAILABLE as error:
        raise StoreUnavailable(
            f"Cannot use PostgreSQL at {redact_dsn(url)}: "
            f"{redact_dsn(str(error), url) or type(error).__name__}. "
            "Check that it is running and that ROUTER_DATABASE_URL is right."
        ) from error
    except asyncpg.PostgresError as error:
        raise StoreError(f"PostgreSQL refused the operation: {error}.") from error


def _jsonb_encode(value: Any) -> bytes:
    return b"\x01" + json.dumps(value).encode()  # jsonb binary format: version 1, then text


def _jsonb_decode(data: bytes) -> Any:
    return json.loads(data[1:])


def _count_round_trip(_record: Any) -> None:
    metrics.DB_ROUND_TRIPS.inc()


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Every query this connection sends, counted (router_db_round_trips_total).
    conn.add_query_logger(_count_round_trip)
    # Binary, so COPY (bulk import) can send jsonb too.
    await conn.set_type_codec(
        "jsonb", encoder=_jsonb_encode, decoder=_jsonb_decode, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec("uuid", encoder=str, decoder=str, schema="pg_catalog", format="text")


def _method(row: Mapping[str, Any]) -> ContactMethod:
    return ContactMethod.model_validate(dict(row))


def _user(row: Mapping[str, Any]) -> User:
    return User.model_validate(dict(row))


def _shift(row: Mapping[str, Any]) -> Shift:
    return Shift.model_validate(dict(row))


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _job_row(row: Mapping[str, Any]) -> JobRow:
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
    )


def _held(row: Mapping[str, Any]) -> HeldPage:
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

    def __init__(self, store: PgStore, conn: asyncpg.Connection, pages: list[HeldPage]) -> None:
        self._store = store
        self._conn = conn
        self.pages = pages

    async def reserve(self, sends: Sequence[Send], limits: Limits, now: datetime) -> RateDecision:
        """Count digests against their methods' limits, in this transaction."""
        return await self._store._reserve(self._conn, sends, limits, now)

    async def settle(self, outcome: Outcome, now: datetime) -> None:
        """Record how each page ended, and when postponed pages are due."""
        q = self._store._q
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


#: The channel migration 0004's triggers announce directory changes on.
CHANGES_CHANNEL = "router_directory"


class DirectoryListener:
    """The notification connection: alive until closed or broken."""

    def __init__(self, conn: asyncpg.Connection, ping: str) -> None:
        self._conn = conn
        self._ping = ping

    def is_alive(self) -> bool:
        return not self._conn.is_closed()

    async def check(self) -> bool:
        """Whether the connection still answers (a silent network loss shows here)."""
        try:
            await self._conn.fetchval(self._ping, timeout=5.0)
        except (asyncpg.PostgresError, *_UNAVAILABLE):
            return False
        return True

    async def close(self) -> None:
        if not self._conn.is_closed():
            try:
                await asyncio.wait_for(self._conn.close(), timeout=2.0)
            except (asyncpg.PostgresError, *_UNAVAILABLE):
                self._conn.terminate()


class PgStore:
    """The directory on PostgreSQL through an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self._pool = pool
        self._url = url
        self._q = sql.queries()

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> PgStore:
        """Open a pool; :class:`StoreUnavailable` with a clear message if it cannot."""
        async with translate_errors(url):
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                command_timeout=30,
            )
        return cls(pool, url)

    async def close(self) -> None:
        """Close every connection, waiting for queries in flight."""
        await self._pool.close()

    async def ping(self) -> bool:
        """Whether PostgreSQL answers a trivial query within a second."""
        try:
            await self._pool.fetchval(self._q["ping"], timeout=1.0)
        except (asyncpg.PostgresError, *_UNAVAILABLE):
            return False
        return True

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with translate_errors(self._url), self._pool.acquire() as conn:
            yield conn

    async def listen(
        self, on_change: Callable[[str], None], on_lost: Callable[[], None]
    ) -> DirectoryListener:
        """A connection of its own LISTENing on ``router_directory`` (see migration 0004):
        ``on_change(payload)`` per notification, ``on_lost()`` when the connection ends."""
        async with translate_errors(self._url):
            conn = await asyncpg.connect(self._url, timeout=10)
        conn.add_query_logger(_count_round_trip)
        listener = DirectoryListener(conn, self._q["ping"])

        def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            on_change(payload)

        def terminated(_conn: Any) -> None:
            on_lost()

        try:
            conn.add_termination_listener(terminated)
            await conn.add_listener(CHANGES_CHANNEL, notified)
        except BaseException:
            conn.terminate()
            raise
        return listener

    # -- schema ---------------------------------------------------------------

    async def schema_version(self) -> int:
        """The newest migration applied; 0 for a database never migrated."""
        async with self._conn() as conn:
            try:
                version = await conn.fetchval(self._q["schema_version"])
            except asyncpg.UndefinedTableError:
                return 0
        return int(version or 0)

    async def check_schema(self) -> None:
        """Raise :class:`NotMigrated` unless the schema is at least what this code needs."""
        have, need = await self.schema_version(), sql.latest_version()
        if have < need:
            raise NotMigrated(
                f"The database at {redact_dsn(self._url)} is at schema version {have}; this "
                f"router needs {need}. Run `router db migrate` (it is safe to run repeatedly)."
            )

    # -- the worker -------------------------------------------------------------

    async def directory_for(
        self, user_ids: Collection[str], schedules: Collection[ScheduleLookup] = ()
    ) -> Directory:
        """One consistent snapshot for a batch, read in one read-only transaction."""
        lookups = list(dict.fromkeys(schedules))
        on_call: dict[ScheduleLookup, tuple[str, ...]] = {}
        async with (
            self._conn() as conn,
            conn.transaction(readonly=True, isolation="repeatable_read"),
        ):
            if lookups:
                rows = await conn.fetch(
                    self._q["on_call"], [s for s, _ in lookups], [at for _, at in lookups]
                )
                found: dict[int, list[str]] = {}
                for row in rows:
                    if row["known"]:
                        users = found.setdefault(row["idx"], [])
                        if row["user_id"] is not None and row["user_id"] not in users:
                            users.append(row["user_id"])
                on_call = {lookups[i - 1]: tuple(users) for i, users in found.items()}
            ids = list(dict.fromkeys([*user_ids, *(u for us in on_call.values() for u in us)]))
            if not ids:
                return Directory(on_call=on_call)
            users = await conn.fetch(self._q["users_by_ids"], ids)
            methods = [
                _method(r) for r in await conn.fetch(self._q["contact_methods_for_users"], ids)
            ]
            addresses = list({m.value for m in methods if m.transport in ("sms", "email")})
            opt_outs = (
                await conn.fetch(self._q["opt_outs_for_addresses"], addresses) if addresses else []
            )
        return Directory.of(
            (_user(r) for r in users),
            methods,
            on_call=on_call,
            opt_outs=((r["transport"], r["address"]) for r in opt_outs),
        )

    async def routed_within(self, event_ids: Collection[str], window_seconds: float) -> set[str]:
        """Which of ``event_ids`` were fully routed less than ``window_seconds`` ago."""
        if not event_ids:
            return set()
        async with self._conn() as conn:
            rows = await conn.fetch(
                self._q["routed_within"], list(event_ids), float(window_seconds)
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
        jobs, rows = trail.jobs, trail.rows
        async with self._conn() as conn:
            await conn.execute(
                self._q["write_trail"],
                [e[0] for e in trail.events],
                [e[1] for e in trail.events],
                [e[2] for e in trail.events],
                [e[3] for e in trail.events],
                [j.job_id for j in jobs],
                [j.event_id for j in jobs],
                [j.user_id for j in jobs],
                [j.contact_method_id for j in jobs],
                [j.transport for j in jobs],
                [j.severity for j in jobs],
                [j.address for j in jobs],
                [j.created_at for j in jobs],
                [j.failover_of for j in jobs],
                [r.dedup for r in rows],
                [r.kind for r in rows],
                [r.event_id for r in rows],
                [r.user_id for r in rows],
                [r.job_id for r in rows],
                [r.at for r in rows],
                [r.record for r in rows],
            )

    # -- delivery status and the page trail ---------------------------------------

    async def jobs_by_id(self, job_ids: Collection[str]) -> dict[str, JobRow]:
        """The trail's jobs among ``job_ids`` (ids that are not uuids are simply unknown)."""
        ids = [i for i in job_ids if _is_uuid(i)]
        if not ids:
            return {}
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["jobs_by_id"], ids)
        return {r["job_id"]: _job_row(r) for r in rows}

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
    ) -> dict[tuple[str, str], tuple[AlertEvent, list[JobRow]]]:
        """For each (event, user): the event and every job it got so far."""
        if not pages:
            return {}
        async with self._conn() as conn:
            rows = await conn.fetch(
                self._q["pages_state"], [e for e, _ in pages], [u for _, u in pages]
            )
        found: dict[tuple[str, str], tuple[AlertEvent, list[JobRow]]] = {}
        for r in rows:
            key = (r["event_id"], r["user_id"])
            if key not in found:
                event = AlertEvent.model_validate_json(r["event"])
                if event.occurred_at is None:  # kept as it came; the router filled it then
                    event = event.model_copy(update={"occurred_at": r["routed_at"]})
                found[key] = (event, [])
            found[key][1].append(_job_row(r))
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
        return [_job_row(r) for r in rows]

    async def orphaned_failures(
        self, horizon_seconds: float = 3600, grace_seconds: float = 30
    ) -> list[JobRow]:
        """One failed job per page left without a next step (see the query)."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                self._q["orphaned_failures"], float(horizon_seconds), float(grace_seconds)
            )
        return [_job_row(r) for r in rows]

    async def trail(
        self, event_id: str
    ) -> tuple[tuple[str, str, datetime] | None, list[JobRow], list[tuple[str, datetime, str]]]:
        """One page's event, jobs and trail rows."""
        async with self._conn() as conn:
            event = await conn.fetchrow(self._q["trail_event"], event_id)
            jobs = [_job_row(r) for r in await conn.fetch(self._q["trail_jobs"], event_id)]
            rows = await conn.fetch(self._q["trail_rows"], event_id)
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
            decision = await self._reserve(conn, sends, limits, now)
            pages = holds(decision)
            if pages:
                await self._hold(conn, pages)
        return decision

    async def _reserve(
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

    async def _hold(self, conn: asyncpg.Connection, pages: Sequence[HeldPage]) -> None:
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
        )

    async def purge(
        self,
        routed_older_than: float,
        sends_older_than: float,
        held_older_than: float = 0,
        trail_older_than: float = 0,
        audit_older_than: float = 0,
    ) -> None:
        """Forget routed events, counted sends, settled held pages, the page trail and
        the audit log past their windows."""
        async with self._conn() as conn:
            await conn.execute(self._q["purge_routed_events"], float(routed_older_than))
            await conn.execute(self._q["purge_rate_limit_sends"], float(sends_older_than))
            if held_older_than:
                await conn.execute(self._q["purge_held_pages"], float(held_older_than))
            if trail_older_than:
                await conn.execute(self._q["purge_trail"], float(trail_older_than))
            if audit_older_than:
                await conn.execute(self._q["purge_audit"], float(audit_older_than))

    # -- held pages -------------------------------------------------------------

    @asynccontextmanager
    async def claim_held(
        self, now: datetime, user_id: str | None = None, everything: bool = False, limit: int = 1000
    ) -> AsyncIterator[HeldClaim]:
        """Lock due held pages (every page of ``user_id`` when ``everything``) for one
        transaction; pages other workers hold are skipped. Leaving the block commits
        what the claim settled; an exception rolls it all back."""
        async with self._conn() as conn, conn.transaction():
            rows = await conn.fetch(self._q["claim_held_pages"], now, user_id, everything, limit)
            yield HeldClaim(self, conn, [_held(r) for r in rows])

    async def list_held(self, user_id: str | None = None) -> list[HeldPage]:
        """Pages waiting, by user and due time."""
        async with self._conn() as conn:
            return [_held(r) for r in await conn.fetch(self._q["list_held_pages"], user_id)]

    async def held_counts(self) -> dict[str, int]:
        """Pages waiting, per transport."""
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["held_page_counts"])
        return {r["transport"]: int(r["held"]) for r in rows}

    # -- users ----------------------------------------------------------------

    async def add_user(self, user_id: str, name: str | None, timezone: str) -> User:
        """Create a user; :class:`Conflict` if the id is taken."""
        try:
            async with self._conn() as conn:
                row = await conn.fetchrow(self._q["insert_user"], user_id, name, timezone)
        except Conflict:
            raise Conflict(f"User {user_id!r} already exists.") from None
        return _user(row)

    async def update_user(self, user_id: str, changes: Mapping[str, Any]) -> User:
        """Apply ``changes`` (User field -> value) and return the stored user."""
        async with self._conn() as conn, conn.transaction():
            row = await conn.fetchrow(self._q["user_for_update"], user_id)
            if row is None:
                raise NotFound(f"User {user_id!r} does not exist.")
            user = User.model_validate({**_user(row).model_dump(), **changes})
            row = await conn.fetchrow(
                self._q["update_user"],
                user.id,
                user.name,
                user.timezone,
                user.quiet_hours_start,
                user.quiet_hours_end,
                user.quiet_bypass,
                list(user.channel_order),
                user.delivery_mode,
                user.quiet_action,
            )
        return _user(row)

    # -- contact methods ------------------------------------------------------

    async def add_contact_method(self, new: NewContactMethod) -> ContactMethod:
        """Create a method in one transaction (clearing another primary when asked)."""
        async with self._conn() as conn, conn.transaction():
            existing = await conn.fetchval(
                self._q["contact_method_by_value"], new.user_id, new.transport, new.value
            )
            if existing is not None:
                raise Conflict(
                    f"User {new.user_id!r} already has {new.transport} {new.value!r} "
                    f"as contact method {existing}."
                )
            if new.is_primary:
                await conn.execute(self._q["clear_primary"], new.user_id, new.transport, None)
            try:
                row = await conn.fetchrow(
                    self._q["insert_contact_method"],
                    new.user_id,
                    new.transport,
                    new.value,
                    new.label,
                    new.is_primary,
                    new.verified,
                    new.webhook_method,
                    dict(new.webhook_headers),
                    dict(new.webhook_query),
                    new.webhook_body,
                    dict(new.metadata),
                    list(new.tags),
                )
            except asyncpg.ForeignKeyViolationError:
                raise NotFound(
                    f"User {new.user_id!r} does not exist; add it first with "
                    f"`router users add {new.user_id}`."
                ) from None
        return _method(row)

    async def update_contact_method(
        self, method_id: str, changes: Mapping[str, Any]
    ) -> ContactMethod:
        """Apply ``changes`` (ContactMethod field -> value) in one transaction.

        Making a method primary clears the flag on the user's other methods of
        that transport in the same transaction.
        """
        async with self._conn() as conn, conn.transaction():
            try:
                row = await conn.fetchrow(self._q["contact_method_for_update"], method_id)
            except asyncpg.DataError:
                row = None  # not a uuid
            if row is None:
                raise NotFound(f"Contact method {method_id!r} does not exist.")
            method = ContactMethod.model_validate({**_method(row).model_dump(), **changes})
            if method.is_primary:
                await conn.execute(
                    self._q["clear_primary"], method.user_id, method.transport, method.id
                )
            row = await conn.fetchrow(
                self._q["update_contact_method"],
                method.id,
                method.label,
                method.is_primary,
                method.verified,
                method.disabled,
                method.muted,
                method.mute_until,
                method.suppress_up,
                method.suppress_down,
                method.suppress_first,
                method.suppress_diagnostic,
                method.suppress_all,
                method.min_severity,
                dict(method.metadata),
                list(method.tags),
            )
        return _method(row)

    async def set_disabled(self, method_id: str, disabled: bool) -> None:
        """Disable or enable a method; :class:`NotFound` if it does not exist."""
        await self.update_contact_method(method_id, {"disabled": disabled})

    # -- opt-outs -------------------------------------------------------------

    async def add_opt_out(
        self, transport: str, address: str, source: str = "cli", actor: str | None = None
    ) -> None:
        """Put a normalized address on the opt-out list (no-op if already there); with
        ``actor``, a new entry writes its audit row in the same statement."""
        async with self._conn() as conn:
            await conn.execute(
                self._q["add_opt_out"], transport, address, source, actor, mask(transport, address)
            )

    async def remove_opt_out(self, transport: str, address: str, actor: str | None = None) -> bool:
        """Take an address off the list; whether it was there (audited with ``actor``)."""
        async with self._conn() as conn:
            removed = await conn.fetchval(
                self._q["remove_opt_out"], transport, address, actor, mask(transport, address)
            )
        return bool(removed)

    async def list_opt_outs(self) -> list[tuple[str, str]]:
        """Every (transport, address) on the list."""
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["list_opt_outs"])
        return [(r["transport"], r["address"]) for r in rows]

    # -- schedules ------------------------------------------------------------

    async def add_shift(
        self, schedule_id: str, user_id: str, starts_at: datetime, ends_at: datetime
    ) -> Shift:
        """Add a shift, creating the schedule on first use."""
        async with self._conn() as conn, conn.transaction():
            await conn.execute(self._q["ensure_schedule"], schedule_id)
            try:
                row = await conn.fetchrow(
                    self._q["add_shift"], schedule_id, user_id, starts_at, ends_at
                )
            except asyncpg.ForeignKeyViolationError:
                raise NotFound(
                    f"User {user_id!r} does not exist; add it first with "
                    f"`router users add {user_id}`."
                ) from None
        return _shift(row)

    async def list_shifts(self, schedule_id: str | None = None) -> list[Shift]:
        """Every shift, or one schedule's, by schedule then start."""
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["list_shifts"], schedule_id)
        return [_shift(r) for r in rows]

    # -- directory management -------------------------------------------------

    async def get_user(self, user_id: str) -> User:
        """One user; :class:`NotFound` if there is none."""
        async with self._conn() as conn:
            row = await conn.fetchrow(self._q["get_user"], user_id)
        if row is None:
            raise NotFound(f"User {user_id!r} does not exist.")
        return _user(row)

    async def list_users(
        self, *, after: str | None = None, search: str | None = None, limit: int = 100
    ) -> list[User]:
        """Users by id, after ``after``, whose id or name contains ``search``."""
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["list_users"], after, like_literal(search), limit)
        return [_user(r) for r in rows]

    async def delete_user(self, user_id: str, *, cascade: bool = False) -> tuple[int, int]:
        """Delete a user; with ``cascade`` also its methods and shifts (returns their counts).

        Without ``cascade``, a user with methods or shifts is refused with :class:`Conflict`.
        """
        async with self._conn() as conn, conn.transaction():
            row = await conn.fetchrow(self._q["user_for_update"], user_id)
            if row is None:
                raise NotFound(f"User {user_id!r} does not exist.")
            deps = await conn.fetchrow(self._q["user_dependents"], user_id)
            methods, shifts = int(deps["methods"]), int(deps["shifts"])
            if (methods or shifts) and not cascade:
                raise Conflict(
                    f"User {user_id!r} has {methods} contact method(s) and {shifts} shift(s); "
                    "delete them first or pass --cascade."
                )
            await conn.execute(self._q["delete_user_methods"], user_id)
            await conn.execute(self._q["delete_user_shifts"], user_id)
            await conn.execute(self._q["delete_user"], user_id)
        return methods, shifts

    async def get_contact_method(self, method_id: str) -> ContactMethod:
        """One method; :class:`NotFound` if there is none."""
        async with self._conn() as conn:
            try:
                row = await conn.fetchrow(self._q["get_contact_method"], method_id)
            except asyncpg.DataError:
                row = None  # not a uuid
        if row is None:
            raise NotFound(f"Contact method {method_id!r} does not exist.")
        return _method(row)

    async def list_contact_methods(
        self,
        where: MethodFilter,
        *,
        after: tuple[str, str, str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ContactMethod]:
        """Methods in (user, transport, value) order, after the key ``after`` (keyset paging)."""
        cursor = list(after) if after else [None, None, None]
        async with self._conn() as conn:
            rows = await conn.fetch(
                self._q["list_contact_methods"], *where.params(), *cursor, limit, offset
            )
        return [_method(r) for r in rows]

    async def count_contact_methods(self, where: MethodFilter) -> int:
        """How many methods match ``where``."""
        async with self._conn() as conn:
            return int(await conn.fetchval(self._q["count_contact_methods"], *where.params()))

    async def primary_contact_method(self, user_id: str, transport: str) -> ContactMethod:
        """The user's primary method of ``transport``; :class:`NotFound` when there is none."""
        async with self._conn() as conn:
            row = await conn.fetchrow(self._q["primary_contact_method"], user_id, transport)
        if row is None:
            raise NotFound(f"User {user_id!r} has no primary {transport} method.")
        return _method(row)

    async def delete_contact_method(self, method_id: str) -> None:
        """Delete one method; :class:`NotFound` if there is none."""
        async with self._conn() as conn:
            try:
                deleted = await conn.fetchval(self._q["delete_contact_method"], method_id)
            except asyncpg.DataError:
                deleted = None
        if deleted is None:
            raise NotFound(f"Contact method {method_id!r} does not exist.")

    async def delete_user_methods(self, user_id: str) -> int:
        """Delete all of a user's methods in one transaction; how many there were."""
        async with self._conn() as conn, conn.transaction():
            if await conn.fetchrow(self._q["user_for_update"], user_id) is None:
                raise NotFound(f"User {user_id!r} does not exist.")
            status = await conn.execute(self._q["delete_user_methods"], user_id)
        return int(status.split()[-1])

    async def start_verification(
        self, method_id: str, code_hash: str, ttl_seconds: float
    ) -> tuple[ContactMethod, datetime]:
        """Store a new code (replacing any pending one); the method and when the code expires."""
        method = await self.get_contact_method(method_id)
        async with self._conn() as conn:
            expires_at = await conn.fetchval(
                self._q["start_verification"], method_id, code_hash, float(ttl_seconds)
            )
        return method, expires_at

    async def confirm_verification(
        self, method_id: str, matches: Callable[[str], bool], max_attempts: int
    ) -> ContactMethod:
        """Mark the method verified if ``matches(stored_hash)``; else count and refuse.

        The failed attempt is counted even though the command is refused.
        """
        await self.get_contact_method(method_id)
        refusal: str | None = None
        async with self._conn() as conn, conn.transaction():
            pending = await conn.fetchrow(self._q["pending_verification"], method_id)
            if pending is None:
                refusal = (
                    f"Contact method {method_id} has no verification pending; run "
                    f"`router contacts verify {method_id}` to send a code."
                )
            elif pending["expired"]:
                await conn.execute(self._q["end_verification"], method_id)
                refusal = (
                    "The code has expired; run `router contacts verify "
                    f"{method_id}` to send a new one."
                )
            elif not matches(pending["code_hash"]):
                failed = await conn.fetchval(self._q["count_failed_verification"], method_id)
                left = max_attempts - int(failed)
                if left <= 0:
                    await conn.execute(self._q["end_verification"], method_id)
                    refusal = (
                        "Wrong code, and too many wrong codes: this code is void; run "
                        f"`router contacts verify {method_id}` to send a new one."
                    )
                else:
                    refusal = f"Wrong code; {left} attempt(s) left before it is void."
            else:
                await conn.execute(self._q["end_verification"], method_id)
                row = await conn.fetchrow(self._q["mark_verified"], method_id)
                return _method(row)
        raise VerificationRefused(refusal)

    async def users_that_exist(self, user_ids: Collection[str]) -> set[str]:
        """Which of ``user_ids`` exist."""
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["users_that_exist"], list(user_ids))
        return {r["id"] for r in rows}

    async def import_contact_methods(
        self, rows: Sequence[Sequence[Any]], *, create_users: bool = False
    ) -> tuple[int, int]:
        """Upsert rows (in ``IMPORT_COLUMNS`` order) by (user, transport, value), all or nothing.

        Rows are copied into a temporary table and merged with one statement;
        an imported primary replaces the old primary of its (user, transport).
        Returns (inserted, updated).
        """
        async with self._conn() as conn, conn.transaction():
            await conn.execute(self._q["create_import_table"])
            await conn.copy_records_to_table("import_rows", records=rows, columns=IMPORT_COLUMNS)
            if create_users:
                await conn.execute(self._q["create_missing_users"])
            await conn.execute(self._q["clear_primaries_for_import"])
            try:
                counts = await conn.fetchrow(self._q["upsert_imported"])
            except asyncpg.ForeignKeyViolationError as error:
                raise NotFound(
                    f"An imported row names a user that does not exist ({error.detail}); "
                    "add the users first or pass --create-users."
                ) from None
        return int(counts["inserted"]), int(counts["updated"])
