"""Every write to users and contact methods, for the CLI, ``router api`` and the
demo alike: one path per change, each in one transaction with its audit row.

A write names its ``actor`` (who asked: ``cli:NAME``, an API key's name); the
audit row (fields that changed, addresses masked) is written in the change's
own transaction, so a change is never stored without it. ``actor=None`` writes
no audit row (seeding the demo, tests). ``expect`` checks the stored record
against the version the caller read (HTTP ``If-Match``) before anything changes.
The bulk API writes (:mod:`router.db.api_bulk`) reuse the connection-level
steps ``_insert_method``, ``_rewrite_method`` and ``_delete_method``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from router.db.pool import PgBase
from router.directory.edits import audit_fields
from router.directory.models import ContactMethod, User
from router.errors import Conflict, NotFound, PreconditionFailed
from schemas import Transport, WebhookMethod

#: A check of the stored record against the version the caller read (If-Match).
Expect = Callable[[Any], bool] | None


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
    notify_after_seconds: int = 0


def _refuse_stale(expect: Expect, current: Any, what: str) -> None:
    if expect is not None and not expect(current):
        raise PreconditionFailed(
            f"{what} changed since you read it; read it again (GET) and retry."
        )


def _no_user(user_id: str) -> NotFound:
    return NotFound(
        f"User {user_id!r} does not exist; add it first (`router users add {user_id}`, "
        "or POST /v1/users)."
    )


def _as_json(record: Mapping[str, Any] | None) -> Any:
    return json.loads(json.dumps(record, default=str)) if record is not None else None


class DirectoryWrites(PgBase):
    """Users and contact methods created, changed and deleted, each with its audit row."""

    async def _audit(
        self,
        conn: asyncpg.Connection,
        actor: str | None,
        action: str,
        entity: str,
        entity_id: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
        transport: str | None = None,
    ) -> None:
        if actor is None:
            return
        old, new = audit_fields(before, after, transport)
        await conn.execute(
            self._q["write_audit"], actor, action, entity, entity_id, _as_json(old), _as_json(new)
        )

    async def audit(
        self, actor: str, action: str, entity: str, entity_id: str, after: Mapping[str, Any]
    ) -> None:
        """One audit row for a change made elsewhere (opt-outs)."""
        async with self._conn() as conn:
            await self._audit(conn, actor, action, entity, entity_id, None, after)

    # ------------------------------------------------------------------ users

    async def create_user(self, user: Mapping[str, Any], *, actor: str | None = None) -> User:
        """Create a user with every field given; :class:`Conflict` if the id is taken."""
        now = datetime.now().astimezone()
        draft = User.model_validate({"created_at": now, **user, "updated_at": now})
        async with self._conn() as conn, conn.transaction():
            if await conn.fetchrow(self._q["get_user"], draft.id) is not None:
                raise Conflict(f"User {draft.id!r} already exists.")
            try:
                row = await conn.fetchrow(self._q["insert_user"], *_user_params(draft))
            except asyncpg.UniqueViolationError:  # created meanwhile, or external_id taken
                raise Conflict(f"User {draft.id!r} (or its external_id) already exists.") from None
            created = User.model_validate(dict(row))
            await self._audit(
                conn, actor, "create", "user", created.id, None, created.model_dump(mode="json")
            )
        return created

    async def add_user(self, user_id: str, name: str | None, timezone: str) -> User:
        """Create a user with just a name and time zone (no audit row: seeding, tests)."""
        return await self.create_user({"id": user_id, "name": name, "timezone": timezone})

    async def _user_for_update(
        self, conn: asyncpg.Connection, user_id: str, expect: Expect
    ) -> User:
        row = await conn.fetchrow(self._q["user_for_update"], user_id)
        if row is None:
            raise NotFound(f"User {user_id!r} does not exist.")
        current = User.model_validate(dict(row))
        _refuse_stale(expect, current, f"User {user_id!r}")
        return current

    async def update_user(
        self,
        user_id: str,
        changes: Mapping[str, Any],
        *,
        actor: str | None = None,
        expect: Expect = None,
    ) -> User:
        """Apply ``changes`` (User field -> value); :class:`NotFound` if there is no user."""
        async with self._conn() as conn, conn.transaction():
            current = await self._user_for_update(conn, user_id, expect)
            user = User.model_validate({**current.model_dump(), **changes})
            row = await conn.fetchrow(self._q["update_user"], *_user_params(user))
            updated = User.model_validate(dict(row))
            await self._audit(
                conn,
                actor,
                "update",
                "user",
                user_id,
                current.model_dump(mode="json"),
                updated.model_dump(mode="json"),
            )
        return updated

    async def delete_user(
        self,
        user_id: str,
        *,
        cascade: bool = False,
        actor: str | None = None,
        expect: Expect = None,
    ) -> tuple[int, int]:
        """Delete a user; with ``cascade`` also its methods and shifts (returns their counts).

        Without ``cascade``, a user with methods or shifts is refused with :class:`Conflict`.
        """
        async with self._conn() as conn, conn.transaction():
            current = await self._user_for_update(conn, user_id, expect)
            deps = await conn.fetchrow(self._q["user_dependents"], user_id)
            methods, shifts = int(deps["methods"]), int(deps["shifts"])
            if (methods or shifts) and not cascade:
                raise Conflict(
                    f"User {user_id!r} has {methods} contact method(s) and {shifts} shift(s); "
                    "delete them first or pass --cascade (cascade=true over the API)."
                )
            await conn.execute(self._q["delete_user_methods"], user_id)
            await conn.execute(self._q["delete_user_shifts"], user_id)
            await conn.execute(self._q["delete_user"], user_id)
            await self._audit(
                conn, actor, "delete", "user", user_id, current.model_dump(mode="json"), None
            )
        return methods, shifts

    # -------------------------------------------------------- contact methods

    async def _insert_method(
        self,
        conn: asyncpg.Connection,
        new: NewContactMethod,
        external_id: str | None,
        actor: str | None,
    ) -> ContactMethod:
        existing = await conn.fetchval(
            self._q["contact_method_by_value"], new.user_id, new.transport, new.value
        )
        if existing is not None:
            raise Conflict(
                f"User {new.user_id!r} already has that {new.transport} address as contact "
                f"method {existing}."
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
                external_id,
                new.notify_after_seconds,
            )
        except asyncpg.ForeignKeyViolationError:
            raise _no_user(new.user_id) from None
        except asyncpg.UniqueViolationError:
            raise Conflict("Another contact method has that external_id.") from None
        method = ContactMethod.model_validate(dict(row))
        await self._audit(
            conn,
            actor,
            "create",
            "contact_method",
            method.id,
            None,
            method.model_dump(mode="json"),
            method.transport,
        )
        return method

    async def add_contact_method(
        self,
        new: NewContactMethod,
        *,
        external_id: str | None = None,
        actor: str | None = None,
    ) -> ContactMethod:
        """Create a method in one transaction (clearing another primary when asked)."""
        async with self._conn() as conn, conn.transaction():
            return await self._insert_method(conn, new, external_id, actor)

    async def _method_for_update(
        self, conn: asyncpg.Connection, method_id: str, expect: Expect
    ) -> ContactMethod:
        try:
            row = await conn.fetchrow(self._q["contact_method_for_update"], method_id)
        except asyncpg.DataError:
            row = None  # not a uuid
        if row is None:
            raise NotFound(f"Contact method {method_id!r} does not exist.")
        current = ContactMethod.model_validate(dict(row))
        _refuse_stale(expect, current, f"Contact method {method_id}")
        return current

    async def _rewrite_method(
        self,
        conn: asyncpg.Connection,
        current: ContactMethod,
        changes: Mapping[str, Any],
        actor: str | None,
    ) -> ContactMethod:
        method = ContactMethod.model_validate({**current.model_dump(), **changes})
        if method.value != current.value:
            taken = await conn.fetchval(
                self._q["other_method_with_value"],
                method.user_id,
                method.transport,
                method.value,
                method.id,
            )
            if taken is not None:
                raise Conflict(
                    f"User {method.user_id!r} already has that {method.transport} address "
                    f"as contact method {taken}."
                )
        if method.is_primary:
            await conn.execute(
                self._q["clear_primary"], method.user_id, method.transport, method.id
            )
        row = await conn.fetchrow(
            self._q["update_contact_method"],
            method.id,
            method.value,
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
            method.webhook_method,
            dict(method.webhook_headers),
            dict(method.webhook_query),
            method.webhook_body,
            method.external_id,
            method.notify_after_seconds,
        )
        updated = ContactMethod.model_validate(dict(row))
        await self._audit(
            conn,
            actor,
            "update",
            "contact_method",
            current.id,
            current.model_dump(mode="json"),
            updated.model_dump(mode="json"),
            current.transport,
        )
        return updated

    async def update_contact_method(
        self,
        method_id: str,
        changes: Mapping[str, Any],
        *,
        actor: str | None = None,
        expect: Expect = None,
    ) -> ContactMethod:
        """Apply ``changes`` (any ContactMethod field but ids, transport and times; a
        ``value`` already checked by :mod:`router.directory.edits`) in one transaction.

        A value another of the user's methods has is a :class:`Conflict`; making a
        method primary clears the user's other primary of that transport."""
        async with self._conn() as conn, conn.transaction():
            current = await self._method_for_update(conn, method_id, expect)
            return await self._rewrite_method(conn, current, changes, actor)

    async def set_disabled(self, method_id: str, disabled: bool) -> None:
        """Disable or enable a method; :class:`NotFound` if it does not exist."""
        await self.update_contact_method(method_id, {"disabled": disabled})

    async def _delete_method(
        self, conn: asyncpg.Connection, method: ContactMethod, actor: str | None
    ) -> None:
        await conn.execute(self._q["delete_contact_method"], method.id)
        await self._audit(
            conn,
            actor,
            "delete",
            "contact_method",
            method.id,
            method.model_dump(mode="json"),
            None,
            method.transport,
        )

    async def delete_contact_method(
        self, method_id: str, *, actor: str | None = None, expect: Expect = None
    ) -> None:
        """Delete one method; :class:`NotFound` if there is none."""
        async with self._conn() as conn, conn.transaction():
            current = await self._method_for_update(conn, method_id, expect)
            await self._delete_method(conn, current, actor)

    async def _user_methods_for_update(
        self, conn: asyncpg.Connection, user_id: str
    ) -> list[ContactMethod]:
        if await conn.fetchrow(self._q["user_for_update"], user_id) is None:
            raise NotFound(f"User {user_id!r} does not exist.")
        rows = await conn.fetch(self._q["methods_of_user_for_update"], user_id)
        return [ContactMethod.model_validate(dict(r)) for r in rows]

    async def delete_user_methods(self, user_id: str, *, actor: str | None = None) -> int:
        """Delete all of a user's methods in one transaction; how many there were."""
        async with self._conn() as conn, conn.transaction():
            methods = await self._user_methods_for_update(conn, user_id)
            for method in methods:
                await self._delete_method(conn, method, actor)
        return len(methods)


def _user_params(user: User) -> tuple[Any, ...]:
    return (
        user.id,
        user.name,
        user.timezone,
        user.quiet_hours_start,
        user.quiet_hours_end,
        user.quiet_bypass,
        list(user.channel_order),
        user.delivery_mode,
        user.quiet_action,
        user.external_id,
    )
