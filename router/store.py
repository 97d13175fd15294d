"""The Postgres directory: the only module that runs SQL.

``Store`` is the narrow interface the worker and the commands use; ``PgStore``
implements it on an asyncpg pool and ``router.memstore.InMemoryStore`` in
memory for unit tests. Driver errors are translated once, here, into
:mod:`router.errors`, so callers never see asyncpg exceptions.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from router import sql
from router.directory import ContactMethod, Directory, User
from router.errors import Conflict, NotFound, NotMigrated, StoreError, StoreUnavailable
from schemas import Transport, WebhookMethod


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


class Store(Protocol):
    """What the router needs from its directory."""

    async def directory_for(self, user_ids: Collection[str]) -> Directory:
        """Users among ``user_ids`` that exist, with their contact methods, in one snapshot."""
        ...

    async def add_user(self, user_id: str, name: str | None, timezone: str) -> User:
        """Create a user; :class:`Conflict` if the id is taken."""
        ...

    async def add_contact_method(self, new: NewContactMethod) -> ContactMethod:
        """Create a method; :class:`NotFound` for an unknown user, :class:`Conflict` for a
        duplicate value. Making it primary clears the user's other primary of that transport."""
        ...


def redact_url(url: str) -> str:
    """``url`` with any password replaced, for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
)


@asynccontextmanager
async def translate_errors(url: str) -> AsyncIterator[None]:
    """Turn asyncpg's exceptions into the router's own, with a next step in each message."""
    try:
        yield
    except asyncpg.UndefinedTableError as error:
        raise NotMigrated(
            f"The database at {redact_url(url)} has no router schema ({error}); "
            "run `router db migrate` first."
        ) from error
    except asyncpg.UniqueViolationError as error:
        raise Conflict(f"That would break a uniqueness rule: {error.detail or error}.") from error
    except asyncpg.ForeignKeyViolationError as error:
        raise NotFound(f"A referenced record does not exist: {error.detail or error}.") from error
    except _UNAVAILABLE as error:
        raise StoreUnavailable(
            f"Cannot use PostgreSQL at {redact_url(url)}: {error or type(error).__name__}. "
            "Check that it is running and that ROUTER_DATABASE_URL is right."
        ) from error
    except asyncpg.PostgresError as error:
        raise StoreError(f"PostgreSQL refused the operation: {error}.") from error


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _method(row: Mapping[str, Any]) -> ContactMethod:
    return ContactMethod.model_validate(dict(row))


def _user(row: Mapping[str, Any]) -> User:
    return User.model_validate(dict(row))


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
                f"The database at {redact_url(self._url)} is at schema version {have}; this "
                f"router needs {need}. Run `router db migrate` (it is safe to run repeatedly)."
            )

    async def directory_for(self, user_ids: Collection[str]) -> Directory:
        """One snapshot of the named users and their methods, read in one transaction."""
        ids = list(user_ids)
        if not ids:
            return Directory()
        async with self._conn() as conn, conn.transaction(readonly=True):
            users = await conn.fetch(self._q["users_by_ids"], ids)
            methods = await conn.fetch(self._q["contact_methods_for_users"], ids)
        return Directory.of((_user(r) for r in users), (_method(r) for r in methods))

    async def add_user(self, user_id: str, name: str | None, timezone: str) -> User:
        """Create a user; :class:`Conflict` if the id is taken."""
        try:
            async with self._conn() as conn:
                row = await conn.fetchrow(self._q["insert_user"], user_id, name, timezone)
        except Conflict:
            raise Conflict(f"User {user_id!r} already exists.") from None
        return _user(row)

    async def set_disabled(self, method_id: str, disabled: bool) -> None:
        """Disable or enable a method; :class:`NotFound` if it does not exist."""
        async with self._conn() as conn:
            if await conn.fetchval(self._q["set_disabled"], method_id, disabled) is None:
                raise NotFound(f"Contact method {method_id} does not exist.")

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
                )
            except asyncpg.ForeignKeyViolationError:
                raise NotFound(
                    f"User {new.user_id!r} does not exist; add it first with "
                    f"`router users add {new.user_id}`."
                ) from None
        return _method(row)
