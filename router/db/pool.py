"""The PostgreSQL pool every store is built on: connecting, the schema check,
and driver errors translated once, at this boundary, into :mod:`router.errors`
(callers never see asyncpg exceptions).

The stores of the rooms (``router.directory.store``, ``router.directory.manage``,
``router.routing.ledger``, ``router.delivery.store``, ``router.held.store``)
each add their statements to :class:`PgBase`; ``router.db.store.PgStore`` is all
of them on one pool.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self

import asyncpg

from router import metrics
from router.db import sql
from router.errors import Conflict, NotFound, NotMigrated, StoreError, StoreUnavailable
from router.redact import redact_dsn

# Conditions that say "the database is not usable right now", not "this
# operation is wrong": retried by the worker, exit status 3 for commands.
UNAVAILABLE = (
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
    except asyncpg.RestrictViolationError as error:
        # A user still in a rotation or an override (migration 0008).
        raise Conflict(
            f"That record is still in use: {error.detail or error}. Take it out of the "
            "schedule first (`router schedules set-users`, `remove-rotation`, `remove-override`)."
        ) from error
    except UNAVAILABLE as error:
        raise StoreUnavailable(
            f"Cannot use PostgreSQL at {redact_dsn(url)}: "
            f"{redact_dsn(str(error), url) or type(error).__name__}. "
            "Check that it is running and that ROUTER_DATABASE_URL is right."
        ) from error
    except (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError) as error:
        # PostgreSQL's text cannot hold a NUL byte, nor its JSON operators read one (\u0000).
        raise StoreError(
            f"PostgreSQL cannot take a value given: it holds a NUL byte ({error}); remove it."
        ) from error
    except asyncpg.PostgresError as error:
        raise StoreError(f"PostgreSQL refused the operation: {error}.") from error


async def database_answers(url: str, within_seconds: float = 2.0) -> bool:
    """Whether PostgreSQL at ``url`` accepts a session within ``within_seconds``."""
    try:
        conn = await asyncpg.connect(url, timeout=within_seconds)
    except (*UNAVAILABLE, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def _jsonb_encode(value: Any) -> bytes:
    return b"\x01" + json.dumps(value).encode()  # jsonb binary format: version 1, then text


def _jsonb_decode(data: bytes) -> Any:
    return json.loads(data[1:])


def count_round_trip(_record: Any) -> None:
    metrics.DB_ROUND_TRIPS.inc()


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Every query this connection sends, counted (router_db_round_trips_total).
    conn.add_query_logger(count_round_trip)
    # Binary, so COPY (bulk import) can send jsonb too.
    await conn.set_type_codec(
        "jsonb", encoder=_jsonb_encode, decoder=_jsonb_decode, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec("uuid", encoder=str, decoder=str, schema="pg_catalog", format="text")


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """What a connection returned to the pool runs: nothing beyond asyncpg's own cleanup
    (a transaction left open is rolled back, listeners dropped). asyncpg's default
    resets the session with one more query, a round trip on every release, which the
    worker waited for twice a batch. No pooled connection keeps session state: LISTEN
    has a connection of its own, advisory locks are transaction-scoped
    (``pg_advisory_xact_lock``), temporary tables drop on commit, and nothing runs
    ``SET``. Keep it so, or reset here what a new statement leaves behind."""


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class PgBase:
    """An asyncpg pool, the named queries, and the schema check."""

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self._pool = pool
        self._url = url
        self._q = sql.queries()

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> Self:
        """Open a pool; :class:`StoreUnavailable` with a clear message if it cannot."""
        async with translate_errors(url):
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                reset=_keep_session,
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
        except (asyncpg.PostgresError, *UNAVAILABLE):
            return False
        return True

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with translate_errors(self._url), self._pool.acquire() as conn:
            yield conn

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
